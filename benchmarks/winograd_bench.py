"""Winograd benchmark on the host: RT3D's direct kernel against Winograd F(2x2) and F(4x4), per
layer, and what the cost model picks.

For every Winograd-eligible layer of C3D (3x3x3) and R(2+1)D-18 (the 1x3x3 spatial convs of
its unstrided blocks), dense and plane-pruned (``--rates``: whole 3x3 planes of 8x4 kernel
groups, the Winograd-compatible scheme), in one process: the layer compiled with the ``rt3d``
pipeline forced onto the direct kernel, onto F(2x2) and onto F(4x4), and PyTorch; "auto" is
the variant the cost model picks (the same program, its time). All variants of a layer are
built first and then timed in rotation. Columns: ms, effective G MAC/s (direct MACs over
time: above the FMA peak means fewer multiplications than MACs), the best Winograd's gain
over direct, the cost model's pick, and whether it is within 5 % of the fastest. The FMA
peak is measured in the same run. Writes JSON and a plot.

    python benchmarks/winograd_bench.py [--layers c3d.conv4a r21d.layer3] [--rates 0 0.8]
        [--runs 5]

Bars (issue 12): the cost model never picks a variant more than 5 % slower than direct.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see schedule_bench.py

import numpy as np
import torch
import tvm
from tqdm import tqdm
from tvm import relax

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.environment import write_result  # noqa: E402
from benchmarks.fma_peak import FMAPeak  # noqa: E402
from benchmarks.peers.timing import median_ms, run_interleaved  # noqa: E402
from rt3d_passes.target import host_target  # noqa: E402
from rt3d_passes.testing import structured_weight  # noqa: E402
from rt3d_passes.threads import set_num_threads  # noqa: E402
from rt3d_passes.transform import RewriteOptions, inspect  # noqa: E402

#: name -> (input NCDHW, out channels, kernel, padding). C3D at 16x112x112; R(2+1)D-18's
#: spatial convs (mid channels of its (2+1)D factorization) at 16x112x112.
LAYERS = {
    "c3d.conv1": ((1, 3, 16, 112, 112), 64, (3, 3, 3), (1, 1, 1)),
    "c3d.conv2": ((1, 64, 16, 56, 56), 128, (3, 3, 3), (1, 1, 1)),
    "c3d.conv3a": ((1, 128, 8, 28, 28), 256, (3, 3, 3), (1, 1, 1)),
    "c3d.conv3b": ((1, 256, 8, 28, 28), 256, (3, 3, 3), (1, 1, 1)),
    "c3d.conv4a": ((1, 256, 4, 14, 14), 512, (3, 3, 3), (1, 1, 1)),
    "c3d.conv4b": ((1, 512, 4, 14, 14), 512, (3, 3, 3), (1, 1, 1)),
    "c3d.conv5a": ((1, 512, 2, 7, 7), 512, (3, 3, 3), (1, 1, 1)),
    "c3d.conv5b": ((1, 512, 2, 7, 7), 512, (3, 3, 3), (1, 1, 1)),
    "r21d.layer1": ((1, 64, 16, 56, 56), 144, (1, 3, 3), (0, 1, 1)),
    "r21d.layer2": ((1, 128, 8, 28, 28), 288, (1, 3, 3), (0, 1, 1)),
    "r21d.layer3": ((1, 256, 4, 14, 14), 576, (1, 3, 3), (0, 1, 1)),
    "r21d.layer4": ((1, 512, 2, 7, 7), 1152, (1, 3, 3), (0, 1, 1)),
}
VARIANTS = {"direct": "direct", "F(2x2)": "winograd2", "F(4x4)": "winograd4"}
GAP_MS = 20.0


def _module(x_shape, w: np.ndarray, padding) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        out = bb.emit(relax.op.nn.conv3d(x, relax.const(w), padding=padding), name_hint="conv")
        bb.emit_func_output(out)
    return bb.get()


def _options(algorithm: str | None) -> RewriteOptions:
    # the conv3d binding is named conv (no torch names here): forced by that name
    return RewriteOptions(include_dense=True, min_mac_reduction=1.0,
                          algorithms={"conv": algorithm} if algorithm else ())


def bench_layer(name: str, rate: float, runs: int, target, rng) -> dict:
    x_shape, m, kernel, padding = LAYERS[name]
    w = structured_weight((m, x_shape[1], *kernel), "plane", rate, (8, 4), rng)
    mod = _module(x_shape, w, padding)
    x_np = rng.standard_normal(x_shape).astype(np.float32)
    x = tvm.runtime.tensor(x_np)
    xt, wt = torch.from_numpy(x_np), torch.from_numpy(w)
    fns = {"torch": lambda: torch.nn.functional.conv3d(xt, wt, padding=padding)}
    with torch.no_grad():
        ref = fns["torch"]().numpy()
    reports, errors = {}, {}
    (reports["auto"],) = inspect(mod, _options(None))  # the cost model's pick: one of these
    for label, algorithm in VARIANTS.items():
        opts = _options(algorithm)
        (reports[label],) = inspect(mod, opts)
        ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
            "rt3d", target=target, options=opts))
        vm = relax.VirtualMachine(ex, tvm.cpu())
        out = vm["main"](x).numpy()
        errors[label] = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))
        fns[label] = lambda vm=vm: vm["main"](x)
    with torch.no_grad():
        times = run_interleaved({k: (lambda _x, fn=fn: fn()) for k, fn in fns.items()}, None,
                                runs=runs, warmup=1, gap_ms=GAP_MS)
    ms = {k: median_ms(v) for k, v in times.items()}
    direct_macs = reports["direct"].kept_macs
    best = min(("F(2x2)", "F(4x4)"), key=ms.get)
    auto = reports["auto"]
    picked = f"F({auto.winograd_tile}x{auto.winograd_tile})" if auto.algorithm == "winograd" \
        else "direct"
    ms["auto"] = ms[picked]  # the same program as the forced variant it picked
    fastest = min(("direct", "F(2x2)", "F(4x4)"), key=ms.get)
    return dict(layer=name, rate=rate, direct_macs=direct_macs, ms=ms, errors=errors,
                gmacs={k: direct_macs / v / 1e6 for k, v in ms.items()},
                best_winograd=best, winograd_gain=ms["direct"] / ms[best],
                auto_picked=picked, auto_reason=auto.algorithm_reason, fastest=fastest,
                auto_within_5pct=ms["auto"] <= 1.05 * ms[fastest],
                auto_not_slower_than_direct=ms["auto"] <= 1.05 * ms["direct"])


def print_table(rows, peak: float) -> None:
    head = (f"{'layer':<13} {'rate':>5} | {'torch':>7} {'direct':>7} {'F(2x2)':>7} "
            f"{'F(4x4)':>7} {'auto':>7} ms | {'direct':>6} {'best W':>6} eff G MAC/s | "
            f"{'gain':>5} picked")
    print(head)
    print("-" * len(head))
    for r in rows:
        ms, g = r["ms"], r["gmacs"]
        print(f"{r['layer']:<13} {r['rate']:>5.2f} | {ms['torch']:>7.2f} {ms['direct']:>7.2f} "
              f"{ms['F(2x2)']:>7.2f} {ms['F(4x4)']:>7.2f} {ms['auto']:>7.2f}    | "
              f"{g['direct']:>6.0f} {g[r['best_winograd']]:>6.0f}             | "
              f"{r['winograd_gain']:>4.2f}x {r['auto_picked']}"
              + ("" if r["auto_within_5pct"] else f"  (fastest: {r['fastest']})"))
    print(f"FMA peak in the same run: {peak:.0f} G MAC/s; 'eff' = direct MACs / time")
    bad = [r["layer"] for r in rows if not r["auto_not_slower_than_direct"]]
    verdict = "holds" if not bad else f"MISSED on {', '.join(bad)}"
    print(f"bar [the cost model never picks a variant > 5% slower than direct]: {verdict}")


def _plot(rows, path: Path, peak: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['layer']}\n{r['rate']:.2f}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.9 * len(rows)), 4.8))
    width = 0.2
    for k, variant in enumerate(("direct", "F(2x2)", "F(4x4)", "auto")):
        ax.bar(np.arange(len(rows)) + (k - 1.5) * width, [r["gmacs"][variant] for r in rows],
               width, label=variant)
    ax.axhline(peak, color="k", linestyle="--", label=f"FMA peak {peak:.0f}")
    ax.set_xticks(np.arange(len(rows)), labels, fontsize=7)
    ax.set_ylabel("effective G MAC/s (direct MACs / time)")
    ax.set_title("RT3D conv3d: direct vs Winograd per layer (host)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--rates", nargs="*", type=float, default=[0.0],
                        help="plane pruning rates (fraction of 3x3 planes of 8x4 groups)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/winograd_bench.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    target = host_target(args.threads)
    rng = np.random.default_rng(0)
    rows = [bench_layer(name, rate, args.runs, target, rng)
            for name in tqdm(args.layers, desc="layers") for rate in args.rates]
    peak = FMAPeak().gmacs(args.threads)
    print_table(rows, peak)
    out = Path(args.out)
    write_result(out, {"benchmark": "winograd_bench", "threads": args.threads,
                       "runs": args.runs, "fma_peak_gmacs": peak, "rows": rows})
    _plot(rows, out.with_suffix(".png"), peak)
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
