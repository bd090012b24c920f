"""Schedule benchmark on the host: RT3D's conv3d kernels per C3D layer against dense peers.

For each C3D conv layer (1x3x16x112x112 input) at the paper's preset rate and at a range of
KGS rates, in one process: RT3D sparse untuned and tuned, RT3D dense (every column kept)
tuned, PyTorch dense, and the host's ceiling: its fp32 FMA peak
(:mod:`benchmarks.fma_peak`), with numpy's sgemm for reference. All variants of a layer
are built first and then timed in rotation, so load drifting on a shared machine hits them
alike. Columns: ms, G MAC/s on kept MACs, speedup vs own dense, speedup / MAC reduction.
Writes JSON and a plot of speedup vs MAC reduction with the ideal line.

    python benchmarks/schedule_bench.py [--trials 16] [--rates 0 0.5 0.75 0.85 0.95]
        [--layers conv2 conv3b] [--runs 5]

Bars: own dense >= 85% of the FMA peak on every layer, and sparse / dense speedup >= 0.9 x the
MAC reduction at the paper's preset (and sparse throughput on kept MACs >= 70% of own dense at
85% pruning, the older bar).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

# before torch loads libgomp: spinning OpenMP workers would steal the cores from the
# variant timed after PyTorch (measured: up to 1.6x on conv5a)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import tvm
from tqdm import tqdm
from tvm import relax

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/schedule_bench.py` puts only benchmarks/ on it
    sys.path.insert(0, str(ROOT))

from benchmarks.environment import write_result  # noqa: E402
from benchmarks.fma_peak import FMAPeak  # noqa: E402
from benchmarks.peers.timing import median_ms, run_interleaved, sgemm_ceiling  # noqa: E402
from rt3d_passes.target import host_target  # noqa: E402
from rt3d_passes.testing import structured_weight  # noqa: E402
from rt3d_passes.threads import set_num_threads  # noqa: E402
from rt3d_passes.transform import RewriteOptions  # noqa: E402
from rt3d_passes.tuning import tune_model  # noqa: E402

# C3D at 16x112x112: (input NCDHW, out channels); all 3x3x3, stride 1, padding 1
C3D_LAYERS = {
    "conv1": ((1, 3, 16, 112, 112), 64),
    "conv2": ((1, 64, 16, 56, 56), 128),
    "conv3a": ((1, 128, 8, 28, 28), 256),
    "conv3b": ((1, 256, 8, 28, 28), 256),
    "conv4a": ((1, 256, 4, 14, 14), 512),
    "conv4b": ((1, 512, 4, 14, 14), 512),
    "conv5a": ((1, 512, 2, 7, 7), 512),
    "conv5b": ((1, 512, 2, 7, 7), 512),
}
#: The paper's C3D 3.6x preset: fraction of KGS columns pruned per layer.
PAPER_RATES = {"conv2": 0.85, "conv3a": 0.8, "conv3b": 0.85, "conv4b": 0.8}


def _conv_module(x_shape, w: np.ndarray) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        out = bb.emit(relax.op.nn.conv3d(x, relax.const(w), padding=(1, 1, 1)))
        bb.emit_func_output(out)
    return bb.get()


#: What every variant is compiled and tuned with: each layer on RT3D's operator (dense ones
#: too) and the direct kernel on every layer: Winograd (``benchmarks/winograd_bench.py``)
#: would turn the dense rows into effective G MAC/s and hide the kernel's efficiency against
#: the peak.
OPTIONS = RewriteOptions(min_mac_reduction=1.0, include_dense=True, winograd=False)


def _build(mod, target, database=None):
    pipeline = relax.get_pipeline("rt3d", target=target, options=OPTIONS, database=database)
    return relax.VirtualMachine(tvm.compile(mod, target, relax_pipeline=pipeline), tvm.cpu())


#: untimed pause before every run: thread pools (TVM's, OpenMP's) spin for a while after a
#: run and would slow whichever variant comes next
GAP_MS = 20.0


def _interleaved_ms(fns: dict, runs: int) -> dict[str, float]:
    """Median ms of each callable, timed in rotation by the peers' ``run_interleaved`` (one
    warm-up round), so load drifting on a shared machine hits every variant alike."""
    times = run_interleaved({name: (lambda _x, fn=fn: fn()) for name, fn in fns.items()},
                            None, runs=runs, warmup=1, gap_ms=GAP_MS)
    return {name: median_ms(v) for name, v in times.items()}


def _tuned_db(mod, target, work: Path, trials: int) -> str | None:
    if not trials:
        return None
    tune_model(mod, target, work, trials_per_task=trials, progress=False, options=OPTIONS)
    return str(work)


def bench_layer(name, rates, trials, runs, target, work_root, rng, balanced=True
                ) -> list[dict]:
    """All variants of one layer built first, then timed interleaved."""
    x_shape, m = C3D_LAYERS[name]
    out_vox = int(np.prod(x_shape[2:])) * x_shape[0]
    x_np = rng.standard_normal(x_shape).astype(np.float32)
    x = tvm.runtime.tensor(x_np)
    w_dense = structured_weight((m, x_shape[1], 3, 3, 3), "dense", 0, rng=rng)
    xt, wt = torch.from_numpy(x_np), torch.from_numpy(w_dense)
    dense_mod = _conv_module(x_shape, w_dense)
    dense_db = _tuned_db(dense_mod, target, Path(work_root) / f"{name}-dense", trials)
    dense_vm = _build(dense_mod, target, dense_db)
    fns = {"torch": lambda: torch.nn.functional.conv3d(xt, wt, padding=1),
           "dense": lambda: dense_vm["main"](x)}
    kept = {}
    for rate in rates:
        w = structured_weight((m, x_shape[1], 3, 3, 3), "kgs", rate, (8, 4), rng,
                              balanced=balanced)
        mod = _conv_module(x_shape, w)
        kept[rate] = int(np.count_nonzero(w)) * out_vox
        untuned = _build(mod, target)
        fns[f"untuned{rate}"] = lambda vm=untuned: vm["main"](x)
        if trials and rate > 0:
            db = _tuned_db(mod, target, Path(work_root) / f"{name}-{rate}", trials)
            tuned = _build(mod, target, db)
            fns[f"tuned{rate}"] = lambda vm=tuned: vm["main"](x)
    with torch.no_grad():
        times = _interleaved_ms(fns, runs)
    dense_macs = w_dense.size * out_vox
    rows = []
    for rate in rates:
        tuned_ms = times.get(f"tuned{rate}", times["dense"] if trials and rate == 0 else None)
        sparse_ms = tuned_ms if tuned_ms is not None else times[f"untuned{rate}"]
        reduction = dense_macs / kept[rate]
        speedup = times["dense"] / sparse_ms
        rows.append(dict(
            layer=name, rate=rate, paper_preset=PAPER_RATES.get(name) == rate,
            dense_macs=dense_macs, kept_macs=kept[rate], mac_reduction=reduction,
            torch_dense_ms=times["torch"], rt3d_dense_ms=times["dense"],
            dense_tuned=bool(trials), sparse_untuned_ms=times[f"untuned{rate}"],
            sparse_tuned_ms=tuned_ms, dense_gmacs=dense_macs / times["dense"] / 1e6,
            sparse_gmacs=kept[rate] / sparse_ms / 1e6, speedup_vs_own_dense=speedup,
            speedup_over_reduction=speedup / reduction,
        ))
    return rows


def bench(layers, rates, trials, runs, target, work_root, balanced=True) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for name in tqdm(layers, desc="layers"):
        extra = {PAPER_RATES[name]} if name in PAPER_RATES else set()
        rows.extend(bench_layer(name, sorted(set(rates) | extra), trials, runs, target,
                                work_root, rng, balanced=balanced))
    return rows


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for name in sorted({r["layer"] for r in rows}):
        pts = sorted((r["mac_reduction"], r["speedup_vs_own_dense"]) for r in rows
                     if r["layer"] == name)
        ax.plot(*zip(*pts), marker="o", label=name)
    top = max(r["mac_reduction"] for r in rows)
    ax.plot([1, top], [1, top], "k--", label="ideal (speedup = MAC reduction)")
    ax.plot([1, top], [0.7, 0.7 * top], "k:", label="bar: 0.7 x MAC reduction")
    ax.set_xlabel("MAC reduction (dense / kept)")
    ax.set_ylabel("speedup over RT3D dense")
    ax.set_title("RT3D KGS conv3d on the host (C3D layers)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", nargs="*", default=list(C3D_LAYERS), choices=list(C3D_LAYERS))
    parser.add_argument("--rates", nargs="*", type=float, default=[0.0, 0.5, 0.75, 0.85, 0.95])
    parser.add_argument("--trials", type=int, default=16,
                        help="MetaSchedule trials per task (0: untuned only)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--unbalanced", action="store_true",
                        help="random KGS units per layer instead of the same count per output "
                             "group (rt3d_prune's default): the kernel then also computes the "
                             "short groups' padding slots")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", help="keep tuning databases here (default: temporary)")
    parser.add_argument("--out", default="benchmarks/results/schedule_bench.json")
    args = parser.parse_args()
    bad = [r for r in args.rates if not 0.0 <= r < 1.0]
    if bad:
        parser.error(f"--rates are fractions of KGS columns pruned, in [0, 1): got {bad}")

    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    target = host_target(args.threads)
    work_root = args.work_dir or tempfile.mkdtemp(prefix="rt3d-schedule-bench-")
    peak_loop = FMAPeak()
    peak = peak_loop.gmacs(args.threads)
    ceiling = sgemm_ceiling()
    try:
        rows = bench(args.layers, args.rates, args.trials, args.runs, target, work_root,
                     balanced=not args.unbalanced)
    finally:
        if not args.work_dir:
            shutil.rmtree(work_root, ignore_errors=True)
    ceiling = max(ceiling, sgemm_ceiling())
    peak = max(peak, peak_loop.gmacs(args.threads))  # before and after: the better of two
    for r in rows:
        r["dense_of_peak"] = r["dense_gmacs"] / peak

    print(f"\nFMA peak ({peak_loop.isa}, {args.threads} threads): {peak:.1f} G MAC/s; "
          f"numpy sgemm (2048^3): {ceiling:.1f} G MAC/s")
    print(f"{'layer':<7} {'rate':>5} {'MAC red.':>8} {'torch ms':>9} {'dense ms':>9} "
          f"{'untuned':>9} {'tuned':>9} {'dense GMAC/s':>12} {'sparse GMAC/s':>13} "
          f"{'speedup':>8} {'spd/red':>7}")
    for r in rows:
        tuned = f"{r['sparse_tuned_ms']:.2f}" if r["sparse_tuned_ms"] is not None else "-"
        mark = "*" if r["paper_preset"] else " "
        print(f"{r['layer']:<7}{mark}{r['rate']:>5.2f} {r['mac_reduction']:>8.2f} "
              f"{r['torch_dense_ms']:>9.2f} {r['rt3d_dense_ms']:>9.2f} "
              f"{r['sparse_untuned_ms']:>9.2f} {tuned:>9} {r['dense_gmacs']:>12.1f} "
              f"{r['sparse_gmacs']:>13.1f} {r['speedup_vs_own_dense']:>7.2f}x "
              f"{r['speedup_over_reduction']:>7.2f}")
    print("* = the paper's C3D 3.6x preset rate for that layer")
    at85 = [r for r in rows if abs(r["rate"] - 0.85) < 1e-9]
    if at85:
        eff = min(r["sparse_gmacs"] / r["dense_gmacs"] for r in at85)
        print(f"bar 1: sparse/dense throughput at 85% (worst layer) = {eff:.2f} (>= 0.70)")
    dense = {r["layer"]: r["dense_of_peak"] for r in rows}
    worst = min(dense, key=dense.get)
    print("own dense / FMA peak: " + ", ".join(f"{k} {v:.2f}" for k, v in dense.items()))
    print(f"bar: own dense >= 0.85 of the FMA peak on every layer: worst {worst} "
          f"{dense[worst]:.2f} -> {'holds' if dense[worst] >= 0.85 else 'MISSED'}")
    paper = [r for r in rows if r["paper_preset"]]
    if paper:
        low = min(paper, key=lambda r: r["speedup_over_reduction"])
        print(f"bar: sparse/dense >= 0.9 x MAC reduction at the paper's preset: worst "
              f"{low['layer']} {low['speedup_over_reduction']:.2f} -> "
              f"{'holds' if low['speedup_over_reduction'] >= 0.9 else 'MISSED'}")
    out = Path(args.out)
    write_result(out, dict(benchmark="schedule_bench", target=str(target),
                           trials_per_task=args.trials, threads=args.threads,
                           balanced=not args.unbalanced,
                           fma_peak_gmacs=peak, fma_isa=peak_loop.isa,
                           sgemm_gmacs=ceiling, rows=rows))
    _plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
