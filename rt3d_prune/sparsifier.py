"""The group sparsifier: ``prepare(model, config)`` -> ``step()`` -> ``squash_mask()``.

Shaped like ``torch.ao.pruning``'s sparsifiers: masks live in a parametrization on each pruned
weight (so the forward pass and the gradients see ``weight * mask`` while training), are kept
at group granularity, and ``squash_mask`` bakes them into exact zeros.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ._layers import resolve_layers
from .config import SparsityConfig
from .schemes import broadcast_mask, group_norms, group_sizes, rank_keep

__all__ = ["GroupMask", "GroupSparsifier"]


class GroupMask(nn.Module):
    """Parametrization ``weight -> weight * broadcast(mask)`` with a group-granular mask.

    The mask is a buffer, so it travels with ``state_dict`` during masked fine-tuning.
    """

    def __init__(self, mask: Tensor, weight_shape: tuple[int, ...], scheme: str,
                 group: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.weight_shape, self.scheme, self.group = weight_shape, scheme, group

    def forward(self, weight: Tensor) -> Tensor:
        full = broadcast_mask(self.mask, self.weight_shape, self.scheme, self.group)
        return weight * full.to(weight.dtype)


class GroupSparsifier:
    """Prunes conv/linear weights group-wise by norm ranking (or threshold).

    Example::

        sparsifier = GroupSparsifier()
        sparsifier.prepare(model, get_preset("c3d-3.6x").config("kgs"))
        sparsifier.step()        # masks from the current weights' group norms
        ...                      # masked fine-tuning: pruned groups stay zero
        sparsifier.squash_mask() # exact zeros, plain parameters again
    """

    def __init__(self) -> None:
        self.config: SparsityConfig | None = None
        self.model: nn.Module | None = None
        self.modules: dict[str, nn.Module] = {}

    def prepare(self, model: nn.Module, config: SparsityConfig) -> None:
        """Attach an all-keep mask to every layer ``config`` prunes.

        Raises:
            ValueError: A layer is unknown, a rate is outside [0, 1) or the group does not fit
                the layer's channels (the message names the layer).
        """
        if self.model is not None:
            raise RuntimeError("sparsifier is already prepared; call squash_mask() first")
        modules = resolve_layers(model, config)
        for module in modules.values():
            shape = tuple(module.weight.shape)
            norms = group_norms(module.weight.detach(), config.scheme, config.group)
            mask = torch.ones_like(norms, dtype=torch.bool)
            parametrize.register_parametrization(
                module, "weight", GroupMask(mask, shape, config.scheme, config.group)
            )
        self.config, self.model, self.modules = config, model, modules

    def _parametrization(self, name: str) -> GroupMask:
        return self.modules[name].parametrizations.weight[0]

    @torch.no_grad()
    def step(self) -> None:
        """Recompute every mask from the current (unmasked) weights."""
        config = self._require()
        rates = config.rate_map
        for name, module in self.modules.items():
            weight = module.parametrizations.weight.original
            norms = group_norms(weight, config.scheme, config.group)
            sizes = group_sizes(weight.shape, config.scheme, config.group)
            if config.threshold is not None:
                keep = norms / sizes.sqrt() >= config.threshold
            else:
                keep = rank_keep(norms, sizes, rates[name], config.scheme, config.balanced)
            self._parametrization(name).mask.copy_(keep)

    def masks(self) -> dict[str, Tensor]:
        """Group-granular keep-masks by layer name (copies)."""
        self._require()
        return {name: self._parametrization(name).mask.clone() for name in self.modules}

    def mask_buffers(self) -> dict[str, Tensor]:
        """The live group-granular mask buffers by layer name (writes change the masks)."""
        self._require()
        return {name: self._parametrization(name).mask for name in self.modules}

    def pruned_fractions(self) -> dict[str, float]:
        """Fraction of each layer's weight entries the current masks remove."""
        config = self._require()
        out = {}
        for name, module in self.modules.items():
            sizes = group_sizes(module.weight.shape, config.scheme, config.group)
            mask = self._parametrization(name).mask
            if mask.dim() < sizes.dim():
                mask = mask.unsqueeze(-1)
            out[name] = float((sizes * ~mask).sum() / sizes.sum())
        return out

    def squash_mask(self) -> None:
        """Bake the masks into the weights (exact zeros) and remove the parametrizations."""
        self._require()
        for module in self.modules.values():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        self.config, self.model, self.modules = None, None, {}

    def _require(self) -> SparsityConfig:
        if self.config is None:
            raise RuntimeError("call prepare(model, config) first")
        return self.config
