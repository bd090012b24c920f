"""Tables, acceptance bars and the bar chart of the end-to-end benchmark."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPARSE = "RT3D sparse"
DENSE = "RT3D dense"
#: Both models compiled with ``winograd=False``: every layer on the direct kernel.
NO_WINOGRAD = "RT3D sparse, no Winograd"
DENSE_NO_WINOGRAD = "RT3D dense, no Winograd"
#: Winograd on the unpruned layers must make C3D's sparse build this much faster (issue 12);
#: on every other model it must not make it slower.
WINOGRAD_GAIN = {"c3d": 1.25}
RT3D_ROWS = (DENSE, DENSE_NO_WINOGRAD, NO_WINOGRAD, SPARSE)
MNN_RATIO = 2.7  # the paper's CPU ratio of RT3D sparse over MNN (C3D, 948 / 357 ms)
PLANE_MNN_RATIO = 3.5  # issue 12: C3D pruned with the plane scheme, run as sparse Winograd
DENSE_FRACTION = 0.9  # sparse-over-dense speedup must reach 0.9 x the MAC reduction
DENSE_PEER = "openvino"  # the fastest dense peer: RT3D dense must be at least as fast


def _median(rows: Sequence[dict[str, Any]], name: str) -> float | None:
    for r in rows:
        if r["name"] == name and r.get("median_ms"):
            return float(r["median_ms"])
    return None


def speedups(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """RT3D sparse's speedup (median over median) over every other timed row."""
    sparse = _median(rows, SPARSE)
    if sparse is None:
        return {}
    return {r["name"]: r["median_ms"] / sparse for r in rows
            if r["name"] != SPARSE and r.get("median_ms")}


