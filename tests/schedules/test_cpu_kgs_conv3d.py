"""The CPU schedule rule: applicability, tunable design space, aarch64 codegen."""

import numpy as np
import tvm
from tvm import s_tir, te

import schedules
from rt3d_passes import sparsity as S
from rt3d_passes.kgs_conv3d import kgs_conv3d_primfunc
from rt3d_passes.target import host_target
from rt3d_passes.testing import structured_weight


def _func(rng, group=(8, 4)):
    w = structured_weight((24, 16, 3, 3, 3), "kgs", 0.7, group, rng)
    return kgs_conv3d_primfunc((1, 16, 4, 8, 8), S.compact(w, group), padding=(1, 1, 1))


def test_rule_returns_none_for_other_funcs():
    a = te.placeholder((16,), name="a")
    b = te.compute((16,), lambda i: a[i] * 2, name="b")
    func = te.create_prim_func([a, b])
    assert schedules.KGSConv3DX86().apply(func, host_target(), False) is None


def test_rule_returns_none_for_gpu_targets(rng):
    gpu = tvm.target.Target("qcom/adreno-opencl")
    assert schedules.KGSConv3DX86().apply(_func(rng), gpu, False) is None


def test_fixed_schedule_is_deterministic_and_tunable_one_samples(rng):
    func = _func(rng)
    fixed = [schedules.KGSConv3DX86().apply(func, host_target(), False) for _ in range(2)]
    tvm.ir.assert_structural_equal(fixed[0].mod, fixed[1].mod)
    decisions = fixed[0].trace.decisions
    assert len(decisions) == 3  # W tile, H tile, unroll step
    sampled = s_tir.Schedule(func, seed=int(rng.integers(1, 1 << 30)))
    schedules.schedule_kgs_conv3d_cpu(sampled, fixed=False)
    assert len(sampled.trace.decisions) == 3


def test_aarch64_codegen_uses_neon_fma(rng):
    func = _func(rng, group=(4, 4))
    sch = s_tir.Schedule(func)
    schedules.schedule_kgs_conv3d_cpu(sch)
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                "mattr": ["+neon"]})
    asm = tvm.compile(sch.mod, target).mod.inspect_source("asm")
    assert "fmla" in asm and ".4s" in asm


def test_schedule_keeps_vector_width_of_group(rng):
    sch = s_tir.Schedule(_func(rng))
    schedules.schedule_kgs_conv3d_cpu(sch)
    asm = tvm.compile(sch.mod, host_target()).mod.inspect_source("asm")
    assert "ymm" in asm or "zmm" in asm  # 8 x fp32 accumulators
    assert np.any([line.strip().startswith("vfmadd") for line in asm.splitlines()])
