"""``rt3d models`` and ``rt3d prune``: subcommands registered into the ``rt3d`` console script.

The parser lives in ``rt3d_passes/cli.py``; it calls :func:`register`. Torch and the rest of
``rt3d_prune`` are imported inside the handlers so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register"]


def _group(text: str) -> tuple[int, int]:
    try:
        gm, gn = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"group must look like 8x4, got {text!r}") from None
    return gm, gn


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``models`` and ``prune`` subcommands to an argparse subparsers object."""
    p = subparsers.add_parser("models", help="parameters and MACs of the zoo models",
                              description="Print parameters and MACs per model and per layer.")
    p.add_argument("names", nargs="*", help="models to show (default: all)")
    p.add_argument("--input-shape", type=int, nargs=5, metavar=("B", "C", "T", "H", "W"),
                   help="clip shape (default: each model's own)")
    p.add_argument("--summary", action="store_true", help="totals only, no per-layer rows")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_models)

    p = subparsers.add_parser(
        "prune", help="prune a zoo model (vanilla / KGS) and write a pruned checkpoint",
        description="Train (or load) a dense model, prune it to a preset with the chosen "
                    "method and scheme, fine-tune with masks and write a pruned state dict "
                    "(see rt3d_prune.checkpoint) that `rt3d inspect` reads.")
    p.add_argument("--model", required=True, help="zoo model name, e.g. c3d, c3d_small")
    p.add_argument("--preset", required=True, help="per-layer rates, e.g. c3d-3.6x")
    p.add_argument("--scheme", default="kgs",
                   choices=("kgs", "vanilla", "filter", "unstructured"))
    p.add_argument("--group", type=_group, default=(8, 4), help="kernel group, default 8x4")
    p.add_argument("--method", default="reweighted",
                   choices=("heuristic", "group_lasso", "reweighted", "oneshot"),
                   help="oneshot: no data, no training (for latency experiments)")
    p.add_argument("--data", default="generated",
                   help="'generated' (moving shapes) or a UCF101/HMDB51-style folder")
    p.add_argument("--split-dir", help="official split files for --data DIR")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--num-clips", type=int, default=2400, help="generated: training clips")
    p.add_argument("--init", help="dense starting weights: an rt3d checkpoint or state dict")
    p.add_argument("--dense-epochs", type=int, default=0,
                   help="train the dense model first for this many epochs")
    p.add_argument("--reg-epochs", type=int, default=4)
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=4, help="reweighting rounds")
    p.add_argument("--strength", type=float, default=1e-4, help="regularization lambda")
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--mac-weighted", action="store_true", help="c_l proportional to MACs")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="pruned checkpoint to write (.pt)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_prune)


def _models(args: argparse.Namespace) -> int:
    import torch

    from .macs import count_macs, total_macs
    from .models import MODEL_NAMES, build_model, default_input_shape

    names = args.names or list(MODEL_NAMES)
    report = []
    for name in names:
        shape = tuple(args.input_shape) if args.input_shape else default_input_shape(name)
        with torch.device("meta"):  # shapes only: no memory for 78 M weights
            model = build_model(name)
        layers = count_macs(model, shape)
        params = sum(p.numel() for p in model.parameters())
        dense, _ = total_macs(layers)
        report.append({"model": name, "input_shape": list(shape), "params": params,
                       "macs": dense,
                       "layers": [{"name": x.name, "kind": x.kind,
                                   "weight_shape": list(x.weight_shape),
                                   "output_shape": list(x.output_shape),
                                   "params": x.params, "macs": x.dense_macs} for x in layers]})
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
        return 0
    for entry in report:
        print(f"{entry['model']}  input {'x'.join(map(str, entry['input_shape']))}  "
              f"params {entry['params'] / 1e6:.2f} M  MACs {entry['macs'] / 1e9:.2f} G")
        if args.summary:
            continue
        print(f"  {'layer':<36} {'weight':<22} {'output':<22} {'params':>10} {'MACs':>12}")
        for x in entry["layers"]:
            print(f"  {x['name']:<36} {'x'.join(map(str, x['weight_shape'])):<22} "
                  f"{'x'.join(map(str, x['output_shape'])):<22} {x['params']:>10,} "
                  f"{x['macs'] / 1e6:>10.1f} M")
    return 0


