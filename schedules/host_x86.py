"""Host x86-64 rule (AVX2 / AVX-512) for RT3D's KGS conv3d."""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.target import Target, codegen

from .cpu_kgs_conv3d import is_kgs_conv3d, schedule_kgs_conv3d_cpu

__all__ = ["KGSConv3DX86", "schedule_x86"]

#: Accumulator registers: AVX2 has 16 vector registers (12 for accumulators, the rest for
#: the loaded vector and broadcasts); AVX-512 (VL) has 32, usable at 256 bits too.
MAX_ACCUMULATORS_AVX2 = 12
MAX_ACCUMULATORS_AVX512 = 24
#: fp32 lanes: LLVM prefers 256-bit vectors even on AVX-512 CPUs (znver4, icelake...), and
#: 28 lanes of a W tile became 4 registers each, spilling (measured: 10x slower).
LANES = 8


def is_x86(target: Target) -> bool:
    return target.kind.name == "llvm" and "aarch64" not in str(target.attrs.get("mtriple", ""))


def max_accumulators(target: Target | None) -> int:
    """Register budget of ``target`` (the current target when None)."""
    target = target or Target.current(allow_none=True)
    if target is not None and codegen.target_has_features(["avx512f"], target):
        return MAX_ACCUMULATORS_AVX512
    return MAX_ACCUMULATORS_AVX2


def schedule_x86(sch: s_tir.Schedule, fixed: bool = True, target: Target | None = None,
                 rows_outer: bool | None = None, vector_axis: str | None = None
                 ) -> s_tir.Schedule:
    """The x86 schedule: a register tile of ``g_m`` channels x ``Rh`` rows x ``R`` positions
    sized to the target's vector register file."""
    return schedule_kgs_conv3d_cpu(sch, fixed=fixed, lanes=LANES,
                                   max_registers=max_accumulators(target),
                                   rows_outer=rows_outer, vector_axis=vector_axis)


class KGSConv3DX86(s_tir.dlight.ScheduleRule):
    """dlight rule: untuned x86 schedule of the KGS conv3d; None for anything else."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not is_kgs_conv3d(func) or not is_x86(target):
            return None
        return schedule_x86(s_tir.Schedule(func), fixed=not tunable, target=target)
