"""``RPCSettings``: where and how tuning measures on remote devices."""

from __future__ import annotations

import dataclasses
import functools

from .tracker import Address, parse_address

__all__ = ["RPCSettings"]


@dataclasses.dataclass(frozen=True)
class RPCSettings:
    """The devices registered under ``key`` at an RPC tracker.

    Parameters
    ----------
    tracker : "host:port" or (host, port)
        Parsed on construction; a malformed address raises ValueError.
    key : str
        The device key the servers registered with.
    timeout_s : int
        A session's lifetime (one measurement: upload, load, run), and by default the seconds
        to wait for a free device.
    wait_s : int, optional
        Seconds to wait for a free device before the measurement fails (default:
        ``timeout_s``). With every device of the key gone, each remaining measurement of a
        tuning run takes this long to fail.
    """

    tracker: Address
    key: str
    timeout_s: int = 120
    wait_s: int | None = None

    def __post_init__(self):
        host, port = parse_address(self.tracker)
        object.__setattr__(self, "tracker", f"{host}:{port}")
        if not self.key:
            raise ValueError("an RPC device key is needed (the key its servers registered)")
        if int(self.timeout_s) <= 0:
            raise ValueError(f"RPC timeout must be positive, got {self.timeout_s}")
        object.__setattr__(self, "timeout_s", int(self.timeout_s))
        if self.wait_s is not None:
            if int(self.wait_s) <= 0:
                raise ValueError(f"RPC wait must be positive, got {self.wait_s}")
            object.__setattr__(self, "wait_s", int(self.wait_s))

    @property
    def address(self) -> tuple[str, int]:
        return parse_address(self.tracker)

    def runner_config(self):
        """MetaSchedule's ``RPCConfig`` for these settings."""
        from tvm.s_tir import meta_schedule as ms

        host, port = self.address
        return ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=self.key,
                                   session_timeout_sec=self.timeout_s)

    def create_session(self):
        """MetaSchedule's ``f_create_session`` for these settings: a session request that
        waits at most ``wait_s`` for a free device (:func:`create_runner_session`)."""
        from .session import create_runner_session

        return functools.partial(create_runner_session, wait_s=self.wait_s)
