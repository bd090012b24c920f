"""Hand-written TensorIR schedules of RT3D's operators, one dlight-style rule per target.

``default_rules(target)`` lists the rules the ``rt3d`` pipeline applies for a target.
"""

from __future__ import annotations

from tvm.s_tir import dlight as dl
from tvm.target import Target

from .cpu_kgs_conv3d import KGSConv3DCPU, schedule_kgs_conv3d_cpu

__all__ = ["KGSConv3DCPU", "default_rules", "schedule_kgs_conv3d_cpu"]


def default_rules(target: Target) -> list[dl.ScheduleRule]:
    """Schedule rules for ``target``: RT3D's operators first, then dlight's generic rules for
    the rest of the model (GEMV for the classifier, reductions for pooling)."""
    if "gpu" in target.keys:
        return []  # GPU targets: the target's default pipeline schedules the rest
    return [KGSConv3DCPU(), dl.cpu.GEMV(), dl.cpu.Reduction()]
