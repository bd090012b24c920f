"""``tune_model``: tune a model's RT3D operators with MetaSchedule, locally or over RPC.

``tune_model`` extracts the KGS conv3d tasks of a model as the ``rt3d`` pipeline produces them
(:mod:`.tasks`), tunes them one by one with RT3D's design space
(:func:`schedules.meta_schedule.design_space`) into a JSON database kept per target
(:mod:`.database`), and resumes from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator

import numpy as np
import tvm
from tvm.target import Target

import schedules.meta_schedule as rt3d_ms

from ..rpc import RPCSettings, cross_export_aarch64
from ..threads import set_num_threads
from ..transform import RewriteOptions
from .database import open_database
from .measure import make_builder, make_runner, meta_schedule_logging, without_tensor_intrin
from .select import candidate_tasks
from .tasks import TuningTask, extract_tasks

__all__ = ["commit_default", "records_for", "tune_model"]


def commit_default(db, task: TuningTask, target: Target, builder, runner) -> float | None:
    """Measure the untuned default schedule of ``task`` and commit it as a tuning record.

    With few trials, or a machine whose load drifts, MetaSchedule's search can end on a
    schedule slower than the default; with the default in the database, the best record
    applied later is never worse than the untuned build. Returns its mean run time (s), or
    None when it could not be built or run (tuning then goes on without it).
    """
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

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


@contextlib.contextmanager
def _interrupt_checkpoint() -> Iterator[Callable[[], bool]]:
    """``interrupted()``: whether SIGINT (Ctrl-C) came, for stopping between steps.

    A ``KeyboardInterrupt`` raised while MetaSchedule's C++ search loop calls back into Python
    ends in ``std::terminate`` (the interpreter dies with a segfault report). So the handler
    only remembers the signal; :func:`_stop_building` fails the remaining builds at once, so
    the search of the current task ends in seconds, and :func:`tune_model` raises
    ``KeyboardInterrupt`` between tasks, where it is safe.
    """
    hit: list[int] = []
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: False  # not ours to change (a thread, or SIGINT ignored / handled)
        return
    signal.signal(signal.SIGINT, lambda signum, _frame: hit.append(signum))
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _stop_building(builder, interrupted: Callable[[], bool]):
    """``builder`` that, once ``interrupted()``, fails every candidate without building it."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

    @derived_object
    class _InterruptibleBuilder(PyBuilder):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def build(self, build_inputs):
            if interrupted():
                return [BuilderResult(None, "interrupted (SIGINT)") for _ in build_inputs]
            return self.inner.build(build_inputs)

    return _InterruptibleBuilder(builder)


def records_for(db, mod: tvm.IRModule) -> int:
    if not db.has_workload(mod):
        return 0
    return len(db.get_top_k(db.commit_workload(mod), 10_000))


