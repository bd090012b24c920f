"""The pruning-accuracy experiment's pipeline and decision rule on a tiny profile (not its
ranking)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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
def test_quick_benchmark_pipeline(tmp_path):
    bench = _bench()
    result = bench.run(bench.QUICK, tmp_path, progress=False)
    saved = json.loads((tmp_path / "pruning_accuracy.json").read_text())
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
