"""The Adreno (OpenCL) schedule rule: applicability, OpenCL codegen, launch limits, numerics
on PoCL, the MetaSchedule space and the whole-model build."""

import re

import numpy as np
import pytest
import torch
import tvm
from tvm import relax, s_tir, te
from tvm.target import Target

import rt3d_passes
from rt3d_passes import sparsity as S
from rt3d_passes.op import Conv3DGeometry, column_offsets, kgs_conv3d_primfunc
from rt3d_passes.testing import structured_weight
from rt3d_passes.testing.opencl import opencl_available, opencl_program
from schedules.adreno_kgs_conv3d import (
    KGSConv3DAdreno,
    adreno_space,
    schedule_kgs_conv3d_adreno,
)
from tests.conftest import assert_close_rel, conv3d_reference

ADRENO = Target("qcom/adreno-opencl", host={"kind": "llvm", "mtriple": "aarch64-linux-android"})

# (M, input NCDHW, kernel, strides, padding, group): 3x3x3; 1x3x3 stride 2 with a partial
# group (45 = 5*8 + 5) and gm = 8; 3x1x1 with 45 = 11*4 + 1; a deep layer whose columns
# (T = 64*27 = 1728 dense) do not fit local memory at once
LAYERS = {
    "3x3x3": (24, (1, 16, 4, 8, 8), (3, 3, 3), (1, 1, 1), (1, 1, 1), (4, 4)),
    "1x3x3s2_gm8": (45, (2, 24, 4, 9, 10), (1, 3, 3), (1, 2, 2), (0, 1, 1), (8, 4)),
    "3x1x1": (45, (1, 24, 5, 7, 7), (3, 1, 1), (1, 1, 1), (1, 0, 0), (4, 4)),
    "deep": (32, (1, 64, 4, 8, 8), (3, 3, 3), (1, 1, 1), (1, 1, 1), (4, 4)),
}
RATES = {"dense": 0.0, "kgs85": 0.85}


def _layer(rng, name, rate):
    m, shape, kernel, strides, padding, group = LAYERS[name]
    w = structured_weight((m, shape[1], *kernel), "kgs", rate, group, rng)
    packed = S.compact(w, group)
    func = kgs_conv3d_primfunc(shape, packed, strides, padding)
    return func, w, packed, Conv3DGeometry(shape, kernel, strides, padding)


def _local_bytes(source: str) -> dict[str, int]:
    """Bytes of every ``__local`` array the source declares."""
    sizes = {"float4": 16, "float": 4, "int": 4, "int4": 16}
    return {name: sizes[ty] * int(n)
            for ty, name, n in re.findall(r"__local (\w+) (\w+)\[(\d+)\]", source)}


def test_rule_returns_none_for_other_funcs():
    a = te.placeholder((16,), name="a")
    b = te.compute((16,), lambda i: a[i] * 2, name="b")
    assert KGSConv3DAdreno().apply(te.create_prim_func([a, b]), ADRENO, False) is None


def test_rule_returns_none_for_cpu_targets(rng):
    func, *_ = _layer(rng, "3x3x3", 0.7)
    assert KGSConv3DAdreno().apply(func, rt3d_passes.host_target(), False) is None


def test_fixed_schedule_is_deterministic_and_tunable_one_samples(rng):
    func, *_ = _layer(rng, "3x3x3", 0.7)
    fixed = [KGSConv3DAdreno().apply(func, ADRENO, False) for _ in range(2)]
    tvm.ir.assert_structural_equal(fixed[0].mod, fixed[1].mod)
    assert len(fixed[0].trace.decisions) == 4  # W tile, threads, chunk, unroll step
    sampled = s_tir.Schedule(func, seed=int(rng.integers(1, 1 << 30)))
    schedule_kgs_conv3d_adreno(sampled, fixed=False)
    assert len(sampled.trace.decisions) == 4


def test_space_has_staged_and_unstaged_variants(rng):
    func, *_ = _layer(rng, "3x3x3", 0.7)
    spaces = adreno_space(s_tir.Schedule(func, seed=int(rng.integers(1, 1 << 30))), None)
    sources = [opencl_program(s.mod, ADRENO).source for s in spaces]
    assert ["__local" in src for src in sources] == [True, False]


