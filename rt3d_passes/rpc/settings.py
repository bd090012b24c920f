"""``RPCSettings``: where and how tuning measures on remote devices."""

from __future__ import annotations

import dataclasses

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
        Seconds to wait for a free device, and a session's lifetime.
    """

    tracker: Address
    key: str
    timeout_s: int = 120

    def __post_init__(self):
        host, port = parse_address(self.tracker)
        object.__setattr__(self, "tracker", f"{host}:{port}")
        if not self.key:
            raise ValueError("an RPC device key is needed (the key its servers registered)")
        if int(self.timeout_s) <= 0:
            raise ValueError(f"RPC timeout must be positive, got {self.timeout_s}")
        object.__setattr__(self, "timeout_s", int(self.timeout_s))

    @property
    def address(self) -> tuple[str, int]:
        return parse_address(self.tracker)

    def runner_config(self):
        """MetaSchedule's ``RPCConfig`` for these settings."""
        from tvm.s_tir import meta_schedule as ms

        host, port = self.address
        return ms.runner.RPCConfig(tracker_host=host, tracker_port=port, tracker_key=self.key,
                                   session_timeout_sec=self.timeout_s)
