"""The pruning methods as one call: regularize -> hard prune -> masked fine-tune.

* ``heuristic``: group-norm ranking of the trained weights, one-shot hard prune, masked
  fine-tune. It gets the regularization phase's epochs as extra fine-tuning, so that every
  method trains for the same number of epochs.
* ``group_lasso``: ``lambda * sum_l c_l sum_g ||W_g||`` for ``reg_epochs``, then hard prune and
  fine-tune.
* ``reweighted``: ``lambda * sum_l c_l sum_g P_g ||W_g||``, ``P_g = 1 / (||W_g||^2 + eps)``
  recomputed at the start of each of ``rounds`` equal reweighting rounds, then hard prune and
  fine-tune.
* ``admm``: ``rho/2 ||W - Z + U||^2`` with Z/U updates and a rising rho
  (:mod:`rt3d_prune.admm`), then hard prune and fine-tune.

:func:`prune_and_finetune` is the single-process entry point; it runs
:func:`rt3d_prune.engine.run_pruning`, which also runs under ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, Dataset

from .config import METHODS, MethodConfig, SparsityConfig
from .engine import EngineConfig, run_pruning

__all__ = ["METHODS", "MethodConfig", "prune_and_finetune"]


def prune_and_finetune(
    model: nn.Module,
    sparsity: SparsityConfig,
    method: MethodConfig,
    data: DataLoader | Dataset,
    input_shape: Sequence[int] | None = None,
    progress: bool = False,
    on_phase: Callable[[str, nn.Module], None] | None = None,
    engine: EngineConfig | None = None,
    val_set: Dataset | None = None,
) -> dict[str, Any]:
    """Prune ``model`` in place (masks squashed: exact zeros) and return a summary dict.

    Args:
        data: The training set, or a DataLoader whose dataset and batch size are used
            (the engine shuffles with its own seeded sampler).
        input_shape: Clip shape for MAC-weighted regularization.
        on_phase: Called as ``on_phase("regularized", model)`` after the regularization phase
            (plain weights, e.g. to checkpoint them).
        engine: Batch size, device, AMP, seed; from the DataLoader when not given.
        val_set: Validation clips: the summary then has ``val_before_prune``,
            ``val_after_prune`` and ``val_end``.
    """
    if isinstance(data, DataLoader):
        if engine is None:
            engine = EngineConfig(batch_size=data.batch_size or 1, device="cpu",
                                  progress=progress)
        data = data.dataset
    engine = engine or EngineConfig(device="cpu", progress=progress)
    return run_pruning(model, sparsity, method, data, engine, val_set=val_set,
                       input_shape=input_shape, on_phase=on_phase)
