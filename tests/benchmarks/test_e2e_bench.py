"""``benchmarks/e2e_bench.py`` (``rt3d bench``) on the small C3D: JSON, checks, bad input.

The unmarked run uses only the peers that need nothing but torch (eager, mobile) and two
timed rounds; the ``bench``-marked run takes every peer (``pip install .[bench]``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "e2e_bench.py"
NOT_INSTALLED = "not installed (pip install .[bench])"


def run_bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the benchmark script in a fresh interpreter (as a user would)."""
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


def bench_json(tmp_path: Path, peers: list[str] | None) -> tuple[dict[str, Any], str]:
    """Run c3d_small with 2 timed rounds; return the JSON payload and stdout."""
    out = tmp_path / "e2e_c3d_small.json"
    args = ["--model", "c3d_small", "--runs", "2", "--threads", "2", "--out", str(out)]
    if peers:
        args += ["--peers", *peers]
    proc = run_bench(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    return json.loads(out.read_text()), proc.stdout


def check_payload(payload: dict[str, Any], peers: list[str], tmp_path: Path) -> None:
    """Structure shared by both runs: environment, MACs, one entry per thread count, rows."""
    env = payload["environment"]
    for key in ("cpu", "cores", "tvm", "torch", "python", "commit", "date"):
        assert key in env, key
    assert payload["model"] == "c3d_small" and payload["preset"] == "c3d_small-3.6x"
    assert payload["macs"]["pruning_rate"] > 3.0
    assert payload["omp_wait_policy"] and payload["tvm_num_threads"] == "2"
    (entry,) = payload["results"]
    assert entry["threads"] == 2
    rows = {r["name"]: r for r in entry["rows"]}
    # the default --winograd both adds both models on the direct kernel alone
    ablation = ("RT3D sparse, no Winograd", "RT3D dense, no Winograd")
    assert set(rows) == {*peers, "RT3D sparse", "RT3D dense", *ablation}
    for name in ("RT3D sparse", "RT3D dense", *ablation):
        row = rows[name]
        assert row["status"] == "ok", row["status"]
        assert row["max_rel_err"] is not None and row["max_rel_err"] <= 1e-3
        assert row["reference"].startswith("eager")
        assert len(row["times_ms"]) == 2 and row["min_ms"] <= row["median_ms"] <= row["max_ms"]
        assert row["info"]["weight_bytes"] > 0
    assert rows["RT3D sparse"]["info"]["weight_bytes"] < rows["RT3D dense"]["info"][
        "weight_bytes"]
    assert rows["RT3D sparse"]["info"]["kgs_layers"] > 0
    assert "RT3D dense" in entry["speedups"]
    assert {b["bar"].split(" ")[0] for b in entry["bars"]} >= {"sparse", "Winograd"}
    assert all(isinstance(b["holds"], bool) for b in entry["bars"])
    assert (tmp_path / "e2e_c3d_small.png").stat().st_size > 0


def test_c3d_small_torch_peers(tmp_path: Path) -> None:
    peers = ["torch_eager", "torch_mobile"]
    payload, stdout = bench_json(tmp_path, peers)
    check_payload(payload, peers, tmp_path)
    rows = {r["name"]: r for r in payload["results"][0]["rows"]}
    for peer in peers:
        assert rows[peer]["status"] == "ok", rows[peer]["status"]
        assert len(rows[peer]["times_ms"]) == 2
    assert "Table 2 layout" in stdout and "RT3D sparse speedup over" in stdout
    assert "bar [" in stdout


@pytest.mark.bench
def test_c3d_small_all_peers(tmp_path: Path) -> None:
    from benchmarks.peers import PEERS

    payload, _ = bench_json(tmp_path, None)
    check_payload(payload, list(PEERS), tmp_path)
    for row in payload["results"][0]["rows"]:
        status = row["status"]
        assert status == "ok" or status == NOT_INSTALLED or status.startswith(
            ("unsupported: ", "failed: ")), status


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model", "alexnet"], ["unknown model 'alexnet'", "c3d", "r2plus1d_18", "s3d"]),
        (["--model", "c3d", "--preset", "huge"], ["unknown preset 'huge'", "paper", "c3d-3.6x"]),
        (["--model", "r2plus1d", "--preset", "c3d-3.6x"], ["r2plus1d-3.2x"]),
        (["--model", "c3d_small", "--peers", "tflite"], ["unknown peer", "torch_eager", "mnn"]),
    ],
)
def test_bad_input_lists_valid_names(args: list[str], expected: list[str]) -> None:
    proc = run_bench(*args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr


def test_cli_bench_passes_arguments(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from rt3d_passes.cli import main

    monkeypatch.setattr(os, "environ", os.environ.copy())  # the script sets thread variables

    assert main(["bench", "--model", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_cli_bench_needs_checkout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import rt3d_passes
    from rt3d_passes.cli import main

    monkeypatch.setattr(rt3d_passes, "__file__", str(tmp_path / "pkg" / "__init__.py"))
    assert main(["bench", "--model", "c3d"]) == 2
    assert "rt3d bench needs the source checkout" in capsys.readouterr().err


def test_mnn_bar_states_the_ceiling_bound() -> None:
    """The C3D MNN bar says how fast a direct kernel could be at best in the same run."""
    from benchmarks.e2e import report

    rows = [{"name": "mnn", "median_ms": 250.0}, {"name": "RT3D dense", "median_ms": 450.0},
            {"name": "RT3D sparse", "median_ms": 150.0}]
    macs = {"dense_gmacs": 38.5, "kept_gmacs": 10.0, "pruning_rate": 3.85}
    mnn_bar = next(b for b in report.bars("c3d", macs, rows, ceiling_gmacs=100.0)
                   if "MNN" in b["bar"] and "other" not in b["bar"])
    # 10 G MACs at 100 G MAC/s = 100 ms, so at most 250 / 100 = 2.50x over MNN
    assert "take 100 ms" in mnn_bar["detail"] and "at most 2.50x" in mnn_bar["detail"]
    assert not mnn_bar["holds"] and mnn_bar["measured"] == pytest.approx(250 / 150)


def test_winograd_bar_reads_identical_programs_as_identical() -> None:
    """With no Winograd layer the two sparse builds are one program: their ratio is noise, and
    the 'never slower' bar says so instead of failing; with Winograd layers it is measured."""
    from benchmarks.e2e import report

    def rows(layers, sparse_ms, no_w_ms):
        return [{"name": report.SPARSE, "median_ms": sparse_ms, "times_ms": [sparse_ms],
                 "info": {"winograd_layers": layers}},
                {"name": report.NO_WINOGRAD, "median_ms": no_w_ms, "times_ms": [no_w_ms]}]

    macs = {"pruning_rate": 3.0, "kept_gmacs": 1.0, "dense_gmacs": 3.0}
    (bar,) = [b for b in report.bars("x3d_xs", macs, rows(0, 27.0, 22.0))
              if b["bar"].startswith("Winograd")]
    assert bar["holds"] and "one program" in bar["detail"]
    (bar,) = [b for b in report.bars("x3d_xs", macs, rows(2, 27.0, 22.0))
              if b["bar"].startswith("Winograd")]
    assert not bar["holds"] and bar["miss_factor"] > 1.2
    (bar,) = [b for b in report.bars("c3d", macs, rows(3, 100.0, 120.0))
              if b["bar"].startswith("Winograd")]
    assert not bar["holds"] and bar["required"] == 1.25  # C3D's own bar


def test_profile_table_prints_whole_layer_names():
    """X3D's conv layers differ only past 48 characters: the per-op table keeps whole names."""
    from benchmarks.e2e.rt3d import format_profile

    names = [f"kgs_conv3d{i} [blocks.1.res_blocks.{i}.branch2.conv_b]" for i in range(2)]
    rows = [{"op": n, "calls": 1, "ms": 1.0 + i, "share": 0.5, "kind": "conv3d"}
            for i, n in enumerate(names)]
    table = format_profile(rows)
    assert all(n in table for n in names)
    assert len({len(line) for line in table.splitlines()[2:4]}) == 1  # aligned columns


def test_torch_kinds_charge_children_to_the_calling_op():
    """``aten::mean`` runs in ``aten::sum``: the per-kind PyTorch profile charges the whole
    mean to "pooling" (a self-time count put it under "elementwise/other"), and a conv's
    mkldnn child to "conv3d"."""
    import torch

    from benchmarks.e2e.rt3d import torch_profile_kinds

    class MeanConv(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.conv3d(x, torch.ones(4, 8, 1, 1, 1)) \
                + x.mean((2, 3, 4), keepdim=True)[:, :4]

    kinds = torch_profile_kinds(MeanConv(), torch.randn(1, 8, 8, 64, 64), runs=1)
    # the conv's kind is its class, from the recorded shapes (8 -> 4 channels, 1x1x1)
    assert kinds["pooling"] > 0 and kinds["conv3d pointwise"] > 0
    assert kinds.get("elementwise/other", 0.0) < kinds["pooling"] + kinds["conv3d pointwise"]
    # the mean reads 1 MB: far more than the 7 us a self-time count gave it
    assert kinds["pooling"] > 0.05
