"""RPC on loopback: a real tracker and rpc_server started by the tests, a compiled model run
and timed remotely, MetaSchedule measuring through the tracker, and the failure cases
(tracker unreachable, key missing, a server killed during tuning)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes import rpc
from tests.conftest import assert_close_rel, pruned_tiny_c3d
from tests.rt3d_passes.conftest import kgs_task, measured_run_secs, tune_over_rpc

KEY = "host-test"
SLACK_S = 1.5  # process scheduling on a loaded 2-core machine


@pytest.fixture(scope="module")
def loopback():
    """A tracker and one host rpc_server on 127.0.0.1 (free ports), registered."""
    with rpc.start_tracker() as tracker, rpc.start_server(KEY, tracker.url) as server:
        rpc.wait_for_server(*tracker.address, KEY, timeout_s=120, process=server)
        yield tracker


def test_run_remote_matches_torch(loopback, rng):
    model = pruned_tiny_c3d(rng)
    x = rng.standard_normal((1, 3, 4, 16, 16)).astype(np.float32)
    mod = rt3d_passes.from_torch(model, (torch.from_numpy(x),))
    target = rt3d_passes.host_target()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    outputs, timing = rpc.run_remote(ex, loopback.url, KEY, [x], target=target,
                                     number=2, repeat=3)
    with torch.no_grad():
        assert_close_rel(outputs[0], model(torch.from_numpy(x)).numpy(), 1e-5)
    assert len(timing.results) == 3 and 0 < timing.mean < 10


def test_tracker_unreachable_fails_within_timeout():
    port = rpc.free_port()  # nothing listens there
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=f"RPC tracker 127.0.0.1:{port} unreachable"):
        rpc.check_tracker("127.0.0.1", port, timeout_s=2)
    with pytest.raises(ConnectionError, match="unreachable"):
        rpc.request_session(f"127.0.0.1:{port}", KEY, timeout_s=2)
    with pytest.raises(ConnectionError, match="unreachable"):
        rpc.wait_for_server("127.0.0.1", port, KEY, timeout_s=2)
    assert time.monotonic() - start < 3 * 2 + SLACK_S


def test_silent_tracker_times_out():
    """A peer that accepts but never answers (a hung tracker) must not hang the client."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # the kernel completes the handshake; nobody ever replies
        port = listener.getsockname()[1]
        start = time.monotonic()
        with pytest.raises(ConnectionError, match=f"127.0.0.1:{port} did not answer"):
            rpc.check_tracker("127.0.0.1", port, timeout_s=1)
        assert time.monotonic() - start < 1 + SLACK_S


def test_missing_key_times_out(loopback):
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        rpc.wait_for_server(*loopback.address, "no-such-device", timeout_s=1.5)
    message = str(info.value)
    assert "'no-such-device'" in message and loopback.url in message and KEY in message
    with pytest.raises(TimeoutError, match="no-such-device"):
        rpc.request_session(loopback.url, "no-such-device", timeout_s=1.5)
    assert time.monotonic() - start < 2 * 1.5 + 2 * SLACK_S


def test_local_process_terminates_its_group():
    """Children (rpc_server forks a worker per session) go down with the process."""
    with rpc.LocalProcess(["sh", "-c", "sleep 60 & sleep 60"], "sleepers",
                          ("127.0.0.1", 0)) as proc:
        time.sleep(0.2)
        assert proc.alive()
    assert not proc.alive()
    deadline = time.monotonic() + 5  # the orphaned child is reaped by init, not by us
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(proc.pid, 0)  # raises once no member of the group is left
            time.sleep(0.1)


def test_emulated_dir_is_where_the_setup_script_puts_it(monkeypatch):
    # scripts/emulated_kryo.sh setup writes .emulated/ at the repository root; a wrong default
    # here silently skipped every emulated test
    from rt3d_passes.rpc.emulated_kryo import emulated_dir

    monkeypatch.delenv("RT3D_EMULATED_DIR", raising=False)
    root = Path(rt3d_passes.__file__).resolve().parents[1]
    assert (root / "scripts" / "emulated_kryo.sh").exists()
    assert emulated_dir() == root / ".emulated"


def test_runner_session_waits_wait_s_not_the_session_lifetime(loopback):
    """The tuning runner's session request gives up after ``wait_s`` even when sessions may
    live long (a slow device), so dead devices cost seconds, not the lifetime, per trial."""
    settings = rpc.RPCSettings(loopback.url, "no-such-device", timeout_s=600, wait_s=1)
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="no-such-device"):
        settings.create_session()(settings.runner_config())
    assert time.monotonic() - start < 1 + 1 + SLACK_S  # wait_s, the tracker report, slack
    with pytest.raises(ValueError, match="RPC wait must be positive"):
        rpc.RPCSettings(loopback.url, KEY, wait_s=0)


def test_dead_server_fails_fast(loopback):
    server = rpc.start_server("never", loopback.url, python="/bin/false")
    with server, pytest.raises(RuntimeError, match="exited"):
        rpc.wait_for_server(*loopback.address, "never", timeout_s=60, process=server)


