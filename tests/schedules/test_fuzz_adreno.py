"""Property-based equivalence of the Adreno schedule: random conv3d layers (the strategies of
``tests/rt3d_passes/test_fuzz_equivalence.py``, groups=1), the KGS operator scheduled for
``qcom/adreno-opencl`` (fixed or sampled decisions), its OpenCL source run on PoCL, output equal
to PyTorch (relative error <= 1e-5, against at least a tenth of the products' magnitude:
see :func:`tests.conv3d_strategies.rel_error`; a single output of 17 cancelling products once
came out at 1.5e-5 of itself).

A small profile (``RT3D_FUZZ_ADRENO_EXAMPLES``, default 10: each case builds and runs an OpenCL
program); ``scripts/install_pocl.sh`` sets up PoCL, without it the test skips.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from tvm import s_tir
from tvm.target import Target

from rt3d_passes import sparsity as S
from rt3d_passes.op import Conv3DGeometry, column_offsets, kgs_conv3d_primfunc
from rt3d_passes.testing.opencl import opencl_available, opencl_program
from schedules.adreno_kgs_conv3d import schedule_kgs_conv3d_adreno
from tests.conftest import conv3d_reference
from tests.conv3d_strategies import Conv3DCase, case_weight, conv3d_cases, rel_error

ADRENO = Target("qcom/adreno-opencl", host={"kind": "llvm", "mtriple": "aarch64-linux-android"})
_NO_OPENCL = opencl_available()[1]

pytestmark = [
    pytest.mark.fuzz,
    pytest.mark.opencl,
    pytest.mark.skipif(bool(_NO_OPENCL), reason=_NO_OPENCL or "OpenCL available"),
]

REL = 1e-5


@settings(max_examples=int(os.environ.get("RT3D_FUZZ_ADRENO_EXAMPLES", "10")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow],
          print_blob=True)
@given(case=conv3d_cases(max_channels=48, grouped=False),
       variant=st.sampled_from([{}, {"inline_pad": True}, {"stage_weights": False},
                                {"fixed": False}]))
def test_adreno_kgs_conv3d_on_pocl(case: Conv3DCase, variant: dict):
    rng = np.random.default_rng(case.seed)
    w = case_weight(case, rng)
    group = S.detect_group(w)  # as RewriteKGSConv3D does
    note(f"detected group {group}")
    packed = S.compact(w, group)
    padding = case.pad_before + case.pad_after  # Relax's order: front, top, left, back, ...
    shape = (case.batch, case.in_channels, *case.input_size)
    geo = Conv3DGeometry(shape, case.kernel, case.stride, padding, case.dilation)
    func = kgs_conv3d_primfunc(shape, packed, case.stride, padding, case.dilation)
    sch = schedule_kgs_conv3d_adreno(s_tir.Schedule(func, seed=case.seed % (1 << 30) + 1),
                                     **variant)
    x = rng.standard_normal(shape).astype(np.float32)
    y = np.full(geo.output_shape(w.shape[0]), np.nan, np.float32)  # every element written
    out = opencl_program(sch.mod, ADRENO).run(
        x, packed.values, column_offsets(packed, geo), y)[-1]
    ref = conv3d_reference(x, w, case.stride, padding, case.dilation)
    magnitude = conv3d_reference(np.abs(x), np.abs(w), case.stride, padding, case.dilation)
    err = rel_error(out, ref, magnitude)
    assert err <= REL, f"relative error {err:.3g} > {REL:g} for {case}, {variant}"
