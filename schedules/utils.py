"""Helpers shared by the schedule rules."""

from __future__ import annotations

from tvm import s_tir

from .contract import KGS_EPILOGUE_BLOCK

__all__ = ["inline_epilogue", "largest_divisor", "producers_named", "tile"]


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


def inline_epilogue(sch: s_tir.Schedule, block) -> None:
    """Inline the fused epilogue (bias, residual, ReLU) into ``block``, its producer, so the
    output is computed where ``block`` writes it; nothing happens without an epilogue."""
    for consumer in sch.get_consumers(block):
        if sch.get(consumer).name_hint == KGS_EPILOGUE_BLOCK:
            sch.reverse_compute_inline(consumer)
