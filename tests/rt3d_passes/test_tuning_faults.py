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


def _no_crash(output: str) -> None:
    assert "Traceback" not in output and "Segfault" not in output, output[-3000:]


@pytest.mark.tuning
def test_interrupted_and_killed_tuning_resumes(tmp_path, rng):
    """``rt3d tune`` stopped by Ctrl-C (SIGINT to its process group, as a terminal sends it),
    restarted and SIGKILLed, restarted again: exit 130 with where to resume, every finished
    record kept, the database opens, the last run only tunes what is missing, and the
    model compiled with the database equals PyTorch."""
    import tvm
    from tvm import relax

    from tests.conftest import assert_close_rel

    work = tmp_path / "db"
    net = TwoConv().eval()
    program = tmp_path / "two.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(1, 8, 4, 8, 8),)), program)
    # 1. Ctrl-C once the first task's default schedule is measured
    proc = subprocess.Popen(
        [sys.executable, "-m", "rt3d_passes.cli", "tune", str(program), "--work-dir", str(work),
         "--trials", "3"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    try:
        _wait_for_records(work, 1, proc)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        output = proc.communicate(timeout=180)[0]
        stopped_after = time.monotonic() - sent
    finally:
        _reap(proc)
    assert proc.returncode == 130, output[-3000:]
    _no_crash(output)
    assert f"rt3d tune: interrupted; the records measured so far are in {work}" in output
    first = _lines(work / RECORDS)
    measured = _measured(work)
    assert measured >= 1
    # 2. restart, SIGKILL (group) once it has measured more
    proc = _start_child(work, 3)
    try:
        _wait_for_records(work, measured + 1, proc)
    finally:
        _reap(proc)
    assert proc.returncode == -signal.SIGKILL
    with warnings.catch_warnings(record=True):  # a cut last line is repaired, with a warning
        warnings.simplefilter("always")
        open_database(work, host_target(2))
    second = _lines(work / RECORDS)
    assert second[: len(first)] == first, "records of the interrupted run were lost"
    measured = _measured(work)
    # 3. restart to the end: only what is missing is tuned
    proc = _start_child(work, 3)
    try:
        output = proc.communicate(timeout=600)[0]
    finally:
        _reap(proc)
    assert proc.returncode == 0, output[-3000:]
    _no_crash(output)
    summary = _summary(output)
    assert _lines(work / RECORDS)[: len(second)] == second
    assert summary[0]["trials_run"] < 3  # task 1 resumed, not started over
    assert all(row["records"] >= 1 for row in summary)
    assert _measured(work) >= measured
    print(f"SIGINT honoured after {stopped_after:.1f} s; final summary {summary}")
    # 4. the database compiles and the result is right
    target = host_target(2)
    mod = tiny_module()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
        "rt3d", target=target, database=str(work)))
    x = rng.standard_normal((1, 8, 4, 8, 8)).astype(np.float32)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    with torch.no_grad():
        assert_close_rel(out, net(torch.from_numpy(x)).numpy(), 1e-5)


def _hooked_make_runner(monkeypatch, hooks: dict):
    """Patch tune_model's runner factory: ``hooks[n]()`` runs before the ``n``-th batch (from
    1, counted over all tasks) reaches the real runner. tune_model measures a task's default
    schedule as one batch, then MetaSchedule's batches follow, each joined before the next."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner

    import rt3d_passes.tuning.tune as tune_module

    batches = [0]
    real = tune_module.make_runner

    @derived_object
    class _HookedRunner(PyRunner):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def run(self, runner_inputs):
            batches[0] += 1
            if batches[0] in hooks:
                hooks[batches[0]]()
            return self.inner.run(runner_inputs)

    monkeypatch.setattr(tune_module, "make_runner",
                        lambda offsets, rpc=None: _HookedRunner(real(offsets, rpc)))
    return batches


@pytest.mark.tuning
@pytest.mark.parametrize("fault", ["tracker_gone", "server_hangs"])
def test_tuning_over_rpc_survives(tmp_path, monkeypatch, fault):
    """After the first measurement the tracker is killed, or the only server stops answering
    (SIGSTOP: every measurement then times out). The remaining measurements fail within the
    5 s timeout each, tuning ends without hanging, and the record measured before stays."""
    from rt3d_passes import rpc
    from rt3d_passes.tuning import tune_model

    key = f"host-{fault}"
    timeout_s = 5
    with rpc.start_tracker() as tracker, rpc.start_server(key, tracker.url) as server:
        rpc.wait_for_server(*tracker.address, key, timeout_s=120, process=server)
        when = []

        def fault_now() -> None:
            if fault == "tracker_gone":
                tracker.kill()
            else:
                os.killpg(server.pid, signal.SIGSTOP)
            when.append(time.monotonic())

        batches = _hooked_make_runner(monkeypatch, {2: fault_now})
        try:
            summary = tune_model(tiny_module(), host_target(2), tmp_path, trials_per_task=3,
                                 rpc=rpc.RPCSettings(tracker.url, key, timeout_s),
                                 num_trials_per_iter=2, progress=False)
        finally:
            if fault == "server_hangs":
                os.killpg(server.pid, signal.SIGCONT)
        after_fault = time.monotonic() - when[0]
    # task 1: its default measured before the fault; every later measurement failed
    assert [row["records"] for row in summary] == [1, 0], summary
    assert _measured(tmp_path) == 1
    failed = sum(1 for line in _lines(tmp_path / RECORDS)) - 1
    print(f"{fault}: {batches[0]} batches, {failed} failed measurements, tuning ended "
          f"{after_fault:.0f} s after the fault")
    # each failed measurement costs at most the timeout (plus process start-up): no hang
    assert after_fault < 60 + failed * (timeout_s + 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db = open_database(tmp_path, host_target(2))
    assert len(db.get_all_tuning_records()) >= 1
