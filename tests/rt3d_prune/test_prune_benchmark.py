"""The pruning-accuracy benchmark's pipeline on a tiny configuration (not its ranking)."""

from __future__ import annotations

import dataclasses
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


def test_quick_benchmark_pipeline(tmp_path):
    bench = _bench()
    config = dataclasses.replace(bench.QUICK, methods=("heuristic", "reweighted"))
    result = bench.run(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "pruning_accuracy.json").read_text())
    assert (tmp_path / "pruning_accuracy.png").stat().st_size > 0
    assert len(saved["rows"]) == 2 * 2  # methods x schemes, one preset
    for row in saved["rows"]:
        assert 0.0 <= row["top1"] <= 1.0
        assert row["mac_reduction"] == pytest.approx(3.6, rel=0.1)
        assert row["pruned_fractions"]["conv2"] > 0.8
        # the heuristic prunes the dense weights: the preset's groups hold much of their norm
        assert 0.0 <= row["pruned_energy"] <= 1.0
        if row["method"] == "heuristic":
            assert row["pruned_energy"] > 0.2
    assert saved["complete"] and len(saved["loadavg_start"]) == 3
    text = bench.table(result)
    assert "reweighted" in text and "dense" in text
