"""Smoke test of the peer runners: a tiny 3D CNN through every peer, checked against eager.

Run from the repository root::

    python benchmarks/peer_smoke.py                      # tiny model, 2 threads
    python benchmarks/peer_smoke.py --model c3d --runs 5 # rt3d_prune.models.build_model("c3d")
    python benchmarks/peer_smoke.py --model c3d_small --out benchmarks/results/peer_c3d_small.json

Prints a table (peer, median/min/max ms, speed vs eager, max abs error, status) and writes
``benchmarks/results/peer_smoke.json``.  Only ratios within one run are meaningful: the peers
are timed interleaved because CPU speed drifts between passes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

# libgomp reads this when it loads (with torch, and MNN's bundled copy): parked instead of
# spinning OpenMP workers. Without it, torch's 2-thread barriers stall for tens of ms whenever
# another process holds a core (seen here: tiny model 2 ms alone, median 20 ms / max 185 ms
# under load); the cost on a quiet machine is a futex wake per parallel region. Export
# OMP_WAIT_POLICY=ACTIVE (or anything) before running to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/peer_smoke.py` puts only benchmarks/ on the path
    sys.path.insert(0, str(ROOT))

from benchmarks.environment import cpu_model  # noqa: E402
from benchmarks.peers import PEERS, format_table, run_peers  # noqa: E402
from benchmarks.peers.timing import busy_cores  # noqa: E402
from benchmarks.peers.tiny_model import TINY_SHAPE, randomize_bn, tiny_3d_cnn  # noqa: E402


def build(name: str, shape: tuple[int, ...] | None) -> tuple[nn.Module, torch.Tensor]:
    """The model and a random input: ``tiny`` here, anything else from ``rt3d_prune.models``."""
    torch.manual_seed(0)
    if name == "tiny":
        model, shape = tiny_3d_cnn(), shape or TINY_SHAPE
    else:
        from rt3d_prune.models import build_model, default_input_shape

        model, shape = build_model(name), shape or default_input_shape(name)
    with torch.no_grad():
        model = randomize_bn(model.eval())
    return model, torch.randn(*shape)


def busy_warning(busy: float) -> str:
    """A warning if other processes kept more than a third of a core busy before the run."""
    if busy > 0.3:
        return (
            f"WARNING: other processes kept {busy:.1f} of {os.cpu_count()} cores busy before the "
            "run: timings are inflated (torch's OpenMP above all: it stalls when oversubscribed)"
        )
    return ""


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="'tiny' or a rt3d_prune.models name")
    parser.add_argument("--shape", type=int, nargs="+", help="input shape, e.g. 1 3 16 112 112")
    parser.add_argument("--peers", nargs="+", choices=list(PEERS), help="default: all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10, help="interleaved timed rounds")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gap-ms", type=float, default=50.0, help="untimed pause before each run")
    parser.add_argument("--workdir", type=Path, help="export directory (default: a temp dir)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "peer_smoke.json"
    )
    args = parser.parse_args(argv)

    model, example = build(args.model, tuple(args.shape) if args.shape else None)
    busy_before = busy_cores()
    with tempfile.TemporaryDirectory(prefix="rt3d_peers_") as tmp:
        workdir = args.workdir or Path(tmp)
        results = run_peers(
            model,
            example,
            workdir,
            peers=args.peers,
            threads=args.threads,
            runs=args.runs,
            warmup=args.warmup,
            gap_ms=args.gap_ms,
        )
    print(
        f"model={args.model} input={list(example.shape)} threads={args.threads} "
        f"runs={args.runs} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')} "
        "(interleaved; compare ratios within this run only)"
    )
    print(format_table(results))
    busy_after = busy_cores()
    warning = busy_warning(max(busy_before, busy_after))
    if warning:
        print(warning)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "model": args.model,
        "input_shape": list(example.shape),
        "threads": args.threads,
        "runs": args.runs,
        "gap_ms": args.gap_ms,
        "machine": {
            "python": platform.python_version(),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "busy_cores_before": busy_before,
            "busy_cores_after": busy_after,
        },
        "results": [r.as_dict() for r in results],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
