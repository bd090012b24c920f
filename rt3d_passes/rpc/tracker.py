"""TVM's RPC tracker with deadlines: start trackers and servers, ask the tracker what it has,
wait for a device key.

TVM's own client retries a refused tracker connection for 60 s, and the tracker queues a
request for a key with no free server until one appears. Here both become a clear
``ConnectionError`` or ``TimeoutError`` that names the tracker, the key and what the tracker
reported.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Mapping
from typing import Any

from tvm.rpc import base as rpc_base

from .process import LocalProcess, free_port

__all__ = [
    "Address",
    "check_tracker",
    "describe",
    "parse_address",
    "start_server",
    "start_tracker",
    "tracker_call",
    "tracker_socket",
    "wait_for_server",
]

Address = str | tuple[str, int]

# rpc_server starts its workers with ``sys.executable``. Under an interpreter wrapper (the
# qemu-user script of the emulated device) that is the aarch64 binary, which the host cannot
# exec; pointing sys.executable at the wrapper makes the workers go through it too.
_RUN_SERVER_AS = (
    "import sys, runpy; sys.executable = {python!r}; sys.argv[0] = 'rpc_server'; "
    "runpy.run_module('tvm.exec.rpc_server', run_name='__main__')"
)


def parse_address(address: Address) -> tuple[str, int]:
    """``(host, port)`` of a ``"host:port"`` string or a pair; ValueError names a bad one."""
    if isinstance(address, tuple):
        return str(address[0]), int(address[1])
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"tracker address must be 'host:port', got {address!r}")
    return host, int(port)


def _remaining(deadline: float) -> float:
    return max(0.01, deadline - time.monotonic())


def tracker_call(sock: socket.socket, request: list, deadline: float) -> Any:
    sock.settimeout(_remaining(deadline))
    rpc_base.sendjson(sock, request)
    sock.settimeout(_remaining(deadline))
    reply = rpc_base.recvjson(sock)
    if not isinstance(reply, list) or reply[0] != rpc_base.TrackerCode.SUCCESS:
        raise ConnectionError(f"RPC tracker refused {request[:2]}: {reply!r}")
    return reply[1] if len(reply) > 1 else None


def tracker_socket(host: str, port: int, deadline: float) -> socket.socket:
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
    sock = tracker_socket(host, port, deadline)
    try:
        with sock:
            return tracker_call(sock, [rpc_base.TrackerCode.SUMMARY], deadline)
    except OSError as err:
        raise ConnectionError(f"RPC tracker {host}:{port} did not answer: {err}") from err


def describe(summary: dict) -> str:
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
        f"{timeout_s:g} s; the tracker has: {describe(seen)}"
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
    t_host, t_port = parse_address(tracker)
    port = port or free_port(host)
    args = ["--host", host, "--port", str(port), "--port-end", str(port + 1),
            "--tracker", f"{t_host}:{t_port}", "--key", key]
    if python is None:
        argv = [sys.executable, "-m", "tvm.exec.rpc_server", *args]
    else:
        argv = [python, "-c", _RUN_SERVER_AS.format(python=str(python)), *args]
    return LocalProcess(argv, name=f"rpc_server {key}", address=(host, port), env=env)

