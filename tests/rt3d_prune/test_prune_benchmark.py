"""The pruning-accuracy experiment's pipeline and decision rule on a tiny profile (not its
ranking)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "pruning_accuracy.py"


def _bench():
    spec = importlib.util.spec_from_file_location("pruning_accuracy", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_decision_rule():
    bench = _bench()
    mean, low, high = bench.t_interval([0.02, 0.03, 0.025, 0.035])
    assert mean == pytest.approx(0.0275) and 0 < low < mean < high
    assert bench.verdict(low, high) == "shown"
    assert bench.verdict(-0.03, 0.004) == "refuted"  # not better by half a point
    assert bench.verdict(-0.01, 0.02) == "unresolved"
    assert bench.verdict(-0.01, -0.005, threshold=-0.015, margin=0.0) == "shown"


def test_plane_arm_twins_the_kgs_rows_and_is_judged():
    bench = _bench()
    config = bench.with_plane(bench.QUICK)
    assert config.rows == (*bench.QUICK.rows, "heuristic/plane", "group_lasso/plane",
                           "reweighted/plane", "admm/plane")
    assert bench.with_plane(config) == config  # idempotent
    sparsity = bench._sparsity(config, "reweighted/plane")
    assert sparsity.scheme == "plane" and sparsity.rates == bench._sparsity(
        config, "reweighted/kgs").rates  # the same per-layer rates: equal MACs
    assert bench._choice_key("reweighted/kgs") == "reweighted"
    assert bench._choice_key("reweighted/plane") == "reweighted/plane"
    # fabricated test top-1 over 4 replicates: KGS ahead of plane by 3 points (heuristic),
    # level with it (reweighted)
    top = {"heuristic/kgs": 0.60, "heuristic/plane": 0.57, "reweighted/kgs": 0.62,
           "reweighted/plane": 0.62}
    rows = [{"dense_seed": d, "order_seed": o, "row": row,
             "test_top1": value + 0.002 * (d + 2 * o) * (row.endswith("plane"))}
            for d in (0, 1) for o in (0, 1) for row, value in top.items()]
    result = {"config": {"rows": list(top)}, "rows": rows,
              "dense": [{"seed": 0, "test_top1": 0.63}, {"seed": 1, "test_top1": 0.63}]}
    found = {v["claim"]: v for v in bench.verdicts(result)}
    assert found["KGS - plane (heuristic)"]["verdict"] == "shown"
    assert found["KGS - plane (reweighted)"]["verdict"] == "refuted"
    assert found["KGS - plane (heuristic)"]["mean"] == pytest.approx(0.027, abs=1e-9)
    assert "reweighted - heuristic" in found  # the existing claims are still judged


@pytest.mark.slow
def test_quick_benchmark_pipeline(tmp_path, monkeypatch):
    # two worker processes (the default on 2 cores), dense models kept in a cache; spawned
    # workers import the script by its module name
    monkeypatch.syspath_prepend(str(_PATH.parent))
    bench = _bench()
    cache = tmp_path / "dense"
    result = bench.run(bench.QUICK, tmp_path, progress=False, jobs=2, threads=2,
                       dense_cache=cache)
    saved = json.loads((tmp_path / "pruning_accuracy.json").read_text())
    assert saved["jobs"] == 2 and saved["threads_per_job"] == 1
    assert len(list(cache.glob("dense_*.pt"))) == 2
    assert (tmp_path / "pruning_accuracy.png").stat().st_size > 0
    assert saved["complete"] and len(saved["loadavg_start"]) == 3
    assert len(saved["dense"]) == 2 and len(saved["dense"][0]["curve"]) == 1
    assert {s["method"] for s in saved["selection"]} == {"group_lasso", "reweighted", "admm"}
    rows = saved["rows"]
    assert len(rows) == 2 * len(bench.QUICK.rows)  # replicates x rows
    for row in rows:
        assert 0.0 <= row["test_top1"] <= 1.0
        if row["row"] == "control":
            assert row["mac_reduction"] == pytest.approx(1.0)
        else:
            assert row["mac_reduction"] == pytest.approx(3.6, rel=0.1)
            assert row["pruned_fractions"]["conv2"] > 0.8
            assert 0.0 <= row["pruned_energy"] <= 1.0
            assert row["val_after_prune"] is not None
    claims = [v["claim"] for v in saved["verdicts"]]
    assert claims[:4] == [c[0] for c in bench.COMPARISONS]
    assert all(v["verdict"] in ("shown", "refuted", "unresolved") for v in saved["verdicts"])
    text = bench.table(result)
    assert "reweighted/kgs" in text and "dense" in text and "->" in text


@pytest.mark.slow
def test_dense_models_come_from_the_cache(tmp_path):
    bench = _bench()
    cache = tmp_path / "dense"
    config = dataclasses.replace(bench.QUICK, rows=("control", "heuristic/kgs"), grid=())
    first = bench.run(config, tmp_path, progress=False, name="first", dense_cache=cache)
    assert all("cached" not in d for d in first["dense"])
    again = bench.run(config, tmp_path, progress=False, name="again", dense_cache=cache)
    assert [d["cached"] for d in again["dense"]] == [
        str(bench._dense_cache_path(cache, config, s)) for s in config.dense_seeds]
    assert [d["test_top1"] for d in again["dense"]] == [d["test_top1"] for d in first["dense"]]
    # the same dense models and seeds: the same rows
    assert [r["test_top1"] for r in again["rows"]] == [r["test_top1"] for r in first["rows"]]
    other = dataclasses.replace(config, dense_epochs=2)  # another key: trained, not loaded
    assert bench._dense_cache_path(cache, other, 0) != bench._dense_cache_path(cache, config, 0)


def test_ablation_rows_change_one_setting_and_are_judged():
    bench = _bench()
    assert bench.parse_row("reweighted+p1/kgs") == ("reweighted", "p1", "kgs")
    assert bench.parse_row("control") == ("control", None, None)
    with pytest.raises(ValueError, match="unknown variant 'p3'"):
        bench.parse_row("reweighted+p3/kgs")
    config = dataclasses.replace(bench.BenchConfig(), rows=bench.ABLATION_ROWS)  # 3 rounds
    base, _ = bench._method(config, "reweighted/kgs", 0.01)
    for row in bench.ABLATION_ROWS[1:]:
        method, _ = bench._method(config, row, 0.01)
        changed = {f for f in ("rounds",) if getattr(method, f) != getattr(base, f)} | {
            f"regularizer.{f}" for f in ("power", "normalize", "strength", "eps")
            if getattr(method.regularizer, f) != getattr(base.regularizer, f)}
        if row == "reweighted+raw/kgs":  # raw norms: another scale, so its own eps and lambda
            assert changed == {"regularizer.normalize", "regularizer.eps"}
            assert bench._choice_key(row) == "reweighted+raw"
        else:
            assert len(changed) == 1, (row, changed)
            assert bench._choice_key(row) == "reweighted"  # the base row's lambda
    assert bench._method(config, "reweighted+p1/kgs", 0.01)[0].regularizer.power == 1.0
    claims = [c[0] for c in bench.comparisons(config.rows)]
    assert "reweighted/kgs - reweighted+r1/kgs (P from the dense weights only, never " \
           "refreshed)" in claims
    lonely = dataclasses.replace(config, rows=("reweighted+p1/kgs",))
    with pytest.raises(ValueError, match="ablates 'reweighted/kgs'"):
        bench.run(lonely, None, progress=False)
    no_grid = dataclasses.replace(config, grid=(("reweighted", (0.01,)),))
    with pytest.raises(ValueError, match="grid needs a 'reweighted\\+raw' entry"):
        bench.run(no_grid, None, progress=False)


_ORPHAN = """
import concurrent.futures, multiprocessing, os, sys, time
sys.path.insert(0, {folder!r})
import pruning_accuracy


