"""A subprocess in its own process group with its output in a log file, and free ports:
what the RPC helpers start trackers and servers with."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["LocalProcess", "free_port"]


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

