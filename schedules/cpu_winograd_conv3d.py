"""CPU rule of the Winograd conv3d (x86-64 AVX2 / AVX-512, aarch64 NEON): one schedule with
the target's :class:`~schedules.cpu_kgs_conv3d.CPUConfig`.

* ``pad`` and ``pack`` (input transform): parallel over (batch, channel, depth slice); the
  pack unrolls the ``alpha^2`` transformed points of a tile, so its constant coefficients
  fold into the code and the tile's ``alpha^2`` input loads are shared, and runs its vectors
  over the tiles of a tile row (the phase-split copy makes each load contiguous);
* ``bgemm``: per transformed point and output group, a register tile of ``g_m`` channels
  (or :attr:`~schedules.cpu_kgs_conv3d.CPUConfig.channel_tile` of them) x ``R`` tile
  positions held in accumulators over the reduction, vectors along the positions (contiguous
  in the packed input: one vector load per ``lanes`` of ``R``, a weight broadcast per
  channel, ``channels * R / lanes`` FMAs per kept column) -- the same micro-kernel as the
  direct operator's "w" axis. On AVX2 a task is one position tile of one transformed point,
  all groups inside, the columns in blocks (:data:`GEMM_COLUMN_BLOCK`); elsewhere a task is
  one group. Positions are few on small maps (C3D's conv5: 8), so the vectors run over the
  group's channels instead when a position vector would not be full;
* ``inverse`` (output transform) with the epilogue inlined: parallel over (batch, channel),
  the ``m x m`` outputs of a tile unrolled so the transform's constants fold, vectors over
  the tiles of a tile row (contiguous GEMM outputs; the stores, ``m`` apart, are per lane).

Both transforms ran scalar before: on Zen 3, R(2+1)D-18's 64 -> 144 layer on 16x56x56 maps
spent 61 % of its F(4x4) time in them (perf, by function). With vectors there, the channel
tile and the column blocks, interleaved on Zen 3, 2 threads, against the scalar transforms
and the whole-group tile: that layer's F(4x4) 60.8 -> 30.8 ms, C3D's conv2 F(4x4) 98.8 ->
56.1, conv3b 64.8 -> 54.0, conv4b 34.4 -> 29.2, R(2+1)D-18's layer4 F(2x2) 6.5 -> 5.8; the GEMM
then takes about 80-90 % of the time.

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
from .cpu_kgs_conv3d import CPUConfig, cpu_config, tile_channels
from .utils import largest_divisor, schedule_flat_pad, tile, unroll_knob

__all__ = [
    "CHUNK_WEIGHT_BYTES",
    "COLUMN_BLOCK_MIN",
    "GEMM_COLUMN_BLOCK",
    "POSITION_CHUNK",
    "WinogradConv3DCPU",
    "gemm_column_block",
    "output_transform_lanes",
    "positions_chunk",
    "schedule_bgemm",
    "schedule_input_transform",
    "schedule_output_transform",
    "schedule_winograd_conv3d_cpu",
    "schedule_winograd_cpu",
    "transform_lanes",
]


#: Column blocks of the transformed-domain GEMM on CPUs whose config blocks the direct
#: kernel's columns (AVX2). Zen 3, 2 threads, interleaved, F(4x4): C3D conv3b 55.2 -> 47.8 ms,
#: conv2 56.2 -> 48.7, R(2+1)D-18's layer1 30.6 -> 30.2 (64 columns, one block).
GEMM_COLUMN_BLOCK = 64
#: Fewer columns per block than this: no blocks (a block's accumulators are reloaded).
COLUMN_BLOCK_MIN = 16
#: A transformed point's weights above this many bytes: each GEMM task takes up to
#: :data:`POSITION_CHUNK` position tiles, so a block of weights is read once for all of them.
#: Zen 3, F(4x4), interleaved: C3D conv4b (3 MB a point, 4 tiles a task) 30.8 -> 24.8 ms,
#: conv3b (786 KB, 5 tiles) 54.5 -> 50.7; conv2 and R(2+1)D's layer1 (98 and 37 KB) gained
#: nothing (0.96-1.04x): no chunks.
CHUNK_WEIGHT_BYTES = 256 * 1024
POSITION_CHUNK = 8


def _bgemm_tile(positions: int, gm: int, lanes: int, max_registers: int,
                channels: int) -> tuple[str, int]:
    """``(vector axis, R)``: positions along the vectors when a full vector fits (``channels``
    of the group per register tile), else the group's channels."""
    if positions >= lanes:
        cap = lanes * max(1, max_registers // channels)
        whole = [r for r in range(lanes, cap + 1, lanes) if positions % r == 0]
        return "q", max(whole) if whole else largest_divisor(positions, cap)
    per_position = -(-gm // lanes)
    return "m", largest_divisor(positions, max(1, max_registers // per_position))


def schedule_winograd_conv3d_cpu(sch: s_tir.Schedule, fixed: bool = True, lanes: int = 8,
                                 max_registers: int = 12, channel_tile: int = 0,
                                 column_block: int = 0) -> s_tir.Schedule:
    """Schedule one Winograd conv3d PrimFunc (in place) for a CPU.

    Parameters
    ----------
    sch : s_tir.Schedule
        Schedule of a PrimFunc from :func:`rt3d_passes.op.winograd_conv3d_te`.
    fixed : bool
        True: heuristic decisions (the untuned default); False: knobs left to sampling (the
        MetaSchedule design space).
    lanes, max_registers, channel_tile :
        As in :func:`schedules.cpu_kgs_conv3d.schedule_kgs_conv3d_cpu` and
        :attr:`~schedules.cpu_kgs_conv3d.CPUConfig.channel_tile` (the GEMM's register tile
        along positions holds that many of a group's channels; 0: all).
    column_block : int
        The GEMM's column blocks (see :func:`schedule_bgemm`); 0: none.
    """
    schedule_input_transform(sch, lanes)
    axis = schedule_bgemm(sch, fixed, lanes, max_registers, channel_tile=channel_tile,
                          column_block=column_block)
    schedule_output_transform(sch, lanes if axis == "q" else 1)
    return sch


def transform_lanes(n_w: int, lanes: int) -> int:
    """Vector lanes of the transforms: tiles of a tile row per vector, the largest divisor of
    the row's ``n_w`` tiles up to ``lanes`` (C3D's 14- and 7-tile rows: 7)."""
    return largest_divisor(n_w, lanes)


def output_transform_lanes(n_w: int, width: int, tile: int, lanes: int) -> int:
    """Vector lanes of the output transform: :func:`transform_lanes`, or 1 (scalar) when
    the output's ``width`` is no multiple of the ``tile`` (the partial last tile of a row is
    cropped per lane)."""
    return transform_lanes(n_w, lanes) if width % tile == 0 else 1


def schedule_input_transform(sch: s_tir.Schedule, lanes: int = 8) -> None:
    """Pad and pack (the input transform) of a Winograd conv3d: per tile row, vectors over
    :func:`transform_lanes` tiles, the alpha^2 points unrolled."""
    m = int(func_attr(sch.mod, WINOGRAD_CONV3D_ATTR))
    dp, hp, row, n_h, n_w = (int(v) for v in func_attr(sch.mod, WINOGRAD_SHAPE_ATTR))
    schedule_flat_pad(sch, sch.get_sblock(WINOGRAD_PAD_BLOCK), (dp, hp, row), w_phases=m)

    pack = sch.get_sblock(WINOGRAD_PACK_BLOCK)
    n, e, f = sch.get_loops(pack)
    c, d, th, tw = sch.split(f, [None, dp, n_h, n_w])
    two, twi = sch.split(tw, [None, transform_lanes(n_w, lanes)])
    sch.reorder(n, c, d, th, two, e, twi)
    sch.parallel(sch.fuse(n, c, d))
    sch.unroll(e)
    sch.vectorize(twi)


def schedule_bgemm(sch: s_tir.Schedule, fixed: bool, lanes: int, max_registers: int,
                   axis: str | None = None, positions_tile: int | None = None,
                   channel_tile: int = 0, column_block: int = 0) -> str:
    """The transformed-domain GEMM: a register tile of g_m channels x R positions
    (``axis`` and ``positions_tile`` override the heuristic's vector axis and R). Along
    positions, ``channel_tile`` channels of a group per register tile (the tiles of a group
    run inside its position tile, so they re-read its inputs from L1): on AVX2 4 channels x 2
    vectors take 2 input loads and 4 broadcasts per 8 FMAs, where the whole 8-channel group
    x 1 vector (12 accumulators at most) took 9 per 8. ``column_block`` > 0 (along
    positions): a task computes every group of one position tile (of several when a point's
    weights are large, :func:`positions_chunk`), the columns in blocks of the largest divisor
    of their count up to ``column_block`` (none below :data:`COLUMN_BLOCK_MIN`); else a task
    is one group, all its position tiles. Returns the vector axis: ``"q"`` (positions; the
    GEMM's output keeps its layout) or ``"m"`` (channels; its output is stored
    position-major)."""
    gm = int(func_attr(sch.mod, WINOGRAD_GROUP_ATTR))
    blk = sch.get_sblock(WINOGRAD_BGEMM_BLOCK)
    n, e, mo, q, t = sch.get_loops(blk)
    positions, t_len = int(sch.get(q).extent), int(sch.get(t).extent)
    weight_bytes = 4 * int(sch.get(mo).extent) * t_len  # the weights of one point
    ct = tile_channels(gm, channel_tile)
    axis_default, fixed_r = _bgemm_tile(positions, gm, lanes, max_registers, ct)
    axis = axis or axis_default
    fixed_r = positions_tile or fixed_r
    ct = ct if axis == "q" else gm
    cap = fixed_r if axis == "m" else lanes * max(1, max_registers // ct)
    g, mi = sch.split(mo, [None, gm])
    r = tile(sch, q, cap, fixed_r if fixed else None)
    qo, qi = sch.split(q, r)
    mo_tile, mi = sch.split(mi, [None, ct])
    inner = (qi, mi) if axis == "m" else (mi, qi)
    block = largest_divisor(t_len, column_block) if column_block else 0
    if axis == "q" and block >= COLUMN_BLOCK_MIN:
        # every group of a position tile inside one task, the columns in blocks: a block's
        # inputs stay in L1 for all of the tile's groups; the register tile accumulates
        # in the output across blocks (LLVM keeps it in registers within a block)
        tb, t = sch.split(t, [None, block])
        # a point's weights larger than the L2 stream from L3 once per task: tasks of
        # several position tiles read each block of them once for all
        chunk = positions_chunk(weight_bytes, int(sch.get(qo).extent))
        if chunk > 1:
            qo, qc = sch.split(qo, [None, chunk])
            sch.reorder(n, e, qo, g, tb, qc, mo_tile, t, *inner)
        else:
            sch.reorder(n, e, qo, g, tb, mo_tile, t, *inner)
        outer = sch.fuse(n, e, qo)
        sch.parallel(outer)
        sch.unroll(inner[0])
        _vectorize_positions(sch, inner[1], lanes)
        init = sch.decompose_reduction(blk, tb)
        sch.vectorize(sch.get_loops(init)[-1])
        unroll_knob(sch, outer, fixed)
        return axis
    sch.reorder(n, e, g, qo, mo_tile, t, *inner)
    acc = sch.cache_write(blk, 0, "local")
    if axis == "m":
        sch.transform_layout(blk, ("write", 0), lambda n, e, mo, q: (n, e, q, mo))
    sch.reverse_compute_at(acc, mo_tile, preserve_unit_loops=True)
    outer = sch.fuse(n, e, g)
    sch.parallel(outer)
    sch.unroll(inner[0])
    if axis == "q":
        _vectorize_positions(sch, inner[1], lanes)
    else:
        sch.vectorize(inner[1])
    sch.decompose_reduction(blk, t)
    unroll_knob(sch, outer, fixed)
    if axis == "q":
        sch.vectorize(sch.get_loops(acc)[-1])
    return axis


def positions_chunk(weight_bytes: int, tiles: int) -> int:
    """Position tiles per GEMM task (the AVX2 order) of ``tiles``: :data:`POSITION_CHUNK` (the
    largest divisor of ``tiles`` up to it) when one transformed point's weights
    (``weight_bytes``) exceed :data:`CHUNK_WEIGHT_BYTES`, else 1."""
    if weight_bytes <= CHUNK_WEIGHT_BYTES:
        return 1
    return largest_divisor(tiles, POSITION_CHUNK)


def _vectorize_positions(sch: s_tir.Schedule, loop, lanes: int) -> None:
    """Vectorize a register tile's positions as unrolled vectors of ``lanes`` (one 24-lane
    vector ran 10x slower: LLVM kept the accumulators in memory)."""
    width = int(sch.get(loop).extent)
    if width > lanes and width % lanes == 0:
        outer, loop = sch.split(loop, [None, lanes])
        sch.unroll(outer)
    sch.vectorize(loop)


def schedule_output_transform(sch: s_tir.Schedule, lanes: int = 8) -> None:
    """The output transform with the epilogue inlined: per tile row, vectors over
    :func:`transform_lanes` tiles (``lanes=1``: scalar), a tile's m x m outputs unrolled."""
    m = int(func_attr(sch.mod, WINOGRAD_CONV3D_ATTR))
    n_w = int(func_attr(sch.mod, WINOGRAD_SHAPE_ATTR)[4])
    inv = sch.get_sblock(WINOGRAD_INVERSE_BLOCK)
    for consumer in sch.get_consumers(inv):
        if sch.get(consumer).name_hint == WINOGRAD_EPILOGUE_BLOCK:
            sch.reverse_compute_inline(consumer)
    n, mo, d, h, w = sch.get_loops(inv)
    v = output_transform_lanes(n_w, int(sch.get(w).extent), m, lanes)
    th, i = sch.split(h, [None, m])
    tw, j = sch.split(w, [None, m])
    two, twi = sch.split(tw, [None, v])
    sch.reorder(n, mo, d, th, two, i, j, twi)
    sch.parallel(sch.fuse(n, mo))
    sch.unroll(i)
    sch.unroll(j)
    if v > 1:
        sch.vectorize(twi)


def gemm_column_block(config: CPUConfig) -> int:
    """:data:`GEMM_COLUMN_BLOCK` on CPUs whose config blocks the direct kernel's columns (AVX2,
    where it was measured), else 0."""
    return GEMM_COLUMN_BLOCK if config.column_block else 0


def schedule_winograd_cpu(sch: s_tir.Schedule, fixed: bool = True,
                          target: Target | None = None,
                          config: CPUConfig | None = None) -> s_tir.Schedule:
    """:func:`schedule_winograd_conv3d_cpu` sized by ``config``, else for ``target`` (the
    current one when None)."""
    config = config or cpu_config(target)
    return schedule_winograd_conv3d_cpu(sch, fixed=fixed, lanes=config.lanes,
                                        max_registers=config.max_registers,
                                        channel_tile=config.channel_tile,
                                        column_block=gemm_column_block(config))


class WinogradConv3DCPU(CPUScheduleRule):
    """dlight rule: the untuned CPU schedule of the Winograd conv3d; None for anything else."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not self.is_target_available(target) or not is_winograd_conv3d(func):
            return None
        return schedule_winograd_cpu(s_tir.Schedule(func), fixed=not tunable, target=target)
