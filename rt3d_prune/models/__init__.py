"""The RT3D model zoo: C3D, R(2+1)D-18, S3D and a small C3D for the generated dataset.

Every model uses only standard layers (Conv3d, BatchNorm3d, ReLU, MaxPool3d,
AdaptiveAvgPool3d, Linear) and has no data-dependent control flow, so ``torch.export`` works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .c3d import C3D, C3D_CONV_NAMES
from .r2plus1d import R2Plus1D18
from .s3d import S3D

__all__ = [
    "C3D",
    "C3D_CONV_NAMES",
    "MODEL_NAMES",
    "S3D",
    "R2Plus1D18",
    "build_model",
    "default_input_shape",
]

#: ``c3d_small``: C3D's topology at 1/4 width with BatchNorm and 256-wide FC layers, for
#: 16x32x32 clips (the generated dataset); 1.9 M parameters, 0.21 G MACs per clip.
_SMALL = {
    "widths": (16, 32, 64, 64, 128, 128, 128, 128),
    "fc_dim": 256,
    "input_size": (16, 32, 32),
    "batch_norm": True,
    "dropout": 0.2,
}

_BUILDERS: dict[str, tuple[Callable[..., nn.Module], dict[str, Any], int, tuple[int, ...]]] = {
    # name: (class, default kwargs, default classes, default input shape)
    "c3d": (C3D, {}, 101, (1, 3, 16, 112, 112)),
    "c3d_small": (C3D, _SMALL, 12, (1, 3, 16, 32, 32)),
    "r2plus1d_18": (R2Plus1D18, {}, 400, (1, 3, 16, 112, 112)),
    "s3d": (S3D, {}, 400, (1, 3, 16, 224, 224)),
}

#: Names accepted by :func:`build_model`.
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def _entry(name: str):
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}"
        ) from None


def build_model(name: str, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a zoo model with random weights.

    Args:
        name: One of :data:`MODEL_NAMES`.
        num_classes: Output classes; ``None`` keeps the model's default (101 for C3D as on
            UCF101, 400 for R(2+1)D and S3D as on Kinetics, 12 for ``c3d_small`` as in the
            generated dataset).
        **kwargs: Extra constructor arguments; override the zoo defaults.

    Raises:
        ValueError: ``name`` is not a zoo model (the message lists the valid names).
    """
    cls, defaults, classes, _ = _entry(name)
    args = {**defaults, **kwargs}
    return cls(num_classes=classes if num_classes is None else num_classes, **args)


def default_input_shape(name: str) -> tuple[int, ...]:
    """Input ``(batch, channels, frames, height, width)`` the model is specified for."""
    return _entry(name)[3]