@pytest.mark.parametrize("rate", RATES.values(), ids=RATES.keys())
@pytest.mark.parametrize("name", LAYERS)
def test_builds_opencl_within_adreno_limits(rng, name, rate):
    func, *_ = _layer(rng, name, rate)
    sch = KGSConv3DAdreno().apply(func, ADRENO, False)
    prog = opencl_program(sch.mod, ADRENO)
    src = prog.source
    # pad kernel + conv kernel; the crop of a partial group is fused into the write-back
    assert [k.name for k in prog.launches] == ["main_kernel", "main_kernel_1"]
    assert "float4" in src and "vload4" in src  # weight vectors, vectorized slab fetch
    assert "barrier(CLK_LOCAL_MEM_FENCE)" in src
    local = _local_bytes(src)
    assert local and sum(local.values()) <= ADRENO.attrs["max_shared_memory_per_block"]
    for launch in prog.launches:
        assert np.prod(launch.local_size) <= ADRENO.attrs["max_threads_per_block"]


def test_inlined_pad_is_one_kernel(rng):
    func, *_ = _layer(rng, "3x3x3", 0.7)
    sch = schedule_kgs_conv3d_adreno(s_tir.Schedule(func), inline_pad=True)
    assert [k.name for k in opencl_program(sch.mod, ADRENO).launches] == ["main_kernel"]


_NO_OPENCL = opencl_available()[1]


@pytest.mark.opencl
@pytest.mark.skipif(bool(_NO_OPENCL), reason=_NO_OPENCL or "OpenCL available")
@pytest.mark.parametrize("variant", [
    pytest.param({}, id="default"),
    pytest.param({"inline_pad": True}, id="inline_pad"),
    pytest.param({"stage_weights": False}, id="unstaged"),
    pytest.param({"fixed": False}, id="sampled"),
])
@pytest.mark.parametrize("rate", RATES.values(), ids=RATES.keys())
@pytest.mark.parametrize("name", LAYERS)
def test_pocl_matches_torch(rng, name, rate, variant):
    """The generated OpenCL source, launched as TVM's host code would, on PoCL."""
    func, w, packed, geo = _layer(rng, name, rate)
    sch = s_tir.Schedule(func, seed=int(rng.integers(1, 1 << 30)))
    schedule_kgs_conv3d_adreno(sch, **variant)
    x = rng.standard_normal(geo.input_shape).astype(np.float32)
    y = np.full(geo.output_shape(w.shape[0]), np.nan, np.float32)  # every element written
    out = opencl_program(sch.mod, ADRENO).run(
        x, packed.values, column_offsets(packed, geo), y)[-1]
    assert_close_rel(out, conv3d_reference(x, w, geo.strides, geo.padding), 1e-5)


@pytest.mark.opencl
@pytest.mark.skipif(bool(_NO_OPENCL), reason=_NO_OPENCL or "OpenCL available")
@pytest.mark.parametrize("name", ["3x3x3", "1x3x3s2_gm8"])
def test_pocl_fused_epilogue_matches_torch(rng, name):
    """relu(conv + bias + residual) with the epilogue applied by the write-back (and, for the
    partial group, by the inlined crop)."""
    from rt3d_passes.op import kgs_conv3d_attrs, kgs_conv3d_epilogue_te

    _, w, packed, geo = _layer(rng, name, 0.85)
    m = w.shape[0]
    out_shape = geo.output_shape(m)
    x_t = te.placeholder(geo.input_shape, "float32", name="x")
    v_t = te.placeholder(packed.values.shape, "float32", name="values")
    o_t = te.placeholder(packed.values.shape[:2], "int32", name="offsets")
    b_t = te.placeholder((m,), "float32", name="bias")
    r_t = te.placeholder(out_shape, "float32", name="residual")
    y_t = kgs_conv3d_epilogue_te(x_t, v_t, o_t, b_t, r_t, out_channels=m, kernel=geo.kernel,
                                 strides=geo.strides, padding=geo.padding,
                                 dilation=geo.dilation, bias=True, residual=True, relu=True)
    func = te.create_prim_func([x_t, v_t, o_t, b_t, r_t, y_t]).with_attrs(
        {"global_symbol": "main", **kgs_conv3d_attrs(geo, packed.group[0])})
    sch = schedule_kgs_conv3d_adreno(s_tir.Schedule(func))
    x = rng.standard_normal(geo.input_shape).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    r = rng.standard_normal(out_shape).astype(np.float32)
    y = np.full(out_shape, np.nan, np.float32)
    out = opencl_program(sch.mod, ADRENO).run(
        x, packed.values, column_offsets(packed, geo), b, r, y)[-1]
    ref = conv3d_reference(x, w, geo.strides, geo.padding) + b[None, :, None, None, None] + r
    assert_close_rel(out, np.maximum(ref, 0), 1e-5)


