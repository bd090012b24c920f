"""Load pretrained dense weights saved by the public implementations (``--init``).

The zoo's module names follow the public models, so most state dicts load as they are:

* ``r2plus1d_18`` -- torchvision's ``torchvision.models.video.r2plus1d_18`` (Kinetics-400):
  the same names (``stem.0.weight``, ``layer1.0.conv1.0.0.weight``, ..., ``fc.weight``);
* ``s3d`` -- torchvision's ``s3d``: the same names except the head, a 1x1x1 convolution
  ``classifier.1`` there and a linear ``fc`` here (same numbers, reshaped);
* ``c3d`` -- the common PyTorch port of the Sports-1M C3D (``c3d.pickle``: ``conv1`` ...
  ``conv5b``, ``fc6``, ``fc7``, ``fc8``), the zoo's names exactly;
* any zoo model -- an RT3D checkpoint (``state_dict`` key), a raw state dict, or one saved
  from a DistributedDataParallel wrapper (``module.`` prefixes).

A classifier head of another class count (Sports-1M's 487, Kinetics' 400 -> UCF101's 101) is
left at its random initialisation and reported; every other difference -- missing or
unexpected keys, other shapes -- is an error that names the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["HEADS", "load_pretrained", "to_public_names"]

#: The classifier layer of each zoo model (may differ in class count).
HEADS: dict[str, str] = {"c3d": "fc8", "c3d_small": "fc8", "r2plus1d_18": "fc", "s3d": "fc",
                         "r3d_18": "fc"}


def _from_public(arch: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith("module."):  # saved from DistributedDataParallel
            key = key[len("module."):]
        if arch == "s3d" and key.startswith("classifier.1."):
            key = "fc." + key[len("classifier.1."):]
            if key == "fc.weight" and value.dim() == 5:
                value = value.flatten(1)
        out[key] = value
    return out


def to_public_names(arch: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The zoo's state dict under the public implementation's names (the inverse of what
    :func:`load_pretrained` maps), e.g. to publish weights or to test loading."""
    out = {}
    for key, value in state.items():
        if arch == "s3d" and key.startswith("fc."):
            key = "classifier.1." + key[len("fc."):]
            if key.endswith("weight"):
                value = value[:, :, None, None, None]
        out[key] = value
    return out


def _read(path: str | Path) -> Mapping[str, Tensor]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in payload and isinstance(payload[key], Mapping):
                return payload[key]
        return payload
    raise ValueError(f"{path}: not a state dict (got {type(payload).__name__})")


def _guess_arch(state: Mapping[str, Tensor]) -> str | None:
    """The zoo model whose names cover the file's best (built on the meta device)."""
    from .models import MODEL_NAMES, build_model

    best, name = 0.0, None
    for arch in MODEL_NAMES:
        with torch.device("meta"):
            keys = set(build_model(arch).state_dict())
        score = len(keys & set(_from_public(arch, state))) / max(len(state), 1)
        if score > best:
            best, name = score, arch
    return name if best >= 0.9 else None


def _show(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_pretrained(model: nn.Module, path: str | Path, arch: str) -> dict[str, list[str]]:
    """Load dense weights from ``path`` into ``model`` (a zoo ``arch``), strictly.

    Returns:
        ``{"skipped_head": [...]}``: head keys left at their initialisation because their
        class count differs.

    Raises:
        ValueError: Missing or unexpected keys, or shapes that differ outside the head; the
            message names the keys (and says when they look like another architecture).
    """
    state = _from_public(arch, _read(path))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    head = HEADS.get(arch, "")
    skipped, wrong = [], []
    for key in own.keys() & state.keys():
        if tuple(own[key].shape) != tuple(state[key].shape):
            if head and key.startswith(head + "."):
                skipped.append(key)
            else:
                wrong.append(f"{key}: {tuple(state[key].shape)} in the file, "
                             f"{tuple(own[key].shape)} in {arch}")
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys: {_show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_show(unexpected)}")
        if wrong:
            parts.append(f"other shapes: {'; '.join(sorted(wrong)[:8])}")
        shared = len(own.keys() & state.keys())
        hint = ""
        if shared < len(own) // 2:
            guess = _guess_arch(state)
            hint = (f" -- only {shared} of {len(own)} names match: is this a state dict for "
                    f"another architecture{f' ({guess}?)' if guess else ''}?")
        raise ValueError(f"{path} does not fit {arch}: {'; '.join(parts)}{hint}")
    for key in skipped:
        state[key] = own[key]
    model.load_state_dict(state)
    return {"skipped_head": sorted(skipped)}