def _load_init(model, path: str) -> None:
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    model.load_state_dict(state)


def _prune(args: argparse.Namespace) -> int:
    import dataclasses

    import torch
    from torch.utils.data import DataLoader

    from .checkpoint import save_checkpoint
    from .config import RegularizerConfig
    from .macs import count_macs, total_macs
    from .models import build_model, default_input_shape
    from .oneshot import prune_oneshot
    from .pipeline import MethodConfig, prune_and_finetune
    from .presets import get_preset
    from .train import TrainConfig, evaluate, train

    torch.manual_seed(args.seed)
    preset = get_preset(args.preset)
    if preset.model != args.model:
        print(f"note: preset {preset.name} was made for {preset.model}, not {args.model}",
              file=sys.stderr)
    sparsity = preset.config(args.scheme, args.group)
    shape = default_input_shape(args.model)
    out = Path(args.out)
    arch_kwargs: dict = {}
    info: dict = {"preset": preset.name, "rates": dict(sparsity.rates),
                  "scheme": args.scheme, "group": list(args.group), "method": args.method}

    if args.method == "oneshot":
        model = build_model(args.model)
        if args.init:
            _load_init(model, args.init)
        prune_oneshot(model, sparsity)
        test_loader = None
    else:
        train_set, test_set = _datasets(args, shape)
        arch_kwargs["num_classes"] = train_set.num_classes
        model = build_model(args.model, **arch_kwargs)
        if args.init:
            _load_init(model, args.init)
        loader = DataLoader(train_set, args.batch_size, shuffle=True, drop_last=True,
                            num_workers=args.workers,
                            generator=torch.Generator().manual_seed(args.seed))
        test_loader = DataLoader(test_set, args.batch_size, num_workers=args.workers)

        def checkpoint(stage: str, net) -> None:
            path = out.with_name(f"{out.stem}.{stage}{out.suffix}")
            save_checkpoint(path, net, args.model, arch_kwargs, shape,
                            {**info, "stage": stage})
            print(f"checkpoint: {path}")

        if args.dense_epochs:
            train(model, loader, TrainConfig(epochs=args.dense_epochs, lr=args.lr * 5),
                  progress=not args.no_progress, desc="dense")
            checkpoint("dense", model)
        info["dense_top1"] = evaluate(model, test_loader)
        print(f"dense top-1: {info['dense_top1']:.4f}")
        method = MethodConfig(
            method=args.method, reg_epochs=args.reg_epochs,
            finetune_epochs=args.finetune_epochs, rounds=args.rounds,
            regularizer=RegularizerConfig(strength=args.strength, eps=args.eps,
                                          mac_weighted=args.mac_weighted),
            reg_train=TrainConfig(lr=args.lr), finetune_train=TrainConfig(lr=args.lr))
        info.update(prune_and_finetune(model, sparsity, method, loader, shape,
                                       progress=not args.no_progress, on_phase=checkpoint))
        info["method_config"] = _plain(dataclasses.asdict(method))
        info["top1"] = evaluate(model, test_loader)
        print(f"pruned top-1: {info['top1']:.4f}")
    dense, kept = total_macs(count_macs(model, shape))
    info.update(dense_macs=dense, kept_macs=kept, mac_reduction=dense / kept)
    save_checkpoint(out, model, args.model, arch_kwargs, shape, _plain(info))
    print(f"MACs {dense / 1e9:.3f} G -> {kept / 1e9:.3f} G ({dense / kept:.2f}x); wrote {out}")
    return 0


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _datasets(args: argparse.Namespace, shape: tuple[int, ...]):
    from .data import MovingShapes, VideoFolder

    _, _, frames, height, _ = shape
    if args.data == "generated":
        return (MovingShapes(args.num_clips, seed=2 * args.seed + 1, frames=frames, size=height),
                MovingShapes(max(args.num_clips // 4, 12), seed=2 * args.seed + 2,
                             frames=frames, size=height))
    if args.split_dir is None:
        print("warning: no --split-dir: the test accuracy is measured on the training videos",
              file=sys.stderr)
    resize = round(height * 128 / 112)
    common = {"split_dir": args.split_dir, "fold": args.fold, "clip_len": frames,
              "crop": height, "resize": resize, "seed": args.seed}
    return VideoFolder(args.data, split="train", **common), VideoFolder(
        args.data, split="test", **common)
