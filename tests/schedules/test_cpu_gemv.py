"""The CPU GEMV rule for classifier layers (x @ W.T + b, ReLU)."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax, te

import rt3d_passes
import schedules
from tests.conftest import assert_close_rel, run_vm


class _Classifier(torch.nn.Module):
    def __init__(self, k: int, n: int):
        super().__init__()
        self.fc = torch.nn.Linear(k, n)
        self.out = torch.nn.Linear(n, 7)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))


@pytest.mark.parametrize("k,n", [(512, 256), (1024, 101)])
def test_classifier_uses_contiguous_gemv(rng, k, n):
    model = _Classifier(k, n).eval()
    x = torch.from_numpy(rng.standard_normal((1, k)).astype(np.float32))
    mod = rt3d_passes.from_torch(model, (x,))
    target = rt3d_passes.host_target()
    lowered = relax.get_pipeline("rt3d", target=target)(mod)
    gemvs = [f for gv, f in lowered.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc) and "NT_matmul" in gv.name_hint]
    assert gemvs, "x @ W.T should stay one NT matmul (FuseTransposeMatmul)"
    for func in gemvs:
        script = func.script()
        assert "T.parallel" in script
        # lanes split off the contiguous reduction, unless K has no divisor <= 8 (K = 101)
        assert ("_rf" in script and "T.vectorized" in script) or "T.int64(101))" in script
    out = run_vm(mod, x)
    with torch.no_grad():
        assert_close_rel(out, model(x).numpy(), 1e-5)


def test_gemv_rule_declines_other_functions():
    a = te.placeholder((64, 64), name="a")
    b = te.placeholder((64, 64), name="b")
    k = te.reduce_axis((0, 64), name="k")
    mm = te.compute((64, 64), lambda i, j: te.sum(a[i, k] * b[j, k], axis=k), name="mm")
    func = te.create_prim_func([a, b, mm])  # a GEMM, not a GEMV
    assert schedules.GEMVCPU().apply(func, rt3d_passes.host_target(), False) is None
    assert schedules.GEMVCPU().apply(func, tvm.target.Target("qcom/adreno-opencl"), False) is None
