"""Host x86-64 rule (AVX2 / AVX-512) for RT3D's KGS conv3d."""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.target import Target

from .cpu_kgs_conv3d import is_kgs_conv3d, schedule_kgs_conv3d_cpu

__all__ = ["KGSConv3DX86", "schedule_x86"]

#: AVX2 has 16 vector registers: up to 12 accumulators + weight vectors + spare.
MAX_ACCUMULATORS = 12


def is_x86(target: Target) -> bool:
    return target.kind.name == "llvm" and "aarch64" not in str(target.attrs.get("mtriple", ""))


def schedule_x86(sch: s_tir.Schedule, fixed: bool = True) -> s_tir.Schedule:
    """The x86 schedule: register tile of ``R`` (<= 12) W positions x ``g_m`` channels."""
    return schedule_kgs_conv3d_cpu(sch, fixed=fixed, max_w_tile=MAX_ACCUMULATORS,
                                   max_h_tile=1 if fixed else 2)


class KGSConv3DX86(s_tir.dlight.ScheduleRule):
    """dlight rule: untuned x86 schedule of the KGS conv3d; None for anything else."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not is_kgs_conv3d(func) or not is_x86(target):
            return None
        return schedule_x86(s_tir.Schedule(func), fixed=not tunable)
