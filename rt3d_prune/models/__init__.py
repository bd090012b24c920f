"""The RT3D model zoo: C3D, R(2+1)D-18, S3D, a small C3D for the generated dataset, and the
PyTorchVideo-style X3D-XS / X3D-S, Slow-R50, ir-CSN-50 and SlowFast-R50.

Every model uses only standard layers (Conv3d, BatchNorm3d, ReLU, SiLU, Sigmoid, pooling,
Linear) and has no data-dependent control flow, so ``torch.export`` works.

:func:`default_input_shape` is the clip a model is benchmarked at, which for the newer models
is smaller than the papers' (the papers' shapes are :data:`PAPER_INPUT_SHAPES`). SlowFast takes
two clips; its single shape is the fast clip, from which it samples the slow one
(:func:`input_shapes` gives both).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .c3d import C3D, C3D_CONV_NAMES
from .csn import IrCSN50
from .r2plus1d import R2Plus1D18
from .s3d import S3D
from .slow_r50 import SlowR50
from .slowfast import DEFAULT_ALPHA, SlowFastR50
from .x3d import X3D

__all__ = [
    "C3D",
    "C3D_CONV_NAMES",
    "MODEL_NAMES",
    "PAPER_INPUT_SHAPES",
    "S3D",
    "X3D",
    "IrCSN50",
    "R2Plus1D18",
    "SlowFastR50",
    "SlowR50",
    "build_model",
    "default_input_shape",
    "input_shapes",
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
    # benchmark sizes (issue 13): X3D at its own clips, the ResNets at 128x128
    "x3d_xs": (X3D, {}, 400, (1, 3, 4, 160, 160)),
    "x3d_s": (X3D, {}, 400, (1, 3, 13, 160, 160)),
    "slow_r50": (SlowR50, {}, 400, (1, 3, 8, 128, 128)),
    "ir_csn_50": (IrCSN50, {}, 400, (1, 3, 8, 128, 128)),
    # the fast clip (32 frames); the slow pathway takes every 4th frame of it
    "slowfast_r50": (SlowFastR50, {}, 400, (1, 3, 32, 128, 128)),
}

#: The clips the papers (and PyTorchVideo's model zoo) state FLOPs for, where they differ
#: from :func:`default_input_shape`: Slow and SlowFast at 256x256 (the SlowFast paper's test
#: crops), ir-CSN at 8x224x224 (the CSN paper's Table 3). SlowFast's is the fast clip.
PAPER_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "slow_r50": (1, 3, 8, 256, 256),
    "ir_csn_50": (1, 3, 8, 224, 224),
    "slowfast_r50": (1, 3, 32, 256, 256),
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
            UCF101, 400 for the others as on Kinetics, 12 for ``c3d_small`` as in the
            generated dataset).
        **kwargs: Extra constructor arguments; override the zoo defaults.

    Raises:
        ValueError: ``name`` is not a zoo model (the message lists the valid names).
    """
    cls, defaults, classes, _ = _entry(name)
    args = {**defaults, **kwargs}
    return cls(num_classes=classes if num_classes is None else num_classes, **args)


def default_input_shape(name: str) -> tuple[int, ...]:
    """Input ``(batch, channels, frames, height, width)`` the model is benchmarked at.

    One shape for every model: for ``slowfast_r50`` the fast clip (the model samples the
    slow clip from it when called with one input).
    """
    return _entry(name)[3]


def input_shapes(name: str, shape: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], ...]:
    """Shapes of every positional input for a single-clip ``shape`` (default
    :func:`default_input_shape`): one shape, or ``(slow, fast)`` for ``slowfast_r50``."""
    shape = tuple(shape or default_input_shape(name))
    if name != "slowfast_r50":
        return (shape,)
    # forward(fast) takes frames 0, alpha, 2 alpha, ...: ceil(T / alpha) of them
    slow = (*shape[:2], -(-shape[2] // DEFAULT_ALPHA), *shape[3:])
    return (slow, shape)
