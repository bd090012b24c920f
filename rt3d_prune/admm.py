"""ADMM structured pruning: the algorithm of the authors' released code.

The problem ``min loss(W)  s.t.  W_l in S_l`` (``S_l``: the weights with the layer's rate of
groups at zero) is split with an auxiliary ``Z_l in S_l`` and a scaled dual ``U_l``:

* every step, the loss gets ``sum_l c_l rho/2 ||W_l - Z_l + U_l||^2`` (:meth:`penalty`);
* every few epochs, ``Z_l = project(W_l + U_l)`` (keep the largest groups at the layer's rate)
  and ``U_l += W_l - Z_l`` (:meth:`update`);
* ``rho`` grows by ``rho_factor`` per stage (:meth:`set_stage`), so ``W`` is pulled ever harder
  onto the pattern; the hard prune that follows then removes little.

References: Zhang et al., "A Systematic DNN Weight Pruning Framework using ADMM" (ECCV 2018);
the CoCoPIE-Group/video-classification-s2-1d code of the RT3D paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._layers import mac_coefficients, resolve_layers
from .config import ADMMConfig, SparsityConfig
from .schemes import broadcast_mask, group_norms, group_sizes, rank_keep

__all__ = ["ADMMRegularizer", "project"]


def project(weight: Tensor, sparsity: SparsityConfig, rate: float) -> Tensor:
    """Euclidean projection of ``weight`` onto the sparsity pattern: the smallest groups at
    ``rate`` set to zero (balanced per output group for KGS and plane if the config says
    so)."""
    norms = group_norms(weight, sparsity.scheme, sparsity.group)
    sizes = group_sizes(weight.shape, sparsity.scheme, sparsity.group)
    keep = rank_keep(norms, sizes, rate, sparsity.scheme, sparsity.balanced)
    full = broadcast_mask(keep, weight.shape, sparsity.scheme, sparsity.group)
    return weight * full.to(weight.dtype)


class ADMMRegularizer:
    """The ADMM penalty and its Z/U updates over the layers a SparsityConfig prunes.

    Same two-call shape as :class:`~rt3d_prune.regularizer.GroupRegularizer`: add
    :meth:`penalty` to the loss every step; call :meth:`update` every ``update_every`` epochs
    and :meth:`set_stage` when a new rho stage starts.

    Args:
        model: The network.
        sparsity: Layers, per-layer rates, scheme and group (the projection's target).
        config: rho, its schedule and the update period.
        input_shape: For ``config.mac_weighted`` with several layers.
    """

    def __init__(
        self,
        model: nn.Module,
        sparsity: SparsityConfig,
        config: ADMMConfig,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if sparsity.threshold is not None:
            raise ValueError("ADMM projects to per-layer rates; threshold mode has none")
        self.sparsity, self.config = sparsity, config
        self.modules = resolve_layers(model, sparsity)
        names = list(self.modules)
        self.layer_coeffs = (mac_coefficients(model, names, input_shape)
                             if config.mac_weighted else {n: 1.0 for n in names})
        self.rates = sparsity.rate_map
        self.stage = 0
        self.updates = 0
        with torch.no_grad():
            self.Z = {n: project(m.weight.detach(), sparsity, self.rates[n]).clone()
                      for n, m in self.modules.items()}
            self.U = {n: torch.zeros_like(m.weight) for n, m in self.modules.items()}

    @property
    def rho(self) -> float:
        """The current penalty ``rho`` (``config.rho * rho_factor ** stage``)."""
        return self.config.rho * self.config.rho_factor ** self.stage

    def set_stage(self, stage: int) -> None:
        """Enter rho stage ``stage`` (0-based)."""
        self.stage = int(stage)

    def penalty(self) -> Tensor:
        """``sum_l c_l rho/2 ||W_l - Z_l + U_l||^2`` (differentiable in the weights)."""
        total: Tensor | float = 0.0
        for name, module in self.modules.items():
            diff = module.weight - self.Z[name] + self.U[name]
            total = total + self.layer_coeffs[name] * diff.square().sum()
        if isinstance(total, float):
            return torch.zeros(())
        return 0.5 * self.rho * total

    @torch.no_grad()
    def update(self) -> None:
        """``Z = project(W + U)``, then ``U += W - Z``."""
        for name, module in self.modules.items():
            weight = module.weight.detach()
            self.Z[name] = project(weight + self.U[name], self.sparsity, self.rates[name])
            self.U[name] += weight - self.Z[name]
        self.updates += 1

    @torch.no_grad()
    def residuals(self) -> dict[str, float]:
        """``||W - Z|| / ||W||`` per layer: how far the weights are from the pattern."""
        out = {}
        for name, module in self.modules.items():
            weight = module.weight.detach()
            out[name] = float((weight - self.Z[name]).norm() / weight.norm().clamp_min(1e-30))
        return out

    def state_dict(self) -> dict[str, Any]:
        """Z, U, stage and update counter (for resuming)."""
        return {"Z": {n: z.cpu() for n, z in self.Z.items()},
                "U": {n: u.cpu() for n, u in self.U.items()},
                "stage": self.stage, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if set(state["Z"]) != set(self.modules):
            raise ValueError(f"ADMM state layers {sorted(state['Z'])} do not match "
                             f"{sorted(self.modules)}")
        for name, module in self.modules.items():
            device = module.weight.device
            self.Z[name] = state["Z"][name].to(device)
            self.U[name] = state["U"][name].to(device)
        self.stage, self.updates = int(state["stage"]), int(state["updates"])
