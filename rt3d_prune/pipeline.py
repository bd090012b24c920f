"""The three pruning algorithms as one pipeline: regularize -> hard prune -> masked fine-tune.

* ``heuristic``: group-norm ranking of the trained weights, one-shot hard prune, masked
  fine-tune. It gets the regularization phase's epochs as extra fine-tuning, so that every
  method trains for the same number of epochs.
* ``group_lasso``: ``lambda * sum ||W_g||`` for ``reg_epochs``, then hard prune and fine-tune.
* ``reweighted``: ``lambda * sum_l c_l sum_g P_g ||W_g||``, ``P_g = 1 / (||W_g||^2 + eps)``
  recomputed at the start of each of ``rounds`` equal reweighting rounds, then hard prune and
  fine-tune.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn
from torch.utils.data import DataLoader

from .config import RegularizerConfig, SparsityConfig
from .regularizer import GroupRegularizer
from .sparsifier import GroupSparsifier
from .train import TrainConfig, train

__all__ = ["METHODS", "MethodConfig", "prune_and_finetune"]

METHODS: tuple[str, ...] = ("heuristic", "group_lasso", "reweighted")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """How to reach a SparsityConfig's pattern.

    Args:
        method: One of :data:`METHODS`.
        reg_epochs: Epochs of the regularization phase.
        finetune_epochs: Epochs of masked fine-tuning after the hard prune.
        regularizer: Strength, eps and MAC weighting (``reweighted`` is set from ``method``).
        rounds: Reweighting rounds (``reweighted`` only); ``reg_epochs`` is split among them.
        reg_train: Optimizer settings of the regularization phase.
        finetune_train: Optimizer settings of fine-tuning (its ``epochs`` is ignored).
    """

    method: str = "reweighted"
    reg_epochs: int = 4
    finetune_epochs: int = 4
    regularizer: RegularizerConfig = dataclasses.field(default_factory=RegularizerConfig)
    rounds: int = 4
    reg_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(lr=0.01))
    finetune_train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(lr=0.01)
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")


def prune_and_finetune(
    model: nn.Module,
    sparsity: SparsityConfig,
    method: MethodConfig,
    loader: DataLoader,
    input_shape: Sequence[int] | None = None,
    progress: bool = False,
    on_phase: Callable[[str, nn.Module], None] | None = None,
) -> dict[str, Any]:
    """Prune ``model`` in place (masks squashed: exact zeros) and return a summary dict.

    Args:
        input_shape: Clip shape for MAC-weighted regularization.
        on_phase: Called as ``on_phase("regularized", model)`` after the regularization phase
            (plain weights, e.g. to checkpoint them).
    """
    info: dict[str, Any] = {"method": method.method, "scheme": sparsity.scheme,
                            "group": list(sparsity.group)}
    extra_ft = 0
    if method.method == "heuristic":
        extra_ft = method.reg_epochs
    elif method.reg_epochs > 0:
        reg_cfg = dataclasses.replace(method.regularizer,
                                      reweighted=method.method == "reweighted")
        reg = GroupRegularizer(model, sparsity, reg_cfg, input_shape)
        per_round = max(1, -(-method.reg_epochs // method.rounds))

        def on_epoch(epoch: int) -> None:
            # the constructor computed round 1's weights; later rounds start every per_round
            if method.method == "reweighted" and epoch > 0 and epoch % per_round == 0:
                reg.reweight()

        cfg = dataclasses.replace(method.reg_train, epochs=method.reg_epochs)
        info["reg_loss"] = train(model, loader, cfg, penalty=reg.penalty, on_epoch=on_epoch,
                                 progress=progress, desc=method.method)
        info["reweight_rounds"] = reg.rounds
        if on_phase is not None:
            on_phase("regularized", model)
    sparsifier = GroupSparsifier()
    sparsifier.prepare(model, sparsity)
    sparsifier.step()
    info["pruned_fractions"] = sparsifier.pruned_fractions()
    ft = dataclasses.replace(method.finetune_train, epochs=method.finetune_epochs + extra_ft)
    info["finetune_loss"] = train(model, loader, ft, progress=progress, desc="finetune")
    sparsifier.squash_mask()
    return info
