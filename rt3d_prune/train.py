"""Minimal training and evaluation loops (SGD + cosine schedule), with an optional regularizer."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["SCHEDULES", "TrainConfig", "distillation_loss", "evaluate", "lr_at",
           "make_optimizer", "train"]

#: Learning-rate schedules of a training phase.
SCHEDULES: tuple[str, ...] = ("cosine", "constant", "step")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training phase.

    Args:
        epochs: Passes over the loader.
        lr: Peak learning rate (cosine-annealed to 0 over the phase).
        momentum: SGD momentum (Nesterov).
        weight_decay: L2 weight decay.
        label_smoothing: Cross-entropy label smoothing.
        optimizer: ``"sgd"`` (Nesterov momentum) or ``"adamw"`` (``momentum`` unused).
        schedule: ``"cosine"`` (annealed to 0 over the phase), ``"constant"``, or ``"step"``
            (multiplied by ``step_gamma`` every ``step_epochs`` epochs). Regularization
            phases use a constant or step schedule, so that late reweighting rounds still
            move the weights.
        step_epochs: Period of the ``"step"`` schedule.
        step_gamma: Factor of the ``"step"`` schedule.
        distill_weight: Weight ``w`` of knowledge distillation from the dense model:
            ``(1 - w) * CE + w * T^2 * KL(teacher_T || student_T)``; 0 turns it off.
        distill_temperature: Softmax temperature ``T`` of the distillation term.
    """

    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    optimizer: str = "sgd"
    schedule: str = "cosine"
    step_epochs: int = 10
    step_gamma: float = 0.1
    distill_weight: float = 0.0
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use 'sgd' or 'adamw'")
        if not 0.0 <= self.distill_weight <= 1.0 or self.distill_temperature <= 0:
            raise ValueError("distill_weight must be in [0, 1] and distill_temperature > 0")
        if self.step_epochs < 1:
            raise ValueError("step_epochs must be >= 1")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The phase's optimizer over all of ``model``'s parameters."""
    if config.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.momentum > 0)


def lr_at(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate of ``step`` (0-based, within the phase) under ``config.schedule``."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * config.step_gamma ** (step // (config.step_epochs * steps_per_epoch))
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * min(step, total) / total))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Hinton's ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, batch mean."""
    t = float(temperature)
    log_p = torch.nn.functional.log_softmax(student.float() / t, dim=1)
    q = torch.nn.functional.softmax(teacher.float() / t, dim=1)
    return torch.nn.functional.kl_div(log_p, q, reduction="batchmean") * t * t


def train(
    model: nn.Module,
    loader: DataLoader,
    config: TrainConfig,
    penalty: Callable[[], torch.Tensor] | None = None,
    on_epoch: Callable[[int], None] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> list[float]:
    """Train ``model`` in place; returns the mean task loss of every epoch.

    The single-process loop of dense training and of :func:`~rt3d_prune.pipeline.
    prune_and_finetune`'s callers; :mod:`rt3d_prune.engine` is the resumable, distributed one.

    Args:
        penalty: Added to the loss every step (e.g. ``GroupRegularizer.penalty``).
        on_epoch: Called with the epoch index *before* each epoch (e.g. to reweight).
        progress: Show a tqdm bar.
    """
    from tqdm.auto import tqdm

    opt = make_optimizer(model, config)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_at(config, step, len(loader)) / config.lr if config.lr else 0.0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history = []
    model.train()
    for epoch in range(config.epochs):
        if on_epoch is not None:
            on_epoch(epoch)
        total, count = 0.0, 0
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{config.epochs}", disable=not progress,
                   leave=False)
        for x, y in bar:
            loss = loss_fn(model(x), y)
            total, count = total + loss.item() * len(y), count + len(y)
            if penalty is not None:
                loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{total / count:.3f}")
        history.append(total / max(count, 1))
    return history


def batch_to(x: torch.Tensor, device: torch.device, memory_format: torch.memory_format,
             non_blocking: bool = False) -> torch.Tensor:
    """A batch moved to ``device``; clips (5-D) laid out in ``memory_format``."""
    x = x.to(device, non_blocking=non_blocking)
    return x.contiguous(memory_format=memory_format) if x.dim() == 5 else x


#: Clips per forward pass of an inference on a CPU (:func:`infer`): the activations of a few
#: clips stay in the last-level cache. c3d_small at 16x32x32, one thread, Zen 3, interleaved:
#: 5.0 ms per clip in passes of 8, 5.9 in passes of 32, 8.7 in passes of 100.
CPU_INFER_CHUNK = 8


@torch.no_grad()
def infer(model: nn.Module, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """``model(x)`` without gradients, in passes of ``chunk`` clips (default: a CPU takes
    :data:`CPU_INFER_CHUNK`, a GPU the whole batch). Only for a model in eval mode: in
    training mode BatchNorm would normalize each pass by its own statistics."""
    if chunk is None:
        chunk = CPU_INFER_CHUNK if x.device.type == "cpu" else 0
    if chunk <= 0 or len(x) <= chunk:
        return model(x)
    if model.training:
        raise ValueError(f"infer: {type(model).__name__} is in training mode; passes of "
                         f"{chunk} of the {len(x)} clips would each be normalized by their "
                         f"own batch statistics (call model.eval(), or chunk=0)")
    return torch.cat([model(part) for part in x.split(chunk)])


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | None = None,
             memory_format: torch.memory_format = torch.contiguous_format,
             chunk: int | None = None) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (put in eval mode) on ``loader``'s clips, moved
    to ``device`` (default: the model's) in ``memory_format``, in passes of ``chunk`` clips
    (:func:`infer`)."""
    model.eval()
    if device is None:
        device = next(model.parameters()).device
    correct = total = 0
    for x, y in loader:
        x = batch_to(x, device, memory_format)
        correct += int((infer(model, x, chunk).argmax(dim=1) == y.to(device)).sum())
        total += len(y)
    return correct / max(total, 1)
