"""Models named on the command line: zoo names and saved files, imported for RT3D.

Every import of ``rt3d_prune`` by ``rt3d_passes`` is here (or in :mod:`.demo`), inside the
functions: compiling needs no pruning code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tvm

from ..frontend import from_exported, from_torch

__all__ = ["default_preset", "load_model_file", "model_from_spec"]


def load_model_file(
    path: str,
    model: str | None = None,
    input_shape: Sequence[int] | None = None,
) -> tvm.IRModule:
    """Import a saved model for inspection or compilation.

    Accepts an RT3D checkpoint (``rt3d prune``'s output: a dict with ``arch`` and
    ``state_dict``), a plain state dict of a zoo model (``model`` names it), or an exported
    program saved with ``torch.export.save`` (``.pt2``).
    """
    import torch

    if str(path).endswith(".pt2"):
        exported = torch.export.load(path)
        return from_exported(exported)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "arch" in payload and "state_dict" in payload:
        from rt3d_prune.checkpoint import load_checkpoint

        net, meta = load_checkpoint(path)
        shape = input_shape or meta["input_shape"]
    elif isinstance(payload, dict) and payload and all(
        isinstance(v, torch.Tensor) for v in payload.values()
    ):
        from rt3d_prune.models import build_model, default_input_shape

        if model is None:
            raise ValueError(f"{path}: a plain state dict; name its zoo model with --model")
        net = build_model(model)
        try:
            net.load_state_dict(payload)
        except RuntimeError as err:  # missing/unexpected keys or shape mismatches
            first = str(err).strip().splitlines()
            raise ValueError(
                f"{path}: state dict does not fit zoo model {model!r}: "
                f"{' '.join(line.strip() for line in first[:3])}"
            ) from None
        shape = input_shape or default_input_shape(model)
    else:
        raise ValueError(
            f"{path}: not an RT3D checkpoint, a state dict or an exported program (.pt2)"
        )
    return from_torch(net, (torch.zeros(*shape),))


def model_from_spec(
    spec: str,
    preset: str | None = None,
    scheme: str = "kgs",
    group: Sequence[int] = (8, 4),
    input_shape: Sequence[int] | None = None,
) -> tvm.IRModule:
    """A model for ``rt3d tune`` / ``compile``: a zoo name (pruned one-shot to ``preset``,
    default the model's paper preset) or a saved file (see :func:`load_model_file`)."""
    import torch

    from rt3d_prune.models import MODEL_NAMES, build_model, default_input_shape

    if spec not in MODEL_NAMES:
        if not os.path.exists(spec):
            raise ValueError(f"{spec!r} is neither a zoo model ({', '.join(MODEL_NAMES)}) nor "
                             "a file")
        return load_model_file(spec, input_shape=input_shape)
    from rt3d_prune.oneshot import prune_oneshot

    preset = preset or default_preset(spec)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    if preset not in (None, "dense"):
        prune_oneshot(model, preset, scheme=scheme, group=tuple(group))
    shape = input_shape or default_input_shape(spec)
    return from_torch(model, (torch.zeros(*shape),))


def default_preset(model: str) -> str:
    """The first registered pruning preset of a zoo model (the paper's, for C3D/R(2+1)D/S3D)."""
    from rt3d_prune.presets import PRESET_NAMES, get_preset

    for name in PRESET_NAMES:
        if get_preset(name).model == model:
            return name
    raise ValueError(f"no pruning preset for model {model!r}; presets: {', '.join(PRESET_NAMES)}")
