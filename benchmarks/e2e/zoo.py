"""``rt3d bench --model all``: every zoo model in its own process, one summary table, JSON
and plot (speedup of RT3D sparse over each runtime, per model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.e2e import report

#: Test-size models left out of ``all`` (they are in the zoo for the tests and the demo).
NOT_IN_ALL = ("c3d_small",)


def model_list(spec: str) -> list[str] | None:
    """The models of ``--model``: None for one model, the list for ``all`` or ``a,b,...``."""
    from benchmarks.e2e.models import resolve_model
    from rt3d_prune.models import MODEL_NAMES

    if spec == "all":
        return [m for m in MODEL_NAMES if m not in NOT_IN_ALL]
    if "," in spec:
        return [resolve_model(m.strip()) for m in spec.split(",") if m.strip()]
    return None


def run_models(script: Path, argv: list[str], models: list[str], out_dir: Path,
               prefix: str = "e2e") -> dict:
    """Run ``script`` once per model (each writes its own JSON and plot into ``out_dir``,
    named ``<prefix>_<model>``: its rows, bars and ``--profile``) and gather the summary; a
    model whose run fails is reported, not fatal."""
    from benchmarks.e2e.argv import strip_option

    base = strip_option(strip_option(argv, "--model"), "--out")
    summary: dict[str, Any] = {"benchmark": "e2e_bench --model all", "models": {}}
    for name in models:
        out = out_dir / f"{prefix}_{name}.json"
        print(f"\n===== {name} =====", flush=True)
        cmd = [sys.executable, str(script), "--model", name, "--out", str(out), *base]
        code = subprocess.run(cmd, env=dict(os.environ), check=False).returncode
        if not out.exists():
            summary["models"][name] = {"status": f"failed (exit {code})"}
            continue
        summary["models"][name] = _digest(json.loads(out.read_text()), code)
    return summary


def _digest(payload: dict, code: int) -> dict[str, Any]:
    res = payload["results"][-1]
    rows = {r["name"]: r.get("median_ms") for r in res["rows"]}
    return {"status": "ok" if code == 0 else f"exit {code}", "preset": payload["preset"],
            "input_shape": payload["input_shape"], "macs": payload["macs"], "ms": rows,
            "speedups": res["speedups"], "bars": res["bars"], "threads": res["threads"]}


def format_summary(summary: dict) -> str:
    """One row per model: median ms per runtime, RT3D sparse over the fastest peer, sparse /
    dense against the MAC reduction, bars held."""
    names: list[str] = []
    for m in summary["models"].values():
        names += [n for n in m.get("ms", {}) if n not in names and n not in report.RT3D_ROWS]
    names += list(report.RT3D_ROWS)
    head = (f"{'model':<14} {'G MACs':>13} " + "".join(f"{_short(n):>12}" for n in names)
            + f" {'vs best peer':>12} {'spd/red':>8} {'bars':>5}")
    lines = [head, "-" * len(head)]
    for model, m in summary["models"].items():
        if "ms" not in m:
            lines.append(f"{model:<14} {m['status']}")
            continue
        cells = [f"{m['ms'][n]:.1f}" if m["ms"].get(n) else "-" for n in names]
        ms = "".join(f"{c:>12}" for c in cells)
        peers = {n: v for n, v in m["speedups"].items() if n not in report.RT3D_ROWS}
        best = f"{min(peers.values()):.2f}x" if peers else "-"
        # the direct kernel's ratio when the run has the ablation (Winograd changes the dense
        # build's multiplications, not its MACs)
        direct = (m["ms"].get(report.DENSE_NO_WINOGRAD), m["ms"].get(report.NO_WINOGRAD))
        dense = direct[0] / direct[1] if all(direct) else m["speedups"].get(report.DENSE)
        red = m["macs"]["pruning_rate"]
        spd = f"{dense / red:.2f}" if dense else "-"
        held = sum(b["holds"] for b in m["bars"])
        gmacs = f"{m['macs']['dense_gmacs']:.1f}->{m['macs']['kept_gmacs']:.1f}"
        lines.append(f"{model:<14} {gmacs:>13} {ms} {best:>12} {spd:>8} "
                     f"{held}/{len(m['bars']):>3}")
    lines.append("ms: median of interleaved runs; 'vs best peer': RT3D sparse's speedup over "
                 "the fastest other runtime; spd/red: (sparse over dense) / MAC reduction, "
                 "both without Winograd; 'noW': with winograd=False")
    return "\n".join(lines)


def _short(name: str) -> str:
    """A runtime's name in 11 characters: ``RT3D dense, no Winograd`` -> ``dense noW``."""
    return name.replace("RT3D ", "").replace(", no Winograd", " noW")[:11]


def plot_summary(path: Path, summary: dict) -> Path | None:
    """Grouped bars: RT3D sparse's speedup over each runtime, one group per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    models = [m for m, v in summary["models"].items() if "speedups" in v]
    if not models:
        return None
    runtimes: list[str] = []
    for m in models:
        runtimes += [r for r in summary["models"][m]["speedups"] if r not in runtimes]
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(models)), 4.5))
    width = 0.8 / len(runtimes)
    for k, r in enumerate(runtimes):
        xs = [i + (k - (len(runtimes) - 1) / 2) * width for i in range(len(models))]
        ys = [summary["models"][m]["speedups"].get(r, 0) for m in models]
        ax.bar(xs, ys, width, label=r)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(models)), models, rotation=15)
    ax.set_ylabel("RT3D sparse speedup (x)")
    ax.set_title("RT3D sparse over each runtime, per zoo model (median ms ratio)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main_all(script: Path, argv: list[str], models: list[str], out: Path | None) -> int:
    from benchmarks.environment import write_result

    out = Path(out or script.parent / "results" / "e2e_all.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    # each model's own JSON and plot beside the summary (e2e_all_x3d_s.json...)
    summary = run_models(script, argv, models, out.parent, prefix=out.stem)
    print("\n" + format_summary(summary))
    path = write_result(out, summary)
    png = plot_summary(path.with_suffix(".png"), summary)
    print(f"wrote {path}" + (f" and {png}" if png else ""))
    failed = [m for m, v in summary["models"].items() if v["status"] != "ok"]
    return 1 if failed else 0
