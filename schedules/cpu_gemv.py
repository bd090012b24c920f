"""CPU GEMV rule for the classifier layers of 3D CNNs (``x @ W.T``, batch 1).

dlight's CPU GEMV vectorizes across output rows, so each vector load of ``W[n, k]`` gathers
from rows thousands of floats apart (C3D's fc6: 0.5 G MAC/s). Here the reduction axis, which
is contiguous, is split into vector lanes with ``rfactor``: every row is a dot product of
contiguous vectors, rows are spread over the cores, and a short second reduction sums the
lanes. Memory-bound layers (C3D's fc6 reads 134 MB of weights) then run at memory speed.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.analysis.gemv import is_gemv, normalize
from tvm.s_tir.dlight.base import try_inline_contiguous_spatial
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target

from .utils import largest_divisor

__all__ = ["GEMVCPU"]

#: fp32 lanes of the partial sums (one AVX2 register; two NEON registers).
LANES = 8
#: Rows computed together: independent accumulators hide the FMA latency.
ROWS = 4


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    extent = sch.get(loop).extent
    return int(extent) if isinstance(extent, tirx.IntImm | int) else None


class GEMVCPU(CPUScheduleRule):
    """dlight rule: batch-1 matrix-vector products with an inner (contiguous) reduction,
    optionally followed by an elementwise epilogue (bias, ReLU). None otherwise."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = try_inline_contiguous_spatial(sch, normalize_prim_func(sch))
        if infos is None or len(infos) not in (1, 2):
            return None
        if len(infos) == 2 and not infos[1].is_injective():
            return None
        info = infos[0]
        if len(info.iters) not in (2, 3) or is_gemv(sch, info) is None:
            return None
        if normalize(sch, info) is not True:  # only inner (contiguous) reductions
            return None
        block = info.block_rv
        batch, s, r, c = sch.get_loops(block)
        rows = _extent(sch, s)
        k = sch.fuse(r, c)
        red = _extent(sch, k)
        if rows is None or red is None or _extent(sch, batch) != 1:
            return None
        lanes = largest_divisor(red, LANES)
        if lanes == 1:  # e.g. a prime number of inputs: contiguous dot products per row
            sch.parallel(s)
            self._parallel_rest(sch, [block])
            return sch
        _, ki = sch.split(k, [None, lanes])
        rf = sch.rfactor(ki, 0)
        # rf block: partial sums over ko for each lane, rows blocked by ROWS
        b, s_rf, ko_rf, ki_rf = sch.get_loops(rf)
        s_o, s_i = sch.split(s_rf, [None, ROWS if rows % ROWS == 0 else 1])
        sch.reorder(b, s_o, ko_rf, s_i, ki_rf)
        sch.parallel(s_o)
        acc = sch.cache_write(rf, 0, "local")
        sch.reverse_compute_at(acc, s_o, preserve_unit_loops=True)
        sch.vectorize(ki_rf)
        sch.unroll(s_i)
        sch.decompose_reduction(rf, ko_rf)
        # the final sum over lanes, and the epilogue: parallel over rows
        self._parallel_rest(sch, [rf, acc])
        return sch

    @staticmethod
    def _parallel_rest(sch: s_tir.Schedule, done: list) -> None:
        """Parallelize the first non-unit loop of every other top-level block."""
        skip = [sch.get(b) for b in done]
        for blk in sch.get_child_blocks(sch.get_sblock("root")):
            if any(sch.get(blk).same_as(b) for b in skip):
                continue
            loops = [lp for lp in sch.get_loops(blk) if _extent(sch, lp) not in (None, 1)]
            if loops and sch.get(loops[0]).kind != tirx.ForKind.PARALLEL:
                sch.parallel(loops[0])
