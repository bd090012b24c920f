"""Pruning accuracy benchmark: the paper's Table 1 layout (top-1 vs MACs) on generated data.

Trains a reduced C3D (``c3d_small``) on the moving-shapes dataset to a dense accuracy, then
prunes copies of it to the same per-layer rates (``c3d_small-3.6x`` and the harsher
``c3d_small-5x``) with heuristic, group lasso and reweighted regularization, each with the
vanilla and the KGS scheme, fine-tunes with masks and reports top-1 against MACs. Every method
trains for the same number of epochs after the dense model (heuristic fine-tunes longer).

Writes ``<out>/pruning_accuracy.json`` and ``<out>/pruning_accuracy.png`` (top-1 vs MAC
reduction). Fixed seeds; the defaults take about 20-30 minutes on 2 CPU cores.

    python benchmarks/pruning_accuracy.py [--quick] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from rt3d_prune.config import RegularizerConfig
from rt3d_prune.data import MovingShapes
from rt3d_prune.macs import count_macs, total_macs
from rt3d_prune.models import build_model, default_input_shape
from rt3d_prune.pipeline import MethodConfig, prune_and_finetune
from rt3d_prune.presets import get_preset
from rt3d_prune.train import TrainConfig, evaluate, train

MODEL = "c3d_small"


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes, budgets and regularization strengths of one benchmark run."""

    train_clips: int = 1200
    test_clips: int = 600
    dense_epochs: int = 20
    reg_epochs: int = 3
    finetune_epochs: int = 3
    rounds: int = 3
    batch_size: int = 32
    dense_lr: float = 2e-3
    prune_lr: float = 0.01
    # lambda per method, for SGD (momentum 0.9) at prune_lr: group lasso shrinks every group
    # norm by ~10 * lr * lambda per step, ~0.05 over the phase (typical unit norms are
    # 0.05-0.2); reweighting multiplies each group's pull by P_g = 1 / (||W_g||^2 + eps),
    # ~100 for a typical unit, so its lambda is ~100x smaller for a comparable total pull
    strength: tuple[tuple[str, float], ...] = (("group_lasso", 5e-3), ("reweighted", 5e-5))
    eps: float = 1e-3
    presets: tuple[str, ...] = ("c3d_small-3.6x", "c3d_small-5x")
    methods: tuple[str, ...] = ("heuristic", "group_lasso", "reweighted")
    schemes: tuple[str, ...] = ("vanilla", "kgs")
    seed: int = 0


QUICK = BenchConfig(train_clips=24, test_clips=12, dense_epochs=1, reg_epochs=1,
                    finetune_epochs=1, rounds=1, batch_size=12,
                    presets=("c3d_small-3.6x",))


def _adamw(lr: float, epochs: int = 1) -> TrainConfig:
    # the dense model from scratch: AdamW converges in far fewer epochs on this data
    return TrainConfig(epochs=epochs, lr=lr, optimizer="adamw", weight_decay=1e-2)


def _sgd(lr: float) -> TrainConfig:
    # regularization and fine-tuning: plain SGD, so lambda means a shrink rate (Adam would
    # rescale the penalty's gradient per weight)
    return TrainConfig(lr=lr, momentum=0.9, weight_decay=5e-4)


def _dense_key(config: BenchConfig) -> str:
    fields = ("train_clips", "dense_epochs", "batch_size", "dense_lr", "seed")
    return "_".join(f"{getattr(config, f)}" for f in fields)


