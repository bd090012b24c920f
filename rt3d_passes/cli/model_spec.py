"""Models named on the command line: zoo names and saved files, imported for RT3D.

Every import of ``rt3d_prune`` by ``rt3d_passes`` is here (or in :mod:`.demo`), inside the
functions: compiling needs no pruning code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tvm

from ..frontend import from_exported

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
        exported = _read(path, torch.export.load, "an exported program (.pt2)")
        return from_exported(exported)
    payload = _read(path, lambda p: torch.load(p, map_location="cpu", weights_only=True),
                    "a torch checkpoint")
    if isinstance(payload, dict) and "arch" in payload and "state_dict" in payload:
        from rt3d_prune.checkpoint import load_checkpoint

        try:
            net, meta = load_checkpoint(path)
        except (RuntimeError, KeyError, TypeError) as err:  # weights of another architecture
            raise ValueError(f"{path}: state dict does not fit its architecture "
                             f"{payload['arch']!r}: {_first_lines(err)}") from None
        shape = input_shape or meta["input_shape"]
        model = str(payload["arch"])
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
            raise ValueError(
                f"{path}: state dict does not fit zoo model {model!r}: {_first_lines(err)}"
            ) from None
        shape = input_shape or default_input_shape(model)
    else:
        raise ValueError(
            f"{path}: not an RT3D checkpoint, a state dict or an exported program (.pt2)"
        )
    return _import(net, shape, f"{path} ({model})")


def _first_lines(err: BaseException, lines: int = 3, max_chars: int = 300) -> str:
    """The head of an exception's message on one line (torch's run to pages)."""
    text = " ".join(line.strip() for line in str(err).strip().splitlines()[:lines])
    text = text or type(err).__name__
    return text if len(text) <= max_chars else text[:max_chars - 3] + "..."


def _read(path: str, load, what: str):
    """``load(path)``; a file torch cannot read (corrupt, truncated, not a checkpoint) becomes
    one ValueError naming it instead of an unpickler traceback."""
    import logging
    import warnings

    log = logging.getLogger("torch.export")  # logs its own traceback before raising
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notes about a file we reject
            return load(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as err:  # UnpicklingError, EOFError, RuntimeError (zip), BadZipFile...
        detail = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
        detail = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        raise ValueError(f"{path}: not readable as {what} (corrupt, truncated or not a "
                         f"weights-only file): {detail[:160]}") from None
    finally:
        log.setLevel(level)


def _import(net, shape: Sequence[int], what: str) -> tvm.IRModule:
    """``from_torch(net, zeros(shape))``, with an input the model cannot take named as such."""
    import torch

    net = net.eval()
    try:
        with torch.no_grad():
            exported = torch.export.export(net, (torch.zeros(*shape),))
    except RuntimeError as err:
        raise ValueError(f"{what}: the model does not run on input shape {tuple(shape)}: "
                         f"{_first_lines(err, 1)}") from None
    return from_exported(exported)


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
    return _import(model, shape, spec)


def default_preset(model: str) -> str:
    """The first registered pruning preset of a zoo model (the paper's, for C3D/R(2+1)D/S3D)."""
    from rt3d_prune.presets import PRESET_NAMES, get_preset

    for name in PRESET_NAMES:
        if get_preset(name).model == model:
            return name
    raise ValueError(f"no pruning preset for model {model!r}; presets: {', '.join(PRESET_NAMES)}")
