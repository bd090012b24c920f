"""One-shot structured pruning without training, for latency benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .config import SparsityConfig
from .presets import get_preset
from .sparsifier import GroupSparsifier

__all__ = ["prune_oneshot"]


def prune_oneshot(
    model: nn.Module,
    preset: str | SparsityConfig,
    scheme: str = "kgs",
    group: Sequence[int] = (8, 4),
) -> nn.Module:
    """Prune ``model`` in place to a preset's rates by group-norm ranking, then squash.

    The result has exact zeros in the preset's pattern (accuracy is not preserved: there is no
    fine-tuning); it is meant for measuring the speed of pruned kernels.

    Args:
        model: A zoo model (or any model with the layers the preset names).
        preset: Preset name (see :data:`rt3d_prune.presets.PRESET_NAMES`) or a full config,
            in which case ``scheme`` and ``group`` are ignored.
        scheme: Sparsity scheme for a named preset.
        group: Kernel group ``(g_m, g_n)`` for a named preset.

    Returns:
        ``model`` itself.
    """
    if isinstance(preset, str):
        config = get_preset(preset).config(scheme, (int(group[0]), int(group[1])))
    else:
        config = preset
    sparsifier = GroupSparsifier()
    sparsifier.prepare(model, config)
    sparsifier.step()
    sparsifier.squash_mask()
    return model
