"""Run a set of peers on one model: prepare each, check its output, time them interleaved.

A peer that is not installed, cannot export or cannot run the model gets a status string
(``"not installed (pip install .[bench])"``, ``"unsupported: <reason>"``, ``"failed: <error>"``)
instead of raising, so one missing runtime never breaks the table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import PeerRunner, PeerUnsupported, check_output, first_line
from .registry import PEERS, get_peer
from .timing import run_interleaved, summarize

OK = "ok"


@dataclass
class PeerResult:
    """Outcome of one peer on one model."""

    peer: str
    status: str
    times_ms: list[float] = field(default_factory=list)
    max_abs_err: float | None = None
    max_rel_err: float | None = None  # max_abs_err / max|reference|
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Ran and matched the eager reference."""
        return self.status == OK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the timing summary (median/min/max ms)."""
        d = asdict(self)
        d.update(summarize(self.times_ms) if self.times_ms else {})
        for key, value in list(d.items()):
            if isinstance(value, float) and not math.isfinite(value):
                d[key] = None
        return d


def prepare_peer(
    cls: type[PeerRunner],
    model: torch.nn.Module,
    example: torch.Tensor,
    ref: np.ndarray,
    workdir: Path,
    threads: int,
    rtol: float,
    atol: float,
) -> tuple[PeerResult, PeerRunner | None]:
    """Check availability, prepare, run once and compare with ``ref``; never raises."""
    available, reason = cls.available()
    if not available:
        return PeerResult(cls.name, reason), None
    runner = cls()
    try:
        runner.prepare(model, example, workdir, threads)
        out = runner.run(example.detach().numpy())
    except PeerUnsupported as exc:
        return PeerResult(cls.name, f"unsupported: {exc}", info=runner.info()), None
    except Exception as exc:
        status = f"failed: {type(exc).__name__}: {first_line(exc)}"
        return PeerResult(cls.name, status, info=runner.info()), None
    ok, err = check_output(ref, out, rtol=rtol, atol=atol)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    status = OK if ok else f"wrong output (max abs err {err:.3g}, rel {rel:.3g})"
    result = PeerResult(cls.name, status, max_abs_err=err, max_rel_err=rel, info=runner.info())
    return result, runner


def run_peers(
    model: torch.nn.Module,
    example: torch.Tensor,
    workdir: Path,
    peers: Sequence[str] | None = None,
    threads: int = 2,
    runs: int = 10,
    warmup: int = 1,
    rtol: float = 1e-3,
    atol: float = 0.0,
    gap_ms: float = 50.0,
) -> list[PeerResult]:
    """Prepare every peer in ``peers`` (default: all registered) for ``model``, check each
    against PyTorch eager, then time all runnable ones interleaved (``runs`` rounds).

    ``workdir`` receives the exported files (one directory per model: the ONNX file is shared
    by ONNX Runtime, OpenVINO and MNN).  Peers that ran but disagree with eager are still timed;
    their status says ``wrong output``.  ``gap_ms`` is the untimed pause before every timed run
    (see :func:`~benchmarks.peers.timing.run_interleaved`: spinning thread pools of the previous
    runner would otherwise slow down the next one).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    model = model.eval()
    example = example.detach().contiguous().float()
    with torch.no_grad():
        ref = model(example).numpy()
    results: list[PeerResult] = []
    runners: dict[str, PeerRunner] = {}
    for name in peers if peers is not None else list(PEERS):
        result, runner = prepare_peer(
            get_peer(name), model, example, ref, workdir, threads, rtol, atol
        )
        results.append(result)
        if runner is not None:
            runners[name] = runner
    if runners and runs > 0:
        times = run_interleaved(
            {name: r.run for name, r in runners.items()}, example.numpy(), runs, warmup, gap_ms
        )
        for result in results:
            result.times_ms = times.get(result.peer, [])
    return results


def format_table(results: Sequence[PeerResult], baseline: str = "torch_eager") -> str:
    """Plain-text table: peer, median/min/max ms, speedup vs ``baseline``, max abs/rel error,
    status;
    the runners' notes follow the table."""
    base = next((r for r in results if r.peer == baseline and r.times_ms), None)
    base_ms = summarize(base.times_ms)["median_ms"] if base else float("nan")
    header = f"{'peer':<13} {'median ms':>10} {'min':>9} {'max':>9} {'vs eager':>8} "
    header += f"{'max abs err':>11} {'rel err':>8}  status"
    lines = [header, "-" * len(header)]
    for r in results:
        if r.times_ms:
            s = summarize(r.times_ms)
            med, lo, hi = s["median_ms"], s["min_ms"], s["max_ms"]
            cols = f"{med:>10.2f} {lo:>9.2f} {hi:>9.2f} {base_ms / med:>7.2f}x"
        else:
            cols = f"{'-':>10} {'-':>9} {'-':>9} {'-':>8}"
        err = f"{r.max_abs_err:>11.2e}" if r.max_abs_err is not None else f"{'-':>11}"
        err += f" {r.max_rel_err:>8.1e}" if r.max_rel_err is not None else f" {'-':>8}"
        lines.append(f"{r.peer:<13} {cols} {err}  {r.status}")
    notes = [(r.peer, note) for r in results for note in r.info.get("notes", [])]
    if notes:
        lines.append("")
        lines += [f"note [{peer}]: {note}" for peer, note in notes]
    return "\n".join(lines)
