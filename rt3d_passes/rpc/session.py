"""Remote execution over TVM's RPC tracker: sessions with timeouts, MetaSchedule's session
factory, exports for a device, and running a compiled model on a remote device."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tvm
import tvm_ffi
from tvm import relax, rpc
from tvm.rpc import base as rpc_base
from tvm.target import Target

from .tracker import (
    Address,
    check_tracker,
    describe,
    parse_address,
    tracker_call,
    tracker_socket,
)

__all__ = [
    "create_runner_session",
    "cross_export_aarch64",
    "export_host",
    "request_session",
    "run_remote",
]

ExportFn = Callable[[Any], str]


def request_session(tracker: Address, key: str, timeout_s: float = 60.0,
                    session_timeout_s: float = 0.0, priority: int = 1) -> rpc.RPCSession:
    """A session on a server with ``key``, or an error within ``timeout_s`` (plus at most 1 s
    to report what the tracker has).

    Parameters
    ----------
    tracker : "host:port" or (host, port)
    key : str
    timeout_s : float
        Deadline for the tracker to hand out a server (TVM's own request waits forever).
    session_timeout_s : float
        Lifetime the server grants the session (0: unlimited).
    priority : int

    Raises
    ------
    ConnectionError
        Tracker unreachable.
    TimeoutError
        No server with ``key`` became free in time.
    """
    host, port = parse_address(tracker)
    deadline = time.monotonic() + timeout_s
    sock = tracker_socket(host, port, deadline)
    with sock:
        try:
            url, s_port, matchkey = tracker_call(
                sock, [rpc_base.TrackerCode.REQUEST, key, "", priority], deadline)
        except TimeoutError:
            try:
                seen = describe(check_tracker(host, port, 1.0))
            except ConnectionError as err:
                seen = str(err)
            raise TimeoutError(
                f"no RPC server with key {key!r} became free at tracker {host}:{port} within "
                f"{timeout_s:g} s; the tracker has: {seen}"
            ) from None
        except OSError as err:
            raise ConnectionError(f"RPC tracker {host}:{port} failed: {err}") from err
    # a server that accepts the connection but never answers (stopped, wedged) would block
    # rpc.connect forever, holding the GIL: MetaSchedule's worker timeout never fires
    with _alarm(timeout_s, f"RPC server {url}:{s_port} (key {key!r}) accepted the connection "
                           f"but did not answer within {timeout_s:g} s"):
        return rpc.connect(url, s_port, matchkey, session_timeout_s)


@contextlib.contextmanager
def _alarm(seconds: float, message: str) -> Iterator[None]:
    """Raise ``TimeoutError(message)`` after ``seconds`` of the block, even inside a blocking
    socket call of TVM's C++ runtime (SIGALRM interrupts it and TVM's retry on EINTR runs
    Python's signal handlers). Only in the main thread, and only when SIGALRM is unused."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGALRM) not in (signal.SIG_DFL, None):
        yield
        return

    def on_alarm(_signum, _frame):
        raise TimeoutError(message)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def create_runner_session(rpc_config: Any, wait_s: float | None = None) -> rpc.RPCSession:
    """``f_create_session`` for MetaSchedule's ``RPCRunner`` that cannot hang.

    The default asks the tracker without a deadline, so a key whose servers all died blocks
    the runner (and tuning) forever; this fails the measurement after ``wait_s`` (default:
    ``rpc_config.session_timeout_sec``) without a free server instead, and tuning goes on.
    The session itself lives ``rpc_config.session_timeout_sec``: the two are separate so that
    a slow measurement on a loaded device need not fail for dead devices to be noticed fast
    (``functools.partial(create_runner_session, wait_s=...)``, as ``RPCSettings`` does).
    """
    lifetime = float(rpc_config.session_timeout_sec)
    return request_session((rpc_config.tracker_host, rpc_config.tracker_port),
                           rpc_config.tracker_key,
                           timeout_s=lifetime if wait_s is None else float(wait_s),
                           session_timeout_s=lifetime, priority=rpc_config.session_priority)


def export_host(rt_mod: Any) -> str:
    """Export a module or executable for this machine (host compiler) to a fresh ``.so``."""
    path = os.path.join(tempfile.mkdtemp(prefix="rt3d-export-"), "rt3d_mod.so")
    rt_mod.export_library(path)
    return path


def cross_export_aarch64(rt_mod: Any) -> str:
    """Export for Linux/aarch64 with ``aarch64-linux-gnu-gcc`` (Debian
    ``gcc-aarch64-linux-gnu``) to a fresh ``.so``.

    Works for a ``tvm.compile`` executable and as MetaSchedule's
    ``LocalBuilder(f_export=...)``: the device gets a ready library and needs no compiler.
    """
    from tvm.support import cc

    path = os.path.join(tempfile.mkdtemp(prefix="rt3d-export-"), "rt3d_mod.so")
    rt_mod.export_library(path, fcompile=cc.cross_compiler("aarch64-linux-gnu-gcc"))
    return path


def _default_export(target: Target | None) -> ExportFn:
    if target is None:
        return export_host
    triple = str(target.attrs.get("mtriple", ""))
    if triple.startswith("aarch64") and os.uname().machine != "aarch64":
        return cross_export_aarch64
    return export_host


def _to_numpy(result: Any) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    if isinstance(result, list | tuple | tvm_ffi.Array):
        return [r.numpy() for r in result]
    raise TypeError(
        f"remote result of type {type(result).__name__} is not a tensor: over RPC a tuple "
        "output comes back opaque; import the model with unwrap_unit_return_tuple=True or "
        "return a single tensor"
    )


def run_remote(
    executable: Any,
    tracker: Address,
    key: str,
    inputs: Sequence[np.ndarray],
    target: Target | dict | None = None,
    export_fn: ExportFn | None = None,
    number: int = 10,
    repeat: int = 3,
    timeout_s: float = 60.0,
    func_name: str = "main",
) -> tuple[list[np.ndarray], Any]:
    """Run and time a compiled Relax model on a remote device.

    Parameters
    ----------
    executable : tvm.compile result, or path of an exported ``.so``
    tracker : "host:port" or (host, port)
    key : str
        Device key.
    inputs : sequence of np.ndarray
        The function's arguments.
    target : Target, optional
        Picks the export: an aarch64 target on a non-aarch64 host cross-compiles.
    export_fn : callable, optional
        ``f(executable) -> path`` (e.g. :func:`cross_export_aarch64`); overrides ``target``.
    number, repeat : int
        ``time_evaluator``'s: ``repeat`` means of ``number`` runs each.
    timeout_s : float
        Deadline for the tracker to hand out a server.
    func_name : str

    Returns
    -------
    outputs : list of np.ndarray
        The outputs of one run.
    timing : tvm.runtime.BenchmarkResult
        ``.mean`` / ``.median`` / ``.std`` / ``.results`` in seconds, timed on the device.
    """
    session = request_session(tracker, key, timeout_s=timeout_s)  # fail fast, before export
    name = f"rt3d_{os.getpid()}_{int(time.time() * 1e3)}.so"  # servers may be shared
    if isinstance(executable, str | os.PathLike):
        session.upload(os.fspath(executable), target=name)
    else:
        target = Target(target) if isinstance(target, dict) else target
        path = Path((export_fn or _default_export(target))(executable))
        try:
            session.upload(str(path), target=name)
        finally:
            path.unlink(missing_ok=True)  # a temporary export: the device has its copy
            with contextlib.suppress(OSError):
                path.parent.rmdir()
    dev = session.cpu()
    vm = relax.VirtualMachine(session.load_module(name), dev)
    args = [tvm.runtime.tensor(np.ascontiguousarray(a), dev) for a in inputs]
    outputs = _to_numpy(vm[func_name](*args))
    timing = vm.time_evaluator(func_name, dev, number=number, repeat=repeat)(*args)
    session.remove(name)
    return outputs, timing
