"""arm_cpu rule (Kryo: aarch64 + NEON) for RT3D's KGS conv3d.

Same register tiles as x86 with NEON's budget: 32 vector registers of 4 fp32 (vectorized over a
group of ``g_m = 4`` channels, the by-element ``fmla v.4s, v.4s, v.s[i]`` form; along W, 4
positions per register).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.target import Target

from .cpu_kgs_conv3d import is_kgs_conv3d, schedule_kgs_conv3d_cpu

__all__ = ["KGSConv3DArm", "schedule_arm"]

NEON_REGISTERS = 32


def is_arm(target: Target) -> bool:
    return "arm_cpu" in target.keys or "aarch64" in str(target.attrs.get("mtriple", ""))


def schedule_arm(sch: s_tir.Schedule, fixed: bool = True, target: Target | None = None,
                 rows_outer: bool | None = None, vector_axis: str | None = None
                 ) -> s_tir.Schedule:
    """The arm_cpu schedule: accumulators fill 3/4 of the NEON register file (4 lanes)."""
    del target  # every aarch64 core has 32 NEON registers of 4 fp32
    return schedule_kgs_conv3d_cpu(sch, fixed=fixed, lanes=4,
                                   max_registers=NEON_REGISTERS * 3 // 4,
                                   rows_outer=rows_outer, vector_axis=vector_axis)


class KGSConv3DArm(s_tir.dlight.ScheduleRule):
    """dlight rule: untuned arm_cpu schedule of the KGS conv3d; None for anything else."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not is_kgs_conv3d(func) or not is_arm(target):
            return None
        return schedule_arm(s_tir.Schedule(func), fixed=not tunable, target=target)
