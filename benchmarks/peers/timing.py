"""Interleaved timing of several runners in one process.

CPU speed on shared machines drifts by tens of percent between passes, so peers are never timed
one after another: :func:`run_interleaved` runs A B C A B C ... so that drift hits all alike and
only ratios measured in the same call are meaningful.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np


def run_interleaved(
    runners: Mapping[str, Callable[[np.ndarray], object]],
    x: np.ndarray,
    runs: int = 10,
    warmup: int = 1,
    gap_ms: float = 0.0,
) -> dict[str, list[float]]:
    """Time ``runners`` round-robin on input ``x``; return per-run wall times in ms per name.

    ``warmup`` untimed rounds come first.  The start of the rotation moves by one each round so
    that no runner always follows the same neighbour (cache/thermal effects of the previous one).
    ``gap_ms`` of untimed sleep precede every run: thread pools (OpenMP, ONNX Runtime) keep
    spinning for milliseconds after a run and would otherwise steal the cores from the next
    runner; after the gap every runner starts with its worker threads parked alike.
    """
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(warmup):
        for name in names:
            runners[name](x)
            if gap_ms > 0:
                time.sleep(gap_ms / 1e3)
    for r in range(runs):
        k = r % len(names) if names else 0
        for name in names[k:] + names[:k]:
            if gap_ms > 0:
                time.sleep(gap_ms / 1e3)
            t0 = time.perf_counter()
            runners[name](x)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def median_ms(times: list[float]) -> float:
    """Median of per-run times (NaN for an empty list)."""
    return statistics.median(times) if times else float("nan")


def min_ms(times: list[float]) -> float:
    """Fastest run (NaN for an empty list)."""
    return min(times) if times else float("nan")


def max_ms(times: list[float]) -> float:
    """Slowest run (NaN for an empty list)."""
    return max(times) if times else float("nan")


def summarize(times: list[float]) -> dict[str, float | int]:
    """``{"median_ms", "min_ms", "max_ms", "runs"}`` of a list of per-run times."""
    return {
        "median_ms": median_ms(times),
        "min_ms": min_ms(times),
        "max_ms": max_ms(times),
        "runs": len(times),
    }


def busy_cores(seconds: float = 0.5) -> float:
    """Cores kept busy by other processes, sampled from ``/proc/stat`` (NaN if unavailable)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return float("nan")
    busy = 1.0 - (idle1 - idle0) / max(total1 - total0, 1)
    return busy * (os.cpu_count() or 1)


def sgemm_ceiling(n: int = 2048, runs: int = 5) -> float:
    """Dense fp32 GEMM throughput of numpy's BLAS here (G MAC/s, best of ``runs``): what a
    direct (non-Winograd) kernel can reach at most on this machine."""
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return n**3 / best / 1e9