# ---------------------------------------------------------------- tuning
def tune_model(
    mod: tvm.IRModule,
    target: Target,
    work_dir: str | os.PathLike,
    trials_per_task: int = 32,
    rpc: RPCSettings | None = None,
    num_trials_per_iter: int = 8,
    export: Callable | None = None,
    progress: bool = True,
    seed: int = 1,
    options: RewriteOptions | None = None,
    compare_algorithms: bool = False,
) -> list[dict]:
    """Tune every KGS conv3d task of ``mod`` for ``target`` into ``work_dir``.

    Tasks that already hold ``trials_per_task`` records are skipped (resume), so an
    interrupted run goes on where it stopped, and records measured before a failure stay.
    Every record is appended to the database as it is measured; a run killed mid-write leaves
    at most a cut last line, which :func:`~rt3d_passes.tuning.open_database` repairs.

    Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` once the build or measurement under way
    ends (the remaining candidates of the task fail unbuilt, and are tuned again on resume).

    Parameters
    ----------
    mod : IRModule
        The model with constant weights (e.g. from :func:`rt3d_passes.from_torch`).
    target : Target
    work_dir : path
        Database directory, one per target.
    trials_per_task : int
    rpc : RPCSettings, optional
        Measure on the RPC devices registered under its key instead of locally.
    export : callable, optional
        ``f_export`` of the builder (cross-compilation for a remote device); by default the
        aarch64 cross compiler for aarch64 targets measured over RPC.
    progress : bool
        Show a progress bar.
    seed : int
        Random state of the search.
    options : RewriteOptions, optional
        Which layers become tasks: the options the model will be compiled with.
    compare_algorithms : bool
        Also tune, for every layer that could run either way, the operators of the
        algorithms the cost model did not pick (direct, F(2x2), F(4x4)), so that a compile
        with this database runs each such layer with the one measured fastest
        (:func:`rt3d_passes.tuning.measured_choices`).

    Returns
    -------
    summary : list of dict
        Per task: name, weight, MACs, trials run now, records, best ms, and the default
        schedule's ms when it was measured in this call (it is the first record of a task).
    """
    from tqdm import tqdm
    from tvm.s_tir import meta_schedule as ms

    tasks = extract_tasks(mod, target, options)
    if compare_algorithms:
        # every layer that could run either way, direct and as both Winograd operators: the
        # pipeline then compiles each with the one measured fastest (tuning.measured_choices)
        tasks += candidate_tasks(mod, target, options, tasks)
    db = open_database(work_dir, target, create=True)
    if not rpc:
        # the runner's worker processes inherit TVM_NUM_THREADS: measure with the thread
        # count the model will run with, not TVM's default (half the CPUs on x86)
        set_num_threads(int(target.attrs.get("num-cores", 0)) or None)
    if export is None and rpc and "aarch64" in str(target.attrs.get("mtriple", "")):
        export = cross_export_aarch64
    # MetaSchedule logs every iteration at INFO; the progress bar says enough
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    summary = []
    bar = tqdm(tasks, desc=f"tuning {len(tasks)} tasks", unit="task", disable=not progress)
    with _interrupt_checkpoint() as interrupted, contextlib.closing(bar):

        def check() -> None:
            if interrupted():
                raise KeyboardInterrupt

        for task in bar:
            check()
            done = records_for(db, task.mod)
            todo = max(0, trials_per_task - done)
            bar.set_postfix_str(f"{task.name}: {done} records, {todo} trials to run")
            default_ms = None
            if todo:
                builder = _stop_building(make_builder(export), interrupted)
                runner = make_runner(task.offsets, rpc)
                if done == 0:
                    secs = commit_default(db, task, target, builder, runner)
                    default_ms = None if secs is None else secs * 1e3
                    todo -= secs is not None
                    check()
                if todo > 0:
                    with without_tensor_intrin(), meta_schedule_logging():
                        ctx = ms.TuneContext(mod=task.mod, target=target,
                                             space_generator=rt3d_ms.design_space(target),
                                             search_strategy="evolutionary",
                                             task_name=task.name, rand_state=seed,
                                             num_threads=min(2, os.cpu_count() or 1))
                        ms.tune_tasks(tasks=[ctx], task_weights=[1.0], work_dir=str(work_dir),
                                      max_trials_global=todo, num_trials_per_iter=min(
                                          num_trials_per_iter, todo),
                                      builder=builder, runner=runner, database=db,
                                      cost_model="xgb" if todo >= 16 else "random",
                                      task_scheduler="round-robin")
                    check()
            records = db.get_top_k(db.commit_workload(task.mod), 1) if db.has_workload(
                task.mod) else []
            best = float(np.mean([float(v) for v in records[0].run_secs])) * 1e3 if records \
                else None
            summary.append(dict(task=task.name, weight=task.weight, macs=task.macs,
                                trials_run=todo, records=records_for(db, task.mod),
                                best_ms=best, default_ms=default_ms))
    return summary
