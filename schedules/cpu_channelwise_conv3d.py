"""CPU schedule of a channel-wise (depthwise) KGS conv3d on a channel-blocked padded copy.

A channel-wise layer (groups = channels: X3D, ir-CSN) has one output channel per group and
27 or fewer columns per group, so the KGS schedule's vectors have only W to run along: on
X3D's 10- and 20-wide maps 5 of 8 lanes, each FMA beside its own unaligned load and a
padded copy per channel (15-30 G MAC/s on Zen 3). When every group keeps the same taps
(``op.kgs_conv3d.shares_taps``), the rewrite gives such a layer a channel-blocked copy
(``"CDHW8c"``: blocks of ``lanes`` channels, each block's padded volume with its channels
innermost), and this schedule vectorizes over a block's channels, as oneDNN does its
blocked depthwise convolutions:

* one task per (batch item, channel block): the block's padded copy (a gather of ``lanes``
  channels per position) and its weights (``[T, lanes]``) are written inside the task, right
  before the task reads them;
* a register tile of ``R x Rh x Rd`` output positions, each one full vector of the block's
  channels; per tap one weight vector and, per position, one aligned input vector load and
  one FMA, at any stride (the copy holds whole vectors of channels at every position);
* the write-back stores the tile into the NCDHW output (a transpose of the tile), with the
  fused epilogue and the crop of a partial last block.

Knobs: ``R``, ``Rh``, ``Rd`` (``sample_perfect_tile``) and the auto-unroll step.
"""

from __future__ import annotations

from tvm import s_tir

from .contract import (
    KGS_CONV3D_BLOCK,
    KGS_COPY_LAYOUT_ATTR,
    KGS_CROP_BLOCK,
    KGS_PAD_BLOCK,
    KGS_PADDED_ATTR,
    KGS_VALUES_BLOCK,
    channel_block,
    func_attr,
)
from .utils import (
    largest_divisor,
    place_write_back,
    producers_named,
    tile,
    unroll_knob,
)

__all__ = ["channelwise_tile", "is_channel_blocked", "schedule_channelwise_conv3d_cpu"]


def is_channel_blocked(sch: s_tir.Schedule) -> bool:
    """Whether the scheduled KGS operator reads a channel-blocked padded copy."""
    return channel_block(str(func_attr(sch.mod, KGS_COPY_LAYOUT_ATTR))) > 0


def channelwise_tile(ow: int, oh: int, od: int, registers: int) -> tuple[int, int, int]:
    """The untuned register tile ``(R, Rh, Rd)`` of output positions, one vector register
    each: the longest divisor of ``ow`` within ``registers``, then rows along H and D in
    the registers left."""
    r_w = largest_divisor(ow, registers)
    r_h = largest_divisor(oh, max(1, registers // r_w))
    r_d = largest_divisor(od, max(1, registers // (r_w * r_h)))
    return r_w, r_h, r_d


def schedule_channelwise_conv3d_cpu(sch: s_tir.Schedule, fixed: bool = True,
                                    max_registers: int = 12) -> s_tir.Schedule:
    """Schedule (in place) a channel-wise KGS conv3d PrimFunc whose padded copy is
    channel-blocked (see the module docstring); ``fixed=False`` leaves the tile and unroll
    knobs to sampling (a MetaSchedule design space)."""
    layout = str(func_attr(sch.mod, KGS_COPY_LAYOUT_ATTR))
    block = channel_block(layout)
    if not block:
        raise ValueError(f"not a channel-blocked operator (copy layout {layout})")
    blk = sch.get_sblock(KGS_CONV3D_BLOCK)
    n, m, d, h, w, t = sch.get_loops(blk)
    cb, lane = sch.split(m, [None, block])
    od, oh, ow = (int(sch.get(loop).extent) for loop in (d, h, w))
    fixed_tile = channelwise_tile(ow, oh, od, max_registers)
    r_w = tile(sch, w, max_registers, fixed_tile[0] if fixed else None)
    r_h = tile(sch, h, max_registers, fixed_tile[1] if fixed else None)
    r_d = tile(sch, d, max_registers, fixed_tile[2] if fixed else None)
    wo, wi = sch.split(w, r_w)
    ho, hi = sch.split(h, r_h)
    do, di = sch.split(d, r_d)
    sch.reorder(n, cb, do, ho, wo, t, di, hi, wi, lane)
    acc = sch.cache_write(blk, 0, "local")
    # the accumulators with the channel lanes innermost (one register per position)
    sch.transform_layout(blk, ("write", 0), lambda n, m, d, h, w: (n, d, h, w, m))
    # a partial last block: its write-back drops the zero channels
    acc = place_write_back(sch, acc, wo)
    outer = sch.fuse(n, cb)
    sch.parallel(outer)
    sch.vectorize(lane)
    for loop in (di, hi, wi):
        sch.unroll(loop)
    sch.decompose_reduction(blk, t)
    unroll_knob(sch, outer, fixed)
    # the write-back (and its epilogue): per position one vector of the block's channels,
    # stored lane by lane into the channels' rows (the tile unrolled whole with LLVM's
    # shuffles into row vectors ran 0.87-1.04x as fast); a partial last block (a crop
    # predicate on the lanes, which would scalarize the epilogue: a SiLU 3x slower) vectorizes
    # along its rows instead
    lanes, *positions = sch.get_loops(acc)[-4:]
    if sch.get(acc).name_hint == KGS_CROP_BLOCK:
        sch.vectorize(positions[-1])
        for loop in (lanes, *positions[:-1]):
            sch.unroll(loop)
    else:
        sch.reorder(*positions, lanes)
        sch.vectorize(lanes)
        for loop in positions:
            sch.unroll(loop)
    dp, hp, wp = (int(v) for v in func_attr(sch.mod, KGS_PADDED_ATTR))
    for pad in producers_named(sch, blk, KGS_PAD_BLOCK):
        # the block's copy inside its task: positions in (d, h, w) loops, the lanes a
        # vector (a gather of ``block`` channels per position)
        sch.compute_at(pad, outer, preserve_unit_loops=True)
        f = sch.get_loops(pad)[-1]
        *_, vec = sch.split(f, [dp, hp, wp, block])
        sch.vectorize(vec)
    for values in producers_named(sch, blk, KGS_VALUES_BLOCK):
        sch.compute_at(values, outer, preserve_unit_loops=True)
        sch.vectorize(sch.get_loops(values)[-1])
    return sch
