"""The ``rt3d`` command line's parser and dispatch.

Subcommands: ``inspect`` (per-layer report of a saved model), ``demo`` (the end-to-end demo),
``tune`` / ``compile`` (MetaSchedule tuning and building), and, from ``rt3d_prune``,
``models`` and ``prune``. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rt3d_prune.cli import parse_group  # one parser for both halves (stdlib-only module)

__all__ = ["build_parser", "main"]


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape must look like 1,3,16,112,112, got {text!r}") \
            from None


def _algorithm(text: str) -> tuple[str, str]:
    layer, sep, algorithm = text.partition("=")
    if not sep or not layer:
        raise argparse.ArgumentTypeError(f"--algorithm must look like conv4a=winograd, got "
                                         f"{text!r}")
    return layer, algorithm


def _algorithm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-winograd", action="store_true",
                   help="every layer on the direct kernel (results closest to PyTorch's)")
    p.add_argument("--algorithm", type=_algorithm, action="append", default=[],
                   metavar="LAYER=ALGO", help="force a layer's algorithm: direct, winograd, "
                   "winograd2 or winograd4 (repeatable; layer names as `rt3d inspect` prints)")


def _options(args: argparse.Namespace, **fields):
    """The ``RewriteOptions`` of the command line (``fields``: more fields)."""
    from ..transform import RewriteOptions

    return RewriteOptions.of(winograd=False if args.no_winograd else None,
                             algorithms=dict(args.algorithm) or None, **fields)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ..transform import format_reports, inspect
    from .model_spec import load_model_file

    mod = load_model_file(args.path, model=args.model, input_shape=args.input_shape)
    options = _options(args, min_mac_reduction=args.min_mac_reduction, group=args.group,
                       include_dense=False if args.sparse_only else None)
    from ..target import get_target

    target = get_target(args.target)
    if args.tuning_db:
        # what a compile with this database does: measured algorithms replace the model's
        from ..tuning import open_database, with_measured

        options = with_measured(mod, target, open_database(args.tuning_db, target), options)
    reports = inspect(mod, options, target=target)
    if args.json:
        print(json.dumps([dict(layer=r.layer, weight_shape=r.weight_shape, scheme=r.scheme,
                               group=r.group, dense_macs=r.dense_macs, kept_macs=r.kept_macs,
                               rewrite=r.rewrite, kernel=r.kernel, reason=r.reason,
                               algorithm=r.algorithm, winograd_tile=r.winograd_tile,
                               algorithm_reason=r.algorithm_reason)
                          for r in reports], indent=1))
    else:
        print(format_reports(reports))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(model=args.model, preset=args.preset, scheme=args.scheme, group=args.group,
             runs=args.runs, threads=args.threads, out_dir=args.out)
    return 0


def _rpc(args: argparse.Namespace):
    """The ``--rpc-*`` options as :class:`~rt3d_passes.rpc.RPCSettings`, after checking that
    the tracker answers; None without them."""
    if not args.rpc_tracker:
        if args.rpc_key:
            raise ValueError("--rpc-key needs --rpc-tracker HOST:PORT")
        return None
    if not args.rpc_key:
        raise ValueError("--rpc-tracker needs --rpc-key (the device's key on the tracker)")
    from ..rpc import RPCSettings, check_tracker

    try:
        settings = RPCSettings(args.rpc_tracker, args.rpc_key, args.rpc_timeout, args.rpc_wait)
    except ValueError as err:
        if "host:port" not in str(err):
            raise ValueError(f"--rpc-timeout / --rpc-wait: {err}") from None
        raise ValueError(f"--rpc-tracker must be HOST:PORT, got {args.rpc_tracker!r}") from None
    check_tracker(*settings.address, timeout_s=args.rpc_timeout)
    return settings


def _cmd_tune(args: argparse.Namespace) -> int:
    from ..target import get_target
    from ..tuning import tune_model
    from .model_spec import model_from_spec

    target = get_target(args.target)
    rpc = _rpc(args)
    if args.target != "host" and rpc is None:
        raise ValueError(f"target {args.target} has no device on this machine: measure on one "
                         "over RPC with --rpc-tracker HOST:PORT --rpc-key KEY (for kryo, e.g. "
                         "the emulated device of scripts/emulated_kryo.sh)")
    mod = model_from_spec(args.model, preset=args.preset, input_shape=args.input_shape)
    work_dir = args.work_dir or f"work_dirs/{args.model}-{args.target}"
    try:
        summary = tune_model(mod, target, work_dir, trials_per_task=args.trials, rpc=rpc,
                             options=_options(args),
                             compare_algorithms=args.compare_algorithms)
    except KeyboardInterrupt:
        # records are appended as they are measured; the database stays whole (a truncated
        # last line is repaired on open), so the same command resumes
        print(f"\nrt3d tune: interrupted; the records measured so far are in {work_dir}: "
              "run the same command again to resume", file=sys.stderr)
        return 130
    width = max([16, *(len(row["task"]) for row in summary)])
    print(f"\n{'task':<{width}} {'layers':>6} {'GMACs':>7} {'trials':>6} {'records':>7} "
          f"{'best ms':>8}")
    for row in summary:
        best = f"{row['best_ms']:.2f}" if row["best_ms"] is not None else "-"
        print(f"{row['task']:<{width}} {row['weight']:>6} {row['macs'] / 1e9:>7.3f} "
              f"{row['trials_run']:>6} {row['records']:>7} {best:>8}")
    print(f"database: {work_dir}")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    import tvm
    from tvm import relax

    from ..target import get_target
    from .model_spec import model_from_spec

    target = get_target(args.target)
    mod = model_from_spec(args.model, preset=args.preset, input_shape=args.input_shape)
    pipeline = relax.get_pipeline("rt3d", target=target, options=_options(args),
                                  database=args.tuning_db)
    ex = tvm.compile(mod, target, relax_pipeline=pipeline)
    out = args.output or f"{args.model.replace('/', '_')}-{args.target}.so"
    host = target.host or target
    if "aarch64" in str(host.attrs.get("mtriple", "")):
        from tvm.support import cc

        ex.export_library(out, fcompile=cc.cross_compiler("aarch64-linux-gnu-gcc"))
    else:
        ex.export_library(out)
    print(f"wrote {out} ({'tuned: ' + args.tuning_db if args.tuning_db else 'untuned'})")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run ``benchmarks/e2e_bench.py`` of the source checkout with the remaining arguments."""
    import runpy
    from pathlib import Path

    import rt3d_passes

    script = Path(rt3d_passes.__file__).resolve().parents[1] / "benchmarks" / "e2e_bench.py"
    if not script.is_file():
        raise FileNotFoundError(f"rt3d bench needs the source checkout ({script} is missing): "
                                "run it from a clone of the repository")
    saved = sys.argv
    sys.argv = [str(script), *args.bench_args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rt3d", description="RT3D: structured pruning + TVM code generation for 3D CNNs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="per-layer conv3d sparsity report of a saved model")
    p.add_argument("path", help="rt3d checkpoint (.pt), zoo state dict, or exported program "
                                "(.pt2)")
    p.add_argument("--model", help="zoo model of a plain state dict")
    p.add_argument("--input-shape", type=_shape, help="N,C,D,H,W (default: the model's)")
    p.add_argument("--group", type=parse_group, help="kernel group, e.g. 8x4 (default: detect)")
    p.add_argument("--min-mac-reduction", type=float, default=1.2)
    p.add_argument("--sparse-only", action="store_true",
                   help="report what a rewrite of the pruned layers only would do (the pipeline "
                        "also compiles unpruned layers with RT3D's dense kernel)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--tuning-db", help="database directory written by `rt3d tune`: layers it "
                                       "measured both ways get the faster algorithm")
    p.add_argument("--target", default="host", choices=["host", "kryo", "adreno"],
                   help="target whose cost model picks the algorithms, and of --tuning-db")
    _algorithm_args(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("demo", help="end-to-end demo: prune, compile, check, time")
    p.add_argument("--model", default="c3d_small")
    p.add_argument("--preset", help="pruning preset (default: the model's paper preset)")
    p.add_argument("--scheme", default="kgs", choices=["kgs", "vanilla", "plane"])
    p.add_argument("--group", type=parse_group, default=(8, 4))
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="results/demo", help="directory for JSON results")
    p.set_defaults(func=_cmd_demo)

    def model_args(p):
        p.add_argument("model", help="zoo model name (pruned one-shot to --preset) or a saved "
                                     "model file")
        p.add_argument("--preset", help="pruning preset for a zoo model ('dense' for none)")
        p.add_argument("--input-shape", type=_shape)
        p.add_argument("--target", default="host", choices=["host", "kryo", "adreno"])

    p = sub.add_parser("tune", help="tune the model's sparse conv3d tasks with MetaSchedule")
    model_args(p)
    p.add_argument("--trials", type=int, default=32, help="trials per task")
    p.add_argument("--work-dir", help="database directory (default work_dirs/MODEL-TARGET)")
    p.add_argument("--rpc-tracker", help="HOST:PORT of an RPC tracker to measure on")
    p.add_argument("--rpc-key", help="device key registered on the tracker")
    p.add_argument("--rpc-timeout", type=int, default=30,
                   help="seconds one measurement may take on the device")
    p.add_argument("--rpc-wait", type=int,
                   help="seconds a measurement waits for a free device before it fails "
                        "(default: --rpc-timeout)")
    p.add_argument("--compare-algorithms", action="store_true",
                   help="also tune every Winograd-eligible layer's other algorithms (direct, "
                        "F(2x2), F(4x4)): a compile with the database then runs each such "
                        "layer with the one measured fastest")
    _algorithm_args(p)
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser("compile", help="compile a model with the rt3d pipeline")
    model_args(p)
    p.add_argument("--tuning-db", help="database directory written by `rt3d tune`")
    p.add_argument("-o", "--output", help="shared library to write")
    _algorithm_args(p)
    p.set_defaults(func=_cmd_compile)

    # everything after `bench` goes to the script: prefix "+" so "--model" etc. stay positional
    p = sub.add_parser("bench", help="end-to-end benchmark vs peer runtimes (rt3d bench --help)",
                       prefix_chars="+", add_help=False)
    p.add_argument("bench_args", nargs="*", help="arguments of benchmarks/e2e_bench.py")
    p.set_defaults(func=_cmd_bench)

    try:
        from rt3d_prune import cli as prune_cli
    except ImportError:  # the pruning half is optional for compiling
        prune_cli = None
    if prune_cli is not None and hasattr(prune_cli, "register"):
        prune_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ConnectionError, TimeoutError) as err:
        print(f"rt3d {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nrt3d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
