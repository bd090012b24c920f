"""CPU fallback rule: inline elementwise chains, then parallelize the leading spatial loops of
every block of a PrimFunc.

TVM's CPU pipeline leaves everything dlight does not match unscheduled and single-threaded:
in a 3D CNN that is the fused bias-add + ReLU after every conv3d, the 3D pooling, and the
Swish / squeeze-excitation chains of X3D, which on the first layers stream tens of MB each.
A fused chain such as ``x * sigmoid(s)`` then ``y * sigmoid(y)`` then a reshape arrives as
one block per op, each writing a full-size intermediate buffer: the rule inlines them into
one pass over memory (X3D-S's largest chain: 5.4 -> 0.5 ms). Splitting the outer loops across
cores is always legal for spatial loops and is enough for such memory-bound operators (LLVM
vectorizes the inner loops).
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target

from .contract import is_rt3d_conv3d

__all__ = ["ParallelFallbackCPU", "inline_elementwise"]


def _iterations(sch: s_tir.Schedule, block) -> int | None:
    """How many times ``block`` runs (the product of its loops), None when symbolic."""
    extents = [sch.get(loop).extent for loop in sch.get_loops(block)]
    if not all(isinstance(e, tirx.IntImm) for e in extents):
        return None
    return math.prod(e.value for e in extents)


def inline_elementwise(sch: s_tir.Schedule) -> int:
    """Inline every injective block into its consumers where that costs no recomputation.

    A block is inlined when all its consumers are injective blocks too (a pooling window
    would recompute it per tap) that run no more often than it does (inlining a per-channel
    ``sigmoid(s)`` into the full-size multiply would evaluate the sigmoid per element).
    Returns the number of blocks inlined.
    """
    inlined = 0
    # a flat reshape at the end of a chain goes into its producer first, which then writes
    # the flat output from its own loops (inlining the chain into the reshape instead would
    # leave one flat loop whose reads divide per element: a strided slice before a reshape
    # ran 2.2x slower)
    for info in normalize_prim_func(sch) or []:
        if info.is_injective() and len(info.iters) == 1 and not sch.get_consumers(info.block_rv):
            try:
                sch.reverse_compute_inline(info.block_rv)
                inlined += 1
            except s_tir.ScheduleError:
                pass
    while True:
        infos = normalize_prim_func(sch)
        if not infos:
            return inlined
        injective = [sch.get(info.block_rv) for info in infos if info.is_injective()]
        for info in infos:
            if not info.is_injective():
                continue
            consumers = sch.get_consumers(info.block_rv)
            runs = _iterations(sch, info.block_rv)
            if not consumers or runs is None:
                continue
            def _cheap(consumer) -> bool:
                consumer_runs = _iterations(sch, consumer)
                return (any(sch.get(consumer).same_as(b) for b in injective)
                        and consumer_runs is not None and consumer_runs <= runs)

            if not all(_cheap(c) for c in consumers):
                continue
            try:
                sch.compute_inline(info.block_rv)
            except s_tir.ScheduleError:
                continue
            inlined += 1
            break
        else:
            return inlined


def _row_length(sch: s_tir.Schedule, block, extent: int) -> int | None:
    """For a block with one flat loop (a reshape's): the innermost extent of a buffer it reads
    with as many elements, so the loop splits into rows and the reads' ``//`` and ``%``
    simplify (a parallel loop over 1.1 M positions otherwise divides per element)."""
    for region in sch.get(block).reads:
        shape = [int(v) for v in region.source.shape if isinstance(v, tirx.IntImm)]
        if len(shape) != len(region.source.shape) or not shape:
            continue
        if math.prod(shape) == extent and 1 < shape[-1] < extent and extent % shape[-1] == 0:
            return shape[-1]
    return None


#: a reduction at least this long (a global mean) gets vector accumulators
_LONG_REDUCTION = 64
#: most partial sums (register accumulators) one output of a long reduction keeps
_MAX_PARTIALS = 64


def _partial_sums_tail(extents: list[int]) -> tuple[int, int] | None:
    """``(k, lanes)``: the fewest trailing reduction loops holding at least 8 elements (a row
    of W, or every row of a small map) and ``lanes`` partial sums over them, their whole
    extent when at most :data:`_MAX_PARTIALS`, else its largest divisor that is a multiple
    of 8 and at most that (None when there is none)."""
    for k in range(1, len(extents) + 1):
        extent = math.prod(extents[-k:])
        if extent >= 8:
            break
    if extent <= _MAX_PARTIALS:
        return k, extent
    lanes = max((d for d in range(8, _MAX_PARTIALS + 1, 8) if extent % d == 0), default=None)
    return None if lanes is None else (k, lanes)


def _vectorize_reduction(sch: s_tir.Schedule, info) -> list[str]:
    """Register accumulators for a long reduction over trailing axes (a global mean: one
    serial chain of dependent adds per channel otherwise), in one parallel loop over the
    outputs: the trailing reduction loops (a W row, or a small map's rows) are ``rfactor``-ed
    into ``lanes`` partial sums kept in registers (a local buffer: independent accumulators,
    vectors of 8 where ``lanes`` allows), summed at the end, and the mean's division follows
    in the same task. The tail loops are unrolled, so their fused index needs no ``//`` /
    ``%``. X3D-S's means, before -> after (one vector of 8 partial sums in memory, in two
    parallel loops, and none for 13x5x5): 54 x 13x40x40 0.137 -> 0.061 ms, 108 x 13x20x20
    0.141 -> 0.043, 216 x 13x10x10 0.070 -> 0.041, 432 x 13x5x5 (25 scalar partial sums)
    0.117 -> 0.030 (PyTorch 0.036, 0.024, 0.026, 0.010). Returns the names of the blocks it
    placed (the reduction and the consumers moved into its task), empty where it does not
    apply (``sch`` may then be half-changed: pass a copy)."""
    kinds = [it.kind for it in info.iters]
    if not info.is_reduction() or "S" not in kinds or "R" not in kinds \
            or kinds != sorted(kinds, key="SR".index) \
            or not all(isinstance(it.dom, int) for it in info.iters):
        return []
    spatial = [it.loop_rv for it in info.iters if it.kind == "S"]
    reduce = [it for it in info.iters if it.kind == "R"]
    if math.prod(it.dom for it in reduce) < _LONG_REDUCTION:
        return []
    tail = _partial_sums_tail([it.dom for it in reduce])
    if tail is None:
        return []
    k, lanes = tail
    block = info.block_rv
    out_ndim = len(sch.get(block).writes[0].source.shape)
    placed = [sch.get(block).name_hint]
    try:
        loops = [it.loop_rv for it in reduce[-k:]]
        fused = sch.fuse(*loops) if k > 1 else loops[0]
        extent = int(sch.get(fused).extent)
        lane = sch.split(fused, [None, lanes])[1] if extent > lanes else fused
        partial = sch.rfactor(lane, factor_axis=out_ndim)
        outer = sch.get_loops(block)[:len(spatial)]
        outer = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        sch.parallel(outer)
        sch.compute_at(partial, outer, preserve_unit_loops=True)
        sch.set_scope(partial, 0, "local")
        # the partial block's loops under the task: the lanes (spatial, rfactor's axis) first,
        # then the reduction: lanes go innermost, unrolled / vectorized by 8
        inner = sch.get_loops(partial)[1:]
        lane_loop = next(lp for lp in inner if int(sch.get(lp).extent) == lanes)
        rest = [lp for lp in inner if not sch.get(lp).same_as(sch.get(lane_loop))]
        sch.reorder(*rest, lane_loop)
        if lanes % 8 == 0:
            vec_out, vec_in = sch.split(lane_loop, [None, 8])
            sch.unroll(vec_out)
            sch.vectorize(vec_in)
        else:
            sch.unroll(lane_loop)
        # vectorize / unroll before decompose_reduction (it needs a complete block)
        sch.decompose_reduction(partial, rest[0])
        for consumer in sch.get_consumers(block):
            try:
                sch.reverse_compute_at(consumer, outer, preserve_unit_loops=True)
                placed.append(sch.get(consumer).name_hint)
            except s_tir.ScheduleError:
                pass
    except s_tir.ScheduleError:  # e.g. a reducer rfactor does not know
        return []
    return placed


#: parallel tasks an elementwise block keeps when its planes go inside them
_MIN_TASKS = 16


def _planes_inside(sch: s_tir.Schedule, block, lead: list) -> list | None:
    """For an elementwise block (every buffer it reads has its loops' extents over the trailing
    axes, or 1 there: a per-channel broadcast): the leading loops to run in parallel (the
    fewest whose product reaches :data:`_MIN_TASKS`: batch and channels), the loops inside
    them fused into one long loop that LLVM vectorizes, whose ``//`` / ``%`` simplify back
    to the flat offset. One task per row instead (the innermost loop serial, the others
    fused into the parallel loop) gave partial vectors on short rows and a division per row:
    X3D-S's SE-scale + Swish chain, interleaved, rows -> planes: 432 x 13x5x5 0.130 ->
    0.035 ms, 216 x 13x10x10 0.414 -> 0.054, 108 x 13x20x20 0.512 -> 0.114, 54 x 13x40x40
    0.632 -> 0.214, 24 x 13x80x80 0.453 -> 0.396 (PyTorch 0.067, 0.138, 0.212, 0.414,
    0.693). None for a block reading a strided or transposed view (fused, its index would
    divide per element), and when the loops are symbolic."""
    extents = [sch.get(loop).extent for loop in lead]
    if len(lead) < 3 or not all(isinstance(e, tirx.IntImm) for e in extents):
        return None
    tasks, k = 1, 0
    while k < len(lead) - 2 and tasks < _MIN_TASKS:
        tasks *= extents[k].value
        k += 1
    inner = [e.value for e in extents[k:]]
    for region in sch.get(block).reads:
        shape = list(region.source.shape)
        if len(shape) < len(inner):
            return None
        tail = [int(v) if isinstance(v, tirx.IntImm) else None for v in shape[-len(inner):]]
        if tail != inner and any(v != 1 for v in tail):
            return None
    sch.fuse(*lead[k:])
    return lead[:k]


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
        inline_elementwise(sch)
        infos = normalize_prim_func(sch)  # each call may rebuild the loops: take fresh ones
        scheduled = False
        placed: set[str] = set()
        for info in infos:
            if sch.get(info.block_rv).name_hint in placed:
                continue  # moved into a reduction's task (its loops are gone)
            trial = sch.copy()
            names = _vectorize_reduction(trial, info)
            if names:
                sch, scheduled = trial, True
                placed.update(names)
                continue
            lead = []
            for it in info.iters:
                if it.kind != "S":
                    break
                lead.append(it.loop_rv)
            if len(lead) == 1 and len(info.iters) == 1 and isinstance(info.iters[0].dom, int):
                row = _row_length(sch, info.block_rv, info.iters[0].dom)
                if row is not None:
                    lead = list(sch.split(lead[0], [info.iters[0].dom // row, row]))
            # keep the innermost spatial loop serial (LLVM vectorizes it) unless it is alone;
            # with reduction loops too (pooling) when it is long: one fused parallel loop over
            # every output position recomputes each index by division (C3D's first max pool:
            # 6.6 ms -> see DEVELOPERS.md); but not for a long reduction (a global mean whose
            # trailing axis takes no vector lanes): its channels are all the parallelism
            inner = sch.get(lead[-1]).extent if lead else 1
            reduce = [it.dom for it in info.iters[len(lead):]]
            long_reduction = all(isinstance(d, int) for d in reduce) and \
                math.prod(reduce) >= _LONG_REDUCTION
            keep = len(lead) > 1 and not long_reduction and (
                len(lead) == len(info.iters) or len(info.iters) == 1
                or (isinstance(inner, tirx.IntImm) and inner.value >= 8))
            outer = lead[:-1] if keep else lead
            if keep and len(lead) == len(info.iters):
                outer = _planes_inside(sch, info.block_rv, lead) or outer
            if not outer:
                continue
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
            scheduled = True
        return sch if scheduled else None
