"""Peer-runner machinery with only torch + numpy: interleaving, status reporting, output check."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.peers import (
    NOT_INSTALLED,
    PEERS,
    PeerRunner,
    PeerUnsupported,
    check_output,
    format_table,
    get_peer,
    median_ms,
    run_interleaved,
    run_peers,
    summarize,
)
from benchmarks.peers.tiny_model import tiny_3d_cnn

SHAPE = (1, 3, 4, 16, 16)


class _Fake(PeerRunner):
    """Eager model wrapped by a configurable fake runtime."""

    def prepare(self, model, example, workdir, threads):  # type: ignore[no-untyped-def]
        self.model = model

    def run(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.from_numpy(x)).numpy()


class MissingRuntime(_Fake):
    name = "missing"
    requires = ("rt3d_no_such_runtime_xyz",)


class Unsupported(_Fake):
    name = "unsupported"

    def prepare(self, model, example, workdir, threads):  # type: ignore[no-untyped-def]
        raise PeerUnsupported("no 3D pooling")


class Crashing(_Fake):
    name = "crashing"

    def run(self, x: np.ndarray) -> np.ndarray:
        raise RuntimeError("segfault avoided\nsecond line")


class Wrong(_Fake):
    name = "wrong"

    def run(self, x: np.ndarray) -> np.ndarray:
        return super().run(x) + 1.0


class Good(_Fake):
    name = "good"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for cls in (MissingRuntime, Unsupported, Crashing, Wrong, Good):
        monkeypatch.setitem(PEERS, cls.name, cls)
    return ["torch_eager", "missing", "unsupported", "crashing", "wrong", "good"]


def test_run_interleaved_alternates_and_counts() -> None:
    calls: list[str] = []
    runners = {n: (lambda x, n=n: calls.append(n)) for n in "ABC"}
    times = run_interleaved(runners, np.zeros(1), runs=4, warmup=2)
    assert {n: len(t) for n, t in times.items()} == {"A": 4, "B": 4, "C": 4}
    assert all(t >= 0 for ts in times.values() for t in ts)
    assert calls[:6] == list("ABCABC")  # warm-up rounds
    assert calls[6:] == list("ABCBCACABABC")  # rotating start, one of each per round


def test_timing_summaries() -> None:
    assert median_ms([3.0, 1.0, 2.0]) == 2.0
    assert summarize([3.0, 1.0, 2.0]) == {"median_ms": 2.0, "min_ms": 1.0, "max_ms": 3.0, "runs": 3}
    assert np.isnan(median_ms([]))


def test_check_output() -> None:
    ref = np.array([[1.0, -2.0, 0.0]], dtype=np.float32)
    assert check_output(ref, ref + 1e-4) == (True, pytest.approx(1e-4, rel=1e-2))
    assert not check_output(ref, ref + 0.1)[0]
    assert check_output(ref, ref.reshape(3))[0]  # same data, flattened
    assert check_output(ref, np.zeros(4)) == (False, float("inf"))
    assert not check_output(ref, ref * np.nan)[0]


def test_not_installed_reason() -> None:
    assert MissingRuntime.available() == (False, NOT_INSTALLED)
    assert get_peer("torch_eager").available() == (True, "")
    with pytest.raises(KeyError, match="known"):
        get_peer("no_such_peer")


def test_run_peers_reports_instead_of_raising(fakes: list[str], tmp_path: Path) -> None:
    torch.manual_seed(0)
    results = run_peers(tiny_3d_cnn(), torch.randn(*SHAPE), tmp_path, fakes, runs=2, gap_ms=0)
    status = {r.peer: r.status for r in results}
    assert status.pop("wrong").startswith("wrong output (max abs err 1, rel ")
    assert status == {
        "torch_eager": "ok",
        "missing": NOT_INSTALLED,
        "unsupported": "unsupported: no 3D pooling",
        "crashing": "failed: RuntimeError: segfault avoided",
        "good": "ok",
    }
    timed = {r.peer for r in results if len(r.times_ms) == 2}
    assert timed == {"torch_eager", "wrong", "good"}
    table = format_table(results)
    assert NOT_INSTALLED in table and "unsupported: no 3D pooling" in table
    assert all(r.as_dict()["peer"] == r.peer for r in results)


def test_torch_mobile_runs_tiny_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    (result,) = run_peers(tiny_3d_cnn(), torch.randn(*SHAPE), tmp_path, ["torch_mobile"], runs=1)
    assert result.status == "ok", result.status
    assert result.info["notes"]  # says whether optimize_for_mobile was applied


def test_import_does_not_load_optional_runtimes() -> None:
    code = (
        "import sys; import benchmarks.peers; "
        "print(sorted(m for m in ('onnxruntime', 'openvino', 'MNN', '_tools', 'executorch', "
        "'onnx') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
