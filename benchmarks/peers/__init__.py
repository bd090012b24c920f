"""Peer runtime runners for the end-to-end benchmark (optional extras: ``pip install .[bench]``).

Usage::

    from benchmarks.peers import PEERS, get_peer, run_peers
    results = run_peers(model, example, workdir=Path("work"), threads=2, runs=10)

Importing this package needs only ``torch`` and ``numpy``; each runner imports its runtime in
``prepare``.
"""

from .base import NOT_INSTALLED, PeerRunner, PeerUnsupported, check_output
from .harness import PeerResult, format_table, run_peers
from .registry import PEERS, get_peer
from .timing import max_ms, median_ms, min_ms, run_interleaved, summarize

__all__ = [
    "NOT_INSTALLED",
    "PEERS",
    "PeerResult",
    "PeerRunner",
    "PeerUnsupported",
    "check_output",
    "format_table",
    "get_peer",
    "max_ms",
    "median_ms",
    "min_ms",
    "run_interleaved",
    "run_peers",
    "summarize",
]
