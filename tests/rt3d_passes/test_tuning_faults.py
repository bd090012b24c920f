"""Faults during tuning: finished records survive, a restart resumes, nothing corrupt is left.

The default run checks the database files themselves (a record line cut by a killed writer is
repaired on open, the target file is written atomically). The ``tuning`` marker runs real
tuning on loopback and breaks it: SIGKILL and SIGINT of the tuning process (then a restart),
the tracker gone mid-tuning, measurements that time out. A server killed mid-tuning is
``test_rpc.py::test_tuning_survives_killed_servers``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rt3d_passes.target import host_target
from rt3d_passes.tuning import open_database
from rt3d_passes.tuning.database import RECORD_FILES, TARGET_FILE, repair_record_file

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS, RECORDS = (Path(name) for name in RECORD_FILES)


# ---------------------------------------------------------------- a database without tuning
def _primfunc(m: int):
    from tvm import te

    a = te.placeholder((m, 16), name="A")
    b = te.compute((m, 16), lambda i, j: a[i, j] * 2.0, name="B")
    return te.create_prim_func([a, b]).with_attr("global_symbol", "main")


def _commit(work: Path, workloads: int = 2, records: int = 3) -> None:
    """``records`` records for each of ``workloads`` small workloads, as tuning commits them."""
    import tvm
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms

    db = open_database(work, host_target(), create=True)
    for m in range(1, workloads + 1):
        mod = tvm.IRModule({"main": _primfunc(8 * m)})
        workload = db.commit_workload(mod)
        args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
        for r in range(records):
            db.commit_tuning_record(ms.database.TuningRecord(
                s_tir.Schedule(mod).trace, workload, [1e-3 * (r + 1)], host_target(), args))


def _count(work: Path) -> tuple[int, int]:
    """(workloads, records) the database holds when opened again."""
    db = open_database(work, host_target())
    return len(db.get_all_workloads()) if hasattr(db, "get_all_workloads") else -1, \
        len(db.get_all_tuning_records())


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_killed_mid_record_is_repaired_on_open(tmp_path):
    """A writer killed mid-append leaves the last record cut: opening drops that line with a
    warning naming the file, and keeps every finished record."""
    work = tmp_path / "db"
    _commit(work)
    path = work / RECORDS
    data = path.read_bytes()
    path.write_bytes(data[:-25])  # the last record, cut
    with pytest.warns(RuntimeWarning, match=f"{path}: dropped a truncated last line"):
        db = open_database(work, host_target())
    assert len(db.get_all_tuning_records()) == 5
    assert path.read_bytes() == data[: data.rstrip(b"\n").rfind(b"\n") + 1]
    # the repaired database takes new records and opens cleanly
    db.commit_tuning_record(db.get_all_tuning_records()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(open_database(work, host_target()).get_all_tuning_records()) == 6


def test_killed_mid_workload_is_repaired_on_open(tmp_path):
    """A cut workload line (killed before any record of it was written) is dropped too."""
    work = tmp_path / "db"
    _commit(work, workloads=1)
    path = work / WORKLOADS
    whole = path.read_bytes()
    path.write_bytes(whole + whole[: len(whole) // 2])  # a second workload, half written
    with pytest.warns(RuntimeWarning, match=f"{path}: dropped a truncated last line"):
        db = open_database(work, host_target())
    assert path.read_bytes() == whole
    assert len(db.get_all_tuning_records()) == 3


def test_missing_newline_is_completed_not_dropped(tmp_path):
    """Killed between a whole record and its newline: the record is kept, and the next one
    is not glued to it."""
    work = tmp_path / "db"
    _commit(work)
    path = work / RECORDS
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    with pytest.warns(RuntimeWarning, match=f"{path}: completed its last line"):
        db = open_database(work, host_target())
    db.commit_tuning_record(db.get_all_tuning_records()[0])
    assert len(_lines(path)) == 7
    assert all(json.loads(line) for line in _lines(path))


def test_corrupt_line_before_the_last_is_an_error_not_a_repair(tmp_path):
    """Only a cut last line is an interrupted write; damage elsewhere is reported, and the
    file is left as it is."""
    work = tmp_path / "db"
    _commit(work)
    path = work / RECORDS
    lines = _lines(path)
    lines[1] = lines[1][: len(lines[1]) // 2]
    damaged = "\n".join(lines) + "\n"
    path.write_text(damaged)
    with pytest.raises(ValueError, match=f"tuning database {work} is corrupt"):
        open_database(work, host_target())
    assert path.read_text() == damaged


def test_whole_files_are_not_touched(tmp_path):
    work = tmp_path / "db"
    _commit(work)
    before = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    assert not repair_record_file(work / RECORDS)
    assert not repair_record_file(work / "absent.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_database(work, host_target())
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == before


def test_target_file_is_written_atomically(tmp_path, monkeypatch):
    """A crash while the target file is written leaves no file (the next run writes it)
    rather than a half-written one, and no temporary file behind."""
    work = tmp_path / "db"

    def crash(*_args):
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        open_database(work, host_target(), create=True)
    assert list(work.iterdir()) == []
    monkeypatch.undo()
    open_database(work, host_target(), create=True)
    assert json.loads((work / TARGET_FILE).read_text())["target"].startswith("llvm")
    assert sorted(p.name for p in work.iterdir()) == sorted([TARGET_FILE, *RECORD_FILES])


# ---------------------------------------------------------------- real tuning, broken
class TwoConv(torch.nn.Module):
    """Two KGS layers of different shapes: two tuning tasks of a few seconds each."""

    def __init__(self):
        super().__init__()
        from rt3d_passes.testing import structured_weight

        rng = np.random.default_rng(0)
        self.conv1 = torch.nn.Conv3d(8, 16, 3, padding=1, bias=False)
        self.conv2 = torch.nn.Conv3d(16, 8, 3, padding=1, bias=False)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                conv.weight.copy_(torch.from_numpy(structured_weight(
                    tuple(conv.weight.shape), "kgs", 0.75, (8, 4), rng)))

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def tiny_module():
    import rt3d_passes

    return rt3d_passes.from_torch(TwoConv(), (torch.zeros(1, 8, 4, 8, 8),))


def tune_child(work: str, trials: int, tracker: str | None = None, key: str | None = None,
               timeout_s: int = 10) -> None:
    """What a tuning process runs (``python -c``), printing its summary as JSON."""
    from rt3d_passes.rpc import RPCSettings
    from rt3d_passes.tuning import tune_model

    rpc = RPCSettings(tracker, key, timeout_s) if tracker else None
    summary = tune_model(tiny_module(), host_target(2), work, trials_per_task=trials, rpc=rpc,
                         num_trials_per_iter=2, progress=False)
    print("SUMMARY " + json.dumps(summary), flush=True)


def _start_child(work: Path, trials: int, **kwargs) -> subprocess.Popen:
    code = (f"from tests.rt3d_passes.test_tuning_faults import tune_child; "
            f"tune_child({str(work)!r}, {trials}, **{kwargs!r})")
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _measured(work: Path) -> int:
    """Records of real measurements in the file (failed runs are stored as 1e10 s)."""
    path = work / RECORDS
    if not path.exists():
        return 0
    count = 0
    for line in path.read_text().splitlines():
        try:
            secs = json.loads(line)[1][1]
        except ValueError:
            continue  # a line being written
        count += bool(secs) and all(float(v) < 1e9 for v in secs)
    return count


def _wait_for_records(work: Path, n: int, proc: subprocess.Popen, timeout_s: float = 400):
    deadline = time.monotonic() + timeout_s
    while _measured(work) < n:
        if proc.poll() is not None:
            pytest.fail(f"tuning ended before {n} records: {proc.stdout.read()[-3000:]}")
        assert time.monotonic() < deadline, f"fewer than {n} records after {timeout_s} s"
        time.sleep(0.05)


def _reap(proc: subprocess.Popen) -> None:
    """Kill what is left of a child's process group (builder and runner workers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _summary(output: str) -> list[dict]:
    line = next(ln for ln in output.splitlines() if ln.startswith("SUMMARY "))
    return json.loads(line.removeprefix("SUMMARY "))
