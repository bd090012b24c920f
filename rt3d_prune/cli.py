"""``rt3d models`` and ``rt3d prune``: subcommands registered into the ``rt3d`` console script.

The parser lives in ``rt3d_passes/cli.py``; it calls :func:`register`. Torch and the rest of
``rt3d_prune`` are imported inside the handlers so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

__all__ = ["parse_group", "register"]


def parse_group(text: str) -> tuple[int, int]:
    """``--group`` values like ``8x4`` (also the ``rt3d`` compiler commands' parser)."""
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
        "prune", help="prune a zoo model (KGS / plane / vanilla) and write a pruned checkpoint",
        description="Train (or load) a dense model, prune it to a preset with the chosen "
                    "method and scheme, fine-tune with masks and write a pruned state dict "
                    "(see rt3d_prune.checkpoint) that `rt3d inspect` reads. Under "
                    "`torchrun --nproc_per_node N -m rt3d_prune.cli prune ...` it trains with "
                    "DistributedDataParallel (rank 0 logs and writes).")
    p.add_argument("--model", required=True, help="zoo model name, e.g. c3d, c3d_small")
    p.add_argument("--preset", required=True, help="per-layer rates, e.g. c3d-3.6x")
    # rt3d_prune.schemes.SCHEMES, spelled out: importing it would import torch
    p.add_argument("--scheme", default="kgs",
                   choices=("kgs", "plane", "vanilla", "filter", "unstructured"),
                   help="kgs (default); plane: whole kd planes of a kernel group, "
                        "Winograd-compatible (conv3d layers only); vanilla; and the baselines "
                        "filter, unstructured")
    p.add_argument("--group", type=parse_group, default=(8, 4), help="kernel group, default 8x4")
    p.add_argument("--layer-wide", action="store_true",
                   help="KGS / plane: rank units (planes) over the whole layer instead of per "
                        "output group")
    p.add_argument("--method", default="reweighted",
                   choices=("heuristic", "group_lasso", "reweighted", "admm", "oneshot"),
                   help="oneshot: no data, no training (for latency experiments)")
    p.add_argument("--data", default="generated",
                   help="'generated' (moving shapes) or a UCF101/HMDB51-style folder")
    p.add_argument("--split-dir", help="official split files for --data DIR")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--num-clips", type=int, default=2400, help="generated: training clips")
    p.add_argument("--init", help="dense starting weights: an rt3d checkpoint or a state dict "
                                  "with the public names (torchvision r2plus1d_18 / s3d, the "
                                  "Sports-1M C3D port)")
    p.add_argument("--dense-epochs", type=int, default=0,
                   help="train the dense model first for this many epochs")
    p.add_argument("--dense-lr", type=float, help="dense training lr (default 5 x --lr)")
    p.add_argument("--reg-epochs", type=int, default=4, help="regularization epochs")
    p.add_argument("--finetune-epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=4, help="reweighting rounds")
    p.add_argument("--strength", type=float, default=1e-4, help="regularization lambda")
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--no-mac-weighted", action="store_true",
                   help="c_l = 1 instead of proportional to the layer's MACs")
    p.add_argument("--normalize", default="none", choices=("none", "layer", "bn"),
                   help="BatchNorm-aware group norms: relative to the layer, or with the "
                        "following BN's scale folded in")
    p.add_argument("--rho", type=float, default=1e-3, help="ADMM initial rho")
    p.add_argument("--rho-factor", type=float, default=10.0, help="ADMM rho growth per stage")
    p.add_argument("--admm-stages", type=int, default=3)
    p.add_argument("--admm-update-every", type=int, default=1, help="epochs between Z/U updates")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--reg-schedule", default="constant", choices=("constant", "step", "cosine"),
                   help="lr schedule of the regularization phase")
    p.add_argument("--distill-weight", type=float, default=0.0,
                   help="fine-tuning: weight of distillation from the dense model (0: off)")
    p.add_argument("--distill-temperature", type=float, default=4.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=32,
                   help="global batch (divided among torchrun processes)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes per rank")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"),
                   help="autocast precision (fp16 needs CUDA)")
    p.add_argument("--pin-memory", default=None, action=argparse.BooleanOptionalAction,
                   help="pin host batches (default: on with CUDA)")
    p.add_argument("--memory-format", default="auto",
                   choices=("auto", "channels_last", "contiguous"),
                   help="layout of 5-D weights and clips while training (auto: channels-last "
                        "on a CPU without bf16, contiguous on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="pruned checkpoint to write (.pt)")
    p.add_argument("--run-dir", help="per-epoch checkpoints and logs (default: OUT.run/)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --run-dir (refused if the settings differ)")
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


def _prune(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import save_checkpoint
    from .config import ADMMConfig, MethodConfig, RegularizerConfig, SparsityConfig
    from .distributed import setup
    from .engine import EngineConfig, run_pruning
    from .macs import count_macs, total_macs
    from .models import build_model, default_input_shape
    from .oneshot import prune_oneshot
    from .presets import get_preset
    from .pretrained import load_pretrained
    from .train import TrainConfig, evaluate

    preset = get_preset(args.preset)
    runtime = setup(args.device)  # joins the process group under torchrun
    say = print if runtime.is_main else (lambda *a, **k: None)
    torch.manual_seed(args.seed)
    if preset.model != args.model:
        say(f"note: preset {preset.name} was made for {preset.model}, not {args.model}",
            file=sys.stderr)
    sparsity = preset.config(args.scheme, args.group).replace(balanced=not args.layer_wide)
    shape = default_input_shape(args.model)
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else out.with_name(out.name + ".run")
    arch_kwargs: dict = {}
    info: dict = {"preset": preset.name, "rates": dict(sparsity.rates),
                  "scheme": args.scheme, "group": list(args.group), "method": args.method}

    def init(model) -> None:
        if args.init:
            skipped = load_pretrained(model, args.init, args.model)["skipped_head"]
            if skipped:
                say(f"--init: {', '.join(skipped)} left at random (other class count)")

    if args.method == "oneshot":
        model = build_model(args.model)
        init(model)
        prune_oneshot(model, sparsity)
    else:
        if args.batch_size % runtime.world:
            raise ValueError(f"--batch-size {args.batch_size} is not divisible by the "
                             f"world size {runtime.world}")
        train_set, val_set, test_set = _datasets(args, shape)
        arch_kwargs["num_classes"] = train_set.num_classes
        model = build_model(args.model, **arch_kwargs)
        init(model)
        engine = EngineConfig(batch_size=args.batch_size, workers=args.workers,
                              device=args.device, amp=args.amp, pin_memory=args.pin_memory,
                              memory_format=args.memory_format, seed=args.seed,
                              progress=not args.no_progress)
        data_key = {"model": args.model, "preset": args.preset, "data": args.data,
                    "num_clips": args.num_clips, "fold": args.fold, "init": args.init}

        def checkpoint(stage: str, net) -> None:
            if not runtime.is_main:
                return
            path = out.with_name(f"{out.stem}.{stage}{out.suffix}")
            save_checkpoint(path, net, args.model, arch_kwargs, shape,
                            {**info, "stage": stage})
            say(f"checkpoint: {path}")

        if args.dense_epochs:
            # dense training is the engine with nothing to prune (DDP, resume, logs too)
            dense_method = MethodConfig(
                method="heuristic", reg_epochs=0, finetune_epochs=args.dense_epochs,
                finetune_train=TrainConfig(lr=args.dense_lr or args.lr * 5))
            dense_done = run_dir / "dense.done"
            if not (args.resume and dense_done.exists()):
                run_pruning(model, SparsityConfig(), dense_method, train_set, engine,
                            val_set=val_set, run_dir=run_dir / "dense",
                            resume=args.resume and (run_dir / "dense" / "last.pt").exists(),
                            fingerprint=data_key)
                if runtime.is_main:
                    dense_done.touch()
            else:
                model.load_state_dict(torch.load(run_dir / "dense" / "last.pt",
                                                 weights_only=False)["model"])
            checkpoint("dense", model)
        if runtime.is_main:
            info["dense_top1"] = evaluate(model, _loader(test_set, args))
            say(f"dense top-1: {info['dense_top1']:.4f}")
        method = MethodConfig(
            method=args.method, reg_epochs=args.reg_epochs,
            finetune_epochs=args.finetune_epochs, rounds=args.rounds,
            regularizer=RegularizerConfig(strength=args.strength, eps=args.eps,
                                          mac_weighted=not args.no_mac_weighted,
                                          normalize=args.normalize),
            admm=ADMMConfig(rho=args.rho, rho_factor=args.rho_factor, stages=args.admm_stages,
                            update_every=args.admm_update_every),
            reg_train=TrainConfig(lr=args.lr, schedule=args.reg_schedule,
                                  label_smoothing=args.label_smoothing),
            finetune_train=TrainConfig(lr=args.lr, label_smoothing=args.label_smoothing,
                                       distill_weight=args.distill_weight,
                                       distill_temperature=args.distill_temperature))
        info.update(run_pruning(model, sparsity, method, train_set, engine, val_set=val_set,
                                input_shape=shape, run_dir=run_dir / "prune",
                                resume=args.resume and (run_dir / "prune" / "last.pt").exists(),
                                fingerprint={**data_key, "dense_epochs": args.dense_epochs},
                                on_phase=checkpoint))
        info["method_config"] = _plain(dataclasses.asdict(method))
        if runtime.is_main:
            info["top1"] = evaluate(model, _loader(test_set, args))
            say(f"pruned top-1: {info['top1']:.4f}")
    if runtime.is_main:
        dense, kept = total_macs(count_macs(model, shape))
        info.update(dense_macs=dense, kept_macs=kept, mac_reduction=dense / kept)
        save_checkpoint(out, model, args.model, arch_kwargs, shape, _plain(info))
        say(f"MACs {dense / 1e9:.3f} G -> {kept / 1e9:.3f} G ({dense / kept:.2f}x); wrote {out}")
    return 0


def _loader(dataset, args: argparse.Namespace):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, max(args.batch_size, 32), num_workers=args.workers)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _datasets(args: argparse.Namespace, shape: tuple[int, ...]):
    """``(train, validation or None, test)``."""
    from .data import MovingShapes, VideoFolder

    _, _, frames, height, _ = shape
    if args.data == "generated":
        small = max(args.num_clips // 4, 12)
        return (MovingShapes(args.num_clips, seed=2 * args.seed + 1, frames=frames, size=height),
                MovingShapes(small, seed=2 * args.seed + 10_001, frames=frames, size=height),
                MovingShapes(small, seed=2 * args.seed + 2, frames=frames, size=height))
    if args.split_dir is None:
        print("warning: no --split-dir: the test accuracy is measured on the training videos",
              file=sys.stderr)
    resize = round(height * 128 / 112)
    common = {"split_dir": args.split_dir, "fold": args.fold, "clip_len": frames,
              "crop": height, "resize": resize, "seed": args.seed}
    return (VideoFolder(args.data, split="train", **common), None,
            VideoFolder(args.data, split="test", **common))


def main(argv: list[str] | None = None) -> int:
    """``python -m rt3d_prune.cli prune ...`` (what ``torchrun -m rt3d_prune.cli`` runs)."""
    parser = argparse.ArgumentParser(prog="python -m rt3d_prune.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
