"""MetaSchedule design spaces of RT3D's schedules, and their registration as custom rules.

Importing this module registers, for every target key RT3D schedules, the global function
``s_tir.meta_schedule.<key>.rt3d.kgs_conv3d`` (and ``...rt3d.winograd_conv3d`` on CPUs)
that MetaSchedule's ``ApplyCustomRule`` (the first rule of every default rule set) calls
for blocks annotated ``schedule_rule="rt3d.kgs_conv3d"``; so a user's own ``tune_relax``
with default spaces tunes RT3D's operators with RT3D's knobs. ``design_space(target)`` is the
same space as a ``ScheduleFn``, which is what ``rt3d tune`` uses (no other rules needed).
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from .adreno_kgs_conv3d import adreno_space, schedule_kgs_conv3d_adreno
from .contract import KGS_SCHEDULE_RULE, WINOGRAD_SCHEDULE_RULE, is_winograd_conv3d
from .cpu_channelwise_conv3d import is_channel_blocked
from .cpu_kgs_conv3d import (
    NEON,
    CPUConfig,
    cpu_config,
    schedule_cpu,
    schedule_kgs_conv3d_cpu,
    w_is_contiguous,
)
from .cpu_winograd_conv3d import schedule_winograd_cpu

__all__ = ["cpu_space", "design_space", "schedule_for", "space_postprocs"]


def schedule_for(target: Target) -> Callable[[s_tir.Schedule, bool], s_tir.Schedule]:
    """The schedule function of ``target``: ``fn(sch, fixed) -> sch``."""
    if "gpu" in target.keys:
        return lambda sch, fixed: schedule_kgs_conv3d_adreno(sch, fixed=fixed)

    def _cpu(sch: s_tir.Schedule, fixed: bool) -> s_tir.Schedule:
        if _is_winograd(sch):
            return schedule_winograd_cpu(sch, fixed, target=target)
        return schedule_cpu(sch, fixed, target=target)

    return _cpu


def _is_winograd(sch: s_tir.Schedule) -> bool:
    """Whether the scheduled function is the Winograd operator (its own rule and space)."""
    return any(is_winograd_conv3d(f) for f in sch.mod.functions.values())


def space_postprocs(target: Target) -> list:
    """Postprocessors every candidate goes through (GPU ones verify the launch limits)."""
    if "gpu" in target.keys:
        return [
            ms.postproc.DisallowDynamicLoop(),
            ms.postproc.RewriteCooperativeFetch(),
            ms.postproc.RewriteUnboundBlock(),
            ms.postproc.RewriteParallelVectorizeUnroll(),
            ms.postproc.RewriteReductionBlock(),
            ms.postproc.VerifyGPUCode(),
        ]
    return [ms.postproc.RewriteParallelVectorizeUnroll(), ms.postproc.RewriteReductionBlock()]


def design_space(target: Target) -> ms.space_generator.ScheduleFn:
    """RT3D's tunable schedule of the KGS conv3d as a MetaSchedule space for ``target``.

    Tile-size knobs are mutated by ``MutateTileSize``, the unroll step by ``MutateUnroll``.
    """
    def _space(sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        with target:  # the rules read register files / work-group limits off the target
            if "gpu" in target.keys:
                return adreno_space(sch, None)
            return cpu_space(target)(sch, None)

    return ms.space_generator.ScheduleFn(
        _space,
        sch_rules=[],
        postprocs=space_postprocs(target),
        mutator_probs={ms.mutator.MutateTileSize(): 0.8, ms.mutator.MutateUnroll(): 0.2},
    )


def cpu_space(target: Target | None = None, config: CPUConfig | None = None):
    """Custom-rule form of the CPU schedule: loop order and vector axis are structural choices,
    one design space each (along W only with unit stride); their knobs are sampled. The
    register budget is ``config``'s, else ``target``'s, else the current target's."""

    def _apply(sch: s_tir.Schedule, _block) -> list[s_tir.Schedule]:
        cfg = config or cpu_config(target)
        if _is_winograd(sch):
            return [schedule_winograd_cpu(sch.copy(), fixed=False, config=cfg)]
        if is_channel_blocked(sch):
            return [schedule_kgs_conv3d_cpu(sch.copy(), False,
                                            max_registers=cfg.max_registers)]
        axes = ("w", "m") if w_is_contiguous(sch) else ("m",)
        return [schedule_kgs_conv3d_cpu(sch.copy(), False, lanes=cfg.lanes,
                                        max_registers=cfg.max_registers,
                                        rows_outer=order, vector_axis=axis)
                for order in (True, False) for axis in axes]

    return _apply


def _register() -> None:
    # "cpu": sized for the current target when MetaSchedule generates the space
    for key, rule in (("cpu", cpu_space()), ("arm_cpu", cpu_space(config=NEON)),
                      ("adreno", adreno_space), ("gpu", adreno_space)):
        tvm.register_global_func(f"s_tir.meta_schedule.{key}.{KGS_SCHEDULE_RULE}", rule,
                                 override=True)
    # the Winograd operator's rule (CPU only: it has no GPU schedule)
    for key, rule in (("cpu", cpu_space()), ("arm_cpu", cpu_space(config=NEON))):
        tvm.register_global_func(f"s_tir.meta_schedule.{key}.{WINOGRAD_SCHEDULE_RULE}", rule,
                                 override=True)


_register()
