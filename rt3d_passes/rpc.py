"""Remote execution over TVM's RPC tracker: local tracker/server processes, sessions with
timeouts, and running a compiled model on a remote device.

Every blocking call here has a deadline. TVM's own client waits forever in two places: it
retries a refused tracker connection for 60 s, and the tracker queues a request for a key
with no free server until one appears. Here both become a clear ``ConnectionError`` or
``TimeoutError`` that names the tracker, the key and what the tracker reported.

Example (loopback)::

    from rt3d_passes import rpc
    with rpc.start_tracker() as tracker, rpc.start_server("host", tracker.url):
        rpc.wait_for_server(*tracker.address, "host", timeout_s=60)
        outputs, timing = rpc.run_remote(ex, tracker.url, "host", [x])
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tvm
import tvm_ffi
from tvm import relax, rpc
from tvm.rpc import base as rpc_base
from tvm.target import Target

__all__ = [
    "LocalProcess",
    "check_tracker",
    "create_runner_session",
    "cross_export_aarch64",
    "export_host",
    "free_port",
    "request_session",
    "run_remote",
    "start_server",
    "start_tracker",
    "wait_for_server",
]

Address = str | tuple[str, int]
ExportFn = Callable[[Any], str]

# rpc_server starts its workers with ``sys.executable``. Under an interpreter wrapper (the
# qemu-user script of the emulated device) that is the aarch64 binary, which the host cannot
# exec; pointing sys.executable at the wrapper makes the workers go through it too.
_RUN_SERVER_AS = (
    "import sys, runpy; sys.executable = {python!r}; sys.argv[0] = 'rpc_server'; "
    "runpy.run_module('tvm.exec.rpc_server', run_name='__main__')"
)


def _split(address: Address) -> tuple[str, int]:
    if isinstance(address, tuple):
        return str(address[0]), int(address[1])
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"tracker address must be 'host:port', got {address!r}")
    return host, int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now (the OS picks it; tests run side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalProcess:
    """A subprocess in its own process group, output in a log file.

    As a context manager it terminates the whole group on exit: TVM's RPC server forks a
    worker per session, which must not outlive it.

    Parameters
    ----------
    argv : sequence of str
        The command.
    name : str
        What it is, for messages ("rpc_tracker", "rpc_server kryo-emu").
    address : (host, port)
        Where it listens.
    env : mapping, optional
        Variables added to this process's environment.
    """

    def __init__(self, argv: Sequence[str], name: str, address: tuple[str, int],
                 env: Mapping[str, str] | None = None):
        self.argv = [str(a) for a in argv]
        self.name = name
        self.address = address
        fd, self.log_path = tempfile.mkstemp(prefix=f"rt3d-{name.split()[0]}-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        """``host:port``, the form ``--tracker`` and :func:`run_remote` take."""
        return f"{self.address[0]}:{self.address[1]}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, max_chars: int = 2000) -> str:
        """The end of the process's output (for error messages)."""
        try:
            return Path(self.log_path).read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass  # the whole group is gone already

    def kill(self) -> None:
        """SIGKILL the group now, as a crash would (the log file is kept)."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait()

    def terminate(self, grace_s: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it after ``grace_s``; remove the log file."""
        self._signal_group(signal.SIGTERM)
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
        # the leader may be gone while a forked session worker still runs
        self._signal_group(signal.SIGKILL)
        self.popen.wait()
        Path(self.log_path).unlink(missing_ok=True)

    def __enter__(self) -> LocalProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited {self.popen.returncode}"
        return f"LocalProcess({self.name!r}, {self.url}, pid {self.pid}, {state})"


def _remaining(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())


def _tracker_call(sock: socket.socket, request: list, deadline: float) -> Any:
    sock.settimeout(_remaining(deadline))
    rpc_base.sendjson(sock, request)
    sock.settimeout(_remaining(deadline))
    reply = rpc_base.recvjson(sock)
    if not isinstance(reply, list) or reply[0] != rpc_base.TrackerCode.SUCCESS:
        raise ConnectionError(f"RPC tracker refused {request[:2]}: {reply!r}")
    return reply[1] if len(reply) > 1 else None


