"""The ``rt3d`` Relax pipeline: RT3D's graph rewrite and schedules, then TVM's lowering.

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

import schedules

from .transform import RewriteOptions, VectorizeSigmoid, rt3d_rewrite
from .tuning.database import apply_database, open_database
from .tuning.select import has_candidate_pairs, with_measured

__all__ = ["rt3d_pipeline"]


@relax.register_pipeline("rt3d")
def rt3d_pipeline(
    target: Target | dict | str | None = None,
    options: RewriteOptions | None = None,
    *,
    min_mac_reduction: float | None = None,
    group: Sequence[int] | None = None,
    include_dense: bool | None = None,
    winograd: bool | None = None,
    algorithms=None,
    database=None,
    fuse_epilogue: bool = True,
    vectorize_sigmoid: bool = True,
) -> tvm.transform.Pass:
    """The RT3D compilation pipeline.

    Parameters
    ----------
    target : Target, optional
        The target; ``None`` takes the current target when the pipeline runs (``tvm.compile``
        enters it).
    options : RewriteOptions, optional
        Which conv3d layers become RT3D operators (default: its defaults, which compile
        unpruned layers with RT3D's dense kernel too).
    min_mac_reduction, group, include_dense, winograd, algorithms :
        Replace the field of the same name of ``options`` when given (``winograd=False``:
        no layer runs as Winograd; ``algorithms``: force a layer's algorithm by name).
    database : meta_schedule.Database or path, optional
        Tuning records (``rt3d tune``); a path is opened with
        :func:`rt3d_passes.tuning.open_database`, which refuses a database of another target.
        Where it measured a layer's direct and Winograd operators (``rt3d tune
        --compare-algorithms``), the layer gets the faster one
        (:func:`rt3d_passes.tuning.measured_choices`).
    fuse_epilogue : bool
        Fuse bias, residual add and ReLU into the KGS operator
        (:class:`~rt3d_passes.FuseKGSConv3DEpilogue`).
    vectorize_sigmoid : bool
        On CPUs, compute sigmoid and SiLU (Swish) with a polynomial ``exp`` LLVM vectorizes,
        as accurate as PyTorch's (:class:`~rt3d_passes.VectorizeSigmoid`); ``False`` keeps
        TVM's C library ``expf``, one call per element.
    """
    opts = RewriteOptions.of(options, min_mac_reduction=min_mac_reduction, group=group,
                             include_dense=include_dense, winograd=winograd,
                             algorithms=algorithms)
    fixed_target = None if target is None else (
        target if isinstance(target, Target) else Target(target))
    # resolved once, here, when the target is known: a wrong database fails before compiling
    fixed_db = None if fixed_target is None else _database(database, fixed_target)

    @tvm.transform.module_pass(opt_level=0, name="RT3DPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        tgt = fixed_target or Target.current(allow_none=False)
        db = fixed_db if fixed_target is not None else _database(database, tgt)
        rules = schedules.default_rules(tgt)
        if "gpu" in tgt.keys:
            phases = [
                # Phase 1: RT3D graph rewrite (direct kernel only: Winograd has no GPU schedule)
                rt3d_rewrite(opts.for_target(tgt), fuse_epilogue),
                # Phase 2: RT3D's schedules: tuned ones from the database, then the untuned
                # defaults (both mark tirx.is_scheduled, so later passes leave them alone)
                apply_database(db),
                dl.ApplyDefaultSchedule(*rules),
                # Phase 3: the target's default pipeline (legalize, dlight, lowering)
                relax.get_default_pipeline(tgt),
            ]
        else:
            # a database that measured a layer's direct and Winograd operators decides its
            # algorithm instead of the cost model
            run_opts = with_measured(mod, tgt, db, opts, fuse_epilogue) if db is not None \
                and has_candidate_pairs(db) else opts
            phases = [
                # Phase 1: RT3D graph rewrite (before LegalizeOps: it matches R.nn.conv3d),
                # and x @ W.T kept as one matmul: otherwise FoldConstant stores the
                # classifier's weight transposed and its GEMV reduces along a strided axis
                # (C3D's fc6: 40x slower); sigmoid / SiLU with an exp LLVM vectorizes
                rt3d_rewrite(run_opts, fuse_epilogue),
                relax.transform.FuseTransposeMatmul(),
                *([VectorizeSigmoid()] if vectorize_sigmoid else []),
                # Phase 2: TVM's CPU legalization and fusion (our PrimFuncs are opaque to
                # FuseOps)
                *cpu_generic.library_dispatch_passes(tgt),
                *cpu_generic.legalize_passes(tgt),
                # Phase 3: schedules: tuned ones from the database, then RT3D's default rules
                # and dlight's generic CPU rules for what is left
                apply_database(db),
                dl.ApplyDefaultSchedule(*rules),
                # Phase 4: TVM's lowering to the VM
                *cpu_generic.dataflow_lower_passes(tgt),
                *cpu_generic.finalize_passes(tgt),
            ]
        with tgt:  # dlight and legalization read the current target
            return tvm.transform.Sequential(phases, name="RT3DPipeline")(mod)

    return _pipeline


def _database(database, target: Target):
    """``database`` itself, or the database of a path for ``target``."""
    if isinstance(database, str | os.PathLike):
        return open_database(database, target)
    return database
