"""The ``rt3d`` Relax pipeline: RT3D's passes, then TVM's default lowering for the target.

Registered with ``relax.register_pipeline`` (like MLC-LLM's ``mlc_llm`` pipeline)::

    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))

or, for a user who already has a pipeline, put the rewrite in front of it::

    seq = tvm.transform.Sequential([rt3d_passes.RewriteKGSConv3D(), user_pipeline])
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic
from tvm.s_tir import dlight as dl
from tvm.target import Target

from .fold_batch_norm_to_conv3d import FoldBatchNormToConv3D
from .fuse_kgs_conv3d_epilogue import FuseKGSConv3DEpilogue
from .rewrite_kgs_conv3d import RewriteKGSConv3D

__all__ = ["rewrite_pass", "rt3d_pipeline"]


def rewrite_pass(
    min_mac_reduction: float = 1.2,
    group: Sequence[int] | None = None,
    include_dense: bool = True,
    fuse_epilogue: bool = True,
) -> tvm.transform.Pass:
    """The pipeline's graph rewrite with its defaults (tuning extracts tasks with the same):
    batch norm folded into conv3d weights, pruned conv3d to the KGS operator, and the
    bias / residual add / ReLU that follow fused into it."""
    passes = [
        FoldBatchNormToConv3D(),
        RewriteKGSConv3D(min_mac_reduction=min_mac_reduction, group=group,
                         include_dense=include_dense),
    ]
    if fuse_epilogue:
        passes.append(FuseKGSConv3DEpilogue())
    return tvm.transform.Sequential(passes, name="RT3DRewrite")


def _apply_database(database) -> tvm.transform.Pass:
    """MetaScheduleApplyDatabase with ``database`` as the current database."""
    if database is None:
        return tvm.transform.Sequential([])

    @tvm.transform.module_pass(opt_level=0, name="RT3DApplyTuningDatabase")
    def _apply(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with database:
            return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)

    return _apply


def _passes(target: Target, rewrite: tvm.transform.Pass, database=None) -> list:
    import schedules  # the rules need rt3d_passes; import late to keep the packages acyclic

    rules = schedules.default_rules(target)
    if "gpu" in target.keys:
        return [
            # Phase 1: RT3D graph rewrite
            rewrite,
            # Phase 2: RT3D's schedules: tuned ones from the database, then the untuned
            # defaults (both mark tirx.is_scheduled, so later passes leave them alone)
            _apply_database(database),
            dl.ApplyDefaultSchedule(*rules) if rules else tvm.transform.Sequential([]),
            # Phase 3: the target's default pipeline (legalize, dlight, lowering)
            relax.get_default_pipeline(target),
        ]
    return [
        # Phase 1: RT3D graph rewrite (before LegalizeOps: it matches R.nn.conv3d), and
        # x @ W.T kept as one matmul: otherwise FoldConstant stores the classifier's weight
        # transposed and its GEMV reduces along a strided axis (C3D's fc6: 40x slower)
        rewrite,
        relax.transform.FuseTransposeMatmul(),
        # Phase 2: TVM's CPU legalization and fusion (our PrimFuncs are opaque to FuseOps)
        *cpu_generic.library_dispatch_passes(target),
        *cpu_generic.legalize_passes(target),
        # Phase 3: schedules: tuned ones from the database, then RT3D's default rules and
        # dlight's generic CPU rules for what is left
        _apply_database(database),
        dl.ApplyDefaultSchedule(*rules),
        # Phase 4: TVM's lowering to the VM
        *cpu_generic.dataflow_lower_passes(target),
        *cpu_generic.finalize_passes(target),
    ]


@relax.register_pipeline("rt3d")
def rt3d_pipeline(
    target: Target | dict | str | None = None,
    min_mac_reduction: float = 1.2,
    group: Sequence[int] | None = None,
    include_dense: bool = True,
    database=None,
    fuse_epilogue: bool = True,
) -> tvm.transform.Pass:
    """The RT3D compilation pipeline.

    Parameters
    ----------
    target : Target, optional
        The target; ``None`` takes the current target when the pipeline runs (``tvm.compile``
        enters it).
    min_mac_reduction, group :
        Passed to :class:`~rt3d_passes.RewriteKGSConv3D`.
    include_dense : bool
        Compile unpruned conv3d layers with RT3D's kernel too (default), instead of TVM's
        unscheduled default conv3d.
    database : meta_schedule.Database or path, optional
        Tuning records (``rt3d tune``); a path is opened with
        :func:`rt3d_passes.tuning.open_database`, which refuses a database of another target.
    fuse_epilogue : bool
        Fuse bias, residual add and ReLU into the KGS operator
        (:class:`~rt3d_passes.FuseKGSConv3DEpilogue`).
    """
    rewrite = rewrite_pass(min_mac_reduction, group, include_dense, fuse_epilogue)
    if target is not None:
        target = target if isinstance(target, Target) else Target(target)
        if isinstance(database, str | os.PathLike):
            from .tuning import open_database

            database = open_database(database, target)
        return _with_target(target, tvm.transform.Sequential(
            _passes(target, rewrite, database), name="RT3DPipeline"))

    @tvm.transform.module_pass(opt_level=0, name="RT3DPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        current = Target.current(allow_none=False)
        db = database
        if isinstance(db, str | os.PathLike):
            from .tuning import open_database

            db = open_database(db, current)
        return tvm.transform.Sequential(_passes(current, rewrite, db))(mod)

    return _pipeline


def _with_target(target: Target, seq: tvm.transform.Pass) -> tvm.transform.Pass:
    """Run ``seq`` inside ``with target`` (dlight and legalization read the current target)."""

    @tvm.transform.module_pass(opt_level=0, name="RT3DPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with target:
            return seq(mod)

    return _pipeline
