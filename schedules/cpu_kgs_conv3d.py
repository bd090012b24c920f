"""CPU schedule of the KGS sparse conv3d (x86-64 AVX2 and aarch64 NEON).

Register tile: all ``g_m`` output channels of a group share the group's kept columns, so the
innermost loop is a ``g_m``-wide vector (8 fp32 = one AVX2 register, 4 = one NEON register)
and ``R`` output positions along W are blocked: per kept column the kernel loads one weight
vector and one index, broadcasts ``R`` input scalars and issues ``R`` vector FMAs into
accumulators that stay in registers for the whole reduction.

Knobs (``sample_perfect_tile`` / ``sample_categorical``; fixed decisions give the default):

* ``R`` -- output positions along W per tile (the innermost tile of W);
* ``Rh`` -- output rows per tile, for more reuse of each weight vector;
* the auto-unroll step of the parallel loop.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from rt3d_passes.kgs_conv3d import KGS_CONV3D_ATTR, KGS_CONV3D_BLOCK, KGS_PADDED_ATTR

from .utils import largest_divisor, producers_named, tile

__all__ = [
    "is_kgs_conv3d",
    "register_tile",
    "rows_outer_default",
    "schedule_kgs_conv3d_cpu",
]


def is_kgs_conv3d(func: tirx.PrimFunc) -> bool:
    """True for a PrimFunc made by RT3D's KGS conv3d operator."""
    return isinstance(func, tirx.PrimFunc) and bool(func.attrs) and KGS_CONV3D_ATTR in func.attrs


def _schedule_pad(sch: s_tir.Schedule, block, padded: tuple[int, int, int]) -> None:
    """Parallel copy into the padded buffer: split the flat axis into (c, d, h, w) so the
    index arithmetic of the flat layout simplifies to plain loops."""
    n, f = sch.get_loops(block)
    c, d, _, _ = sch.split(f, [None, *padded])
    sch.parallel(sch.fuse(n, c, d))


def register_tile(ow: int, oh: int, max_acc: int) -> tuple[int, int]:
    """The untuned register tile ``(R, Rh)``: ``R`` output positions along W times ``Rh`` rows.

    Each kept column costs one weight-vector load and ``Rh`` input cache lines for ``R * Rh``
    FMAs, so a long W tile matters most (fewer input lines per FMA), then filling the
    remaining accumulator budget with rows (fewer weight loads per FMA).
    """
    r_w = largest_divisor(ow, max_acc)
    r_h = largest_divisor(oh, max(1, max_acc // r_w))
    return r_w, r_h


#: Rows go outside groups when the compacted weights are at most this large. Rows outside
#: read each input row once for all groups instead of once per group; measured on C3D's
#: layers (schedule_bench) it wins for every pruned layer, even with weights of a few MB
#: streaming from L3, and ties on dense layers until their weights far exceed the caches.
ROWS_OUTER_WEIGHT_BYTES = 4 * 1024 * 1024


def rows_outer_default(sch: s_tir.Schedule) -> bool:
    """Heuristic loop order: rows outside groups when all compacted weights are small."""
    values = next(r.source for r in sch.get(sch.get_sblock(KGS_CONV3D_BLOCK)).reads
                  if len(r.source.shape) == 3)
    size = 4
    for extent in values.shape:
        size *= int(extent)
    return size <= ROWS_OUTER_WEIGHT_BYTES


def schedule_kgs_conv3d_cpu(
    sch: s_tir.Schedule,
    fixed: bool = True,
    max_accumulators: int = 12,
    rows_outer: bool | None = None,
) -> s_tir.Schedule:
    """Schedule one KGS conv3d PrimFunc (in place) for a CPU.

    Parameters
    ----------
    sch : s_tir.Schedule
        Schedule of a PrimFunc from :func:`rt3d_passes.kgs_conv3d.kgs_conv3d_te`.
    fixed : bool
        True: heuristic decisions (the untuned default). False: knobs left to sampling, so the
        same function is a MetaSchedule design space.
    max_accumulators : int
        Register budget of the tile: ``R * Rh`` accumulator vectors of ``g_m`` lanes (leave a
        few registers of the file for the weight vector and addresses).
    rows_outer : bool, optional
        Loop order, a structural choice (one design space each): output rows outside the
        groups, so each input row is read once for all groups (good when the compacted weights
        fit in cache), or groups outside rows, so each group's weights stay in cache while it
        sweeps the input (good for large weights). ``None``: :func:`rows_outer_default`.

    Returns
    -------
    sch : s_tir.Schedule
    """
    if rows_outer is None:
        rows_outer = rows_outer_default(sch)
    blk = sch.get_sblock(KGS_CONV3D_BLOCK)
    gm = int(sch.mod["main"].attrs[KGS_CONV3D_ATTR])
    n, m, d, h, w, t = sch.get_loops(blk)
    g, mi = sch.split(m, [None, gm])
    fixed_tile = register_tile(int(sch.get(w).extent), int(sch.get(h).extent),
                               max_accumulators)
    r_w = tile(sch, w, max_accumulators, fixed_tile[0] if fixed else None)
    r_h = tile(sch, h, max(1, max_accumulators // 4), fixed_tile[1] if fixed else None)
    wo, wi = sch.split(w, r_w)
    ho, hi = sch.split(h, r_h)
    if rows_outer:
        sch.reorder(n, d, ho, g, wo, t, hi, wi, mi)
    else:
        sch.reorder(n, g, d, ho, wo, t, hi, wi, mi)
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, wo, preserve_unit_loops=True)
    outer = sch.fuse(n, d, ho) if rows_outer else sch.fuse(n, g, d, ho)
    sch.parallel(outer)
    sch.vectorize(mi)  # before decompose_reduction (it needs a complete block)
    sch.unroll(wi)
    sch.unroll(hi)
    sch.decompose_reduction(blk, t)
    step = sch.sample_categorical(
        [0, 16, 64, 512], probs=[0.25] * 4, decision=2 if fixed else None
    )
    if fixed:
        sch.annotate(outer, "pragma_auto_unroll_max_step", step)
        sch.annotate(outer, "pragma_unroll_explicit", 1)
    else:
        # MutateUnroll only mutates values annotated like this; the postproc
        # RewriteParallelVectorizeUnroll turns it into the pragma above
        sch.annotate(outer, "meta_schedule.unroll_explicit", step)
    # write-back of the accumulator tile: contiguous along W
    acc_loops = sch.get_loops(acc)[-3:]  # (hi, wi, mi) of the tile
    sch.reorder(acc_loops[2], acc_loops[0], acc_loops[1])
    padded = tuple(int(v) for v in sch.mod["main"].attrs[KGS_PADDED_ATTR])
    for pad in producers_named(sch, blk, "kgs_pad"):
        _schedule_pad(sch, pad, padded)
    for crop in _consumers_named(sch, acc, "kgs_crop"):
        loops = sch.get_loops(crop)
        sch.parallel(sch.fuse(*loops[:3]))
    return sch


def _consumers_named(sch: s_tir.Schedule, block, name: str) -> list:
    return [b for b in sch.get_consumers(block) if sch.get(b).name_hint == name]