def _tracker_socket(host: str, port: int, deadline: float) -> socket.socket:
    """A connected, handshaken tracker socket, or a ``ConnectionError`` by ``deadline``
    (``time.monotonic()``; TVM's ``connect_tracker`` retries for 60 s instead)."""
    try:
        sock = socket.create_connection((host, port), timeout=_remaining(deadline))
    except OSError as err:
        raise ConnectionError(f"RPC tracker {host}:{port} unreachable: {err}") from err
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(struct.pack("<i", rpc_base.RPC_TRACKER_MAGIC))
        magic = struct.unpack("<i", rpc_base.recvall(sock, 4))[0]
    except OSError as err:
        sock.close()
        raise ConnectionError(f"RPC tracker {host}:{port} did not answer: {err}") from err
    if magic != rpc_base.RPC_TRACKER_MAGIC:
        sock.close()
        raise ConnectionError(f"{host}:{port} is not an RPC tracker (magic {magic:#x})")
    return sock


def check_tracker(host: str, port: int, timeout_s: float = 5.0) -> dict:
    """The tracker's summary, or a ``ConnectionError`` within ``timeout_s``.

    Returns
    -------
    summary : dict
        ``{"queue_info": {key: {"free": n, "pending": n}}, "server_info": [...]}``.

    Raises
    ------
    ConnectionError
        ``"RPC tracker 127.0.0.1:9999 unreachable: ..."`` when nothing listens, or when the
        peer does not speak the tracker protocol in time.
    """
    deadline = time.monotonic() + timeout_s
    sock = _tracker_socket(host, port, deadline)
    try:
        with sock:
            return _tracker_call(sock, [rpc_base.TrackerCode.SUMMARY], deadline)
    except OSError as err:
        raise ConnectionError(f"RPC tracker {host}:{port} did not answer: {err}") from err


def _describe(summary: dict) -> str:
    queues = summary.get("queue_info", {})
    return ", ".join(f"{k} (free {v['free']}, pending {v['pending']})"
                     for k, v in sorted(queues.items())) or "no keys"


def wait_for_server(tracker_host: str, tracker_port: int, key: str, timeout_s: float,
                    process: LocalProcess | None = None, poll_s: float = 0.5) -> None:
    """Poll the tracker until a server with ``key`` is free.

    Parameters
    ----------
    tracker_host, tracker_port :
        The tracker.
    key : str
        The device key (``rpc_server --key``).
    timeout_s : float
        Deadline for the whole wait.
    process : LocalProcess, optional
        The server being waited for: if it exits, fail at once with its output.
    poll_s : float
        Pause between polls.

    Raises
    ------
    TimeoutError
        No free server with ``key`` within ``timeout_s``; says what the tracker has instead.
    ConnectionError
        The tracker stayed unreachable for the whole wait.
    RuntimeError
        ``process`` exited before registering.
    """
    deadline = time.monotonic() + timeout_s
    seen, last_err = None, None
    while True:
        if process is not None and not process.alive():
            raise RuntimeError(
                f"{process.name} exited ({process.popen.returncode}) before registering "
                f"key {key!r} with tracker {tracker_host}:{tracker_port}; its output:\n"
                f"{process.log_tail()}"
            )
        remaining = deadline - time.monotonic()
        try:
            seen = check_tracker(tracker_host, tracker_port, max(0.1, min(5.0, remaining)))
            if seen.get("queue_info", {}).get(key, {}).get("free", 0) > 0:
                return
        except ConnectionError as err:
            last_err = err
        if time.monotonic() + poll_s > deadline:
            break
        time.sleep(poll_s)
    if seen is None:
        raise ConnectionError(
            f"RPC tracker {tracker_host}:{tracker_port} unreachable for {timeout_s:g} s: "
            f"{last_err}"
        )
    raise TimeoutError(
        f"no free RPC server with key {key!r} at tracker {tracker_host}:{tracker_port} after "
        f"{timeout_s:g} s; the tracker has: {_describe(seen)}"
    )


