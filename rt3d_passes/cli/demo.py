"""``rt3d demo``: prune a zoo model one-shot, compile it dense and sparse, check and time it.

An entry point, not a library module: it imports torch and ``rt3d_prune`` inside
:func:`run_demo`, so ``import rt3d_passes`` stays free of both.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from ..frontend import from_torch
from ..target import host_target
from ..threads import set_num_threads
from ..transform import Conv3DReport, format_reports, inspect
from .model_spec import default_preset

__all__ = ["DemoRow", "plot_rows", "run_demo", "time_runs"]


@dataclasses.dataclass
class DemoRow:
    name: str
    macs: float
    """G MACs of the conv3d layers this row computes."""
    times_ms: list[float]
    max_rel_err: float | None

    @property
    def median_ms(self) -> float:
        return float(np.median(self.times_ms))


def time_runs(fn: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    """Wall times (ms) of ``runs`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def _compile(mod: tvm.IRModule, target, include_dense: bool):
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
        "rt3d", target=target, include_dense=include_dense))
    return relax.VirtualMachine(ex, tvm.cpu())


def run_demo(
    model: str = "c3d_small",
    preset: str | None = None,
    scheme: str = "kgs",
    group: Sequence[int] = (8, 4),
    runs: int = 10,
    threads: int = 2,
    out_dir: str | Path = "results/demo",
    log: Callable[[str], None] = print,
) -> dict:
    """Prune ``model`` to ``preset`` (one-shot), compile dense and sparse with the ``rt3d``
    pipeline, check both against PyTorch eager and time all three.

    Returns the JSON-able result (also written to ``out_dir/demo.json``).
    """
    import torch

    from rt3d_prune.models import build_model, default_input_shape
    from rt3d_prune.oneshot import prune_oneshot

    preset = preset or default_preset(model)
    torch.set_num_threads(threads)
    set_num_threads(threads)
    torch.manual_seed(0)
    shape = default_input_shape(model)
    x = torch.randn(*shape)
    dense_model = build_model(model).eval()
    sparse_model = build_model(model).eval()
    sparse_model.load_state_dict(dense_model.state_dict())
    log(f"[1/4] one-shot {scheme} pruning of {model} to preset {preset} (group "
        f"{group[0]}x{group[1]})")
    prune_oneshot(sparse_model, preset, scheme=scheme, group=tuple(group))

    target = host_target(threads)
    log(f"[2/4] import + compile for {target.attrs.get('mcpu', 'llvm')} "
        "(rt3d pipeline: dense = every column kept, sparse = pruned columns skipped)")
    mods = {name: from_torch(m, (x,)) for name, m in
            (("dense", dense_model), ("sparse", sparse_model))}
    reports: list[Conv3DReport] = inspect(mods["sparse"])
    log(format_reports(reports))
    vms = {name: _compile(mod, target, include_dense=True) for name, mod in mods.items()}

    log("[3/4] check against PyTorch eager on a fresh input")
    x_check = torch.randn(*shape)
    rows: list[DemoRow] = []
    xs = {"check": tvm.runtime.tensor(x_check.numpy()), "run": tvm.runtime.tensor(x.numpy())}
    dense_macs = sum(r.dense_macs for r in reports) / 1e9
    sparse_macs = sum(r.kept_macs if r.rewrite else r.dense_macs for r in reports) / 1e9
    errors = {}
    with torch.no_grad():
        for name, m in (("dense", dense_model), ("sparse", sparse_model)):
            ref = m(x_check).numpy()
            out = vms[name]["main"](xs["check"]).numpy()
            errors[name] = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))
            log(f"  RT3D {name}: max |err| / max |ref| = {errors[name]:.2e}")
            if not errors[name] < 1e-4:
                raise AssertionError(f"RT3D {name} output differs from PyTorch: "
                                     f"relative error {errors[name]:.3g}")

    log(f"[4/4] timing, {runs} runs after warm-up, {threads} threads")
    with torch.no_grad():
        rows.append(DemoRow("PyTorch eager (dense)", dense_macs,
                            time_runs(lambda: dense_model(x), runs), None))
        rows.append(DemoRow("PyTorch eager (pruned)", dense_macs,
                            time_runs(lambda: sparse_model(x), runs), None))
    for name, macs in (("dense", dense_macs), ("sparse", sparse_macs)):
        vm, arg = vms[name], xs["run"]
        rows.append(DemoRow(f"RT3D {name}", macs,
                            time_runs(lambda vm=vm, arg=arg: vm["main"](arg), runs),
                            errors[name]))
    base = rows[0].median_ms
    own_dense = rows[2].median_ms
    log(f"\n{'runtime':<24} {'conv GMACs':>10} {'median ms':>10} {'vs PyTorch':>11} "
        f"{'vs RT3D dense':>14} {'rel err':>9}")
    for r in rows:
        err = f"{r.max_rel_err:.1e}" if r.max_rel_err is not None else "ref"
        log(f"{r.name:<24} {r.macs:>10.3f} {r.median_ms:>10.2f} {base / r.median_ms:>10.2f}x "
            f"{own_dense / r.median_ms:>13.2f}x {err:>9}")
    log(f"MAC reduction (conv3d): {dense_macs / sparse_macs:.2f}x; "
        f"measured sparse speedup over RT3D dense: {own_dense / rows[3].median_ms:.2f}x")
    result = {
        "model": model, "preset": preset, "scheme": scheme, "group": list(group),
        "input_shape": list(shape), "threads": threads, "target": str(target),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": [dict(dataclasses.asdict(r), median_ms=r.median_ms) for r in rows],
        "layers": [dict(layer=r.layer, scheme=r.scheme, rewrite=r.rewrite, reason=r.reason,
                        dense_macs=r.dense_macs, kept_macs=r.kept_macs) for r in reports],
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.json").write_text(json.dumps(result, indent=1))
    log(f"wrote {out / 'demo.json'}")
    png = plot_rows(rows, out / "demo.png", f"{model} at {preset}, {threads} thread(s), "
                    f"{runs} runs")
    log(f"wrote {png}" if png else "no demo.png: matplotlib is not installed")
    return result


def plot_rows(rows: Sequence[DemoRow], path: Path, title: str) -> Path | None:
    """Bar chart of the rows' median ms (whiskers min..max); ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    med = [r.median_ms for r in rows]
    err = [[m - min(r.times_ms) for m, r in zip(med, rows, strict=True)],
           [max(r.times_ms) - m for m, r in zip(med, rows, strict=True)]]
    colors = ["tab:red" if r.name == "RT3D sparse" else "tab:orange" if r.name.startswith(
        "RT3D") else "tab:gray" for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(range(len(rows)), med, yerr=err, color=colors, capsize=3)
    for i, m in enumerate(med):
        ax.annotate(f"{m:.1f}", (i, m / 2), ha="center", va="center", fontsize=8, color="white")
    ax.set_xticks(range(len(rows)), [r.name for r in rows], rotation=15)
    ax.set_ylabel("latency, median ms (whiskers min..max)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
