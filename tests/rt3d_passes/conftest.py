"""Fixtures and helpers shared by the RPC, tuning and emulated-device tests of ``rt3d_passes``
(so no test module imports another)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

import rt3d_passes
from rt3d_passes import rpc
from rt3d_passes import sparsity as S
from rt3d_passes.op import Conv3DGeometry, column_offsets, kgs_conv3d_primfunc
from rt3d_passes.rpc.emulated_kryo import EMULATED_KEY, start_emulated_kryo
from rt3d_passes.testing import structured_weight
from rt3d_passes.tuning import alloc_arguments, fast_build, meta_schedule_logging


@pytest.fixture(scope="session")
def kryo_tracker():
    """``host:port`` of a tracker with a free emulated Kryo server (one per session: it
    takes a minute or more to register). ``RT3D_EMULATED_TRACKER=host:port`` reuses one
    started with ``scripts/emulated_kryo.sh start``."""
    given = os.environ.get("RT3D_EMULATED_TRACKER")
    if given:
        host, port = rpc.parse_address(given)
        rpc.wait_for_server(host, port, EMULATED_KEY, timeout_s=30)
        yield given
        return
    with rpc.start_tracker() as tracker, start_emulated_kryo(tracker.url) as server:
        start = time.monotonic()
        rpc.wait_for_server(*tracker.address, EMULATED_KEY, timeout_s=600, process=server)
        print(f"emulated Kryo registered after {time.monotonic() - start:.0f} s")
        yield tracker.url


def kgs_task(rng: np.random.Generator):
    """A small KGS conv3d PrimFunc and its real int32 offsets."""
    shape, padding = (1, 8, 4, 10, 10), (1, 1, 1)
    w = structured_weight((16, 8, 3, 3, 3), "kgs", 0.7, (8, 4), rng)
    packed = S.compact(w, (8, 4))
    offsets = column_offsets(packed, Conv3DGeometry(shape, (3, 3, 3), padding=padding))
    return kgs_conv3d_primfunc(shape, packed, padding=padding), offsets


def tune_over_rpc(func, offsets, tracker, key, work: Path, trials: int, per_iter: int,
                  session_timeout_s: int = 30, target=None, f_export=None, wrap_runner=None,
                  wait_s: int | None = None):
    """tune_tir of one KGS PrimFunc, measured by RPCRunner through ``tracker`` (host, port);
    ``f_export`` ships built modules (e.g. cross-compiled) instead of the default .tar;
    ``wrap_runner(runner)`` returns the runner tuning uses instead; ``wait_s``: how long a
    measurement waits for a free server (default: the session timeout)."""
    from tvm.s_tir import meta_schedule as ms

    import schedules

    space = ms.space_generator.ScheduleFn(
        lambda sch: schedules.schedule_kgs_conv3d_cpu(sch, fixed=False),
        sch_rules=[], postprocs=[], mutator_probs={ms.mutator.MutateTileSize(): 1.0})
    settings = rpc.RPCSettings(tracker, key, timeout_s=session_timeout_s, wait_s=wait_s)
    runner = ms.runner.RPCRunner(
        rpc_config=settings.runner_config(),
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=0),
        f_create_session=settings.create_session(),  # fails instead of waiting forever
        f_alloc_argument=alloc_arguments(offsets)[1], max_workers=1)
    work.mkdir(parents=True, exist_ok=True)
    with meta_schedule_logging():
        return ms.tune_tir(
            mod=func, target=target or rt3d_passes.host_target(), work_dir=str(work),
            max_trials_global=trials, num_trials_per_iter=per_iter, space=space,
            builder=ms.builder.LocalBuilder(max_workers=1, f_build=fast_build, f_export=f_export,
                                            timeout_sec=120),
            runner=wrap_runner(runner) if wrap_runner else runner,
            database=ms.database.JSONDatabase(work_dir=str(work)),
            cost_model="random", seed=1)


def measured_run_secs(path: Path) -> list[list[float]]:
    """run_secs of the records in a JSON database file that hold a real measurement
    (MetaSchedule stores failed runs as 1e10 s)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    secs = [row[1][1] for row in rows]
    return [s for s in secs if s and all(float(v) < 1e9 for v in s)]


def commit_measured(db, workloads: dict, ms_by_algorithm: dict):
    """Commit the default schedule of ``workloads[algorithm]`` with a run time of
    ``ms_by_algorithm[algorithm]`` ms to ``db`` (a measured database without tuning;
    MetaSchedule's ``get_top_k`` ignores a record whose trace is empty). Returns ``db``."""
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    import schedules.meta_schedule as rt3d_ms

    target = rt3d_passes.host_target()
    for algorithm, secs_ms in ms_by_algorithm.items():
        sch = s_tir.Schedule(workloads[algorithm])
        with target:
            rt3d_ms.schedule_for(target)(sch, True)
        db.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, db.commit_workload(workloads[algorithm]), [secs_ms / 1e3] * 3, target))
    return db
