"""The resumable, distributed pruning run: regularize -> hard prune -> masked fine-tune.

:func:`run_pruning` drives a :class:`~rt3d_prune.config.MethodConfig` epoch by epoch on one
process or under ``torchrun`` (DistributedDataParallel, one process per device):

* the data go through a ``DistributedSampler`` on every world size (``world = 1`` too), so a
  run on N processes sees the same global batches as a run on one, and the per-epoch order is
  a function of ``(seed, epoch)`` only;
* masks, ``P_g`` and ADMM's ``Z``/``U`` are computed from weights that DDP keeps identical on
  every rank, and broadcast from rank 0 anyway;
* rank 0 logs, shows a progress bar (clips/s, ETA), writes ``history.csv`` /
  ``history.json`` / ``history.png`` and a checkpoint ``last.pt`` after every epoch (model,
  optimizer, grad scaler, regularizer state, masks, teacher, RNG); ``resume=True`` continues
  from it to the same result, and refuses a checkpoint written with another configuration;
* a non-finite loss stops the run naming the epoch and step; ``last.pt`` is the last good one.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import ctypes
import dataclasses
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .admm import ADMMRegularizer
from .config import MethodConfig, SparsityConfig
from .distributed import Runtime, broadcast_, resolve_amp, setup
from .regularizer import GroupRegularizer
from .schemes import group_norms
from .sparsifier import GroupSparsifier
from .train import (
    TrainConfig,
    batch_to,
    distillation_loss,
    evaluate,
    infer,
    lr_at,
    make_optimizer,
)

__all__ = ["CHECKPOINT", "EngineConfig", "NonFiniteLossError", "TeacherMemo", "keep_freed_memory",
           "run_pruning"]

#: Format tag of the run checkpoints (``last.pt``).
CHECKPOINT = "rt3d-run/1"


#: ``EngineConfig.memory_format`` values.
MEMORY_FORMATS: tuple[str, ...] = ("auto", "channels_last", "contiguous")


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How a run executes (not what it computes, except ``batch_size``, ``seed``, ``amp``).

    Args:
        batch_size: Global batch (all ranks together); must be divisible by the world size.
        workers: DataLoader worker processes per rank (decoding).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        amp: ``"none"``, ``"bf16"`` or ``"fp16"`` (CUDA only) autocast. bf16 on a CPU trains
            without oneDNN (see :func:`_without_onednn`): slower, but its gradients are right.
        pin_memory: Pin host batches; ``None``: on when training on CUDA.
        seed: Data order, dropout and initialisation seed.
        progress: tqdm bars on rank 0.
        eval_every: Validate every this many epochs (and after the last), when a validation
            set is given.
        recalibrate_batches: Batches used to recompute BatchNorm statistics for the
            "after hard prune" validation point (on a copy; training is not affected).
        memory_format: Layout of the 5-D weights and clips while training: ``"auto"``
            (channels-last on a CPU with oneDNN, i.e. without bf16 autocast; contiguous on
            CUDA, not measured here), ``"channels_last"`` or ``"contiguous"``. The result does
            not depend on it beyond float rounding; the returned model is contiguous.
        keep_heap: On a CPU, let malloc keep freed memory for the next step
            (:func:`keep_freed_memory`; process-wide): 15-22 % faster steps on c3d_small.
        memoize_teacher: Compute the distillation teacher's output for each distinct clip
            once and reuse it in later fine-tuning epochs (:class:`TeacherMemo`). Only pays
            on a fixed training set without random augmentation (the generated data of
            ``benchmarks/pruning_accuracy.py``), and mainly on a CPU: the clips are hashed
            on the host.
    """

    batch_size: int = 32
    workers: int = 0
    device: str = "auto"
    amp: str = "none"
    pin_memory: bool | None = None
    seed: int = 0
    progress: bool = False
    eval_every: int = 1
    recalibrate_batches: int = 8
    memory_format: str = "auto"
    keep_heap: bool = True
    memoize_teacher: bool = False

    def __post_init__(self) -> None:
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got "
                             f"{self.memory_format!r}")

    def fingerprint(self) -> dict[str, Any]:
        """The fields that change the result (compared on resume)."""
        return {"batch_size": self.batch_size, "seed": self.seed, "amp": self.amp}