# ---- MetaSchedule through the tracker --------------------------------------------------------


@pytest.mark.tuning
def test_tuning_through_tracker(tmp_path, rng):
    from tvm.s_tir import meta_schedule as ms

    func, offsets = kgs_task(rng)
    key = "host-tune"
    with rpc.start_tracker() as tracker, rpc.start_server(key, tracker.url) as server:
        rpc.wait_for_server(*tracker.address, key, timeout_s=120, process=server)
        tune_over_rpc(func, offsets, tracker.address, key, tmp_path, trials=4, per_iter=2)
        sessions = server.log_tail(100_000).count("connected from")
    reloaded = ms.database.JSONDatabase(work_dir=str(tmp_path))
    records = reloaded.get_all_tuning_records()
    measured = measured_run_secs(tmp_path / "database_tuning_record.json")
    assert len(records) >= 2 and len(measured) == len(records), records
    assert all(0 < float(v) < 1 for secs in measured for v in secs)
    assert sessions >= len(measured)  # every measurement went through the server


def _wait_for_servers(tracker, key: str, n: int, timeout_s: float = 120) -> None:
    """Wait until the tracker has exactly ``n`` servers with ``key``, all free.
    (``rpc.wait_for_server`` returns once one is free: the other may still be registering.)"""
    deadline = time.monotonic() + timeout_s
    while True:
        summary = rpc.check_tracker(*tracker.address, timeout_s=5)
        servers = sum(s["key"] == f"server:{key}" for s in summary.get("server_info", []))
        free = summary.get("queue_info", {}).get(key, {}).get("free", 0)
        if servers == n and free == n:
            return
        assert time.monotonic() < deadline, f"tracker: {summary}; expected {n} free {key!r}"
        time.sleep(0.2)


def _runner_with_hooks(hooks: dict):
    """A MetaSchedule runner that calls ``hooks[n](inputs)`` before handing batch ``n``
    (from 1) to the wrapped runner. The task scheduler joins a batch (and commits its records)
    before it generates the next one, so a hook runs at a fixed point of tuning."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner

    @derived_object
    class _HookedRunner(PyRunner):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.batches = 0

        def run(self, runner_inputs):
            self.batches += 1
            if self.batches in hooks:
                hooks[self.batches](runner_inputs)
            return self.inner.run(runner_inputs)

    return _HookedRunner


@pytest.mark.tuning
def test_tuning_survives_killed_servers(tmp_path, rng):
    """Two servers; one killed before the second batch (tuning goes on with the other), the
    other before the third (measurements fail fast, tuning ends); measured records stay.

    The kills happen at fixed points (before a batch is handed to the runner, once the tracker
    has dropped the killed server), not when a thread polling the database notices records: that
    raced with the next batch."""
    func, offsets = kgs_task(rng)
    key = "host-fault"
    records = tmp_path / "database_tuning_record.json"
    sizes: list[int] = []  # candidates per batch
    measured_at_kill: list[int] = []
    last_kill = [0.0]
    with (rpc.start_tracker() as tracker, rpc.start_server(key, tracker.url) as first,
          rpc.start_server(key, tracker.url) as second):
        for server in (first, second):
            rpc.wait_for_server(*tracker.address, key, timeout_s=120, process=server)
        _wait_for_servers(tracker, key, 2)

        def batch(server=None, left=0):
            def hook(inputs) -> None:
                if server is not None:
                    measured_at_kill.append(len(measured_run_secs(records)))
                    server.kill()
                    _wait_for_servers(tracker, key, left, timeout_s=30)
                    last_kill[0] = time.monotonic()
                sizes.append(len(inputs))
            return hook

        hooked = _runner_with_hooks({1: batch(), 2: batch(first, left=1), 3: batch(second)})
        start = time.monotonic()
        # a healthy measurement may take long on a loaded machine (a 10 s session lifetime
        # failed one in seven runs there); a dead key fails each request after 10 s
        tune_over_rpc(func, offsets, tracker.address, key, tmp_path, trials=6, per_iter=2,
                      session_timeout_s=300, wait_s=10, wrap_runner=hooked)
        elapsed, after_kill = time.monotonic() - start, time.monotonic() - last_kill[0]
    measured = measured_run_secs(records)
    total = len(records.read_text().splitlines())
    print(f"batches {sizes}; measured at the kills: {measured_at_kill}; at the end: "
          f"{len(measured)} measured of {total} records; tuning took {elapsed:.0f} s, "
          f"{after_kill:.0f} s of it after the last kill")
    assert len(sizes) >= 3, f"tuning ended before the third batch: {sizes}"
    # batch 1 measured with both servers up, batch 2 on the remaining one
    assert measured_at_kill == [sizes[0], sizes[0] + sizes[1]]
    # nothing measured was lost, and nothing was measured once no server was left
    assert len(measured) == sizes[0] + sizes[1]
    assert total >= len(measured)
    # with no server left, each measurement fails after the 10 s session timeout: no hang
    assert after_kill < sizes[2] * 10 + 120
