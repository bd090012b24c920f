"""Group (lasso / reweighted) regularization, separate from the masks.

Two explicit calls: :meth:`GroupRegularizer.penalty` is added to the loss every step;
:meth:`GroupRegularizer.reweight` recomputes ``P_g`` once per reweighting round.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._layers import resolve_layers
from .config import RegularizerConfig, SparsityConfig
from .schemes import group_norms

__all__ = ["GroupRegularizer"]

# inside the square root so that a group at exactly zero has gradient 0, not NaN
_SQRT_FLOOR = 1e-12


class GroupRegularizer:
    """``strength * sum_l c_l sum_g P_g ||W_g||`` over the layers a SparsityConfig prunes.

    The norms are computed on the live parameters, so the penalty's gradient reaches them;
    only the coefficients ``P_g`` are constants between :meth:`reweight` calls.

    Args:
        model: The network (its weights may be plain or parametrized).
        sparsity: Selects the layers (those with rate > 0), the scheme and the group shape.
        config: Strength, reweighting and per-layer MAC weighting.
        input_shape: Needed for ``config.mac_weighted``: the clip shape to count MACs at.
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
        self.layer_coeffs = {name: 1.0 for name in self.modules}
        if config.mac_weighted and self.modules:
            if input_shape is None:
                raise ValueError("mac_weighted regularization needs input_shape")
            from .macs import count_macs

            macs = {x.name: x.dense_macs for x in count_macs(model, input_shape)}
            mean = sum(macs[n] for n in self.modules) / len(self.modules)
            self.layer_coeffs = {n: macs[n] / mean for n in self.modules}
        self.coeffs: dict[str, Tensor] = {}
        self.rounds = 0
        self.reweight()

    def _norms(self, module: nn.Module, squared: bool) -> Tensor:
        sq = group_norms(module.weight, self.sparsity.scheme, self.sparsity.group, squared=True)
        return sq if squared else (sq + _SQRT_FLOOR).sqrt()

    @torch.no_grad()
    def reweight(self) -> None:
        """Recompute ``P_g = 1 / (||W_g||^2 + eps)`` from the current weights (group lasso:
        ``P_g = 1``)."""
        for name, module in self.modules.items():
            sq = self._norms(module, squared=True)
            self.coeffs[name] = (
                1.0 / (sq + self.config.eps) if self.config.reweighted else torch.ones_like(sq)
            )
        self.rounds += 1

    def penalty(self) -> Tensor:
        """The regularization term to add to the loss (differentiable in the weights)."""
        total = torch.zeros(())
        for name, module in self.modules.items():
            term = (self.coeffs[name] * self._norms(module, squared=False)).sum()
            total = total + self.layer_coeffs[name] * term
        return self.config.strength * total

    def group_norms(self) -> dict[str, Tensor]:
        """Current (detached) group norms by layer, for inspection and threshold pruning."""
        with torch.no_grad():
            return {n: self._norms(m, squared=False) for n, m in self.modules.items()}