def paired_speedups(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Median over rounds of (row's time / RT3D sparse's time in the same round): the rows
    of one round run back to back, so this cancels drift between rounds better."""
    sparse = next((r["times_ms"] for r in rows if r["name"] == SPARSE and r.get("times_ms")),
                  None)
    if not sparse:
        return {}
    out = {}
    for r in rows:
        times = r.get("times_ms") or []
        if r["name"] != SPARSE and len(times) == len(sparse):
            out[r["name"]] = float(statistics.median(t / s for t, s in zip(times, sparse,
                                                                            strict=True)))
    return out


def format_table2(model: str, preset: str, macs: dict[str, float], threads: int, runs: int,
                  rows: Sequence[dict[str, Any]]) -> str:
    """The paper's Table 2 layout: MACs, pruning rate, median ms per runtime, and RT3D
    sparse's speedup over each."""
    by_name = {r["name"]: r for r in rows}
    names = [r["name"] for r in rows if r["name"] not in RT3D_ROWS] + [
        n for n in RT3D_ROWS if n in by_name or n in (DENSE, SPARSE)]
    width = max(11, *(len(n) for n in names)) + 1
    head = f"{'model':<12} {'MACs (G)':>15} {'rate':>6} |" + "".join(f"{n:>{width}}" for n in
                                                                      names)
    ms = [f"{by_name[n]['median_ms']:.1f}" if by_name.get(n, {}).get("median_ms") else
          _short_status(by_name.get(n)) for n in names]
    gmacs = f"{macs['dense_gmacs']:.1f} -> {macs['kept_gmacs']:.1f}"
    line = f"{model:<12} {gmacs:>15} {macs['pruning_rate']:>5.2f}x |" + "".join(
        f"{v:>{width}}" for v in ms)
    sp, paired = speedups(rows), paired_speedups(rows)
    sp_line = f"{'RT3D sparse speedup over':<35} |" + "".join(
        f"{(f'{sp[n]:.2f}x' if n in sp else '-'):>{width}}" for n in names)
    sp_line += "\n" + f"{'  same, median of per-round ratios':<35} |" + "".join(
        f"{(f'{paired[n]:.2f}x' if n in paired else '-'):>{width}}" for n in names)
    title = (f"Table 2 layout: {model} at {preset}, {threads} thread(s), median ms of {runs} "
             "interleaved runs (this machine's CPU)")
    return "\n".join([title, head, "-" * len(head), line, sp_line])


def _short_status(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    status = row["status"]
    for key in ("not installed", "unsupported", "failed", "wrong"):
        if status.startswith(key):
            return key
    return status[:10]


def format_details(rows: Sequence[dict[str, Any]]) -> str:
    """Median / min / max, RT3D sparse's speedup, output error vs eager and status per row."""
    sp = speedups(rows)
    head = (f"{'runtime':<13} {'median ms':>10} {'min':>9} {'max':>9} {'sparse x':>8} "
            f"{'max abs err':>11} {'rel err':>8}  status (checked vs)")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.get("median_ms"):
            cols = f"{r['median_ms']:>10.2f} {r['min_ms']:>9.2f} {r['max_ms']:>9.2f} "
            cols += f"{sp[r['name']]:>7.2f}x" if r["name"] in sp else f"{'':>8}"
        else:
            cols = f"{'-':>10} {'-':>9} {'-':>9} {'-':>8}"
        err = f"{r['max_abs_err']:>11.2e}" if r.get("max_abs_err") is not None else f"{'-':>11}"
        err += f" {r['max_rel_err']:>8.1e}" if r.get("max_rel_err") is not None else f" {'-':>8}"
        lines.append(f"{r['name']:<13} {cols} {err}  {r['status']} ({r['reference']})")
    notes = [(r["name"], n) for r in rows for n in r.get("info", {}).get("notes", [])]
    lines += [f"note [{name}]: {note}" for name, note in notes]
    return "\n".join(lines)


def _bar(name: str, measured: float | None, required: float, detail: str) -> dict[str, Any]:
    holds = measured is not None and measured >= required
    return {"bar": name, "measured": measured, "required": required, "holds": holds,
            "miss_factor": None if measured is None or holds else required / measured,
            "detail": detail}


def bars(model: str, macs: dict[str, float], rows: Sequence[dict[str, Any]],
         ceiling_gmacs: float | None = None, scheme: str = "kgs") -> list[dict]:
    """The issue's acceptance bars, measured on this run's medians.

    Every model: RT3D sparse faster than every peer (min speedup >= 1), sparse over dense
    >= 0.9 x the MAC reduction, RT3D dense at least as fast as OpenVINO (dense), and (when
    the run has the ablation) Winograd never slower than the direct kernel alone. C3D
    also: >= 2.7x over MNN, over every other peer by more than over MNN, and Winograd on the
    unpruned layers >= 1.25x faster than without. With
    ``ceiling_gmacs`` (the FMA peak, measured in the same run) the MNN bar also says how far
    a direct kernel could go at best: the kept MACs at the FMA peak, with no time at all for
    pooling, FC and elementwise ops.
    """
    sp = speedups(rows)
    peers = {n: v for n, v in sp.items() if n not in RT3D_ROWS}
    out = []
    rate = macs["pruning_rate"]
    if DENSE_NO_WINOGRAD in sp:
        # the direct kernel's bar: both builds on the direct kernel (with Winograd the dense
        # build multiplies less than its MACs, and the ratio is no longer the kernel's)
        direct = _median(rows, DENSE_NO_WINOGRAD) / _median(rows, NO_WINOGRAD)
        out.append(_bar(f"sparse / dense >= {DENSE_FRACTION} x MAC reduction ({rate:.2f}x), "
                        "direct kernel", direct, DENSE_FRACTION * rate,
                        f"need {DENSE_FRACTION * rate:.2f}x; both builds without Winograd"))
    else:
        out.append(_bar(f"sparse / dense >= {DENSE_FRACTION} x MAC reduction ({rate:.2f}x)",
                        sp.get(DENSE), DENSE_FRACTION * rate,
                        f"need {DENSE_FRACTION * rate:.2f}x"))
    dense_ms, peer_ms = _median(rows, DENSE), _median(rows, DENSE_PEER)
    out.append(_bar(f"dense at least as fast as {DENSE_PEER}",
                    peer_ms / dense_ms if dense_ms and peer_ms else None, 1.0,
                    f"{DENSE_PEER} ms / RT3D dense ms" if peer_ms else f"{DENSE_PEER} not run"))
    if NO_WINOGRAD in sp:
        need = WINOGRAD_GAIN.get(model, 1.0)
        sparse_row = next((r for r in rows if r["name"] == SPARSE), {})
        layers = (sparse_row.get("info") or {}).get("winograd_layers")
        name = f"Winograd on >= {need:g}x faster than off (sparse)"
        if layers == 0 and model not in WINOGRAD_GAIN:
            # nothing to pick: both builds are the same program (their ratio is noise)
            out.append({"bar": name, "measured": sp[NO_WINOGRAD], "required": need,
                        "holds": True, "miss_factor": None,
                        "detail": "no layer runs Winograd: the two builds are one program"})
        else:
            out.append(_bar(name, sp[NO_WINOGRAD], need,
                            f"RT3D sparse, no Winograd ms / RT3D sparse ms ({layers} Winograd "
                            "layers)" + ("" if model in WINOGRAD_GAIN
                                         else ": the pass must not pick a loser")))
    slowest = min(peers, key=peers.get) if peers else None
    out.append(_bar("sparse faster than every peer", peers.get(slowest) if slowest else None,
                    1.0, f"closest peer: {slowest}" if slowest else "no peer measured"))
    if model == "c3d":
        detail = "the paper's CPU ratio (948 / 357 ms)"
        mnn_ms = _median(rows, "mnn")
        if ceiling_gmacs and mnn_ms:
            floor_ms = macs["kept_gmacs"] / ceiling_gmacs * 1e3
            detail += (f"; bound here: {macs['kept_gmacs']:.1f} G kept MACs at the FMA "
                       f"peak ({ceiling_gmacs:.0f} G MAC/s) take {floor_ms:.0f} ms, so a "
                       f"direct kernel is at most {mnn_ms / floor_ms:.2f}x faster than MNN")
        need = PLANE_MNN_RATIO if scheme == "plane" else MNN_RATIO
        if scheme == "plane":
            detail = "issue 12: the Winograd-compatible scheme at the same rates; " + detail
        out.append(_bar(f"sparse >= {need}x faster than MNN", peers.get("mnn"), need, detail))
        others = {n: v for n, v in peers.items() if n != "mnn"}
        if "mnn" in peers and others:
            worst = min(others, key=others.get)
            out.append(_bar("over every other peer by more than over MNN", others[worst],
                            peers["mnn"] * (1 + 1e-9), f"closest: {worst}"))
    return out


def format_bars(result: list[dict[str, Any]]) -> str:
    """One line per bar: holds / MISSED by how much."""
    lines = []
    for b in result:
        if b["measured"] is None:
            verdict = "n/a (not measured)"
        elif b["holds"]:
            verdict = f"holds: {b['measured']:.2f}x (>= {b['required']:.2f}x)"
        else:
            verdict = (f"MISSED: {b['measured']:.2f}x < {b['required']:.2f}x "
                       f"(short by a factor {b['miss_factor']:.2f})")
        lines.append(f"bar [{b['bar']}]: {verdict}; {b['detail']}")
    return "\n".join(lines)


def plot(path: Path, title: str, results: Sequence[dict[str, Any]]) -> Path | None:
    """Bar chart of median ms (whiskers: min..max) per runtime, one group per thread count.

    Returns ``None`` if matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(len(results), 1)
    names: list[str] = []
    for res in results:
        names += [r["name"] for r in res["rows"] if r.get("median_ms") and r["name"] not in names]
    for k, res in enumerate(results):
        timed = {r["name"]: r for r in res["rows"] if r.get("median_ms")}
        xs = [i + (k - (len(results) - 1) / 2) * width for i, n in enumerate(names)
              if n in timed]
        rows = [timed[n] for n in names if n in timed]
        med = [r["median_ms"] for r in rows]
        err = [[m - r["min_ms"] for m, r in zip(med, rows, strict=True)],
               [r["max_ms"] - m for m, r in zip(med, rows, strict=True)]]
        colors = ["tab:red" if r["name"] == SPARSE else "tab:orange" if r["name"] == DENSE
                  else "tab:gray" for r in rows]
        ax.bar(xs, med, width, yerr=err, color=colors, alpha=1.0 - 0.35 * k, capsize=3,
               label=f"{res['threads']} thread(s)")
        for xv, m in zip(xs, med, strict=True):
            ax.annotate(f"{m:.0f}", (xv, m / 2), ha="center", va="center", fontsize=7,
                        color="white")
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set_ylabel("latency, median ms (whiskers min..max)")
    ax.set_title(title, fontsize=10)
    if len(results) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
