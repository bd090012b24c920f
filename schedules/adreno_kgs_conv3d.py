"""Adreno (OpenCL) schedule of the KGS sparse conv3d.

Two kernels: the zero padding, then the convolution (the crop of a partial last group is
fused into the convolution's write-back).

* **work-item**: a register tile of all ``g_m`` output channels of one group, as ``float4``
  vectors (``g_m = 4``: one ``float4``; ``g_m = 8``: two), times ``R`` consecutive output
  positions along W. Per kept column it loads one offset, one weight vector and ``R`` input
  scalars and issues ``R * g_m / 4`` vector FMAs into accumulators held in registers.
* **work-group**: one output group ``g`` of one batch element times ``threads`` spatial tiles
  (``d``, ``h``, W-tiles fused). All its work-items read the same weight slab
  ``values[g, :, :]`` and offsets ``offsets[g, :]``, so the slab is staged in local memory
  chunk by chunk (``T`` can be thousands of columns: ``chunk * (g_m + 1) * 4`` bytes must fit
  ``max_shared_memory_per_block``), fetched cooperatively with ``vload4``.
* **padding**: its own element-wise kernel writing the flat padded input, so the convolution's
  gathers are branch-free. Inlining it (``inline_pad=True``) also works, but puts three
  divisions and six compares in front of every gather.

Knobs (``sample_perfect_tile`` / ``sample_categorical``; fixed decisions give the default):

* ``R`` -- output positions along W per work-item (a divisor of OW, at most 4);
* ``threads`` -- work-items per work-group (a divisor of the spatial tiles, at most
  ``max_threads_per_block``);
* ``chunk`` -- columns per local-memory stage (only when the weights are staged);
* the auto-unroll step of the kernel.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.gpu.base import GPUScheduleRule
from tvm.target import Target

from .contract import (
    KGS_CONV3D_ATTR,
    KGS_CONV3D_BLOCK,
    KGS_CROP_BLOCK,
    KGS_PAD_BLOCK,
    func_attr,
    is_kgs_conv3d,
)
from .utils import inline_epilogue, largest_divisor, producers_named, tile

__all__ = ["KGSConv3DAdreno", "adreno_space", "schedule_kgs_conv3d_adreno"]

#: ``qcom/adreno-opencl`` limits, used when no target is given.
ADRENO_MAX_THREADS = 256
ADRENO_MAX_SHARED = 16384
_CHUNK_CHOICES = (32, 64, 128, 256, 512, 1024)
_UNROLL_CHOICES = (0, 16, 64, 256)


def _categorical(sch: s_tir.Schedule, choices: list[int], fixed_value: int | None):
    """A ``sample_categorical`` knob; ``fixed_value`` (one of ``choices``) fixes the decision."""
    decision = None if fixed_value is None else choices.index(fixed_value)
    return sch.sample_categorical(choices, probs=[1.0 / len(choices)] * len(choices),
                                  decision=decision)


def _vector_width(n: int) -> int:
    """Widest OpenCL vector (4, 2 or 1 lanes) that tiles ``n`` elements."""
    return next(v for v in (4, 2, 1) if n % v == 0)


def _chunk_choices(t_len: int, gm: int, max_shared: int) -> list[int]:
    """Local-memory stage sizes: the whole ``T`` when it fits, else chunks that fit.

    A chunk that does not divide ``T`` costs a bounds check per column; the largest divisor
    that fits is offered too, so the tuner can trade that check against fewer barriers.
    """
    cap = max_shared // (4 * (gm + 1))  # fp32 weights and int32 offsets
    if t_len <= cap:
        return [t_len]
    choices = {c for c in _CHUNK_CHOICES if c <= cap}
    choices.add(largest_divisor(t_len, cap))
    return sorted(choices)


def _default_chunk(choices: list[int], t_len: int) -> int:
    """Untuned chunk: a divisor of T (no bounds check) unless it is much smaller than the
    largest choice, then the largest choice (fewer barriers)."""
    divisors = [c for c in choices if t_len % c == 0]
    best = max(choices)
    return max(divisors) if divisors and 4 * max(divisors) >= best else best


def _default_threads(spatial: int, max_threads: int) -> int:
    """Untuned work-group size: a divisor of the spatial tiles near 64 work-items (an Adreno
    half-wave); larger when the tiles have no divisor of a useful size below 64."""
    threads = largest_divisor(spatial, 64)
    return threads if threads >= 16 else largest_divisor(spatial, max_threads)


def _cooperative_fetch(sch: s_tir.Schedule, block, threads) -> None:
    """All work-items copy a slab into local memory with vector loads."""
    loops = sch.get_loops(block)
    extent = 1
    for loop in loops[-2:]:
        extent *= int(sch.get(loop).extent)
    fused = sch.fuse(*loops[-2:]) if len(loops) >= 2 else loops[-1]
    vec = _vector_width(extent)
    _, tx, vi = sch.split(fused, [None, threads, vec])
    sch.bind(tx, "threadIdx.x")
    if vec > 1:
        sch.vectorize(vi)


def _schedule_elementwise(sch: s_tir.Schedule, block, max_threads: int) -> None:
    """One work-item per element, full work-groups (the padding kernel)."""
    fused = sch.fuse(*sch.get_loops(block))
    bx, tx = sch.split(fused, [None, max_threads])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")


def schedule_kgs_conv3d_adreno(
    sch: s_tir.Schedule,
    fixed: bool = True,
    stage_weights: bool = True,
    inline_pad: bool = False,
    max_threads: int = ADRENO_MAX_THREADS,
    max_shared: int = ADRENO_MAX_SHARED,
    max_w_tile: int = 4,
) -> s_tir.Schedule:
    """Schedule one KGS conv3d PrimFunc (in place) for an Adreno GPU (OpenCL).

    Parameters
    ----------
    sch, fixed :
        As in :func:`schedules.cpu_kgs_conv3d.schedule_kgs_conv3d_cpu`.
    stage_weights : bool
        Stage each work-group's weight and offset slab in local memory.
    inline_pad : bool
        Inline the zero padding into the gathers instead of running it as its own kernel.
    max_threads, max_shared : int
        The target's ``max_threads_per_block`` and ``max_shared_memory_per_block`` (bytes).
    max_w_tile : int
        Largest register tile along W.

    Returns
    -------
    sch : s_tir.Schedule
    """
    blk = sch.get_sblock(KGS_CONV3D_BLOCK)
    gm = int(func_attr(sch.mod, KGS_CONV3D_ATTR))
    pads = producers_named(sch, blk, KGS_PAD_BLOCK)
    if inline_pad:
        for pad in pads:
            sch.compute_inline(pad)
        pads = []
    n, m, d, h, w, t = sch.get_loops(blk)
    t_len = int(sch.get(t).extent)
    g, mi = sch.split(m, [None, gm])
    ow = int(sch.get(w).extent)
    r_w = tile(sch, w, max_w_tile, largest_divisor(ow, max_w_tile) if fixed else None)
    wo, wi = sch.split(w, r_w)
    spatial = sch.fuse(d, h, wo)
    n_spatial = int(sch.get(spatial).extent)
    # a perfect split: the write-back then needs no bounds predicate, which matters because
    # reverse_compute_inline (of the crop, below) replaces the write-back's predicate
    threads = tile(sch, spatial, max_threads,
                   _default_threads(n_spatial, max_threads) if fixed else None)
    bx, tx = sch.split(spatial, threads)
    by = sch.fuse(n, g)
    if stage_weights:
        chunks = _chunk_choices(t_len, gm, max_shared)
        chunk = _categorical(sch, chunks, _default_chunk(chunks, t_len) if fixed else None)
        to, ti = sch.split(t, [None, chunk])
    else:
        to, ti = t, None
    # the vector part of the channel tile is innermost: float4 FMAs on the accumulators
    vec = _vector_width(gm)
    mo, mv = sch.split(mi, [None, vec])
    inner = [ti] if ti is not None else []
    sch.reorder(by, bx, tx, to, *inner, wi, mo, mv)
    sch.bind(by, "blockIdx.y")
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    acc = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(acc, tx, preserve_unit_loops=True)
    for crop in [b for b in sch.get_consumers(acc) if sch.get(b).name_hint == KGS_CROP_BLOCK]:
        # the write-back stores straight into the cropped output (a predicate on the edge
        # group's channels): no third kernel, no full-group intermediate
        sch.reverse_compute_inline(crop)
    # accumulators as [w][m]: the channel vector is contiguous, so it stays a float4 register
    sch.transform_layout(acc, ("read", 0), lambda n_, m_, d_, h_, w_: (n_, d_, h_, w_, m_))
    inline_epilogue(sch, acc)  # bias / residual / ReLU applied by the write-back
    if stage_weights:
        for name in ("values", "offsets"):
            cached = sch.cache_read(blk, _read_index(sch, blk, name), "shared")
            sch.compute_at(cached, to, preserve_unit_loops=True)
            _cooperative_fetch(sch, cached, threads[1])
    sch.vectorize(mv)  # before decompose_reduction (it needs a complete block)
    sch.unroll(mo)
    sch.unroll(wi)
    sch.decompose_reduction(blk, to)
    step = _categorical(sch, list(_UNROLL_CHOICES), 64 if fixed else None)
    sch.annotate(by, "pragma_auto_unroll_max_step", step)
    sch.annotate(by, "pragma_unroll_explicit", 1)
    for pad in pads:
        _schedule_elementwise(sch, pad, max_threads)
    return sch


def _read_index(sch: s_tir.Schedule, block, role: str) -> int:
    """Index of the ``values`` (3-D float) or ``offsets`` (int32) read region of ``block``.

    Found by shape and dtype: Relax's ``call_te`` renames the operator's placeholders.
    """
    for i, region in enumerate(sch.get(block).reads):
        buf = region.source
        if role == "offsets" and str(buf.dtype) == "int32":
            return i
        if role == "values" and str(buf.dtype) != "int32" and len(buf.shape) == 3:
            return i
    raise ValueError(f"block {sch.get(block).name_hint} has no {role} read")


def _target_limits(target: Target | None) -> tuple[int, int]:
    """``(max_threads_per_block, max_shared_memory_per_block)``; Adreno's tag without one."""
    if target is None:
        return ADRENO_MAX_THREADS, ADRENO_MAX_SHARED
    attrs = target.attrs
    return (int(attrs.get("max_threads_per_block", ADRENO_MAX_THREADS)),
            int(attrs.get("max_shared_memory_per_block", ADRENO_MAX_SHARED)))


