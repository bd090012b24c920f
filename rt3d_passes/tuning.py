"""Tuning RT3D's operators with MetaSchedule, locally or over an RPC tracker.

``tune_model`` extracts the KGS conv3d tasks of a model as the ``rt3d`` pipeline produces them,
tunes them one by one with RT3D's design space (:func:`schedules.meta_schedule.design_space`)
into a JSON database kept per target, and resumes from it; ``open_database`` hands that
database to the pipeline (``relax.get_pipeline("rt3d", target=..., database=...)``), which
applies it with ``MetaScheduleApplyDatabase``.

Three workarounds for MetaSchedule in TVM 0.27 live here, each explained where it is used:
real index buffers during measurement, a builder that does not import the tensor intrinsics
per worker, and a ``TuneContext`` that does not import them in the main process either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tvm
from tvm import relax
from tvm.target import Target

from .kgs_conv3d import KGS_CONV3D_ATTR
from .threads import set_num_threads

__all__ = [
    "TuningTask",
    "alloc_arguments",
    "extract_tasks",
    "fast_build",
    "make_builder",
    "make_runner",
    "open_database",
    "tune_model",
]

_TARGET_FILE = "rt3d_target.json"


@dataclasses.dataclass
class TuningTask:
    """One KGS conv3d PrimFunc to tune, with the real column offsets of (one of) its layers."""

    name: str
    mod: tvm.IRModule
    weight: int
    """How many layers of the model call this PrimFunc."""
    offsets: np.ndarray
    macs: int
    """Computed MACs of one call (including group padding)."""


# ---------------------------------------------------------------- task extraction
def extract_tasks(mod: tvm.IRModule, target: Target, **rewrite_options) -> list[TuningTask]:
    """The KGS conv3d tasks of ``mod`` after :class:`~rt3d_passes.RewriteKGSConv3D`.

    The PrimFuncs are exactly those the ``rt3d`` pipeline schedules (the database is keyed by
    their structure, attributes included), so a database tuned here applies there.
    """
    from .pipeline import rewrite_pass

    with target:
        rewritten = rewrite_pass(**rewrite_options)(mod)
    calls: dict[str, list[relax.Call]] = {}

    def _visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
                expr.op.name == "relax.call_tir":
            calls.setdefault(expr.args[0].name_hint, []).append(expr)

    for func in rewritten.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, _visit)
    tasks = []
    for g_var, func in rewritten.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or KGS_CONV3D_ATTR not in (func.attrs or {}):
            continue
        uses = calls.get(g_var.name_hint, [])
        if not uses:
            continue
        values, offsets = (uses[0].args[1].fields[i].value.numpy() for i in (1, 2))
        out_shape = [int(v) for v in uses[0].ty.shape.values]
        macs = int(np.prod(out_shape)) // out_shape[1] * int(np.prod(values.shape))
        tasks.append(TuningTask(
            name=g_var.name_hint,
            mod=tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
            weight=len(uses), offsets=offsets, macs=macs))
    return tasks


# ---------------------------------------------------------------- MetaSchedule workarounds
def fast_build(mod: tvm.IRModule, target: Target, _params) -> tvm.runtime.Module:
    """MetaSchedule's default build without ``import tvm.s_tir.tensor_intrin``.

    The default imports hundreds of TVMScript intrinsics (about a minute on 2 cores) in every
    builder worker, and the worker pool is re-created for every batch: builds time out.
    RT3D's spaces never tensorize, so the intrinsics are not needed.
    """
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target)


def make_builder(export: Callable | None = None):
    """MetaSchedule builder with :func:`fast_build` (``export``: ``f_export``, e.g. the aarch64
    cross-compiler of :func:`rt3d_passes.rpc.cross_export_aarch64`)."""
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(max_workers=min(2, os.cpu_count() or 1), f_build=fast_build,
                                   f_export=export, timeout_sec=120)


def make_runner(offsets: np.ndarray, rpc: dict | None = None):
    """MetaSchedule runner for one KGS task: local, or on the RPC devices of ``rpc``
    (``{"tracker": "host:port", "key": ..., "timeout": s}``), with the task's real offsets."""
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=0,
                                       enable_cpu_cache_flush=False)
    alloc_local, alloc_rpc = alloc_arguments(offsets)
    if not rpc:
        return ms.runner.LocalRunner(evaluator_config=config, f_alloc_argument=alloc_local)
    from .rpc import create_runner_session

    host, port = rpc["tracker"].rsplit(":", 1)
    return ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(tracker_host=host, tracker_port=int(port),
                                       tracker_key=rpc["key"],
                                       session_timeout_sec=int(rpc.get("timeout", 120))),
        evaluator_config=config,
        # the default session request has no deadline: with every server of the key gone,
        # tuning would wait forever instead of failing those trials
        f_create_session=create_runner_session,
        f_alloc_argument=alloc_rpc, max_workers=1)


