"""Minimal training and evaluation loops (SGD + cosine schedule), with an optional regularizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = ["TrainConfig", "evaluate", "train"]


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
    """

    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    optimizer: str = "sgd"


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

    Args:
        penalty: Added to the loss every step (e.g. ``GroupRegularizer.penalty``).
        on_epoch: Called with the epoch index *before* each epoch (e.g. to reweight).
        progress: Show a tqdm bar.
    """
    from tqdm.auto import tqdm

    steps = max(1, config.epochs * len(loader))
    if config.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                weight_decay=config.weight_decay)
    elif config.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; use 'sgd' or 'adamw'")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
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


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    """Top-1 accuracy in [0, 1]."""
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += int((model(x).argmax(dim=1) == y).sum())
        total += len(y)
    return correct / max(total, 1)
