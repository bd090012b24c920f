"""Model and preset names of the end-to-end benchmark, one-shot pruning and MAC counts."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

#: ``--model`` aliases -> zoo names.
MODEL_ALIASES: dict[str, str] = {"r2plus1d": "r2plus1d_18"}

#: The paper's figures (Galaxy S20, Table 2), a reference for the README, not a comparison.
PAPER: dict[str, dict[str, Any]] = {
    "c3d": {"preset": "c3d-3.6x", "gmacs_kept": 10.8, "rate": 3.6,
            "ms": {"RT3D sparse (CPU)": 357, "RT3D sparse (GPU)": 142,
                   "RT3D dense (CPU)": 902, "RT3D dense (GPU)": 488,
                   "PyTorch Mobile": 2544, "MNN": 948}},
    "r2plus1d_18": {"preset": "r2plus1d-3.2x", "rate": 3.2,
                    "ms": {"RT3D sparse (CPU)": 391, "RT3D sparse (GPU)": 141}},
}


class BadInput(ValueError):
    """A model, preset or peer name the benchmark does not know (the message lists valid ones)."""


def resolve_model(name: str) -> str:
    """Zoo name of ``--model`` (``r2plus1d`` is an alias of ``r2plus1d_18``)."""
    from rt3d_prune.models import MODEL_NAMES

    zoo = MODEL_ALIASES.get(name, name)
    if zoo not in MODEL_NAMES:
        valid = ", ".join([*MODEL_NAMES, *MODEL_ALIASES])
        raise BadInput(f"unknown model {name!r}; valid models: {valid}")
    return zoo


def resolve_preset(model: str, preset: str) -> str:
    """Preset name of ``--preset`` for zoo model ``model`` (``paper`` = the model's first)."""
    from rt3d_prune.presets import PRESET_NAMES, get_preset

    own = [p for p in PRESET_NAMES if get_preset(p).model == model]
    if preset == "paper":
        if not own:
            raise BadInput(f"model {model!r} has no paper preset; valid presets: "
                           f"{', '.join(PRESET_NAMES)}")
        return own[0]
    if preset not in PRESET_NAMES:
        raise BadInput(f"unknown preset {preset!r}; valid presets: paper, "
                       f"{', '.join(PRESET_NAMES)}")
    if get_preset(preset).model != model:
        raise BadInput(f"preset {preset!r} is for model {get_preset(preset).model!r}, not "
                       f"{model!r}; valid presets for {model}: paper, {', '.join(own) or '-'}")
    return preset


@dataclasses.dataclass
class Models:
    """The dense and the one-shot pruned model (same weights where kept), and the input."""

    name: str
    preset: str
    dense: nn.Module
    pruned: nn.Module
    x: torch.Tensor
    macs: dict[str, float]


def build_models(name: str, preset: str, seed: int = 0, scheme: str = "kgs") -> Models:
    """Build ``name`` with random weights and BN statistics, prune a copy one-shot to
    ``preset`` (``scheme`` 8x4, KGS by default: latency does not depend on the weight values)
    and count MACs."""
    from benchmarks.peers.tiny_model import randomize_bn
    from rt3d_prune.macs import count_macs, total_macs
    from rt3d_prune.models import build_model, default_input_shape
    from rt3d_prune.oneshot import prune_oneshot

    torch.manual_seed(seed)
    shape = default_input_shape(name)
    with torch.no_grad():
        dense = randomize_bn(build_model(name).eval())
    pruned = build_model(name).eval()
    pruned.load_state_dict(dense.state_dict())
    prune_oneshot(pruned, preset, scheme=scheme, group=(8, 4))
    dense_macs, _ = total_macs(count_macs(dense, shape))
    _, kept_macs = total_macs(count_macs(pruned, shape))
    macs = {"dense_gmacs": dense_macs / 1e9, "kept_gmacs": kept_macs / 1e9,
            "pruning_rate": dense_macs / kept_macs}
    return Models(name, preset, dense, pruned, torch.randn(*shape), macs)
