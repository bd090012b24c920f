"""RPC for RT3D: local processes, TVM's tracker with deadlines, remote sessions and runs.

One import serves a whole RPC workflow (loopback example)::

    from rt3d_passes import rpc
    with rpc.start_tracker() as tracker, rpc.start_server("host", tracker.url):
        rpc.wait_for_server(*tracker.address, "host", timeout_s=60)
        outputs, timing = rpc.run_remote(ex, tracker.url, "host", [x])

* :mod:`.process` -- :class:`LocalProcess` (a process group that is always cleaned up);
* :mod:`.tracker` -- trackers and servers, ``host:port`` parsing, waiting for a key;
* :mod:`.session` -- sessions that cannot hang, exports, :func:`run_remote`;
* :mod:`.settings` -- :class:`RPCSettings` for tuning over RPC;
* :mod:`.emulated_kryo` -- the emulated aarch64 device (qemu-user).
"""

from .process import LocalProcess, free_port
from .session import (
    create_runner_session,
    cross_export_aarch64,
    export_host,
    request_session,
    run_remote,
)
from .settings import RPCSettings
from .tracker import (
    Address,
    check_tracker,
    parse_address,
    start_server,
    start_tracker,
    wait_for_server,
)

__all__ = [
    "Address",
    "LocalProcess",
    "RPCSettings",
    "check_tracker",
    "create_runner_session",
    "cross_export_aarch64",
    "export_host",
    "free_port",
    "parse_address",
    "request_session",
    "run_remote",
    "start_server",
    "start_tracker",
    "wait_for_server",
]
