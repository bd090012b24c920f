"""Memory of the RT3D builds: exported library size and peak RSS of a runtime-only process.

Each exported ``.so`` (code + constant weights) is loaded and run twice in a fresh child
Python that imports only ``tvm`` and ``numpy``; the child reports its own peak RSS
(``VmHWM`` of ``/proc/self/status``: ``ru_maxrss`` would not do, Linux carries it over
``execve`` from the forked benchmark process). A child that loads nothing gives the baseline
of the interpreter + TVM runtime, so ``peak - baseline`` is what the model itself costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

_CHILD = r"""
import json, sys
import numpy as np
import tvm
from tvm import relax
so, shape = sys.argv[1], [int(v) for v in sys.argv[2].split(",")]
x = np.random.default_rng(0).standard_normal(shape).astype("float32")
if so:
    vm = relax.VirtualMachine(tvm.runtime.load_module(so), tvm.cpu())
    for _ in range(2):
        vm["main"](tvm.runtime.tensor(x)).numpy()
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
print(json.dumps({"maxrss_mb": int(hwm) / 1024}))
"""


def child_peak_rss_mb(library: Path | None, shape: tuple[int, ...], threads: int) -> float:
    """Peak RSS (MiB) of a child that loads ``library`` and runs it twice (None: baseline)."""
    env = dict(os.environ, TVM_NUM_THREADS=str(threads))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(library or ""), ",".join(map(str, shape))],
        capture_output=True, text=True, env=env, timeout=1800, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"memory child for {library} failed: {tail}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mb"])


def measure_memory(libraries: dict[str, Path], weight_bytes: dict[str, int],
                   shape: tuple[int, ...], threads: int) -> dict[str, Any]:
    """Library size, weight bytes and peak RSS per build, and the sparse/dense ratios."""
    baseline = child_peak_rss_mb(None, shape, threads)
    rows = {}
    for name, lib in libraries.items():
        peak = child_peak_rss_mb(lib, shape, threads)
        rows[name] = {"library_mb": lib.stat().st_size / 2**20,
                      "weights_mb": weight_bytes[name] / 2**20,
                      "peak_rss_mb": peak, "peak_rss_over_baseline_mb": peak - baseline}
    result: dict[str, Any] = {"baseline_rss_mb": baseline, "builds": rows}
    if "sparse" in rows and "dense" in rows:
        result["dense_over_sparse"] = {
            key: rows["dense"][key] / rows["sparse"][key] if rows["sparse"][key] else None
            for key in ("library_mb", "weights_mb", "peak_rss_mb", "peak_rss_over_baseline_mb")}
    return result


def pruned_layer_weights(reports: list, sparse: list[int], dense: list[int]) -> dict[str, Any]:
    """Weights of the pruned conv3d layers only: dense build (every column) vs compact sparse
    build, against those layers' MAC reduction (``reports``: ``inspect`` of the sparse model,
    one per conv3d in execution order; ``rewrite`` marks the pruned layers)."""
    if not (len(reports) == len(sparse) == len(dense)):
        return {}
    idx = [i for i, r in enumerate(reports) if r.rewrite]
    dense_b, sparse_b = sum(dense[i] for i in idx), sum(sparse[i] for i in idx)
    dense_macs = sum(reports[i].dense_macs for i in idx)
    kept_macs = sum(reports[i].kept_macs for i in idx)
    return {"layers": [reports[i].layer for i in idx], "dense_mb": dense_b / 2**20,
            "compact_mb": sparse_b / 2**20, "shrink": dense_b / sparse_b if sparse_b else None,
            "mac_reduction": dense_macs / kept_macs if kept_macs else None,
            "all_conv_dense_mb": sum(dense) / 2**20, "all_conv_sparse_mb": sum(sparse) / 2**20}


def format_memory(mem: dict[str, Any]) -> str:
    """Memory table: per build library / weights / peak RSS; then dense/sparse ratios."""
    lines = [f"{'build':<12} {'library MiB':>11} {'weights MiB':>11} {'peak RSS MiB':>12} "
             f"{'- baseline':>10}", "-" * 60]
    for name, r in mem["builds"].items():
        lines.append(f"{'RT3D ' + name:<12} {r['library_mb']:>11.1f} {r['weights_mb']:>11.1f} "
                     f"{r['peak_rss_mb']:>12.1f} {r['peak_rss_over_baseline_mb']:>10.1f}")
    lines.append(f"baseline (python + numpy + tvm runtime, nothing loaded): "
                 f"{mem['baseline_rss_mb']:.1f} MiB")
    pruned = mem.get("pruned_layers")
    if pruned:
        lines.append(f"conv3d weights (values + offsets): dense build "
                     f"{pruned['all_conv_dense_mb']:.1f} MiB, sparse build "
                     f"{pruned['all_conv_sparse_mb']:.1f} MiB; pruned layers only "
                     f"({', '.join(pruned['layers'])}): {pruned['dense_mb']:.1f} -> "
                     f"{pruned['compact_mb']:.1f} MiB = {pruned['shrink']:.2f}x smaller "
                     f"(their MAC reduction {pruned['mac_reduction']:.2f}x)")
    ratios = mem.get("dense_over_sparse")
    if ratios:
        lines.append("dense / sparse: " + ", ".join(
            f"{k.removesuffix('_mb')} {v:.2f}x" for k, v in ratios.items() if v))
    return "\n".join(lines)
