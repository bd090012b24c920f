"""The CPU parallel fallback: every PrimFunc of a lowered 3D CNN ends up scheduled."""

import numpy as np
import pytest
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


def _se_swish_chain() -> tvm.IRModule:
    """X3D's squeeze-excitation scale then Swish then the flat view the next conv reads:
    ``y = x * sigmoid(s)``, ``z = y * sigmoid(y)``, ``reshape(z)``."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 6, 3, 5, 8), "float32"))
    s = relax.Var("s", relax.TensorType((1, 6, 1, 1, 1), "float32"))
    with bb.function("main", [x, s]):
        with bb.dataflow():
            y = bb.emit(relax.op.multiply(x, bb.emit(relax.op.sigmoid(s))))
            z = bb.emit(relax.op.multiply(y, bb.emit(relax.op.sigmoid(y))))
            out = bb.emit_output(relax.op.reshape(z, (1, 6 * 3 * 5 * 8)))
        bb.emit_func_output(out)
    return bb.get()


def test_elementwise_chain_is_one_pass_without_recomputing_broadcasts(rng):
    mod = _se_swish_chain()
    target = rt3d_passes.host_target()
    with target:
        lowered = relax.get_pipeline("rt3d", target=target)(mod)
    (func,) = [f for _, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    allocs = list(func.body.block.alloc_buffers)
    # only the per-channel sigmoid(s) stays a buffer: inlining it would evaluate it per element
    assert [tuple(int(v) for v in b.shape) for b in allocs] == [(1, 6, 1, 1, 1)]
    xs = rng.standard_normal((1, 6, 3, 5, 8)).astype(np.float32)
    ss = rng.standard_normal((1, 6, 1, 1, 1)).astype(np.float32)
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(xs),
                                                       tvm.runtime.tensor(ss)).numpy()
    y = torch.from_numpy(xs) * torch.sigmoid(torch.from_numpy(ss))
    assert_close_rel(out, (y * torch.sigmoid(y)).reshape(1, -1).numpy(), 1e-6)


def test_inline_elementwise_leaves_producers_of_reductions():
    """A pooling window reads its producer once per tap: inlining would recompute it."""
    a = te.placeholder((4, 16), name="a")
    b = te.compute((4, 16), lambda i, j: te.exp(a[i, j]), name="b")
    k = te.reduce_axis((0, 16), name="k")
    c = te.compute((4,), lambda i: te.sum(b[i, k], axis=k), name="c")
    d = te.compute((4,), lambda i: c[i] * 2, name="d")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, d]))
    assert schedules.inline_elementwise(sch) == 0  # b feeds a reduction; d is the output
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    assert names == ["b", "c", "d"]


def _global_mean(shape) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.mean(x, axis=[2, 3, 4], keepdims=True))
        bb.emit_func_output(out)
    return bb.get()


@pytest.mark.parametrize("shape,lanes", [
    ((1, 6, 3, 5, 5), 25),     # no lane count divides 5, 25 or 75: 25 scalar partial sums
    ((2, 5, 3, 4, 40), 40),    # a W row of 40: five vectors of 8
    ((1, 3, 2, 4, 96), 48),    # a row longer than 64: its largest multiple-of-8 divisor
])
def test_global_mean_keeps_partial_sums_in_registers(rng, shape, lanes):
    """A global mean (squeeze-excitation, head pooling) is one parallel loop over the outputs,
    each task summing into ``lanes`` partial sums in a local buffer, then dividing."""
    mod = _global_mean(shape)
    target = rt3d_passes.host_target()
    with target:
        lowered = relax.get_pipeline("rt3d", target=target)(mod)
    (func,) = [f for _, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    script = func.script()
    assert script.count("T.parallel") == 1
    local = [b for b in func.body.block.alloc_buffers if b.scope() == "local"]
    assert [int(b.shape[-1]) for b in local] == [lanes]
    xs = rng.standard_normal(shape).astype(np.float32)
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(xs)).numpy()
    assert_close_rel(out, xs.mean(axis=(2, 3, 4), keepdims=True), 1e-6)


def test_elementwise_chain_runs_whole_planes_per_task(rng):
    """An elementwise chain (here on 5x5 maps) runs one task per (batch, channel) over the
    whole D x H x W plane fused into one loop (rows of 5 per task were partial vectors)."""
    shape = (1, 32, 4, 5, 5)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    s = relax.Var("s", relax.TensorType((1, 32, 1, 1, 1), "float32"))
    with bb.function("main", [x, s]):
        with bb.dataflow():
            y = bb.emit(relax.op.multiply(x, bb.emit(relax.op.sigmoid(s))))
            out = bb.emit_output(relax.op.multiply(y, bb.emit(relax.op.sigmoid(y))))
        bb.emit_func_output(out)
    mod = bb.get()
    target = rt3d_passes.host_target()
    with target:
        lowered = relax.get_pipeline("rt3d", target=target)(mod)
    (func,) = [f for _, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)
               and f.script().count("T.parallel") and "T_multiply" in f.script()]
    sch = tvm.s_tir.Schedule(func)
    loops = [(sch.get(loop).kind, int(sch.get(loop).extent))
             for block in sch.get_child_blocks(sch.get_sblock("root"))
             for loop in sch.get_loops(block)]
    assert (tvm.tirx.ForKind.PARALLEL, 32) in loops and (tvm.tirx.ForKind.SERIAL, 100) in loops
    xs = rng.standard_normal(shape).astype(np.float32)
    ss = rng.standard_normal((1, 32, 1, 1, 1)).astype(np.float32)
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(xs),
                                                       tvm.runtime.tensor(ss)).numpy()
    yt = torch.from_numpy(xs) * torch.sigmoid(torch.from_numpy(ss))
    assert_close_rel(out, (yt * torch.sigmoid(yt)).numpy(), 1e-6)


def test_strided_view_keeps_row_tasks():
    """A block reading a strided view (ResNet's downsampling slice) keeps one task per row:
    fused over the plane its index would divide per element."""
    a = te.placeholder((1, 32, 4, 10, 10), name="a")
    b = te.compute((1, 32, 2, 5, 5), lambda n, c, d, h, w: a[n, c, 2 * d, 2 * h, 2 * w] * 2,
                   name="b")
    sch = tvm.s_tir.Schedule(schedules.ParallelFallbackCPU().apply(
        te.create_prim_func([a, b]), rt3d_passes.host_target(), False).mod)
    loops = sch.get_loops(sch.get_sblock("b"))
    assert sch.get(loops[0]).kind == tvm.tirx.ForKind.PARALLEL
    assert [int(sch.get(lp).extent) for lp in loops] == [320, 5]
