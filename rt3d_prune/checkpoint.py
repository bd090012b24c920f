"""The pruned-checkpoint format shared with the compiler half (``rt3d inspect``).

A ``torch.save`` dict, loadable with ``torch.load(path, weights_only=True)``::

    {
        "format": "rt3d-pruned/1",
        "arch": "c3d",                      # zoo name for rt3d_prune.models.build_model
        "arch_kwargs": {"num_classes": 101},
        "input_shape": [1, 3, 16, 112, 112],
        "state_dict": {...},                # plain tensors, masks squashed, exact zeros
        "pruning": {"method": ..., "scheme": ..., "group": [8, 4], "preset": ...,
                    "rates": {layer: rate}, ...},
    }
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]

FORMAT = "rt3d-pruned/1"


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so the dict holds only weights_only-safe types."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint metadata must be plain Python values, got {type(value)}")


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    input_shape: Sequence[int],
    pruning_info: Mapping[str, Any],
) -> None:
    """Write a pruned model. The model must be squashed (no parametrizations left).

    Raises:
        ValueError: The model still has pruning parametrizations (call ``squash_mask``).
    """
    state = model.state_dict()
    if any(".parametrizations." in k for k in state):
        raise ValueError("model still carries masks; call GroupSparsifier.squash_mask() first")
    payload = {
        "format": FORMAT,
        "arch": str(arch),
        "arch_kwargs": _plain(dict(arch_kwargs)),
        "input_shape": [int(s) for s in input_shape],
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in state.items()},
        "pruning": _plain(dict(pruning_info)),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint and load its weights.

    Returns:
        ``(model in eval mode, metadata)``; the metadata is the saved dict without
        ``state_dict``.
    """
    from .models import build_model

    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "arch" not in payload or "state_dict" not in payload:
        raise ValueError(f"{path}: not an RT3D pruned checkpoint")
    kwargs = dict(payload.get("arch_kwargs", {}))
    for key, value in kwargs.items():
        if isinstance(value, list):  # tuples were stored as lists
            kwargs[key] = tuple(value)
    model = build_model(payload["arch"], **kwargs)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model, meta
