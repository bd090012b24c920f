"""Hand-written TensorIR schedules of RT3D's operators, one dlight-style rule per file on the
target family's base class (``CPUScheduleRule`` / ``GPUScheduleRule``), and their MetaSchedule
design spaces (:mod:`schedules.meta_schedule`).

``default_rules(target)`` lists the rules the ``rt3d`` pipeline applies for a target.
:mod:`schedules.contract` holds the names the operators and the rules agree on. This package
imports only tvm: ``rt3d_passes`` imports it, never the other way round.
"""

from __future__ import annotations

from tvm.s_tir import dlight as dl
from tvm.target import Target

from .adreno_kgs_conv3d import KGSConv3DAdreno, adreno_space, schedule_kgs_conv3d_adreno
from .contract import is_kgs_conv3d
from .cpu_gemv import GEMVCPU
from .cpu_kgs_conv3d import (
    CPUConfig,
    KGSConv3DCPU,
    cpu_config,
    schedule_cpu,
    schedule_kgs_conv3d_cpu,
)
from .cpu_parallel_fallback import ParallelFallbackCPU, inline_elementwise
from .cpu_winograd_conv3d import (
    WinogradConv3DCPU,
    schedule_winograd_conv3d_cpu,
    schedule_winograd_cpu,
)

__all__ = [
    "GEMVCPU",
    "CPUConfig",
    "KGSConv3DAdreno",
    "KGSConv3DCPU",
    "ParallelFallbackCPU",
    "WinogradConv3DCPU",
    "adreno_space",
    "cpu_config",
    "default_rules",
    "inline_elementwise",
    "is_kgs_conv3d",
    "schedule_cpu",
    "schedule_kgs_conv3d_adreno",
    "schedule_kgs_conv3d_cpu",
    "schedule_winograd_conv3d_cpu",
    "schedule_winograd_cpu",
]


def default_rules(target: Target) -> list[dl.ScheduleRule]:
    """Schedule rules for ``target``: RT3D's operators first (direct and Winograd conv3d),
    then the classifier's GEMV, the parallel rule for everything with leading spatial loops
    (bias + ReLU, pooling, global means), and dlight's reduction rule for what is left on
    CPUs. The parallel rule comes before dlight's reduction rule: on a squeeze-excitation's
    global mean (108 channels of 4x20x20) dlight's predicated scalar loop took 3.9 ms, the
    parallel rule's 0.26 ms."""
    if "gpu" in target.keys:
        # RT3D's OpenCL rule; the target's default pipeline schedules the rest
        return [KGSConv3DAdreno()]
    return [KGSConv3DCPU(), WinogradConv3DCPU(), GEMVCPU(), dl.cpu.GEMV(),
            ParallelFallbackCPU(), dl.cpu.Reduction()]
