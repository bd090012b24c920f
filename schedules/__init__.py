"""Hand-written TensorIR schedules of RT3D's operators, one dlight-style rule per target,
and their MetaSchedule design spaces (:mod:`schedules.meta_schedule`).

``default_rules(target)`` lists the rules the ``rt3d`` pipeline applies for a target.
"""

from __future__ import annotations

from tvm.s_tir import dlight as dl
from tvm.target import Target

from .adreno_kgs_conv3d import KGSConv3DAdreno, adreno_space, schedule_kgs_conv3d_adreno
from .arm_cpu import KGSConv3DArm, schedule_arm
from .cpu_gemv import GEMVCPU
from .cpu_kgs_conv3d import is_kgs_conv3d, schedule_kgs_conv3d_cpu
from .cpu_parallel_fallback import ParallelFallbackCPU
from .host_x86 import KGSConv3DX86, schedule_x86

__all__ = [
    "GEMVCPU",
    "KGSConv3DAdreno",
    "KGSConv3DArm",
    "KGSConv3DX86",
    "ParallelFallbackCPU",
    "adreno_space",
    "default_rules",
    "is_kgs_conv3d",
    "schedule_arm",
    "schedule_kgs_conv3d_adreno",
    "schedule_kgs_conv3d_cpu",
    "schedule_x86",
]


def default_rules(target: Target) -> list[dl.ScheduleRule]:
    """Schedule rules for ``target``: RT3D's operators first, then the classifier's GEMV,
    dlight's generic rules, and a parallel fallback for what is left on CPUs (bias + ReLU,
    pooling)."""
    if "gpu" in target.keys:
        # RT3D's OpenCL rule; the target's default pipeline schedules the rest
        return [KGSConv3DAdreno()]
    return [KGSConv3DX86(), KGSConv3DArm(), GEMVCPU(), dl.cpu.GEMV(), dl.cpu.Reduction(),
            ParallelFallbackCPU()]
