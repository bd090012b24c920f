"""Per-layer benchmark: RT3D's sparse KGS conv3d vs PyTorch and TVM's default dense conv3d.

Layers: C3D conv2 and conv3b with KGS 8x4 at 85% of columns pruned (the paper's C3D preset),
and one R(2+1)D-18 (2+1)D pair (layer2.0.conv1: 1x3x3 spatial then 3x1x1 temporal) at the
same rate. Prints a table and writes JSON.

    python benchmarks/layer_bench.py [--runs 5] [--rate 0.85] [--skip-tvm-default]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import tvm
from tqdm import tqdm
from tvm import relax, s_tir

import schedules
from benchmarks.environment import write_result
from rt3d_passes import sparsity as S
from rt3d_passes.cli.demo import time_runs
from rt3d_passes.op import Conv3DGeometry, column_offsets, kgs_conv3d_primfunc
from rt3d_passes.target import host_target
from rt3d_passes.testing import structured_weight
from rt3d_passes.threads import set_num_threads

# name: (input NCDHW, M, kernel, strides, padding)
LAYERS = {
    "c3d.conv2": ((1, 64, 16, 56, 56), 128, (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    "c3d.conv3b": ((1, 256, 4, 28, 28), 256, (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    "r2+1d.layer2.0.spatial": ((1, 64, 16, 56, 56), 230, (1, 3, 3), (1, 2, 2), (0, 1, 1)),
    "r2+1d.layer2.0.temporal": ((1, 230, 16, 28, 28), 128, (3, 1, 1), (2, 1, 1), (1, 0, 0)),
}


def bench_layer(name, spec, rate, runs, target, skip_default, rng):
    in_shape, m, kernel, strides, padding = spec
    w = structured_weight((m, in_shape[1], *kernel), "kgs", rate, (8, 4), rng)
    geo = Conv3DGeometry(in_shape, kernel, strides, padding)
    voxels = in_shape[0] * int(np.prod(geo.output_spatial))
    dense_macs = w[:, :, ...].size * voxels
    packed = S.compact(w, (8, 4))
    kept_macs = packed.kept_macs * voxels
    x = rng.standard_normal(in_shape).astype(np.float32)
    rows = []

    # PyTorch dense, 2 threads
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    with torch.no_grad():
        ref = torch.nn.functional.conv3d(xt, wt, stride=strides, padding=padding).numpy()
        t = float(np.median(time_runs(lambda: torch.nn.functional.conv3d(
            xt, wt, stride=strides, padding=padding), runs)))
    rows.append(("PyTorch dense", 1.0, t, dense_macs))

    # TVM default dense conv3d (tvm.compile's default pipeline)
    if not skip_default:
        bb = relax.BlockBuilder()
        xv = relax.Var("x", relax.TensorType(in_shape, "float32"))
        with bb.function("main", [xv]):
            out = bb.emit(relax.op.nn.conv3d(xv, relax.const(w), strides=strides,
                                             padding=padding))
            bb.emit_func_output(out)
        vm = relax.VirtualMachine(tvm.compile(bb.get(), target), tvm.cpu())
        xv_t = tvm.runtime.tensor(x)
        res = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=max(2, runs // 3))(xv_t)
        rows.append(("TVM default dense", 1.0, res.median * 1e3, dense_macs))

    # RT3D sparse
    sch = s_tir.Schedule(kgs_conv3d_primfunc(in_shape, packed, strides, padding))
    schedules.schedule_kgs_conv3d_cpu(sch)
    ex = tvm.compile(sch.mod, target)
    args = [tvm.runtime.tensor(a) for a in (x, packed.values, column_offsets(packed, geo),
                                            np.zeros(ref.shape, np.float32))]
    ex["main"](*args)
    err = float(np.abs(args[3].numpy() - ref).max() / np.abs(ref).max())
    if err > 1e-5:
        raise AssertionError(f"{name}: RT3D sparse differs from torch (rel err {err:.2e})")
    res = ex.jit().time_evaluator("main", tvm.cpu(), number=1, repeat=runs)(*args)
    rows.append(("RT3D sparse", kept_macs / dense_macs, res.median * 1e3, kept_macs))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=0.85,
                        help="fraction of KGS columns pruned (default: the paper's 85%%)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-tvm-default", action="store_true",
                        help="skip TVM's unscheduled default conv3d (seconds per run)")
    parser.add_argument("--layers", nargs="*", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--out", default="benchmarks/results/layer_bench.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    set_num_threads(args.threads)
    target = host_target(args.threads)
    rng = np.random.default_rng(0)
    results = []
    for name in tqdm(args.layers, desc="layers"):
        for row, frac, ms, macs in bench_layer(name, LAYERS[name], args.rate, args.runs,
                                               target, args.skip_tvm_default, rng):
            results.append(dict(layer=name, runtime=row, kept_mac_fraction=frac,
                                median_ms=ms, macs=int(macs), gmacs_per_s=macs / ms / 1e6))
    print(f"\n{'layer':<26} {'runtime':<18} {'kept MACs':>9} {'median ms':>10} "
          f"{'GMAC/s':>8} {'speedup':>8}")
    for name in args.layers:
        rows = [r for r in results if r["layer"] == name]
        base = next(r["median_ms"] for r in rows if r["runtime"] == "PyTorch dense")
        for r in rows:
            r["speedup_vs_pytorch"] = base / r["median_ms"]
            print(f"{name:<26} {r['runtime']:<18} {r['kept_mac_fraction']:>9.1%} "
                  f"{r['median_ms']:>10.2f} {r['gmacs_per_s']:>8.1f} "
                  f"{r['speedup_vs_pytorch']:>7.2f}x")
    path = write_result(Path(args.out), dict(benchmark="layer_bench", rate=args.rate,
                                             threads=args.threads, target=str(target),
                                             rows=results))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