def run(config: BenchConfig, out_dir: Path | None = None, progress: bool = True,
        reuse_dense: bool = False, name: str = "pruning_accuracy") -> dict[str, Any]:
    """Run the benchmark; returns (and optionally writes) the result dict.

    Args:
        reuse_dense: Cache the dense model in
            ``$TMPDIR/rt3d_pruning_accuracy/dense_<settings>.pt`` and load it from there when
            an earlier run with the same data and dense-training settings saved it.
        name: Output file stem; the JSON is rewritten after every row, so an interrupted
            run keeps its finished rows.
    """
    torch.manual_seed(config.seed)
    shape = default_input_shape(MODEL)
    train_set = MovingShapes(config.train_clips, seed=10 * config.seed + 1)
    test_set = MovingShapes(config.test_clips, seed=10 * config.seed + 2)
    gen = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(train_set, config.batch_size, shuffle=True, drop_last=True,
                        generator=gen)
    test_loader = DataLoader(test_set, 100)

    start = time.time()
    dense = build_model(MODEL, num_classes=train_set.num_classes)
    # the dense weights are a cache, not a result: keep them out of the results folder
    cache = Path(tempfile.gettempdir()) / "rt3d_pruning_accuracy" / f"dense_{_dense_key(config)}.pt"
    if reuse_dense and cache.exists():
        dense.load_state_dict(torch.load(cache, weights_only=True))
    else:
        train(dense, loader, _adamw(config.dense_lr, config.dense_epochs), progress=progress,
              desc="dense")
        if reuse_dense:
            cache.parent.mkdir(parents=True, exist_ok=True)
            torch.save(dense.state_dict(), cache)
    dense_top1 = evaluate(dense, test_loader)
    dense_macs, _ = total_macs(count_macs(dense, shape))
    print(f"dense: top-1 {dense_top1:.4f}, {dense_macs / 1e6:.1f} M MACs "
          f"({time.time() - start:.0f} s)", flush=True)
    rows: list[dict[str, Any]] = []
    result = {"config": dataclasses.asdict(config), "model": MODEL, "input_shape": list(shape),
              "dense_top1": dense_top1, "dense_macs": dense_macs, "rows": rows,
              "seconds": time.time() - start, "torch": torch.__version__, "complete": False}
    strengths = dict(config.strength)
    for preset in config.presets:
        for method in config.methods:
            for scheme in config.schemes:
                t0 = time.time()
                # same seeds and batch order for every row: rows do not depend on their order
                torch.manual_seed(config.seed)
                gen.manual_seed(config.seed + 1)
                model = copy.deepcopy(dense)
                method_cfg = MethodConfig(
                    method=method, reg_epochs=config.reg_epochs,
                    finetune_epochs=config.finetune_epochs, rounds=config.rounds,
                    regularizer=RegularizerConfig(strength=strengths.get(method, 0.0),
                                                  eps=config.eps),
                    reg_train=_sgd(config.prune_lr), finetune_train=_sgd(config.prune_lr))
                sparsity = get_preset(preset).config(scheme, (8, 4))
                info = prune_and_finetune(model, sparsity, method_cfg, loader, shape,
                                          progress=progress)
                top1 = evaluate(model, test_loader)
                _, kept = total_macs(count_macs(model, shape))
                row = {"preset": preset, "method": method, "scheme": scheme, "top1": top1,
                       "delta_top1": top1 - dense_top1, "kept_macs": kept,
                       "mac_reduction": dense_macs / kept, "seconds": time.time() - t0,
                       "pruned_fractions": info["pruned_fractions"]}
                rows.append(row)
                print(f"{preset:>15} {method:>12} {scheme:>8}: top-1 {top1:.4f} "
                      f"({row['delta_top1']:+.4f}), {kept / 1e6:.1f} M MACs "
                      f"({row['mac_reduction']:.2f}x), {row['seconds']:.0f} s", flush=True)
                result["seconds"] = time.time() - start
                _write(result, out_dir, name, plot=False)
    result["complete"] = True
    _write(result, out_dir, name, plot=True)
    return result


def _write(result: dict[str, Any], out_dir: Path | None, name: str, plot: bool) -> None:
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
    if plot:
        _plot(result, out_dir / f"{name}.png")


def table(result: dict[str, Any]) -> str:
    """The paper's Table 1 layout as text: method, scheme, MACs, reduction, top-1."""
    lines = [f"{'preset':<15} {'method':<12} {'scheme':<8} {'MACs (M)':>9} {'reduction':>9} "
             f"{'top-1':>7} {'delta':>7}",
             f"{'dense':<15} {'-':<12} {'-':<8} {result['dense_macs'] / 1e6:>9.1f} "
             f"{1.0:>8.2f}x {result['dense_top1']:>7.4f} {0.0:>+7.4f}"]
    for r in result["rows"]:
        lines.append(f"{r['preset']:<15} {r['method']:<12} {r['scheme']:<8} "
                     f"{r['kept_macs'] / 1e6:>9.1f} {r['mac_reduction']:>8.2f}x "
                     f"{r['top1']:>7.4f} {r['delta_top1']:>+7.4f}")
    return "\n".join(lines)


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    markers = {"heuristic": "o", "group_lasso": "s", "reweighted": "^"}
    styles = {"vanilla": "--", "kgs": "-"}
    for method in result["config"]["methods"]:
        for scheme in result["config"]["schemes"]:
            rows = sorted((r for r in result["rows"]
                           if r["method"] == method and r["scheme"] == scheme),
                          key=lambda r: r["mac_reduction"])
            ax.plot([1.0] + [r["mac_reduction"] for r in rows],
                    [result["dense_top1"]] + [r["top1"] for r in rows],
                    styles.get(scheme, ":"), marker=markers.get(method, "x"),
                    label=f"{method} / {scheme}")
    ax.set_xlabel("MAC reduction (dense / kept)")
    ax.set_ylabel("top-1 (generated moving shapes)")
    ax.set_title(f"{result['model']}: pruning accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test configuration")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--reuse-dense", action="store_true",
                        help="cache the dense model in $TMPDIR and reuse it across runs")
    parser.add_argument("--name", default="pruning_accuracy", help="output file stem")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override BenchConfig fields, e.g. --set train_clips=600")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = QUICK if args.quick else BenchConfig()
    for item in args.set:
        key, value = item.split("=", 1)
        current = getattr(config, key)
        if isinstance(current, tuple):
            parsed = tuple(value.split(","))
        else:
            parsed = type(current)(value)
        config = dataclasses.replace(config, **{key: parsed})
    result = run(config, args.out, not args.no_progress, args.reuse_dense, args.name)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
