"""Group (lasso / reweighted) regularization, separate from the masks.

Two explicit calls: :meth:`GroupRegularizer.penalty` is added to the loss every step;
:meth:`GroupRegularizer.reweight` recomputes ``P_g`` once per reweighting round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._layers import following_batchnorms, mac_coefficients, resolve_layers
from .config import RegularizerConfig, SparsityConfig
from .schemes import group_norms

__all__ = ["GroupRegularizer"]

# inside the square root so that a group at exactly zero has gradient 0, not NaN
_SQRT_FLOOR = 1e-12


class GroupRegularizer:
    """``strength * sum_l c_l sum_g P_g ||W_g||`` over the layers a SparsityConfig prunes.

    The norms are computed on the live parameters, so the penalty's gradient reaches them;
    only the coefficients ``P_g`` are constants between :meth:`reweight` calls. With
    ``config.normalize`` the norms are measured relative to the layer (or with the following
    BatchNorm's scale folded in), so the penalty cannot be lowered by shrinking a whole layer
    that BatchNorm renormalizes anyway.

    Args:
        model: The network (its weights may be plain or parametrized).
        sparsity: Selects the layers (those with rate > 0), the scheme and the group shape.
        config: Strength, reweighting, per-layer MAC weighting and normalization.
        input_shape: Needed for ``config.mac_weighted`` with several layers: the clip shape
            to count MACs at.
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: SparsityConfig,
        config: RegularizerConfig,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        self.sparsity, self.config = sparsity, config
        self.modules = resolve_layers(model, sparsity)
        names = list(self.modules)
        self.layer_coeffs = (mac_coefficients(model, names, input_shape)
                             if config.mac_weighted else {n: 1.0 for n in names})
        self.batchnorms = (following_batchnorms(model, names) if config.normalize == "bn"
                           else dict.fromkeys(names))
        self.coeffs: dict[str, Tensor] = {}
        self.rounds = 0
        self.reweight()

    def _scaled_weight(self, name: str, module: nn.Module) -> Tensor:
        weight = module.weight
        bn = self.batchnorms.get(name)
        if bn is None:
            return weight
        # a constant of the step: the penalty must not pull on gamma (BN would undo it)
        with torch.no_grad():
            scale = bn.running_var.add(bn.eps).rsqrt()
            if bn.weight is not None:
                scale = scale * bn.weight.abs()
        return weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))

    def _norms(self, name: str, module: nn.Module, squared: bool) -> Tensor:
        weight = self._scaled_weight(name, module)
        sq = group_norms(weight, self.sparsity.scheme, self.sparsity.group, squared=True)
        if self.config.normalize == "layer":
            # relative to the layer's mean squared group norm: invariant to the layer's scale
            sq = sq / (sq.mean() + _SQRT_FLOOR)
        return sq if squared else (sq + _SQRT_FLOOR).sqrt()

    @torch.no_grad()
    def reweight(self) -> None:
        """Recompute ``P_g = 1 / (||W_g||^power + eps)`` from the current weights (group lasso:
        ``P_g = 1``)."""
        half = self.config.power / 2
        for name, module in self.modules.items():
            sq = self._norms(name, module, squared=True)
            self.coeffs[name] = (
                1.0 / (sq.pow(half) + self.config.eps) if self.config.reweighted
                else torch.ones_like(sq)
            )
        self.rounds += 1

    def penalty(self) -> Tensor:
        """The regularization term to add to the loss (differentiable in the weights)."""
        total: Tensor | float = 0.0
        for name, module in self.modules.items():
            norms = self._norms(name, module, squared=False)
            term = (self.coeffs[name].to(norms.device) * norms).sum()
            total = total + self.layer_coeffs[name] * term
        if isinstance(total, float):
            return torch.zeros(())
        return self.config.strength * total

    def group_norms(self) -> dict[str, Tensor]:
        """Current (detached) group norms by layer, as the penalty measures them."""
        with torch.no_grad():
            return {n: self._norms(n, m, squared=False) for n, m in self.modules.items()}

    def state_dict(self) -> dict[str, Any]:
        """``P_g`` and the round counter (for resuming)."""
        return {"coeffs": {n: c.detach().cpu() for n, c in self.coeffs.items()},
                "rounds": self.rounds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        missing = set(self.modules) ^ set(state["coeffs"])
        if missing:
            raise ValueError(f"regularizer state does not match the layers: {sorted(missing)}")
        for name, module in self.modules.items():
            self.coeffs[name] = state["coeffs"][name].to(module.weight.device)
        self.rounds = int(state["rounds"])