def alloc_arguments(offsets: np.ndarray):
    """Argument allocators ``(local, rpc)`` that upload the real column offsets.

    MetaSchedule fills int32 inputs with random values; the gather then reads far out of
    bounds and kills the runner (``Subprocess terminated``). Offsets are the only int32
    argument of the operator; float inputs stay random.
    """

    def _make(device, args_info, alloc_repeat):
        out = []
        for _ in range(alloc_repeat):
            args = []
            for _kind, dtype, shape in args_info:
                shape = tuple(int(s) for s in shape)
                if "int" in str(dtype):
                    if shape != offsets.shape:
                        raise ValueError(f"int32 argument of shape {shape} is not the "
                                         f"offsets {offsets.shape}")
                    data = offsets
                else:
                    data = np.random.uniform(-1, 1, shape).astype(str(dtype))
                args.append(tvm.runtime.tensor(data, device))
            out.append(args)
        return out

    def local(device, args_info, alloc_repeat):
        return _make(device, args_info, alloc_repeat)

    def rpc(_session, device, args_info, alloc_repeat):
        return _make(device, args_info, alloc_repeat)

    return local, rpc


@contextlib.contextmanager
def _without_tensor_intrin() -> Iterator[None]:
    """Create TuneContexts without importing ``tvm.s_tir.tensor_intrin``.

    ``TuneContext.__init__`` imports it unconditionally (about a minute here); RT3D's spaces
    do not use it. A placeholder module stands in for the duration only, so later code that
    needs the real intrinsics imports them as usual.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if isinstance(sys.modules.get(name), types.ModuleType) and \
                not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]


# ---------------------------------------------------------------- database
def open_database(work_dir: str | os.PathLike, target: Target, create: bool = False):
    """The JSON database of ``work_dir`` for ``target``.

    A database remembers the target it was tuned for (``rt3d_target.json``). Opening it for
    another target raises: MetaSchedule's lookup ignores the target, so a foreign database
    would silently apply schedules tuned for other hardware.

    Raises
    ------
    FileNotFoundError
        ``create`` is False and there is no database in ``work_dir``.
    ValueError
        The database was tuned for another target, or its files are not valid JSON records.
    """
    from tvm.s_tir import meta_schedule as ms

    work = Path(work_dir)
    tag = work / _TARGET_FILE
    key = _target_key(target)
    cores = int(target.attrs.get("num-cores", 0))
    if tag.exists():
        try:
            info = json.loads(tag.read_text())
            saved = info["target"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{tag}: corrupt target file ({err})") from None
        if saved != key:
            raise ValueError(f"tuning database {work} was tuned for target {saved}, not {key}; "
                             "use one --work-dir per target")
        tuned_cores = int(info.get("num_cores", 0))
        if tuned_cores and cores and tuned_cores != cores:
            # parallel granularity and loop order were chosen for another thread count
            warnings.warn(f"tuning database {work} was measured with {tuned_cores} thread(s); "
                          f"this target runs {cores}: its schedules may not be the fastest",
                          RuntimeWarning, stacklevel=2)
    elif create:
        work.mkdir(parents=True, exist_ok=True)
        tag.write_text(json.dumps({"target": key, "num_cores": cores}))
    else:
        raise FileNotFoundError(f"no RT3D tuning database in {work} (run `rt3d tune` first)")
    try:
        return ms.database.JSONDatabase(work_dir=str(work))
    except Exception as err:  # TVM raises its own error types for malformed records
        raise ValueError(f"tuning database {work} is corrupt: {str(err).splitlines()[-1]}") \
            from None


def _target_key(target: Target) -> str:
    """What identifies a target for a database: kind, triple, cpu, features, device."""
    attrs = target.attrs
    parts = [target.kind.name] + [f"{k}={attrs[k]}" for k in
                                  ("mtriple", "mcpu", "mattr", "device", "model") if k in attrs]
    return " ".join(str(p) for p in parts)


def _commit_default(db, task: TuningTask, target: Target, builder, runner) -> float | None:
    """Measure the untuned default schedule of ``task`` and commit it as a tuning record.

    With few trials, or a machine whose load drifts, MetaSchedule's search can end on a
    schedule slower than the default; with the default in the database, the best record
    applied later is never worse than the untuned build. Returns its mean run time (s), or
    None when it could not be built or run (tuning then goes on without it).
    """
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    import schedules.meta_schedule as rt3d_ms

    sch = s_tir.Schedule(task.mod)
    with target:
        rt3d_ms.schedule_for(target)(sch, True)
    (built,) = builder.build([ms.builder.BuilderInput(sch.mod, target)])
    if built.error_msg:
        return None
    args_info = ms.arg_info.ArgInfo.from_prim_func(task.mod["main"])
    device = "cpu" if target.kind.name == "llvm" else target.kind.name
    (future,) = runner.run([ms.runner.RunnerInput(built.artifact_path, device, args_info)])
    result = future.result()
    if result.error_msg or not result.run_secs:
        return None
    workload = db.commit_workload(task.mod)
    db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, result.run_secs,
                                                     target, args_info))
    return float(np.mean([float(v) for v in result.run_secs]))


def _records_for(db, mod: tvm.IRModule) -> int:
    if not db.has_workload(mod):
        return 0
    return len(db.get_top_k(db.commit_workload(mod), 10_000))


# ---------------------------------------------------------------- tuning
def tune_model(
    mod: tvm.IRModule,
    target: Target,
    work_dir: str | os.PathLike,
    trials_per_task: int = 32,
    rpc: dict | None = None,
    num_trials_per_iter: int = 8,
    export: Callable | None = None,
    progress: bool = True,
    seed: int = 1,
    **rewrite_options,
) -> list[dict]:
    """Tune every KGS conv3d task of ``mod`` for ``target`` into ``work_dir``.

    Tasks that already hold ``trials_per_task`` records are skipped (resume), so an
    interrupted run goes on where it stopped, and records measured before a failure stay.

    Parameters
    ----------
    mod : IRModule
        The model with constant weights (e.g. from :func:`rt3d_passes.from_torch`).
    target : Target
    work_dir : path
        Database directory, one per target.
    trials_per_task : int
    rpc : dict, optional
        ``{"tracker": "host:port", "key": "...", "timeout": s}``: measure on the RPC devices
        registered under ``key`` instead of locally.
    export : callable, optional
        ``f_export`` of the builder (cross-compilation for a remote device); by default the
        aarch64 cross compiler for aarch64 targets measured over RPC.
    progress : bool
        Show a progress bar.

    Returns
    -------
    summary : list of dict
        Per task: name, weight, MACs, trials run now, records, best ms, and the default
        schedule's ms when it was measured in this call (it is the first record of a task).
    """
    from tqdm import tqdm
    from tvm.s_tir import meta_schedule as ms

    import schedules.meta_schedule as rt3d_ms

    tasks = extract_tasks(mod, target, **rewrite_options)
    db = open_database(work_dir, target, create=True)
    if not rpc:
        # the runner's worker processes inherit TVM_NUM_THREADS: measure with the thread
        # count the model will run with, not TVM's default (half the CPUs on x86)
        set_num_threads(int(target.attrs.get("num-cores", 0)) or None)
    if export is None and rpc and "aarch64" in str(target.attrs.get("mtriple", "")):
        from .rpc import cross_export_aarch64

        export = cross_export_aarch64
    # MetaSchedule logs every iteration at INFO; the progress bar says enough
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    summary = []
    bar = tqdm(tasks, desc=f"tuning {len(tasks)} tasks", unit="task", disable=not progress)
    for task in bar:
        done = _records_for(db, task.mod)
        todo = max(0, trials_per_task - done)
        bar.set_postfix_str(f"{task.name}: {done} records, {todo} trials to run")
        default_ms = None
        if todo:
            builder = make_builder(export)
            runner = make_runner(task.offsets, rpc)
            if done == 0:
                secs = _commit_default(db, task, target, builder, runner)
                default_ms = None if secs is None else secs * 1e3
                todo -= secs is not None
            if todo > 0:
                with _without_tensor_intrin():
                    ctx = ms.TuneContext(mod=task.mod, target=target,
                                         space_generator=rt3d_ms.design_space(target),
                                         search_strategy="evolutionary", task_name=task.name,
                                         rand_state=seed, num_threads=min(2, os.cpu_count() or 1))
                    ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(work_dir),
                                  max_trials_global=todo, num_trials_per_iter=min(
                                      num_trials_per_iter, todo),
                                  builder=builder, runner=runner, database=db,
                                  cost_model="xgb" if todo >= 16 else "random",
                                  task_scheduler="round-robin")
        records = db.get_top_k(db.commit_workload(task.mod), 1) if db.has_workload(
            task.mod) else []
        best = float(np.mean([float(v) for v in records[0].run_secs])) * 1e3 if records \
            else None
        summary.append(dict(task=task.name, weight=task.weight, macs=task.macs,
                            trials_run=todo, records=_records_for(db, task.mod), best_ms=best,
                            default_ms=default_ms))
    return summary
