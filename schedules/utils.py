"""Helpers shared by the schedule rules."""

from __future__ import annotations

from tvm import s_tir

from .contract import KGS_CROP_BLOCK, KGS_EPILOGUE_BLOCK

__all__ = [
    "consumers_named",
    "inline_epilogue",
    "largest_divisor",
    "place_write_back",
    "producers_named",
    "schedule_flat_pad",
    "tile",
    "unroll_knob",
]


def largest_divisor(n: int, cap: int) -> int:
    """Largest divisor of ``n`` that is at most ``cap``."""
    return max(d for d in range(1, min(n, cap) + 1) if n % d == 0)


def tile(sch: s_tir.Schedule, loop, max_inner: int, inner: int | None):
    """A two-level tile knob: ``sample_perfect_tile`` with ``inner`` fixed when given.

    A fixed decision is still a sampling instruction in the trace, so MetaSchedule can
    replay and mutate the untuned default.
    """
    extent = int(sch.get(loop).extent)
    decision = None if inner is None else [extent // inner, inner]
    return sch.sample_perfect_tile(loop, n=2, max_innermost_factor=max_inner, decision=decision)


def producers_named(sch: s_tir.Schedule, block, name: str) -> list:
    """Producer blocks of ``block`` whose name is ``name``."""
    return [b for b in sch.get_producers(block) if sch.get(b).name_hint == name]


def consumers_named(sch: s_tir.Schedule, block, name: str) -> list:
    """Consumer blocks of ``block`` whose name is ``name``."""
    return [b for b in sch.get_consumers(block) if sch.get(b).name_hint == name]


def place_write_back(sch: s_tir.Schedule, acc, loop):
    """Compute the accumulator tile's write-back ``acc`` (a ``cache_write`` block) at
    ``loop``, with the operator's crop of a partial last group or block (its predicate on
    the last group; a second pass over a whole-group copy of the output cost 2.6x on X3D-S's
    54-channel pointwise conv) and its fused epilogue inlined into it. Returns the block that
    now writes the output."""
    sch.reverse_compute_at(acc, loop, preserve_unit_loops=True)
    for crop in consumers_named(sch, acc, KGS_CROP_BLOCK):
        sch.reverse_compute_at(crop, loop, preserve_unit_loops=True)
        sch.compute_inline(acc)
        acc = crop
    inline_epilogue(sch, acc)
    return acc


def inline_epilogue(sch: s_tir.Schedule, block) -> None:
    """Inline the fused epilogue (bias, residual, ReLU) into ``block``, its producer, so the
    output is computed where ``block`` writes it; nothing happens without an epilogue."""
    for consumer in consumers_named(sch, block, KGS_EPILOGUE_BLOCK):
        sch.reverse_compute_inline(consumer)


def unroll_knob(sch: s_tir.Schedule, loop, fixed: bool) -> None:
    """The auto-unroll step of ``loop`` (a register tile's outer loop) as a knob: fixed at 64
    for the untuned default, or sampled for MetaSchedule (``MutateUnroll`` only mutates values
    annotated ``meta_schedule.unroll_explicit``; the postproc
    ``RewriteParallelVectorizeUnroll`` turns them into the pragmas)."""
    step = sch.sample_categorical([0, 16, 64, 512], probs=[0.25] * 4,
                                  decision=2 if fixed else None)
    if fixed:
        sch.annotate(loop, "pragma_auto_unroll_max_step", step)
        sch.annotate(loop, "pragma_unroll_explicit", 1)
    else:
        sch.annotate(loop, "meta_schedule.unroll_explicit", step)


def schedule_flat_pad(sch: s_tir.Schedule, block, padded, w_phases: int = 1,
                      parallel: bool = True, copy_layout: str = "CDHW") -> None:
    """Parallel copy into a flat zero-padded input (``op.kgs_conv3d.flat_padded_input``):
    the flat axis split into ``(c, d, h, w)`` so its index arithmetic simplifies to plain
    loops, and the parallel loop over batch x channels only. Fusing ``d`` into it as well
    left a division and a modulo of the fused index per element (TVM cannot split them
    back): the pad of C3D's conv2 input took 3.74 ms instead of 1.37 (2.7x a memcpy). A single
    channel keeps ``d`` in the parallel loop, so both threads get work.

    A per-channel copy (``[N, C, Dp*Hp*Wp]``) splits its last axis into ``(d, h, w)``;
    ``parallel=False`` leaves the outer loops alone (a copy computed inside the task that
    reads it).

    A ``"DHCW"`` copy (``[N, (Dp*Hp + 1) * C * Wp]``) splits its flat axis into (plane and
    row, channel, position), the parallel loop over batch x rows."""
    dp, hp, wp = (int(v) for v in padded)
    loops = sch.get_loops(block)
    if copy_layout == "DHCW":
        n, f = loops[-2:]
        chans = int(sch.get(f).extent) // ((dp * hp + 1) * wp)
        rows, _, w = sch.split(f, [None, chans, wp])
    elif len(sch.get(block).writes[0].source.shape) == 3:
        n, c, f = loops[-3:]
        d, _, w = sch.split(f, [dp, hp, wp])
    else:
        n, f = loops[-2:]
        c, d, _, w = sch.split(f, [None, dp, hp, wp])
    if w_phases > 1:
        # rows split into W phases: (position, phase) loops, the phase unrolled innermost:
        # reads run along the input row, writes go to w_phases streams (phase outside
        # position: a strided read per element, 2.6 ms instead of 0.9 on X3D-S's stride-2
        # depthwise input, 54 x 15x82x82)
        phase, position = sch.split(w, [w_phases, wp // w_phases])
        sch.reorder(position, phase)
        sch.unroll(phase)
    if not parallel:
        return
    if copy_layout == "DHCW":
        sch.parallel(sch.fuse(n, rows))
        return
    channels = int(sch.get(n).extent) * int(sch.get(c).extent)
    sch.parallel(sch.fuse(n, c) if channels > 1 else sch.fuse(n, c, d))
