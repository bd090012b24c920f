"""The CPU parallel fallback: every PrimFunc of a lowered 3D CNN ends up scheduled."""

import numpy as np
import torch
import tvm
from tvm import relax, te

import rt3d_passes
import schedules
from tests.conftest import TinyC3D, assert_close_rel, run_vm


def test_every_primfunc_is_scheduled_and_parallel(rng):
    model = TinyC3D().eval()
    x = torch.from_numpy(rng.standard_normal((1, 3, 4, 16, 16)).astype(np.float32))
    mod = rt3d_passes.from_torch(model, (x,))
    target = rt3d_passes.host_target()
    lowered = relax.get_pipeline("rt3d", target=target)(mod)
    funcs = {gv.name_hint: f for gv, f in lowered.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc)}
    assert any(name.startswith("max_pool3d") for name in funcs)
    for name, func in funcs.items():
        assert func.attrs.get("tirx.is_scheduled", False), f"{name} left unscheduled"
        assert "T.parallel" in func.script() or "parallel" in str(func), name
    out = run_vm(mod, x)
    with torch.no_grad():
        assert_close_rel(out, model(x).numpy(), 1e-5)


def test_fallback_does_not_apply_to_gpu_or_rt3d_operator(rng):
    a = te.placeholder((64, 64), name="a")
    b = te.compute((64, 64), lambda i, j: a[i, j] + 1, name="b")
    func = te.create_prim_func([a, b])
    rule = schedules.ParallelFallbackCPU()
    assert rule.apply(func, tvm.target.Target("qcom/adreno-opencl"), False) is None
    assert rule.apply(func, rt3d_passes.host_target(), False) is not None
    from rt3d_passes import sparsity as S
    from rt3d_passes.op import kgs_conv3d_primfunc
    from rt3d_passes.testing import structured_weight

    w = structured_weight((8, 4, 3, 3, 3), "kgs", 0.5, (8, 4), rng)
    kgs = kgs_conv3d_primfunc((1, 4, 4, 6, 6), S.compact(w, (8, 4)), padding=(1, 1, 1))
    assert rule.apply(kgs, rt3d_passes.host_target(), False) is None
