"""Per-layer algorithm choice from measured times: direct or Winograd, whichever a tuning
database measured faster.

The cost model of :mod:`rt3d_passes.transform.algorithm` estimates; a database tuned with
``rt3d tune --compare-algorithms`` holds, for every layer that could run either way, the
direct operator and both Winograd operators as the ``rt3d`` pipeline would build them (their
fused epilogue included), each with its best measured time. :func:`measured_choices` reads
those times and the pipeline compiles each such layer with the fastest
(``RewriteOptions.measured``); a layer with fewer than two measured candidates keeps the cost
model's choice, and what the user forces (``algorithms``) still wins.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.target import Target

from schedules.contract import (
    KGS_GEOMETRY_ATTR,
    WINOGRAD_CONV3D_ATTR,
    is_rt3d_conv3d,
    is_winograd_conv3d,
)

from ..op.winograd_conv3d import winograd_ineligible
from ..transform import RewriteOptions, rt3d_rewrite
from ..transform.analysis import analyze_function
from ..transform.fold_batch_norm_to_conv3d import FoldBatchNormToConv3D
from ..transform.options import MEASURED_ALGORITHMS
from .tasks import TuningTask, extract_tasks

__all__ = ["candidate_options", "candidate_tasks", "candidate_workloads", "has_candidate_pairs",
           "measured_choices", "with_measured"]

_LABELS = {"direct": "direct", "winograd2": "F(2x2)", "winograd4": "F(4x4)"}


def _eligible_layers(mod: tvm.IRModule, options: RewriteOptions) -> list[str]:
    """Layers the rewrite takes that could run either way and that the user did not force."""
    folded = FoldBatchNormToConv3D()(mod)
    layers = []
    for g_var, func in folded.functions_items():
        if not isinstance(func, relax.Function):
            continue
        for r in analyze_function(func, g_var.name_hint, options):
            if r.rewrite and options.forced_algorithm(r.layer) is None and \
                    winograd_ineligible(r.weight_shape[2:], r.strides, r.dilation,
                                        r.groups) is None:
                layers.append(r.layer)
    return layers


def candidate_options(mod: tvm.IRModule, target: Target,
                      options: RewriteOptions | None = None) -> dict[str, RewriteOptions]:
    """For each algorithm of :data:`MEASURED_ALGORITHMS`, ``options`` with every layer that
    could run either way forced onto it (none on GPU targets or with ``winograd=False``)."""
    opts = RewriteOptions.of(options).for_target(target)
    if not opts.winograd:
        return {}
    layers = _eligible_layers(mod, opts)
    if not layers:
        return {}
    return {a: dataclasses.replace(opts, algorithms=(*opts.algorithms,
                                                     *((layer, a) for layer in layers)))
            for a in MEASURED_ALGORITHMS}


@relax.expr_functor.visitor
class _RT3DCalls(relax.PyExprVisitor):
    """The RT3D conv3d operators a function calls, in binding order."""

    def __init__(self, mod: tvm.IRModule):
        super().__init__()
        self.mod, self.found = mod, []

    def visit_call_(self, call: relax.Call) -> None:
        super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.call_tir":
            func = self.mod[call.args[0]]
            if is_rt3d_conv3d(func):
                self.found.append(func)


def candidate_workloads(mod: tvm.IRModule, target: Target,
                        options: RewriteOptions | None = None, fuse_epilogue: bool = True
                        ) -> dict[str, dict[str, tvm.IRModule]]:
    """``{layer: {algorithm: workload}}`` for every layer that could run either way: the
    PrimFunc the ``rt3d`` pipeline builds for the layer with that algorithm, as the tuning
    database keys it (:func:`rt3d_passes.tuning.extract_tasks`'s ``task.mod``)."""
    user_forced = {k for k, _ in RewriteOptions.of(options).algorithms}
    candidates = candidate_options(mod, target, options)
    if not candidates:
        return {}
    # which layers are rewritten, in binding order, does not depend on the forced algorithm:
    # the weights are analyzed once, not once per candidate
    folded = FoldBatchNormToConv3D()(mod)
    rewritten_layers = {
        g_var.name_hint: [r for r in analyze_function(func, g_var.name_hint, options) if r.rewrite]
        for g_var, func in folded.functions_items() if isinstance(func, relax.Function)}
    out: dict[str, dict[str, tvm.IRModule]] = {}
    for algorithm, opts in candidates.items():
        with target:
            rewritten = rt3d_rewrite(opts, fuse_epilogue)(mod)
        for name, reports in rewritten_layers.items():
            calls = _RT3DCalls(rewritten)
            calls.visit_expr(rewritten[name])
            if len(calls.found) != len(reports):
                continue  # cannot tell which call is which layer: no measured choice here
            for report, prim in zip(reports, calls.found):
                if report.layer not in user_forced and opts.forced_algorithm(report.layer):
                    out.setdefault(report.layer, {})[algorithm] = tvm.IRModule(
                        {"main": prim.with_attr("global_symbol", "main")})
    return out


def candidate_tasks(mod: tvm.IRModule, target: Target, options: RewriteOptions | None = None,
                    known: list[TuningTask] = ()) -> list[TuningTask]:
    """The tuning tasks of every layer's other candidates (direct, F(2x2), F(4x4)) that
    ``known`` (the tasks of the compile itself) does not have; named
    ``<operator>@<algorithm>``."""
    seen = {tvm_ffi.structural_hash(t.mod) for t in known}
    extra = []
    for algorithm, opts in candidate_options(mod, target, options).items():
        for task in extract_tasks(mod, target, opts):
            key = tvm_ffi.structural_hash(task.mod)
            if key not in seen:
                seen.add(key)
                extra.append(dataclasses.replace(task, name=f"{task.name}@{algorithm}"))
    return extra


def measured_choices(mod: tvm.IRModule, target: Target, database,
                     options: RewriteOptions | None = None, fuse_epilogue: bool = True
                     ) -> tuple[tuple[str, str, str], ...]:
    """``(layer, algorithm, reason)`` for every layer whose candidates ``database`` measured
    (at least two of direct, F(2x2), F(4x4)): the fastest, by its best record's mean time."""
    choices = []
    for layer, workloads in candidate_workloads(mod, target, options, fuse_epilogue).items():
        times = {}
        for algorithm, workload in workloads.items():
            if not database.has_workload(workload):
                continue
            records = database.get_top_k(database.commit_workload(workload), 1)
            if records and records[0].run_secs:
                secs = [float(v) for v in records[0].run_secs]
                if all(v < 1e9 for v in secs):  # MetaSchedule stores failures as 1e10 s
                    times[algorithm] = float(np.mean(secs)) * 1e3
        if len(times) < 2:
            continue
        best = min(times, key=times.get)
        shown = ", ".join(f"{_LABELS[a]} {times[a]:.3g} ms" for a in MEASURED_ALGORITHMS
                          if a in times)
        choices.append((layer, best, f"measured fastest ({shown})"))
    return tuple(choices)


def with_measured(mod: tvm.IRModule, target: Target, database,
                  options: RewriteOptions | None = None, fuse_epilogue: bool = True
                  ) -> RewriteOptions:
    """``options`` with :func:`measured_choices` of ``database`` (unchanged without one)."""
    opts = RewriteOptions.of(options)
    if database is None:
        return opts
    measured = measured_choices(mod, target, database, opts, fuse_epilogue)
    return dataclasses.replace(opts, measured=measured) if measured else opts


def has_candidate_pairs(database) -> bool:
    """Whether ``database`` holds two operators of one layer geometry that differ in
    algorithm (direct / a Winograd tile): without such a pair no layer has two measured
    candidates, and the pipeline skips the candidates' rewrites."""
    kinds: dict[tuple, set] = {}
    for rec in database.get_all_tuning_records():
        func = rec.workload.mod["main"]
        if not is_rt3d_conv3d(func) or not func.attrs or KGS_GEOMETRY_ATTR not in func.attrs:
            continue
        kind = int(func.attrs[WINOGRAD_CONV3D_ATTR]) if is_winograd_conv3d(func) else 0
        key = tuple(int(v) for v in func.attrs[KGS_GEOMETRY_ATTR])
        kinds.setdefault(key, set()).add(kind)
    return any(len(v) > 1 for v in kinds.values())
