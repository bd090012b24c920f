"""Whole-model equivalence: every zoo model, pruned one-shot at its preset and at random
per-layer rates, compiled with the ``rt3d`` pipeline for the host, computes PyTorch eager's
logits (relative error <= 1e-5 of the largest logit).

Small clips keep each build to tens of seconds. BatchNorm statistics are randomized (a fresh
model's identity BN would hide a wrong fold). The presets of c3d_small (``rt3d demo``,
tests/rt3d_passes/test_cli.py) and of the PyTorchVideo-style models
(tests/rt3d_prune/test_prune_zoo.py) are compiled against eager elsewhere and not repeated here.
The random-rate runs of S3D and the PyTorchVideo-style models take minutes each: they run with
``RT3D_FUZZ_MODELS=all`` (the long profile) and are skipped otherwise.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_prune.config import SparsityConfig
from rt3d_prune.models import MODEL_NAMES, build_model, input_shapes
from rt3d_prune.oneshot import prune_oneshot
from rt3d_prune.presets import PRESET_NAMES, get_preset
from tests.conv3d_strategies import rel_error

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

#: Measured errors are 1e-7 - 3e-7 (8-77 conv3d layers, folded BatchNorm, fp32 reductions
#: of up to 13824 terms summed in another order than PyTorch's).
REL = 1e-5

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
#: Presets compiled against eager in other tests (see the module docstring).
PRESET_TESTED_ELSEWHERE = {"c3d_small", "x3d_xs", "x3d_s", "slow_r50", "ir_csn_50",
                           "slowfast_r50"}
#: Random rates in the default run (about 20-70 s each here); the rest need
#: RT3D_FUZZ_MODELS=all. (x3d_s is x3d_xs's network on a longer clip: never compiled twice.)
RANDOM_DEFAULT = {"c3d", "c3d_small", "r2plus1d_18"}
LONG = os.environ.get("RT3D_FUZZ_MODELS", "") == "all"


def test_every_zoo_model_has_a_small_input():
    assert set(MODEL_NAMES) <= set(SMALL), "add the new zoo model's small clip to SMALL"


def _model(name: str, rng: np.random.Generator) -> torch.nn.Module:
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


def _check(model: torch.nn.Module, name: str, rng: np.random.Generator) -> list:
    xs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32))
          for s in input_shapes(name, SMALL[name][1])]
    with torch.no_grad():
        ref = model(*xs).numpy()
    mod = rt3d_passes.from_torch(model, xs)
    reports = rt3d_passes.inspect(mod, include_dense=False)  # rewrite = runs sparse
    target = rt3d_passes.host_target()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](
        *[tvm.runtime.tensor(x.numpy()) for x in xs]).numpy()
    err = rel_error(out, ref)
    print(f"{name}: {sum(r.rewrite for r in reports)}/{len(reports)} conv3d run sparse, "
          f"relative error {err:.3g}")
    assert err <= REL, f"{name}: relative error {err:.3g} > {REL:g}"
    return reports


def _preset_of(name: str) -> str:
    return next(p for p in PRESET_NAMES if get_preset(p).model == name)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in PRESET_TESTED_ELSEWHERE])
def test_zoo_model_at_preset_matches_torch(name, rng):
    preset = _preset_of(name)
    model = prune_oneshot(_model(name, rng), preset, scheme="kgs", group=(8, 4))
    reports = _check(model, name, rng)
    pruned = {layer for layer, rate in get_preset(preset).rates if rate > 0}
    # every layer the preset prunes runs sparse
    assert pruned <= {r.layer for r in reports if r.rewrite}


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "x3d_s"])
def test_zoo_model_at_random_rates_matches_torch(name, rng):
    """The preset's layers at independent random rates, KGS or vanilla, random group; a rate
    of 1 is an all-zero layer (the pruner takes rates below 1: those layers are zeroed after)."""
    if name not in RANDOM_DEFAULT and not LONG:
        pytest.skip("minutes to build: long profile only (RT3D_FUZZ_MODELS=all)")
    layers = [layer for layer, _ in get_preset(_preset_of(name)).rates]
    rates = {layer: round(float(rng.choice([0.0, 1.0, *rng.uniform(0, 1, 4)])), 3)
             for layer in layers}
    scheme = str(rng.choice(["kgs", "vanilla"]))
    group = [(8, 4), (4, 4), (4, 8), (8, 8), (16, 4), (8, 2)][int(rng.integers(6))]
    balanced = bool(rng.integers(2))
    print(f"{name}: {scheme} {group} balanced={balanced} rates {rates}")
    config = SparsityConfig(scheme=scheme, group=group, balanced=balanced,
                            rates=tuple((k, v) for k, v in rates.items() if v < 1))
    model = prune_oneshot(_model(name, rng), config)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for layer in (k for k, v in rates.items() if v == 1):
            modules[layer].weight.zero_()
    _check(model, name, rng)
