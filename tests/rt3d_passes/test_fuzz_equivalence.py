"""Property-based equivalence: random conv3d blocks compiled with the ``rt3d`` pipeline for the
host compute what PyTorch computes (relative error <= 1e-5, against at least a tenth of the
block's magnitude -- every product in absolute value, :func:`~tests.conv3d_strategies.
block_magnitude` -- so cancelling terms do not fail float32 rounding: a one-output 1x1x1 conv
of 16 kept products came out at 1.02e-5 of itself in session 6's long run).

Each run draws new cases (hypothesis is not derandomized); a failure prints the falsifying
:class:`~tests.conv3d_strategies.Conv3DCase` and is kept in the example database under
``.pytest_cache/hypothesis``, so the next run replays it first. The number of examples is
``RT3D_FUZZ_EXAMPLES`` (default 50: 35-65 s here); the long profile (500: 6 CPU-minutes)::

    RT3D_FUZZ_EXAMPLES=500 python -m pytest -m fuzz tests/rt3d_passes/test_fuzz_equivalence.py

Only the public API is used: ``from_torch``, ``inspect``, ``host_target`` and the registered
pipeline.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.database import DirectoryBasedExampleDatabase
from tvm import relax

import rt3d_passes
from rt3d_passes.op import WINOGRAD_RTOL
from tests.conv3d_strategies import (
    Conv3DCase,
    block_magnitude,
    build_block,
    conv3d_cases,
    rel_error,
    winograd_cases,
)

pytestmark = pytest.mark.fuzz

REL = 1e-5
EXAMPLES = int(os.environ.get("RT3D_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a compile takes about a second, more on a loaded machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=DirectoryBasedExampleDatabase(
        Path(__file__).resolve().parents[2] / ".pytest_cache" / "hypothesis"),
    print_blob=True,
)


def tolerance(reports) -> float:
    """The bound for what the pipeline ran: :data:`REL` for the direct kernel, the tile's
    documented bound (:data:`rt3d_passes.op.WINOGRAD_RTOL`) for Winograd layers."""
    return max([REL, *(WINOGRAD_RTOL[r.winograd_tile] for r in reports
                       if r.rewrite and r.algorithm == "winograd")])


def compile_and_run(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
                    **pipeline) -> tuple[np.ndarray, list]:
    """``from_torch`` -> ``rt3d`` pipeline for the host (``pipeline``: its options) -> Relax
    VM; the output and the pipeline's per-layer reports."""
    mod = rt3d_passes.from_torch(model, inputs)
    reports = rt3d_passes.inspect(mod, **pipeline)  # what the pipeline decides
    for r in reports if currently_in_test_context() else ():
        # coverage statistics (pytest --hypothesis-show-statistics) and the failure's context
        kernel = r.kernel if r.rewrite else "TVM conv3d"
        event(f"{kernel}: {r.scheme if r.sparsity else r.reason.split('=')[0]}")
        note(f"{r.layer}: scheme {r.scheme}, group {r.group}, rewrite {r.rewrite}: {r.reason}")
    target = rt3d_passes.host_target()
    ex = tvm.compile(mod, target,
                     relax_pipeline=relax.get_pipeline("rt3d", target=target, **pipeline))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*(tvm.runtime.tensor(t.numpy()) for t in inputs)).numpy(), reports


def check_case(case: Conv3DCase, **pipeline) -> list:
    model, inputs = build_block(case)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    out, reports = compile_and_run(model, inputs, **pipeline)
    err, tol = rel_error(out, ref, block_magnitude(model, inputs)), tolerance(reports)
    assert err <= tol, f"relative error {err:.3g} > {tol:g} for {case} ({reports[0].kernel})"
    return reports


@FUZZ
@given(case=conv3d_cases())
def test_conv3d_block_matches_torch(case: Conv3DCase):
    check_case(case)


@FUZZ
@given(case=conv3d_cases(temporal=True))
def test_temporal_block_matches_torch(case: Conv3DCase):
    """Temporal convs (``Kd x 1 x 1``): on an AVX2 or a 512-bit AVX-512 host their padded
    copy is DHCW (``schedules.cpu_kgs_conv3d.copy_layout``); the layout's own tests in
    ``test_kgs_conv3d.py`` run whatever the host."""
    check_case(case)


@FUZZ
@given(case=winograd_cases(), algorithm=st.sampled_from(["winograd2", "winograd4"]))
def test_winograd_block_matches_torch(case: Conv3DCase, algorithm: str):
    """Every Winograd-eligible block, forced onto the Winograd operator (the cost model
    rarely picks it for such small layers), within the tile's documented bound."""
    reports = check_case(case, algorithms={"conv": algorithm})
    assert reports[0].algorithm == "winograd"


# ---- explicit edge cases (always run, whatever the draw) ------------------------------------

_BASE = dict(batch=1, in_channels=13, out_channels=21, groups=1, kernel=(3, 3, 3),
             stride=(1, 1, 1), dilation=(1, 1, 1), pad_before=(1, 1, 1), pad_after=(1, 1, 1),
             input_size=(3, 5, 6), scheme="kgs", rate=0.7, group=(8, 4), bias=True,
             batch_norm=False, epilogue=(), seed=0)


@pytest.mark.parametrize("changes", [
    pytest.param({"rate": 1.0, "bias": False}, id="all-zero-layer"),
    pytest.param({"rate": 1.0, "bias": True, "epilogue": ("add", "relu")}, id="all-zero-fused"),
    pytest.param({"scheme": "vanilla", "rate": 0.5, "batch_norm": True,
                  "epilogue": ("add", "relu")}, id="vanilla-bn-residual-relu"),
    pytest.param({"scheme": "mixed", "rate": 0.8, "pad_before": (0, 2, 1),
                  "pad_after": (2, 0, 3)}, id="mixed-asymmetric-pad"),
    pytest.param({"kernel": (7, 1, 5), "stride": (3, 2, 1), "dilation": (1, 3, 2),
                  "input_size": (9, 8, 11), "group": (2, 4)}, id="strided-dilated"),
    pytest.param({"groups": 13, "out_channels": 26, "scheme": "dense"}, id="depthwise"),
    pytest.param({"batch": 2, "kernel": (3, 1, 1), "pad_before": (1, 0, 0),
                  "pad_after": (1, 0, 0), "input_size": (4, 5, 7)}, id="temporal-7-wide"),
    pytest.param({"kernel": (5, 1, 1), "stride": (2, 2, 2), "dilation": (2, 1, 1),
                  "pad_before": (2, 0, 1), "pad_after": (1, 1, 0), "input_size": (11, 6, 13),
                  "scheme": "vanilla", "epilogue": ("add", "relu")},
                 id="temporal-strided-w-phases"),
    pytest.param({"batch": 3, "in_channels": 96, "out_channels": 95, "rate": 0.95,
                  "group": (16, 4)}, id="wide-edge-groups"),
])
def test_edge_cases_match_torch(changes):
    check_case(Conv3DCase(**{**_BASE, **changes}))
