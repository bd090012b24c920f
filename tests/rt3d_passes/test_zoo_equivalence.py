"""Whole-model equivalence: every zoo model, pruned one-shot at its preset and at random
per-layer rates, compiled with the ``rt3d`` pipeline for the host, computes PyTorch eager's
logits (relative error <= 1e-5 of the largest logit; models with Winograd layers: their
tile's bound).

Small clips keep each build to tens of seconds. BatchNorm statistics are randomized (a fresh
model's identity BN would hide a wrong fold). The presets of c3d_small (``rt3d demo``,
tests/rt3d_passes/test_cli.py) and of the PyTorchVideo-style models
(tests/rt3d_prune/test_prune_zoo.py) are compiled against eager elsewhere and not repeated here.
The random-rate runs of S3D and the PyTorchVideo-style models take minutes each: they run with
``RT3D_FUZZ_MODELS=all`` (the long profile) and are skipped otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_prune.models import MODEL_NAMES
from rt3d_prune.presets import get_preset
from tests.conv3d_strategies import rel_error
from tests.zoo_cases import (
    LONG,
    SMALL,
    logits_tolerance,
    preset_of,
    pruned_at_preset,
    pruned_at_random_rates,
    zoo_inputs,
)

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]

#: Measured errors of the direct kernel are 1e-7 - 3e-7 (8-77 conv3d layers, folded
#: BatchNorm, fp32 reductions of up to 13824 terms summed in another order than PyTorch's);
#: models with Winograd layers are held to their tile's bound
#: (:func:`tests.zoo_cases.logits_tolerance`).

#: Presets compiled against eager in other tests (see the module docstring).
PRESET_TESTED_ELSEWHERE = {"c3d_small", "x3d_xs", "x3d_s", "slow_r50", "ir_csn_50",
                           "slowfast_r50"}
#: Random rates in the default run (about 20-70 s each here); the rest need
#: RT3D_FUZZ_MODELS=all. (x3d_s is x3d_xs's network on a longer clip: never compiled twice.)
RANDOM_DEFAULT = {"c3d", "c3d_small", "r2plus1d_18"}


def test_every_zoo_model_has_a_small_input():
    assert set(MODEL_NAMES) <= set(SMALL), "add the new zoo model's small clip to SMALL"


def _check(model: torch.nn.Module, name: str, rng: np.random.Generator) -> list:
    xs = zoo_inputs(name, rng)
    with torch.no_grad():
        ref = model(*xs).numpy()
    mod = rt3d_passes.from_torch(model, xs)
    reports = rt3d_passes.inspect(mod, include_dense=False)  # rewrite = runs sparse
    target = rt3d_passes.host_target()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](
        *[tvm.runtime.tensor(x.numpy()) for x in xs]).numpy()
    err = rel_error(out, ref)
    # the pipeline's own choices (Winograd layers have their tile's documented bound)
    tol = logits_tolerance(rt3d_passes.inspect(mod))
    print(f"{name}: {sum(r.rewrite for r in reports)}/{len(reports)} conv3d run sparse, "
          f"relative error {err:.3g} (bound {tol:g})")
    assert err <= tol, f"{name}: relative error {err:.3g} > {tol:g}"
    return reports


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n not in PRESET_TESTED_ELSEWHERE])
def test_zoo_model_at_preset_matches_torch(name, rng):
    model = pruned_at_preset(name, rng)
    reports = _check(model, name, rng)
    pruned = {layer for layer, rate in get_preset(preset_of(name)).rates if rate > 0}
    # every layer the preset prunes runs sparse
    assert pruned <= {r.layer for r in reports if r.rewrite}


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "x3d_s"])
def test_zoo_model_at_random_rates_matches_torch(name, rng):
    """The preset's layers at independent random rates, KGS or vanilla, random group; a rate
    of 1 is an all-zero layer (the pruner takes rates below 1: those layers are zeroed after)."""
    if name not in RANDOM_DEFAULT and not LONG:
        pytest.skip("minutes to build: long profile only (RT3D_FUZZ_MODELS=all)")
    model = pruned_at_random_rates(name, rng)
    _check(model, name, rng)
