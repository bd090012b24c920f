"""An emulated Kryo device: a TVM RPC server for aarch64 under ``qemu-user`` on this host.

``scripts/emulated_kryo.sh setup`` prepares the directory (default ``.emulated/`` in the
repository, or ``$RT3D_EMULATED_DIR``): an arm64 Debian Python 3.11 in ``root/``, the aarch64
wheels of apache-tvm / apache-tvm-ffi and their dependencies in ``site/``, and ``py-aarch64``,
a host shell wrapper that runs that Python under qemu. Then::

    with rpc.start_tracker() as tracker, start_emulated_kryo(tracker.url) as server:
        rpc.wait_for_server(*tracker.address, EMULATED_KEY, 300, process=server)
        outputs, timing = rpc.run_remote(ex, tracker.url, EMULATED_KEY, [x], kryo_target())

Under emulation ``import tvm`` alone takes ~30 s and a server registers after ~45 s or more;
timings say nothing about a phone, but results and the whole RPC flow are real.

``python -m rt3d_passes.rpc.emulated_kryo`` starts a tracker (unless ``--tracker``) and the server,
prints ``ready <tracker host:port>`` once the key is registered, and stops both on SIGTERM
(what ``scripts/emulated_kryo.sh start|stop`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from ..target import kryo_target
from .process import LocalProcess
from .tracker import Address, parse_address, start_server, start_tracker, wait_for_server

__all__ = ["EMULATED_KEY", "emulated_dir", "kryo_target", "not_set_up_reason",
           "start_emulated_kryo"]

#: Device key of the emulated server.
EMULATED_KEY = "kryo-emu"


def emulated_dir() -> Path:
    """``$RT3D_EMULATED_DIR``, else ``.emulated/`` at the repository root."""
    env = os.environ.get("RT3D_EMULATED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / ".emulated"


def not_set_up_reason(directory: Path | None = None) -> str | None:
    """Why the emulated device cannot start here (``None`` when it can)."""
    directory = directory or emulated_dir()
    missing = [p for p in ("py-aarch64", "root/usr/bin/python3.11", "site/tvm", "site/tvm_ffi")
               if not (directory / p).exists()]
    if missing:
        return (f"emulated Kryo device not set up in {directory} (missing {', '.join(missing)}):"
                " run `bash scripts/emulated_kryo.sh setup`")
    for tool in ("qemu-aarch64", "aarch64-linux-gnu-gcc"):
        if not any((Path(p) / tool).exists() for p in os.environ.get("PATH", "").split(":")):
            return f"{tool} not on PATH: run `bash scripts/emulated_kryo.sh setup`"
    return None


def start_emulated_kryo(tracker: Address, key: str = EMULATED_KEY,
                        directory: Path | None = None) -> LocalProcess:
    """Start the aarch64 RPC server under qemu, registering ``key`` with ``tracker``.

    Returns at once; registration takes ~45 s or more (follow with
    :func:`rt3d_passes.rpc.wait_for_server`).

    Raises
    ------
    FileNotFoundError
        The directory is not set up (see :func:`not_set_up_reason`).
    """
    directory = directory or emulated_dir()
    reason = not_set_up_reason(directory)
    if reason:
        raise FileNotFoundError(reason)
    return start_server(key, tracker, python=str(directory / "py-aarch64"))


def _raise_exit(*_: object) -> None:
    # SystemExit unwinds the ExitStack from wherever the main thread is (also while waiting
    # for registration), so the tracker and server process groups are always terminated.
    raise SystemExit(0)


def _serve(tracker: str | None, key: str, directory: Path, timeout_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_exit)
    with contextlib.ExitStack() as stack:
        if tracker is None:
            own = stack.enter_context(start_tracker())
            tracker = own.url
            print(f"tracker pid {own.pid}", flush=True)
        server = stack.enter_context(start_emulated_kryo(tracker, key, directory))
        print(f"server pid {server.pid}", flush=True)
        host, port = parse_address(tracker)
        wait_for_server(host, port, key, timeout_s, process=server)
        print(f"ready {tracker} {key}", flush=True)
        while server.alive():
            time.sleep(1.0)
        sys.exit(f"emulated server exited ({server.popen.returncode}):\n{server.log_tail()}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracker", help="host:port of a running tracker (default: start one)")
    parser.add_argument("--key", default=EMULATED_KEY)
    parser.add_argument("--dir", type=Path, default=None, help="default: $RT3D_EMULATED_DIR")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the server to register")
    args = parser.parse_args(argv)
    _serve(args.tracker, args.key, args.dir or emulated_dir(), args.timeout)


if __name__ == "__main__":
    main()
