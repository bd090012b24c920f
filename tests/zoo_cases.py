"""Zoo models for whole-model equivalence tests: small clips, random BatchNorm statistics, and
pruning at a preset or at random per-layer rates (shared by the untuned and the tuned checks)."""

from __future__ import annotations

import os

import numpy as np
import torch

from rt3d_prune.config import SparsityConfig
from rt3d_prune.models import build_model, input_shapes
from rt3d_prune.oneshot import prune_oneshot
from rt3d_prune.presets import PRESET_NAMES, get_preset

#: build_model kwargs and the input (first pathway's shape for SlowFast): small clips every
#: stride still leaves a position in.
SMALL = {
    "c3d": ({"input_size": (16, 32, 32)}, (1, 3, 16, 32, 32)),  # 5 pools need 16 frames
    "c3d_small": ({}, (2, 3, 16, 32, 32)),
    "r2plus1d_18": ({}, (1, 3, 4, 32, 32)),
    "s3d": ({}, (1, 3, 8, 64, 64)),
    "x3d_xs": ({}, (1, 3, 4, 32, 32)),
    "x3d_s": ({}, (1, 3, 4, 32, 32)),
    "slow_r50": ({}, (1, 3, 4, 32, 32)),
    "ir_csn_50": ({}, (1, 3, 8, 32, 32)),
    "slowfast_r50": ({}, (1, 3, 8, 32, 32)),
}

#: ``RT3D_FUZZ_MODELS=all``: the long profile (every zoo model, minutes each).
LONG = os.environ.get("RT3D_FUZZ_MODELS", "") == "all"


def zoo_model(name: str, rng: np.random.Generator) -> torch.nn.Module:
    """``name`` at its small clip size in eval mode, with random BatchNorm statistics (a fresh
    model's identity BN would hide a wrong fold)."""
    torch.manual_seed(int(rng.integers(1 << 31)))
    model = build_model(name, num_classes=10, **SMALL[name][0]).eval()
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm3d):
                c = bn.num_features
                for t, v in ((bn.weight, rng.uniform(0.5, 1.5, c)),
                             (bn.bias, 0.1 * rng.standard_normal(c)),
                             (bn.running_mean, 0.1 * rng.standard_normal(c)),
                             (bn.running_var, rng.uniform(0.5, 1.5, c))):
                    t.copy_(torch.from_numpy(v.astype(np.float32)))
    return model


def zoo_inputs(name: str, rng: np.random.Generator, batch: int | None = None) -> list:
    """Fresh random clips for ``name`` (``batch`` replaces the small shape's batch)."""
    shape = SMALL[name][1]
    if batch is not None:
        shape = (batch, *shape[1:])
    return [torch.from_numpy(rng.standard_normal(s).astype(np.float32))
            for s in input_shapes(name, shape)]


def preset_of(name: str) -> str:
    """The preset of zoo model ``name``."""
    return next(p for p in PRESET_NAMES if get_preset(p).model == name)


def pruned_at_preset(name: str, rng: np.random.Generator) -> torch.nn.Module:
    """``name`` pruned one-shot at its preset (KGS 8x4)."""
    return prune_oneshot(zoo_model(name, rng), preset_of(name), scheme="kgs", group=(8, 4))


def pruned_at_random_rates(name: str, rng: np.random.Generator) -> torch.nn.Module:
    """The preset's layers at independent random rates, KGS or vanilla, random group, balanced
    or not; a rate of 1 is an all-zero layer (the pruner takes rates below 1: those layers are
    zeroed after). Prints the draw."""
    layers = [layer for layer, _ in get_preset(preset_of(name)).rates]
    rates = {layer: round(float(rng.choice([0.0, 1.0, *rng.uniform(0, 1, 4)])), 3)
             for layer in layers}
    scheme = str(rng.choice(["kgs", "vanilla"]))
    group = [(8, 4), (4, 4), (4, 8), (8, 8), (16, 4), (8, 2)][int(rng.integers(6))]
    balanced = bool(rng.integers(2))
    print(f"{name}: {scheme} {group} balanced={balanced} rates {rates}")
    config = SparsityConfig(scheme=scheme, group=group, balanced=balanced,
                            rates=tuple((k, v) for k, v in rates.items() if v < 1))
    model = prune_oneshot(zoo_model(name, rng), config)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for layer in (k for k, v in rates.items() if v == 1):
            modules[layer].weight.zero_()
    return model


#: The direct kernel's bound on a whole model's logits (relative to the largest).
DIRECT_REL = 1e-5


def logits_tolerance(reports) -> float:
    """The bound for a model compiled as ``reports`` say (``rt3d_passes.inspect`` with the
    pipeline's options): :data:`DIRECT_REL`, or the documented bound of the largest Winograd
    tile any layer runs (:data:`rt3d_passes.op.WINOGRAD_RTOL`)."""
    from rt3d_passes.op import WINOGRAD_RTOL

    return max([DIRECT_REL, *(WINOGRAD_RTOL[r.winograd_tile] for r in reports
                              if r.rewrite and r.algorithm == "winograd")])