@pytest.mark.tuning
def test_metaschedule_space_passes_gpu_postprocs(rng):
    from tvm.s_tir import meta_schedule as ms

    name = "s_tir.meta_schedule.adreno.rt3d.kgs_conv3d"
    previous = tvm.get_global_func(name, allow_missing=True)
    tvm.register_global_func(name, adreno_space, override=True)
    try:
        func, *_ = _layer(rng, "1x3x3s2_gm8", 0.85)
        ctx = ms.TuneContext(mod=func, target=ADRENO, space_generator="post-order-apply",
                             search_strategy="replay-trace", task_name="kgs_adreno")
        spaces = ctx.generate_design_space()
        assert len(spaces) == 2
        postprocs = ctx.space_generator.postprocs
        assert "VerifyGPUCode" in [type(p).__name__ for p in postprocs]
        for sch in spaces:
            assert all(p.apply(sch) for p in postprocs)
            tvm.compile(sch.mod, ADRENO)
    finally:
        if previous is not None:
            tvm.register_global_func(name, previous, override=True)


class _TinyC3D(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(3, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv3d(16, 20, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.fc = torch.nn.Linear(20, 5)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3, 4)))


def test_whole_model_builds_for_adreno(rng):
    torch.manual_seed(int(rng.integers(1 << 31)))
    model = _TinyC3D().eval()
    with torch.no_grad():
        w = structured_weight(model.conv2.weight.shape, "kgs", 0.8, (4, 4), rng)
        model.conv2.weight.copy_(torch.from_numpy(w))
    x = torch.from_numpy(rng.standard_normal((1, 3, 4, 16, 16)).astype(np.float32))
    mod = rt3d_passes.from_torch(model, (x,))
    ex = tvm.compile(mod, ADRENO, relax_pipeline=relax.get_pipeline("rt3d", target=ADRENO))
    (device,) = ex.mod.imports[0].imports  # VM executable -> host llvm -> opencl
    src = device.inspect_source()
    kernels = set(re.findall(r"__kernel void (\w+)\(", src))
    # both convs (dense conv1 too) run on RT3D's kernel: pad + conv each
    assert {"kgs_conv3d_kernel", "kgs_conv3d_kernel_1", "kgs_conv3d1_kernel",
            "kgs_conv3d1_kernel_1"} <= kernels
    assert "__local" in src


@pytest.mark.opencl
@pytest.mark.skipif(bool(_NO_OPENCL), reason=_NO_OPENCL or "OpenCL available")
@pytest.mark.parametrize("strides", [(1, 1, 1), (1, 2, 2)], ids=["s1", "s2"])
@pytest.mark.parametrize("variant", [
    pytest.param({}, id="default"),
    pytest.param({"inline_pad": True}, id="inline_pad"),
])
def test_pocl_channelwise_matches_torch(rng, strides, variant):
    """A depthwise layer in the operator's channel-wise form (per-channel padded copy, offsets
    relative to the channel, clamped) on the Adreno schedule."""
    from rt3d_passes.op import channel_multiplier
    from rt3d_passes.transform.analysis import ungroup

    shape, c = (1, 20, 4, 9, 10), 20
    wg = rng.standard_normal((c, 1, 3, 3, 3)).astype(np.float32)
    w = ungroup(wg, c)
    packed = S.compact(w, (1, 1))
    geo = Conv3DGeometry(shape, (3, 3, 3), strides, (1, 1, 1))
    assert channel_multiplier(packed, geo) == 1
    sch = s_tir.Schedule(kgs_conv3d_primfunc(shape, packed, strides, (1, 1, 1)))
    schedule_kgs_conv3d_adreno(sch, **variant)
    x = rng.standard_normal(shape).astype(np.float32)
    y = np.full(geo.output_shape(c), np.nan, np.float32)
    out = opencl_program(sch.mod, ADRENO).run(
        x, packed.values, column_offsets(packed, geo), y)[-1]
    assert_close_rel(out, conv3d_reference(x, w, strides, (1, 1, 1)), 1e-5)
