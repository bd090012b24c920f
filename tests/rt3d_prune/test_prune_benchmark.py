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
