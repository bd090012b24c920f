"""Property-based checks of the arm_cpu (Kryo) schedule on random conv3d blocks (the strategies
of ``test_fuzz_equivalence.py``), compiled with the ``rt3d`` pipeline for ``kryo_target()``:

* every case builds and cross-links for aarch64 (needs ``aarch64-linux-gnu-gcc``, installed by
  ``scripts/setup.sh``; skipped without it) -- in the default run, ``RT3D_FUZZ_KRYO_EXAMPLES``
  cases (default 5);
* ``-m emulated``: the cases run on the emulated Kryo device and equal PyTorch (relative error
  <= 1e-5); needs ``bash scripts/emulated_kryo.sh setup``;
* the same two for Winograd-eligible blocks forced onto F(2x2) / F(4x4) (the Winograd
  operator's NEON schedule), within the tile's bound.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import tvm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tvm import relax

import rt3d_passes
from rt3d_passes import rpc
from rt3d_passes.op import WINOGRAD_RTOL
from rt3d_passes.rpc.emulated_kryo import EMULATED_KEY, not_set_up_reason
from tests.conv3d_strategies import (
    Conv3DCase,
    build_block,
    conv3d_cases,
    rel_error,
    winograd_cases,
)

pytestmark = pytest.mark.fuzz

REL = 1e-5
KRYO = settings(max_examples=int(os.environ.get("RT3D_FUZZ_KRYO_EXAMPLES", "5")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow], print_blob=True)
_NO_CROSS = shutil.which("aarch64-linux-gnu-gcc") is None


def _build(case: Conv3DCase, **pipeline):
    model, inputs = build_block(case)
    mod = rt3d_passes.from_torch(model, inputs)
    target = rt3d_passes.kryo_target()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target,
                                                                    **pipeline))
    return model, inputs, ex, target


def _cross_links(ex) -> None:
    path = rpc.cross_export_aarch64(ex)
    try:
        with open(path, "rb") as f:
            header = f.read(20)
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    assert header[:4] == b"\x7fELF" and header[18] == 183  # e_machine EM_AARCH64


@pytest.mark.skipif(_NO_CROSS, reason="needs aarch64-linux-gnu-gcc (Debian "
                    "gcc-aarch64-linux-gnu; bash scripts/setup.sh installs it)")
@KRYO
@given(case=conv3d_cases())
def test_arm_cpu_builds_and_cross_links(case: Conv3DCase):
    _cross_links(_build(case)[2])


@pytest.mark.skipif(_NO_CROSS, reason="needs aarch64-linux-gnu-gcc (Debian "
                    "gcc-aarch64-linux-gnu; bash scripts/setup.sh installs it)")
@KRYO
@given(case=winograd_cases(), algorithm=st.sampled_from(["winograd2", "winograd4"]))
def test_arm_cpu_winograd_builds_and_cross_links(case: Conv3DCase, algorithm: str):
    """The Winograd operator's NEON schedule (the CPU rule with the NEON config)."""
    _cross_links(_build(case, algorithms={"conv": algorithm})[2])


@pytest.mark.emulated
@pytest.mark.skipif(not_set_up_reason() is not None, reason=str(not_set_up_reason()))
@KRYO
@given(case=conv3d_cases())
def test_arm_cpu_on_emulated_kryo(kryo_tracker, case: Conv3DCase):
    model, inputs, ex, target = _build(case)
    with torch.no_grad():
        ref = model(*inputs).numpy()
    outputs, _ = rpc.run_remote(ex, kryo_tracker, EMULATED_KEY, [t.numpy() for t in inputs],
                                target=target, number=1, repeat=1, timeout_s=120)
    err = rel_error(np.asarray(outputs[0]), ref)
    assert err <= REL, f"relative error {err:.3g} > {REL:g} for {case}"


@pytest.mark.emulated
@pytest.mark.skipif(not_set_up_reason() is not None, reason=str(not_set_up_reason()))
@KRYO
@given(case=winograd_cases(), algorithm=st.sampled_from(["winograd2", "winograd4"]))
def test_arm_cpu_winograd_on_emulated_kryo(kryo_tracker, case: Conv3DCase, algorithm: str):
    model, inputs, ex, target = _build(case, algorithms={"conv": algorithm})
    with torch.no_grad():
        ref = model(*inputs).numpy()
    outputs, _ = rpc.run_remote(ex, kryo_tracker, EMULATED_KEY, [t.numpy() for t in inputs],
                                target=target, number=1, repeat=1, timeout_s=120)
    err, tol = rel_error(np.asarray(outputs[0]), ref), WINOGRAD_RTOL[int(algorithm[-1])]
    assert err <= tol, f"relative error {err:.3g} > {tol:g} for {case} ({algorithm})"