def _wait_listening(proc: LocalProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n"
                               f"{proc.log_tail()}")
        try:
            check_tracker(*proc.address, timeout_s=1.0)
            return
        except ConnectionError as err:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} not listening after {timeout_s:g} s: {err}")
        time.sleep(0.2)


def start_tracker(host: str = "127.0.0.1", port: int | None = None,
                  ready_timeout_s: float = 60.0) -> LocalProcess:
    """Start ``python -m tvm.exec.rpc_tracker`` and wait until it answers.

    Parameters
    ----------
    host : str
        Address to bind (loopback by default).
    port : int, optional
        Exact port; by default a free one (so tests do not collide).
    ready_timeout_s : float
        Deadline for the tracker to answer a summary request.

    Returns
    -------
    LocalProcess
        ``.address`` / ``.url`` are the tracker's; terminate it (or use ``with``) when done.
    """
    port = port or free_port(host)
    proc = LocalProcess(
        [sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", host, "--port", str(port),
         "--port-end", str(port + 1)],  # an exact port: the range end is exclusive
        name="rpc_tracker", address=(host, port),
    )
    try:
        _wait_listening(proc, ready_timeout_s)
    except BaseException:
        proc.terminate()
        raise
    return proc


def start_server(key: str, tracker: Address = "127.0.0.1:9190", host: str = "127.0.0.1",
                 port: int | None = None, python: str | None = None,
                 env: Mapping[str, str] | None = None) -> LocalProcess:
    """Start ``python -m tvm.exec.rpc_server`` registering ``key`` with ``tracker``.

    Returns at once: registration can take a minute (under emulation); follow with
    :func:`wait_for_server` (``process=`` the returned object fails fast if it dies).

    Parameters
    ----------
    key : str
        Device key the server registers.
    tracker : "host:port" or (host, port)
    host : str
        Address the server binds.
    port : int, optional
        Exact port; by default a free one.
    python : str, optional
        Interpreter executable to run the server with (e.g. the ``py-aarch64`` qemu wrapper);
        default: this Python.
    env : mapping, optional
        Extra environment variables.
    """
    t_host, t_port = _split(tracker)
    port = port or free_port(host)
    args = ["--host", host, "--port", str(port), "--port-end", str(port + 1),
            "--tracker", f"{t_host}:{t_port}", "--key", key]
    if python is None:
        argv = [sys.executable, "-m", "tvm.exec.rpc_server", *args]
    else:
        argv = [python, "-c", _RUN_SERVER_AS.format(python=str(python)), *args]
    return LocalProcess(argv, name=f"rpc_server {key}", address=(host, port), env=env)


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
    host, port = _split(tracker)
    deadline = time.monotonic() + timeout_s
    sock = _tracker_socket(host, port, deadline)
    with sock:
        try:
            url, s_port, matchkey = _tracker_call(
                sock, [rpc_base.TrackerCode.REQUEST, key, "", priority], deadline)
        except TimeoutError:
            try:
                seen = _describe(check_tracker(host, port, 1.0))
            except ConnectionError as err:
                seen = str(err)
            raise TimeoutError(
                f"no RPC server with key {key!r} became free at tracker {host}:{port} within "
                f"{timeout_s:g} s; the tracker has: {seen}"
            ) from None
        except OSError as err:
            raise ConnectionError(f"RPC tracker {host}:{port} failed: {err}") from err
    return rpc.connect(url, s_port, matchkey, session_timeout_s)


def create_runner_session(rpc_config: Any) -> rpc.RPCSession:
    """``f_create_session`` for MetaSchedule's ``RPCRunner`` that cannot hang.

    The default asks the tracker without a deadline, so a key whose servers all died blocks
    the runner (and tuning) forever; this fails the measurement after
    ``rpc_config.session_timeout_sec`` instead, and tuning goes on.
    """
    timeout = float(rpc_config.session_timeout_sec)
    return request_session((rpc_config.tracker_host, rpc_config.tracker_port),
                           rpc_config.tracker_key, timeout_s=timeout,
                           session_timeout_s=timeout, priority=rpc_config.session_priority)


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