def sleeper(die):
    if die:
        pruning_accuracy._die_with_parent()
    time.sleep(60)


if __name__ == "__main__":
    pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(sleeper, {die})
    time.sleep(2)
    os._exit(0)  # the run's process dies without shutting its pool down
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("die", [True, False])
def test_workers_die_with_the_run(tmp_path, die):
    import os
    import subprocess
    import time

    script = tmp_path / "run.py"
    script.write_text(_ORPHAN.format(folder=str(_PATH.parent), die=die))
    log = tmp_path / "out.txt"
    with log.open("w") as out:  # a file, not a pipe: a surviving worker would hold a pipe open
        subprocess.run([sys.executable, str(script)], stdout=out, timeout=120, check=True)
    pid = int(log.read_text().split()[0])
    deadline = time.time() + 10
    while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.2)
    alive = os.path.exists(f"/proc/{pid}")
    if alive:
        os.kill(pid, 9)
    assert alive is not die  # without the death signal the worker outlives the run


@pytest.mark.slow
def test_rows_start_as_soon_as_their_own_dense_model_is_there(tmp_path, monkeypatch):
    # a pool that runs jobs when they are submitted but holds dense model 1 back until a row
    # of dense model 0 has run: the rows must not wait for every dense model
    bench = _bench()
    events: list[tuple[str, int]] = []

    class HeldPool:
        def __init__(self, jobs, mp_context=None, initializer=None, initargs=()):
            initializer(*initargs)
            self.held: concurrent.futures.Future | None = None

        def submit(self, fn, *args):
            future: concurrent.futures.Future = concurrent.futures.Future()
            if fn is bench._dense_job and args[0] == 1:
                self.held = future
                return future
            future.set_result(fn(*args))
            kind, seed = ("dense", args[0]) if fn is bench._dense_job else ("row", args[2])
            events.append((kind, seed))
            if kind == "row" and seed == 0 and self.held is not None and not self.held.done():
                self.held.set_result(bench._dense_job(1))
                events.append(("dense", 1))
            return future

        def shutdown(self):
            pass

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", HeldPool)
    threads = torch.get_num_threads()
    config = dataclasses.replace(bench.QUICK, rows=("control", "heuristic/kgs"), grid=())
    try:
        result = bench.run(config, tmp_path, progress=False, jobs=2, threads=2)
    finally:
        torch.set_num_threads(threads)
    assert events[0] == ("dense", 0) and events[1] == ("row", 0)
    assert events.index(("dense", 1)) < min(i for i, e in enumerate(events) if e == ("row", 1))
    assert sorted(events) == [("dense", 0), ("dense", 1)] + [("row", 0)] * 2 + [("row", 1)] * 2
    assert [d["seed"] for d in result["dense"]] == [0, 1]  # in seed order, whatever came first
    assert len(result["rows"]) == 4 and result["complete"]
