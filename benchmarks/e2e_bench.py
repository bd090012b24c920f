"""End-to-end benchmark: RT3D sparse and dense against the peer runtimes, the paper's Table 2.

Run from the repository root (or as ``rt3d bench ...``)::

    python benchmarks/e2e_bench.py --model c3d --preset paper --threads 2 --runs 10
    python benchmarks/e2e_bench.py --model r2plus1d --threads 1,2 --peers torch_eager mnn
    python benchmarks/e2e_bench.py --model c3d --profile --memory

The model is pruned one-shot to the preset (KGS 8x4; latency does not depend on the weight
values), compiled by RT3D sparse and RT3D dense (every column kept: RT3D's own dense conv3d),
and run with every peer on the same input, interleaved (A B C, B C A, ...) so that drift hits
all alike; every output is checked against PyTorch eager (``max|out-ref| <= 1e-3 max|ref|``).
Prints the Table 2 layout, the details (median/min/max, errors) and the acceptance bars;
writes ``benchmarks/results/e2e_<model>.json`` (machine, versions, commit, date, every run) and
a bar chart PNG next to it. Several thread counts run one child process each (TVM's thread
pool reads ``TVM_NUM_THREADS`` once).
"""

from __future__ import annotations

import argparse
import os
import sys


def _early_threads(argv: list[str]) -> str | None:
    """The ``--threads`` value of ``argv`` if it names one count (before argparse runs)."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--threads" and i + 1 < len(argv) else None
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else value
        if value is not None:
            return value if value.strip().isdigit() else None
    return "2"


# Both must be in the environment before the runtimes start: libgomp (torch, MNN) reads
# OMP_WAIT_POLICY when it loads (spinning workers wreck timings on a shared machine), TVM's
# thread pool reads TVM_NUM_THREADS when it starts.
_TORCH_PRELOADED = "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if _early_threads(sys.argv[1:]) is not None:
    os.environ["TVM_NUM_THREADS"] = str(_early_threads(sys.argv[1:]))

import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/e2e_bench.py` puts only benchmarks/ on it
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="rt3d bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="c3d",
                        help="a zoo model (c3d, r2plus1d (= r2plus1d_18), s3d, x3d_xs, x3d_s, "
                             "slow_r50, ir_csn_50, slowfast_r50, c3d_small), a comma list, or "
                             "'all' (every model but c3d_small, one process each, plus a "
                             "summary table, JSON and plot)")
    parser.add_argument("--preset", default="paper",
                        help="'paper' (the model's paper preset) or a preset name")
    parser.add_argument("--threads", default="2", help="thread count(s), e.g. 2 or 1,2")
    parser.add_argument("--runs", type=int, default=10, help="interleaved timed rounds (>= 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--gap-ms", type=float, default=50.0, help="untimed pause before runs")
    parser.add_argument("--peers", nargs="+", help="peers to run (default: all)")
    parser.add_argument("--tuning-db", help="RT3D tuning database directory (rt3d tune)")
    parser.add_argument("--winograd", choices=("both", "on", "off"), default="both",
                        help="RT3D's Winograd layers: 'both' (default) also times both models "
                             "with every layer on the direct kernel ('RT3D sparse, no "
                             "Winograd', 'RT3D dense, no Winograd'), 'on' / 'off' compile "
                             "every build one way")
    parser.add_argument("--scheme", choices=("kgs", "plane", "vanilla"), default="kgs",
                        help="sparsity scheme of the one-shot pruning at the preset's rates "
                             "(8x4 groups): kgs (the paper's), plane (Winograd-compatible: "
                             "whole 3x3 planes, run as sparse Winograd), vanilla")
    parser.add_argument("--profile", action="store_true",
                        help="print the per-op (per-layer) time of the RT3D sparse model, "
                             "and its time per op kind (convolutions by class) against "
                             "PyTorch's and, when installed, OpenVINO's own profiles")
    parser.add_argument("--memory", action="store_true",
                        help="library sizes and peak RSS of RT3D sparse vs dense (children)")
    parser.add_argument("--out", type=Path, help="JSON path (default "
                        "benchmarks/results/e2e_<model>.json; the PNG goes next to it)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    try:
        args.thread_list = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        parser.error(f"--threads must look like 2 or 1,2, got {args.threads!r}")
    if not args.thread_list or min(args.thread_list) < 1:
        parser.error(f"--threads must be positive, got {args.threads!r}")
    return args


def validate(args: argparse.Namespace) -> None:
    """Resolve model, preset and peers in place; raise ``BadInput`` listing the valid names."""
    from benchmarks.e2e.models import BadInput, resolve_model, resolve_preset
    from benchmarks.peers import PEERS

    args.zoo_model = resolve_model(args.model)
    args.preset_name = resolve_preset(args.zoo_model, args.preset)
    unknown = [p for p in args.peers or [] if p not in PEERS]
    if unknown:
        raise BadInput(f"unknown peer(s) {', '.join(unknown)}; valid peers: {', '.join(PEERS)}")
    args.peer_list = list(args.peers) if args.peers else list(PEERS)
    if args.tuning_db and not Path(args.tuning_db).is_dir():
        raise BadInput(f"--tuning-db {args.tuning_db}: no such directory")


def load_info() -> dict[str, Any]:
    """Load averages and busy cores right now."""
    from benchmarks.peers.timing import busy_cores

    return {"loadavg": list(os.getloadavg()), "busy_cores": busy_cores()}


def rt3d_row(name: str, run, x, ref, reference: str, info: dict[str, Any]) -> dict[str, Any]:
    """Run an RT3D build once on ``x`` and check it against the eager output ``ref``."""
    from benchmarks.peers.base import check_output, first_line

    try:
        ok, err = check_output(ref, run(x))
    except Exception as exc:  # a crash in one build must not lose the other rows
        return {"name": name, "status": f"failed: {first_line(exc)}", "reference": reference,
                "info": info}
    scale = float(abs(ref).max()) or 1.0
    status = "ok" if ok else f"wrong output (max abs err {err:.3g}, rel {err / scale:.3g})"
    return {"name": name, "status": status, "max_abs_err": err, "max_rel_err": err / scale,
            "reference": reference, "info": info}


def prepare_rows(args, models, builds, workdir: Path) -> tuple[list[dict], dict[str, Any]]:
    """Check the RT3D builds and prepare every peer; return rows and the runnable callables."""
    import torch

    from benchmarks.peers import get_peer
    from benchmarks.peers.harness import prepare_peer

    x = models.x.numpy()
    with torch.no_grad():
        refs = {"sparse": models.pruned(models.x).numpy(), "dense": models.dense(models.x).numpy()}
    refs["sparse, no Winograd"] = refs["sparse"]
    refs["dense, no Winograd"] = refs["dense"]
    rows, runners = [], {}
    for name in args.peer_list:
        result, runner = prepare_peer(get_peer(name), models.pruned, models.x, refs["sparse"],
                                      workdir, args.threads_now, 1e-3, 0.0)
        row = {"name": name, "status": result.status, "max_abs_err": result.max_abs_err,
               "max_rel_err": result.max_rel_err, "reference": "eager, pruned model",
               "info": result.info}
        rows.append(row)
        if runner is not None:
            runners[name] = runner.run
    for key, build in builds.items():
        run = build.runner()
        model = "unpruned model" if key.startswith("dense") else "pruned model"
        info = {"compile_s": build.compile_s, "weight_bytes": build.weight_bytes,
                "threads": args.threads_now,
                "kgs_layers": sum(bool(r.rewrite) for r in build.reports),
                "winograd_layers": sum(bool(r.rewrite and r.algorithm == "winograd")
                                       for r in build.reports),
                "tuning_db": args.tuning_db, "notes": []}
        row = rt3d_row(f"RT3D {key}", run, x, refs[key], f"eager, {model}", info)
        rows.append(row)
        if not row["status"].startswith("failed"):
            runners[row["name"]] = run
    return rows, runners


def time_rows(args, rows: list[dict], runners: dict, x) -> None:
    """Time all runnable rows interleaved and add times + summary to each row."""
    from benchmarks.peers.timing import run_interleaved, summarize

    times = run_interleaved(runners, x, args.runs, args.warmup, args.gap_ms)
    for row in rows:
        row["times_ms"] = times.get(row["name"], [])
        if row["times_ms"]:
            row.update(summarize(row["times_ms"]))


def compile_builds(args, models) -> dict[str, Any]:
    """RT3D sparse (pruned model) and RT3D dense (unpruned), same pipeline and database, and
    with ``--winograd both`` the pruned model on the direct kernel alone."""
    from benchmarks.e2e.rt3d import compile_rt3d, open_tuning_db
    from rt3d_passes.target import host_target

    target = host_target(max(args.thread_list))
    database = open_tuning_db(args.tuning_db, target)
    builds = {}
    winograd = args.winograd != "off"
    variants = [("sparse", models.pruned, winograd), ("dense", models.dense, winograd)]
    if args.winograd == "both":
        variants += [("sparse, no Winograd", models.pruned, False),
                     ("dense, no Winograd", models.dense, False)]
    for key, model, wino in variants:
        print(f"compiling RT3D {key} ({'tuned' if database else 'default schedules'}) ...",
              flush=True)
        builds[key] = compile_rt3d(key, model, models.x, target, database, winograd=wino)
        print(f"  {builds[key].compile_s:.0f} s", flush=True)
    return builds


def run_single(args) -> dict[str, Any]:
    """One thread count in this process: build, check, time, print; the JSON payload."""
    import torch

    from benchmarks.e2e import report
    from benchmarks.e2e.models import PAPER, build_models
    from benchmarks.fma_peak import FMAPeak
    from rt3d_passes.threads import set_num_threads

    args.threads_now = args.thread_list[0]
    torch.set_num_threads(args.threads_now)
    set_num_threads(args.threads_now)  # warns if the pool started with another count
    models = build_models(args.zoo_model, args.preset_name, scheme=args.scheme)
    load_before = load_info()
    builds = compile_builds(args, models)
    with tempfile.TemporaryDirectory(prefix="rt3d_e2e_") as tmp:
        rows, runners = prepare_rows(args, models, builds, Path(tmp))
        print(f"timing {len(runners)} runtimes interleaved, {args.runs} runs, "
              f"{args.threads_now} thread(s) ...", flush=True)
        time_rows(args, rows, runners, models.x.numpy())
        load_after = load_info()
        # same run, same load: the FMA peak, what a direct kernel can reach at most
        peak = FMAPeak()
        ceiling = peak.gmacs(args.threads_now)
        entry = {"threads": args.threads_now, "rows": rows, "speedups": report.speedups(rows),
                 "paired_speedups": report.paired_speedups(rows),
                 "bars": report.bars(args.zoo_model, models.macs, rows, ceiling,
                                     scheme=args.scheme),
                 "fma_peak_gmacs": ceiling, "fma_isa": peak.isa,
                 "load_before": load_before, "load_after": load_after}
        print_entry(args, models, entry)
        extras = run_extras(args, models, builds, Path(tmp))
    return {"benchmark": "e2e_bench", "model": args.zoo_model, "preset": args.preset_name,
            "scheme": args.scheme, "winograd": args.winograd,
            "input_shape": list(models.x.shape), "macs": models.macs, "runs": args.runs,
            "warmup": args.warmup, "gap_ms": args.gap_ms, "peers": args.peer_list,
            "tuning_db": args.tuning_db, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "tvm_num_threads": os.environ.get("TVM_NUM_THREADS"),
            "peers_run": "the pruned model (zeros stored densely; latency as dense)",
            "paper_galaxy_s20": PAPER.get(args.zoo_model), "results": [entry], **extras}


def print_entry(args, models, entry: dict[str, Any]) -> None:
    """The Table 2 layout, the details, the bars and the load of one thread count."""
    from benchmarks.e2e import report

    print()
    print(report.format_table2(args.zoo_model, args.preset_name, models.macs, entry["threads"],
                               args.runs, entry["rows"]))
    print()
    print(report.format_details(entry["rows"]))
    print()
    print(report.format_bars(entry["bars"]))
    before, after = entry["load_before"], entry["load_after"]
    print(f"load average before {before['loadavg'][0]:.2f} / after {after['loadavg'][0]:.2f} "
          f"(1 min); busy cores before {before['busy_cores']:.1f} / after "
          f"{after['busy_cores']:.1f} of {os.cpu_count()}; OMP_WAIT_POLICY="
          f"{os.environ.get('OMP_WAIT_POLICY')} TVM_NUM_THREADS="
          f"{os.environ.get('TVM_NUM_THREADS')}", flush=True)


def run_extras(args, models, builds, workdir: Path) -> dict[str, Any]:
    """``--profile`` (per-op time of RT3D sparse) and ``--memory`` (sizes and peak RSS)."""
    from benchmarks.e2e import memory, rt3d

    extras: dict[str, Any] = {}
    if args.profile:
        ops = rt3d.profile_ops(builds["sparse"], models.x.numpy())
        print(f"\nper-op profile of RT3D sparse ({args.threads_now} thread(s), median of 3):")
        print(rt3d.format_profile(ops))
        extras["profile_sparse"] = ops
        ov_nodes = openvino_profile(models, workdir, args.threads_now)
        if ov_nodes is not None:
            extras["profile_openvino"] = ov_nodes
        kinds = rt3d.compare_kinds(
            ops, rt3d.torch_profile_kinds(models.pruned, models.x),
            openvino=None if ov_nodes is None else rt3d.openvino_kinds(ov_nodes))
        print("\nper op kind, RT3D sparse against PyTorch eager on the same pruned model "
              "(torch.profiler, each top-level op with its children)"
              + ("" if ov_nodes is None else " and OpenVINO (PERF_COUNT, per node)") + ":")
        print(rt3d.format_kinds(kinds))
        extras["profile_kinds"] = kinds
    if args.memory:
        libs = {key: rt3d.export(build, workdir / "libs") for key, build in builds.items()}
        weights = {key: build.weight_bytes for key, build in builds.items()}
        mem = memory.measure_memory(libs, weights, tuple(models.x.shape), args.threads_now)
        mem["pruned_layers"] = memory.pruned_layer_weights(
            builds["sparse"].reports, builds["sparse"].conv_weight_bytes,
            builds["dense"].conv_weight_bytes)
        print("\nmemory (runtime-only child processes: load the exported .so, run twice):")
        print(memory.format_memory(mem))
        extras["memory"] = mem
    return extras


def openvino_profile(models, workdir: Path, threads: int) -> list[dict[str, Any]] | None:
    """OpenVINO's per-node profile of the pruned model (as dense as it runs the dense one:
    it computes the zeros), None with the reason printed when OpenVINO is not installed or
    cannot compile the model."""
    from benchmarks.peers.base import PeerUnsupported
    from benchmarks.peers.openvino_cpu import profile_nodes  # imports openvino when called

    try:
        return profile_nodes(models.pruned, models.x, workdir / "openvino_profile", threads)
    except (ImportError, PeerUnsupported) as exc:
        print(f"(no OpenVINO profile: {exc})")
        return None


def run_children(args, argv: list[str]) -> dict[str, Any]:
    """One child process per thread count (fresh TVM pool, libgomp loaded after the
    environment is set); merge their payloads."""
    payload: dict[str, Any] = {}
    from benchmarks.e2e.argv import strip_option

    base = [a for a in strip_option(argv, "--threads") if a not in ("--no-plot", "--child")]
    base = strip_option(base, "--out")
    with tempfile.TemporaryDirectory(prefix="rt3d_e2e_children_") as tmp:
        for threads in args.thread_list:
            out = Path(tmp) / f"t{threads}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), *base, "--threads",
                   str(threads), "--out", str(out), "--no-plot", "--child"]
            env = dict(os.environ, TVM_NUM_THREADS=str(threads))
            code = subprocess.run(cmd, env=env, check=False).returncode
            if code != 0 or not out.exists():
                raise RuntimeError(f"benchmark child with {threads} thread(s) exited with {code}")
            child = json.loads(out.read_text())
            child.pop("environment", None)
            results = payload.get("results", []) + child["results"]
            payload = {**payload, **child, "results": results}
    return payload


def write_outputs(args, payload: dict[str, Any]) -> None:
    """JSON with environment facts (machine, versions, commit, date) and the PNG next to it."""
    from benchmarks.e2e import report
    from benchmarks.environment import write_result

    out = args.out or RESULTS / f"e2e_{args.zoo_model}.json"
    path = write_result(out, payload)
    if args.child:  # the parent merges and reports
        return
    print(f"wrote {path}")
    if not args.no_plot:
        macs = payload["macs"]
        title = (f"{payload['model']} at {payload['preset']} ({macs['dense_gmacs']:.1f} -> "
                 f"{macs['kept_gmacs']:.1f} G MACs), {payload['runs']} interleaved runs")
        png = report.plot(path.with_suffix(".png"), title, payload["results"])
        print(f"wrote {png}" if png else "no PNG: matplotlib is not installed")


def main(argv: list[str] | None = None) -> int:
    """Entry point (also ``rt3d bench``); 2 on bad input, 1 if an RT3D output is wrong."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    from benchmarks.e2e.models import BadInput

    try:
        from benchmarks.e2e import zoo

        models = zoo.model_list(args.model)
        if models is not None:
            return zoo.main_all(Path(__file__).resolve(), argv, models, args.out)
        validate(args)
    except BadInput as err:
        print(f"rt3d bench: error: {err}", file=sys.stderr)
        return 2
    if len(args.thread_list) > 1 or _TORCH_PRELOADED:
        payload = run_children(args, argv)
    else:
        payload = run_single(args)
    write_outputs(args, payload)
    rt3d_ok = all(r["status"] == "ok" for res in payload["results"] for r in res["rows"]
                  if r["name"].startswith("RT3D"))
    return 0 if rt3d_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
