"""CPU rule of the Winograd conv3d (x86-64 AVX2 / AVX-512, aarch64 NEON): one schedule with
the target's :class:`~schedules.cpu_kgs_conv3d.CPUConfig`.

* ``pad`` and ``pack`` (input transform): parallel over (batch, channel, depth slice); the
  pack unrolls the ``alpha^2`` transformed points of a tile, so its constant coefficients
  fold into the code and the tile's ``alpha^2`` input loads are shared;
* ``bgemm``: per transformed point and output group, a register tile of ``g_m`` channels x
  ``R`` tile positions held in accumulators over the whole reduction, vectors along the
  positions (contiguous in the packed input: one vector load per row of ``R``, ``g_m`` weight
  broadcasts, ``g_m * R / lanes`` FMAs per kept column) -- the same micro-kernel as the direct
  operator's "w" axis. Positions are few on small maps (C3D's conv5: 8), so the vectors run
  over the group's channels instead when a position vector would not be full;
* ``inverse`` (output transform) with the epilogue inlined: parallel over (batch, channel),
  the ``m x m`` outputs of a tile unrolled so the transform's constants fold.

Knobs: the position tile ``R`` and the unroll step of the GEMM.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target

from .contract import (
    WINOGRAD_BGEMM_BLOCK,
    WINOGRAD_CONV3D_ATTR,
    WINOGRAD_EPILOGUE_BLOCK,
    WINOGRAD_GROUP_ATTR,
    WINOGRAD_INVERSE_BLOCK,
    WINOGRAD_PACK_BLOCK,
    WINOGRAD_PAD_BLOCK,
    WINOGRAD_SHAPE_ATTR,
    func_attr,
    is_winograd_conv3d,
)
from .cpu_kgs_conv3d import cpu_config
from .utils import largest_divisor, schedule_flat_pad, tile, unroll_knob

__all__ = [
    "WinogradConv3DCPU",
    "schedule_bgemm",
    "schedule_input_transform",
    "schedule_output_transform",
    "schedule_winograd_conv3d_cpu",
    "schedule_winograd_cpu",
]


def _bgemm_tile(positions: int, gm: int, lanes: int, max_registers: int) -> tuple[str, int]:
    """``(vector axis, R)``: positions along the vectors when a full vector fits, else the
    group's channels."""
    if positions >= lanes:
        cap = lanes * max(1, max_registers // gm)
        whole = [r for r in range(lanes, cap + 1, lanes) if positions % r == 0]
        return "q", max(whole) if whole else largest_divisor(positions, cap)
    per_position = -(-gm // lanes)
    return "m", largest_divisor(positions, max(1, max_registers // per_position))


def schedule_winograd_conv3d_cpu(sch: s_tir.Schedule, fixed: bool = True, lanes: int = 8,
                                 max_registers: int = 12) -> s_tir.Schedule:
    """Schedule one Winograd conv3d PrimFunc (in place) for a CPU.

    Parameters
    ----------
    sch : s_tir.Schedule
        Schedule of a PrimFunc from :func:`rt3d_passes.op.winograd_conv3d_te`.
    fixed : bool
        True: heuristic decisions (the untuned default); False: knobs left to sampling (the
        MetaSchedule design space).
    lanes, max_registers :
        As in :func:`schedules.cpu_kgs_conv3d.schedule_kgs_conv3d_cpu`.
    """
    schedule_input_transform(sch)
    schedule_bgemm(sch, fixed, lanes, max_registers)
    schedule_output_transform(sch)
    return sch


def schedule_input_transform(sch: s_tir.Schedule) -> None:
    """Pad and pack (the input transform) of a Winograd conv3d."""
    dp, hp, wp, n_h, n_w = (int(v) for v in func_attr(sch.mod, WINOGRAD_SHAPE_ATTR))
    schedule_flat_pad(sch, sch.get_sblock(WINOGRAD_PAD_BLOCK), (dp, hp, wp))

    # pack: (c, d, th, tw) outer, the alpha^2 points unrolled
    pack = sch.get_sblock(WINOGRAD_PACK_BLOCK)
    n, e, f = sch.get_loops(pack)
    c, d, th, tw = sch.split(f, [None, dp, n_h, n_w])
    sch.reorder(n, c, d, th, tw, e)
    sch.parallel(sch.fuse(n, c, d))
    sch.unroll(e)


def schedule_bgemm(sch: s_tir.Schedule, fixed: bool, lanes: int, max_registers: int,
                   axis: str | None = None, positions_tile: int | None = None) -> None:
    """The transformed-domain GEMM: a register tile of g_m channels x R positions
    (``axis`` and ``positions_tile`` override the heuristic's vector axis and R)."""
    gm = int(func_attr(sch.mod, WINOGRAD_GROUP_ATTR))
    blk = sch.get_sblock(WINOGRAD_BGEMM_BLOCK)
    n, e, mo, q, t = sch.get_loops(blk)
    positions = int(sch.get(q).extent)
    axis_default, fixed_r = _bgemm_tile(positions, gm, lanes, max_registers)
    axis = axis or axis_default
    fixed_r = positions_tile or fixed_r
    cap = fixed_r if axis == "m" else lanes * max(1, max_registers // gm)
    g, mi = sch.split(mo, [None, gm])
    r = tile(sch, q, cap, fixed_r if fixed else None)
    qo, qi = sch.split(q, r)
    inner = (qi, mi) if axis == "m" else (mi, qi)
    sch.reorder(n, e, g, qo, t, *inner)
    acc = sch.cache_write(blk, 0, "local")
    if axis == "m":
        sch.transform_layout(blk, ("write", 0), lambda n, e, mo, q: (n, e, q, mo))
    sch.reverse_compute_at(acc, qo, preserve_unit_loops=True)
    outer = sch.fuse(n, e, g)
    sch.parallel(outer)
    sch.vectorize(inner[1])
    sch.unroll(inner[0])
    sch.decompose_reduction(blk, t)
    unroll_knob(sch, outer, fixed)
    if axis == "q":
        sch.vectorize(sch.get_loops(acc)[-1])


def schedule_output_transform(sch: s_tir.Schedule) -> None:
    """The output transform with the epilogue inlined: per tile, its m x m outputs unrolled."""
    m = int(func_attr(sch.mod, WINOGRAD_CONV3D_ATTR))
    inv = sch.get_sblock(WINOGRAD_INVERSE_BLOCK)
    for consumer in sch.get_consumers(inv):
        if sch.get(consumer).name_hint == WINOGRAD_EPILOGUE_BLOCK:
            sch.reverse_compute_inline(consumer)
    n, mo, d, h, w = sch.get_loops(inv)
    th, i = sch.split(h, [None, m])
    tw, j = sch.split(w, [None, m])
    sch.reorder(n, mo, d, th, tw, i, j)
    sch.parallel(sch.fuse(n, mo))
    sch.unroll(i)
    sch.unroll(j)


def schedule_winograd_cpu(sch: s_tir.Schedule, fixed: bool = True,
                          target: Target | None = None) -> s_tir.Schedule:
    """:func:`schedule_winograd_conv3d_cpu` sized for ``target`` (the current one when None)."""
    config = cpu_config(target)
    return schedule_winograd_conv3d_cpu(sch, fixed=fixed, lanes=config.lanes,
                                        max_registers=config.max_registers)


class WinogradConv3DCPU(CPUScheduleRule):
    """dlight rule: the untuned CPU schedule of the Winograd conv3d; None for anything else."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not self.is_target_available(target) or not is_winograd_conv3d(func):
            return None
        return schedule_winograd_cpu(s_tir.Schedule(func), fixed=not tunable, target=target)
