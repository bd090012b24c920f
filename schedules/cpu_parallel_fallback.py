"""CPU fallback rule: parallelize the leading spatial loops of every block of a PrimFunc.

TVM's CPU pipeline leaves everything dlight does not match unscheduled and single-threaded:
in a 3D CNN that is the fused bias-add + ReLU after every conv3d and the 3D pooling, which on
C3D's first layers stream tens of MB each. Splitting their outer loops across cores is always
legal for spatial loops and is enough for such memory-bound operators (LLVM vectorizes the
inner loops).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target

from .contract import is_rt3d_conv3d

__all__ = ["ParallelFallbackCPU"]


class ParallelFallbackCPU(CPUScheduleRule):
    """dlight rule for CPU targets; None on GPUs, for RT3D's own operator, for functions that
    are not in dlight's normal form, for reductions with symbolic extents (dlight's reduction
    rule handles those; fusing them here fails to lower), and when no block has a leading
    spatial loop."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        if is_rt3d_conv3d(func):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos:
            return None
        iters = [it for info in infos for it in info.iters]
        if any(it.kind == "R" for it in iters) and \
                not all(isinstance(it.dom, int) for it in iters):
            return None
        scheduled = False
        for info in infos:
            lead = []
            for it in info.iters:
                if it.kind != "S":
                    break
                lead.append(it.loop_rv)
            # keep the innermost spatial loop serial (LLVM vectorizes it) unless it is alone;
            # with reduction loops too (pooling) when it is long: one fused parallel loop over
            # every output position recomputes each index by division (C3D's first max pool:
            # 6.6 ms -> see DEVELOPERS.md)
            inner = sch.get(lead[-1]).extent if lead else 1
            keep = len(lead) > 1 and (len(lead) == len(info.iters)
                                      or (isinstance(inner, tirx.IntImm) and inner.value >= 8))
            outer = lead[:-1] if keep else lead
            if not outer:
                continue
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
            scheduled = True
        return sch if scheduled else None