class TeacherMemo:
    """A frozen teacher whose output for a clip is computed once: later calls with the same
    clip (the same bytes) reuse it. The teacher is in eval mode and never trained, so its
    output is a function of the clip alone (up to the float rounding of the pass it was
    computed in). ``pruning_accuracy`` fine-tunes each row 3-6 epochs over the same 1000
    clips: the teacher's forward (a fifth of a fine-tuning step) then runs in the first
    epoch only.

    Args:
        teacher: The frozen model (eval mode, no gradients).
    """

    def __init__(self, teacher: nn.Module) -> None:
        self.teacher = teacher
        self.outputs: dict[bytes, Tensor] = {}

    @staticmethod
    def key(clip: Tensor) -> bytes:
        """A digest of one clip's values (in the clip's logical order, whatever its
        layout)."""
        data = clip.detach().cpu().contiguous().numpy().tobytes()
        return hashlib.blake2b(data, digest_size=16).digest()

    def __call__(self, x: Tensor) -> Tensor:
        keys = [self.key(clip) for clip in x]
        todo: dict[bytes, int] = {}  # each new clip once, at its first place in the batch
        for i, k in enumerate(keys):
            if k not in self.outputs and k not in todo:
                todo[k] = i
        if todo:
            for k, out in zip(todo, infer(self.teacher, x[list(todo.values())])):
                self.outputs[k] = out.clone()
        return torch.stack([self.outputs[k] for k in keys])


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the epoch and step."""


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _wrap(model: nn.Module, runtime: Runtime) -> nn.Module:
    if not runtime.distributed:
        return model
    ids = [runtime.device.index] if runtime.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@contextlib.contextmanager
def _without_onednn(active: bool) -> Iterator[None]:
    """Run the block with oneDNN (MKL-DNN) off, when ``active``.

    oneDNN's bf16 conv3d weight gradient on CPU (torch 2.13.0+cpu, MKL-DNN v3.12) is wrong on
    small maps: 32 -> 32 channels, 3x3x3 kernel, padding 1, batch 8, on 2x1x1 or 2x2x2 inputs
    (c3d_small's conv5a/5b in tests) it is off by 90-100% of its norm and reads uninitialized
    memory, so a fresh allocation sometimes holds inf/NaN: the loss turned NaN at step 2 in
    about one run in four with fixed seeds. The same layer on 4x4x4 maps, the forward pass, the
    input gradient and PyTorch's native bf16 convolution are right (relative error <= 0.5%).
    Not ``torch.backends.mkldnn.flags``: it also resets TF32 and warns on every call.
    """
    if not active:
        yield
        return
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


#: glibc's ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: The largest mmap threshold glibc accepts on 64-bit Linux (``HEAP_MAX_SIZE / 2``).
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
#: Freed memory glibc keeps at the top of its heap before it returns any to the system.
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve tensors up to :data:`MMAP_THRESHOLD_MAX` from its heap and
    keep freed memory for reuse (process-wide, for the rest of the process). Returns whether
    it applied (False without glibc: macOS, Windows, musl).

    By default glibc maps each large allocation (an activation, a gradient) afresh and unmaps
    it when freed, so every training step touches hundreds of MB of new pages that the kernel
    zeroes on first touch: c3d_small's step (batch 32, Zen 3, one thread) took 67-75
    thousand page faults and 0.16-0.20 s of system time, 0.81-0.83 s in all; with this, 4-7
    thousand and 0.63-0.69 s (2 threads: 0.42-0.48 -> 0.36-0.40 s). A whole
    ``pruning_accuracy`` run spent 8 % of its CPU time in the kernel before. The price is
    memory the process keeps (the peak it reached, and up to :data:`TRIM_THRESHOLD` of it
    unreturned).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def resolve_memory_format(name: str, device: torch.device,
                          amp_dtype: torch.dtype | None) -> torch.memory_format:
    """The layout ``EngineConfig.memory_format`` asks for on ``device``.

    ``"auto"`` is channels-last on a CPU that trains through oneDNN: c3d_small's training step
    (batch 32, 2 threads, Zen 3) takes 0.43 s channels-last against 0.53 s contiguous, 0.79
    against 1.00 s on one thread (``benchmarks/pruning_accuracy.py`` trains this way).
    """
    if name == "channels_last":
        return torch.channels_last_3d
    if name == "contiguous" or device.type != "cpu" or amp_dtype is not None:
        return torch.contiguous_format
    return torch.channels_last_3d


def to_memory_format(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """Lay out every 5-D parameter and buffer of ``model`` in ``memory_format``, in place
    (``Module.to(memory_format=...)`` would also try the 4-D ones)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.dim() == 5 and not tensor.is_contiguous(memory_format=memory_format):
            tensor.data = tensor.data.contiguous(memory_format=memory_format)
    return model


def _seed_epoch(seed: int, epoch: int, rank: int) -> None:
    # every epoch starts from an RNG state that depends only on (seed, epoch, rank): a resumed
    # run draws the same dropout masks as an uninterrupted one
    s = (seed * 1_000_003 + epoch * 7919 + rank) % (2**31)
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


@torch.no_grad()
def pruned_energy(model: nn.Module, sparsity: SparsityConfig) -> float:
    """Fraction of the pruned layers' squared weight norm a hard prune would remove now.

    Near 0: the regularizer already drove the groups the rates prune to zero; the heuristic
    (no regularization) removes 50-80 % at the presets' rates.
    """
    probe = copy.deepcopy(_unwrap(model))
    sparsifier = GroupSparsifier()
    sparsifier.prepare(probe, sparsity)
    sparsifier.step()
    removed = total = 0.0
    for name, keep in sparsifier.masks().items():
        weight = sparsifier.modules[name].parametrizations.weight.original
        sq = group_norms(weight, sparsity.scheme, sparsity.group, squared=True)
        removed, total = removed + float((sq * ~keep).sum()), total + float(sq.sum())
    return removed / max(total, 1e-30)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: DataLoader, batches: int,
                          device: torch.device,
                          memory_format: torch.memory_format = torch.contiguous_format) -> None:
    """Recompute every BatchNorm's running statistics from ``batches`` training batches."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches
    model.train()
    for i, (x, _) in enumerate(loader):
        if i >= batches:
            break
        model(batch_to(x, device, memory_format))
    for bn, m in zip(bns, momenta):
        bn.momentum = m


class _Log:
    """Per-epoch rows in ``history.csv`` / ``history.json`` and a plot (rank 0)."""

    def __init__(self, run_dir: Path | None, rows: list[dict[str, Any]]) -> None:
        self.run_dir, self.rows = run_dir, rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.run_dir is None:
            return
        (self.run_dir / "history.json").write_text(json.dumps(self.rows, indent=1))
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.run_dir / "history.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(self.rows)

    def plot(self) -> None:
        if self.run_dir is None or not self.rows:
            return
        try:
            import matplotlib
        except ImportError:  # plotting is optional
            return
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [r["epoch"] for r in self.rows]
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
        a.plot(epochs, [r["loss"] for r in self.rows], marker="o", label="task loss")
        a.plot(epochs, [r["penalty"] for r in self.rows], marker="x", label="penalty")
        a.set_xlabel("epoch")
        a.set_yscale("symlog", linthresh=1e-3)
        a.legend()
        b.plot(epochs, [r["train_top1"] for r in self.rows], marker="o", label="train top-1")
        val = [(r["epoch"], r["val_top1"]) for r in self.rows if r.get("val_top1") is not None]
        if val:
            b.plot(*zip(*val), marker="s", label="val top-1")
        b.set_xlabel("epoch")
        b.legend()
        for ax in (a, b):
            starts = [r["epoch"] for r in self.rows if r.get("pruned_at_start")]
            for s in starts:
                ax.axvline(s - 0.5, color="grey", ls="--", lw=0.8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.run_dir / "history.png", dpi=110)
        plt.close(fig)


def run_pruning(
    model: nn.Module,
    sparsity: SparsityConfig,
    method: MethodConfig,
    train_set: Dataset,
    engine: EngineConfig | None = None,
    val_set: Dataset | None = None,
    input_shape: Sequence[int] | None = None,
    run_dir: str | Path | None = None,
    resume: bool = False,
    fingerprint: Mapping[str, Any] | None = None,
    on_phase: Callable[[str, nn.Module], None] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Prune ``model`` in place (masks squashed: exact zeros) and return a summary dict.

    Call it on every rank under ``torchrun`` (it joins the process group itself).

    Args:
        model: The dense, trained network (on any device; moved to the engine's).
        sparsity: The pattern to reach.
        method: The method and its phases.
        train_set: Training clips ``(x, label)``.
        engine: Batch, device, AMP, workers, seed.
        val_set: Validation clips (rank 0 evaluates): top-1 per epoch, before the hard prune,
            after it (BatchNorm recalibrated) and at the end.
        input_shape: Clip shape for MAC-weighted regularization.
        run_dir: Where rank 0 writes ``last.pt`` and the history; ``None``: nothing written.
        resume: Continue from ``run_dir/last.pt``.
        fingerprint: Extra values that must match on resume (model, data, ...).
        on_phase: Called as ``on_phase("regularized", model)`` after the regularization phase.
        stop_after: Stop (without squashing) after this many epochs in total -- to test
            resuming; the summary then has ``"stopped": True``.

    Raises:
        ValueError: The world size does not divide the batch, ``--amp fp16`` on CPU, a
            resume checkpoint with another configuration or none at all.
        NonFiniteLossError: The loss became NaN/inf (epoch and step in the message).
    """
    engine = engine or EngineConfig()
    runtime = setup(engine.device)
    if engine.batch_size % runtime.world:
        raise ValueError(f"batch size {engine.batch_size} is not divisible by the world size "
                         f"{runtime.world}: every rank needs the same share of a batch")
    amp_dtype, use_scaler = resolve_amp(engine.amp, runtime.device)
    layout = resolve_memory_format(engine.memory_format, runtime.device, amp_dtype)
    if engine.keep_heap and runtime.device.type == "cpu":
        keep_freed_memory()
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and runtime.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    key = _plain({"sparsity": sparsity, "method": method, "engine": engine.fingerprint(),
                  "extra": dict(fingerprint or {})})

    to_memory_format(model.to(runtime.device), layout)
    per_rank = engine.batch_size // runtime.world
    pin = runtime.device.type == "cuda" if engine.pin_memory is None else engine.pin_memory
    sampler = DistributedSampler(train_set, num_replicas=runtime.world, rank=runtime.rank,
                                 shuffle=True, seed=engine.seed, drop_last=True)
    loader = DataLoader(train_set, per_rank, sampler=sampler, drop_last=True,
                        num_workers=engine.workers, pin_memory=pin,
                        persistent_workers=engine.workers > 0)
    if len(loader) == 0:
        raise ValueError(f"{len(train_set)} training clips make no full batch of "
                         f"{engine.batch_size}")
    val_loader = (DataLoader(val_set, max(per_rank, 32), num_workers=engine.workers,
                             pin_memory=pin) if val_set is not None and runtime.is_main
                  else None)

    # the plan: one entry per epoch, (phase, epoch within phase, phase length)
    plan = [(phase, i, n) for phase, n in method.phases for i in range(n)]
    distill = method.finetune_train.distill_weight > 0
    teacher = None
    if distill:
        teacher = copy.deepcopy(_unwrap(model)).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    # the teacher's forward; a memo holds the module, so a resumed run's load below reaches it
    teach: Callable[[Tensor], Tensor] | None = None
    if teacher is not None:
        teach = (TeacherMemo(teacher) if engine.memoize_teacher
                 else lambda x: infer(teacher, x))

    reg: GroupRegularizer | ADMMRegularizer | None = None
    if method.method in ("group_lasso", "reweighted") and method.reg_epochs > 0:
        reg_cfg = dataclasses.replace(method.regularizer,
                                      reweighted=method.method == "reweighted")
        reg = GroupRegularizer(model, sparsity, reg_cfg, input_shape)
    elif method.method == "admm" and method.reg_epochs > 0:
        reg = ADMMRegularizer(model, sparsity, method.admm, input_shape)

    sparsifier = GroupSparsifier()
    info: dict[str, Any] = {"method": method.method, "scheme": sparsity.scheme,
                            "group": list(sparsity.group), "world_size": runtime.world}
    rows: list[dict[str, Any]] = []
    start_epoch = 0
    opt_state = scaler_state = None
    ckpt_path = run_dir / "last.pt" if run_dir is not None else None
    if resume:
        if ckpt_path is None or not ckpt_path.exists():
            raise ValueError(f"--resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("format") != CHECKPOINT:
            raise ValueError(f"{ckpt_path}: not an RT3D run checkpoint")
        if ckpt["fingerprint"] != key:
            diff = _diff(ckpt["fingerprint"], key)
            raise ValueError(f"refusing to resume {ckpt_path}: it was written with another "
                             f"configuration ({'; '.join(diff)})")
        if ckpt["pruned"]:
            sparsifier.prepare(model, sparsity)  # masks come with the state dict
        model.load_state_dict(ckpt["model"])
        if reg is not None and ckpt["regularizer"] is not None:
            reg.load_state_dict(ckpt["regularizer"])
        if teacher is not None:
            teacher.load_state_dict(ckpt["teacher"])
        start_epoch = ckpt["epoch"]
        info.update(ckpt["info"])
        rows = list(ckpt["history"])
        if start_epoch < len(plan) and plan[start_epoch][1] > 0:  # same phase continues
            opt_state, scaler_state = ckpt["optimizer"], ckpt["scaler"]
        if runtime.rank < len(ckpt["rng"]) and ckpt["rng"][runtime.rank] is not None:
            _set_rng(ckpt["rng"][runtime.rank])
    log = _Log(run_dir if runtime.is_main else None, rows)

    loss_fn = nn.CrossEntropyLoss(label_smoothing=method.finetune_train.label_smoothing)
    reg_loss_fn = nn.CrossEntropyLoss(label_smoothing=method.reg_train.label_smoothing)
    net = _wrap(model, runtime)
    opt: torch.optim.Optimizer | None = None
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=use_scaler)
    if opt_state is not None:
        phase_cfg = method.reg_train if plan[start_epoch][0] == "regularize" else \
            method.finetune_train
        opt = make_optimizer(model, phase_cfg)
        opt.load_state_dict(opt_state)
        scaler.load_state_dict(scaler_state)
    from tqdm.auto import tqdm

    def hard_prune() -> None:
        if method.method != "heuristic" and on_phase is not None:
            on_phase("regularized", model)
        if val_loader is not None:
            info["val_before_prune"] = evaluate(model, val_loader, runtime.device, layout)
        info["pruned_energy"] = pruned_energy(model, sparsity)
        sparsifier.prepare(model, sparsity)
        to_memory_format(model, layout)  # the masks' buffers
        sparsifier.step()
        # identical on every rank already (DDP keeps the weights equal); made certain here
        broadcast_(sparsifier.mask_buffers(), runtime)
        info["pruned_fractions"] = sparsifier.pruned_fractions()
        if val_loader is not None:
            probe = copy.deepcopy(model)
            recalibrate_batchnorm(probe, loader, engine.recalibrate_batches, runtime.device,
                                  layout)
            info["val_after_prune"] = evaluate(probe, val_loader, runtime.device, layout)

    for epoch in range(start_epoch, len(plan)):
        if stop_after is not None and epoch >= stop_after:
            info["stopped"] = True
            return info
        phase, i, n_phase = plan[epoch]
        cfg: TrainConfig = dataclasses.replace(
            method.reg_train if phase == "regularize" else method.finetune_train,
            epochs=n_phase)
        pruned_now = False
        if i == 0:
            if phase == "finetune":
                hard_prune()
                # registering the parametrization resets the weights' gradient accumulators,
                # where DDP's hooks live: wrap the masked model anew
                net = _wrap(model, runtime)
                pruned_now = True
            opt = make_optimizer(model, cfg)
            scaler = torch.amp.GradScaler(runtime.device.type, enabled=use_scaler)
        # the regularizer's schedule, before the epoch (a resumed run repeats it exactly)
        if phase == "regularize" and isinstance(reg, GroupRegularizer):
            per_round = max(1, -(-method.reg_epochs // method.rounds))
            if method.method == "reweighted" and i > 0 and i % per_round == 0:
                reg.reweight()
                broadcast_(reg.coeffs, runtime)
        elif phase == "regularize" and isinstance(reg, ADMMRegularizer):
            per_stage = max(1, -(-method.reg_epochs // method.admm.stages))
            reg.set_stage(min(i // per_stage, method.admm.stages - 1))
            if i > 0 and i % method.admm.update_every == 0:
                reg.update()
                broadcast_([reg.Z, reg.U], runtime)
        _seed_epoch(engine.seed, epoch, runtime.rank)
        sampler.set_epoch(epoch)
        penalty = reg.penalty if (phase == "regularize" and reg is not None) else None
        use_teacher = teacher is not None and phase == "finetune"
        task_loss = reg_loss_fn if phase == "regularize" else loss_fn
        net.train()
        t0 = time.time()
        sums = torch.zeros(4, dtype=torch.float64)  # loss * n, penalty * n, correct, n
        bar = tqdm(total=len(loader) * engine.batch_size, unit="clip", unit_scale=True,
                   desc=f"{phase} {epoch + 1}/{len(plan)}", leave=False,
                   disable=not (engine.progress and runtime.is_main))
        lr = cfg.lr
        # bf16 autocast on CPU: oneDNN's conv3d weight gradient is wrong (see _without_onednn)
        with _without_onednn(amp_dtype is torch.bfloat16 and runtime.device.type == "cpu"):
            for step, (x, y) in enumerate(loader):
                lr = lr_at(cfg, i * len(loader) + step, len(loader))
                for group in opt.param_groups:
                    group["lr"] = lr
                x = batch_to(x, runtime.device, layout, non_blocking=pin)
                y = y.to(runtime.device, non_blocking=pin)
                with torch.autocast(runtime.device.type, dtype=amp_dtype or torch.float32,
                                    enabled=amp_dtype is not None):
                    out = net(x)
                    loss = task_loss(out.float(), y)
                    if use_teacher:
                        t_out = teach(x)
                        w = cfg.distill_weight
                        loss = (1 - w) * loss + w * distillation_loss(out, t_out,
                                                                      cfg.distill_temperature)
                pen = penalty() if penalty is not None else torch.zeros((), device=x.device)
                total = loss + pen
                stats = torch.stack([loss.detach().double() * len(y), pen.detach().double() *
                                     len(y), (out.argmax(1) == y).sum().double(),
                                     torch.tensor(float(len(y)), dtype=torch.float64,
                                                  device=x.device)]).cpu()
                if runtime.distributed:
                    dist.all_reduce(stats)  # also makes a NaN on one rank stop every rank
                if not math.isfinite(float(stats[0])) or not math.isfinite(float(stats[1])):
                    raise NonFiniteLossError(
                        f"non-finite loss at epoch {epoch + 1} ({phase}), step {step + 1}; "
                        f"the last good checkpoint is {ckpt_path} (epoch {epoch})"
                        if ckpt_path is not None else
                        f"non-finite loss at epoch {epoch + 1} ({phase}), step {step + 1}")
                sums += stats
                opt.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                scaler.step(opt)
                scaler.update()
                bar.update(len(y) * runtime.world)
                bar.set_postfix(loss=f"{float(sums[0] / sums[3]):.3f}", lr=f"{lr:.2g}")
        bar.close()
        seconds = time.time() - t0
        row = {"epoch": epoch + 1, "phase": phase, "lr": lr,
               "loss": float(sums[0] / sums[3]), "penalty": float(sums[1] / sums[3]),
               "train_top1": float(sums[2] / sums[3]), "seconds": round(seconds, 3),
               "clips_per_s": round(float(sums[3]) / max(seconds, 1e-9), 2),
               "pruned_at_start": pruned_now, "val_top1": None}
        if isinstance(reg, ADMMRegularizer) and phase == "regularize":
            row["admm_rho"] = reg.rho
            row["admm_residual"] = float(np.mean(list(reg.residuals().values())))
        last = epoch == len(plan) - 1
        if val_loader is not None and ((epoch + 1) % engine.eval_every == 0 or last):
            row["val_top1"] = evaluate(model, val_loader, runtime.device, layout)
        key_hist = "reg_loss" if phase == "regularize" else "finetune_loss"
        info.setdefault(key_hist, []).append(row["loss"])
        if runtime.is_main:
            log.add(row)
            if ckpt_path is not None:
                _save(ckpt_path, model, opt, scaler, reg, teacher, sparsifier, key, epoch + 1,
                      info, log.rows, runtime)
            else:
                _gather_rng(runtime)
        else:
            _gather_rng(runtime)
    if runtime.is_main:
        log.plot()
    if reg is not None and isinstance(reg, GroupRegularizer):
        info["reweight_rounds"] = reg.rounds
    if isinstance(reg, ADMMRegularizer):
        info["admm_updates"] = reg.updates
    if sparsifier.config is None:  # no fine-tuning epochs at all: prune now
        hard_prune()
    if val_loader is not None:
        info["val_end"] = (rows[-1]["val_top1"] if rows else
                           evaluate(model, val_loader, runtime.device, layout))
    sparsifier.squash_mask()
    to_memory_format(model, torch.contiguous_format)
    model.eval()
    info["history"] = list(rows)  # rank 0's per-epoch rows (empty on other ranks)
    return info


def _gather_rng(runtime: Runtime) -> list[Any] | None:
    """Every rank's RNG state on rank 0 (a collective: every rank calls it every epoch)."""
    state = _rng_state()
    if not runtime.distributed:
        return [state]
    out: list[Any] = [None] * runtime.world if runtime.is_main else None
    dist.gather_object(state, out, dst=0)
    return out


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(path: Path, model: nn.Module, opt, scaler, reg, teacher, sparsifier, key, epoch,
          info, rows, runtime: Runtime) -> None:
    rng = _gather_rng(runtime)
    payload = {
        "format": CHECKPOINT, "fingerprint": key, "epoch": epoch,
        "pruned": sparsifier.config is not None,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "masks": ({n: m.cpu() for n, m in sparsifier.masks().items()}
                  if sparsifier.config is not None else None),
        "optimizer": opt.state_dict() if opt is not None else None,
        "scaler": scaler.state_dict(),
        "regularizer": reg.state_dict() if reg is not None else None,
        "teacher": teacher.state_dict() if teacher is not None else None,
        "info": copy.deepcopy(info), "history": list(rows), "rng": rng,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # the previous epoch's checkpoint stays until this one is complete


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def masks_equal(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> bool:
    """Same layers and identical group masks."""
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