def adreno_space(sch: s_tir.Schedule, block) -> list[s_tir.Schedule]:
    """MetaSchedule custom rule (``s_tir.meta_schedule.adreno.rt3d.kgs_conv3d``).

    Two structural variants, weights staged in local memory or read through the cache; the
    knobs of each are sampled.
    """
    del block  # the rule finds the operator's blocks by name
    max_threads, max_shared = _target_limits(Target.current(allow_none=True))
    return [
        schedule_kgs_conv3d_adreno(sch.copy(), fixed=False, stage_weights=stage,
                                   max_threads=max_threads, max_shared=max_shared)
        for stage in (True, False)
    ]


class KGSConv3DAdreno(GPUScheduleRule):
    """dlight rule: the default (untuned) OpenCL schedule of RT3D's sparse conv3d.

    Applies on targets whose keys include ``gpu`` (``qcom/adreno-opencl``: adreno, opencl,
    gpu); returns None for any other PrimFunc or target.
    """

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not self.is_target_available(target) or not is_kgs_conv3d(func):
            return None
        max_threads, max_shared = _target_limits(target)
        sch = s_tir.Schedule(func)
        return schedule_kgs_conv3d_adreno(sch, fixed=not tunable, max_threads=max_threads,
                                          max_shared=max_shared)
