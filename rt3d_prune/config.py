"""Frozen configuration dataclasses of the pruner and the regularizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .schemes import SCHEMES

__all__ = ["RegularizerConfig", "SparsityConfig"]


@dataclasses.dataclass(frozen=True)
class SparsityConfig:
    """What to prune: scheme, kernel-group shape and per-layer rates.

    Args:
        scheme: One of ``"kgs"``, ``"vanilla"``, ``"filter"``, ``"unstructured"``
            (see :mod:`rt3d_prune.schemes`).
        group: Kernel group ``(g_m, g_n)``: output x input channels (KGS and vanilla).
        rates: Per-layer pruned fraction, as a mapping or ``(name, rate)`` pairs. For KGS it is
            the fraction of units (kernel columns) removed, for vanilla the fraction of kernel
            groups; both equal the fraction of the layer's MACs removed when the channels are
            multiples of the group. Layers with rate 0 stay dense.
        threshold: If set, prune by threshold instead: every group whose RMS
            (``norm / sqrt(size)``) is below it is pruned, in every layer named in ``rates``
            (whose values are then only used to select layers).
        balanced: KGS with rates: rank within every output group, so all groups of a layer
            keep the same unit count (see :func:`~rt3d_prune.schemes.rank_mask_balanced`;
            the compiled kernel then has no padding). ``False`` ranks the whole layer.
            Vanilla always ranks the whole layer: a row of a small layer holds too few kernel
            groups to meet a rate on its own (8 groups: steps of 12.5%). Threshold mode and
            the baseline schemes ignore it.
    """

    scheme: str = "kgs"
    group: tuple[int, int] = (8, 4)
    rates: tuple[tuple[str, float], ...] = ()
    threshold: float | None = None
    balanced: bool = True

    def __post_init__(self) -> None:
        # normalise mappings and lists so configs hash and compare by value
        rates = self.rates.items() if isinstance(self.rates, Mapping) else self.rates
        object.__setattr__(self, "rates", tuple((str(k), float(v)) for k, v in rates))
        object.__setattr__(self, "group", (int(self.group[0]), int(self.group[1])))
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {self.scheme!r}; valid: {', '.join(SCHEMES)}")
        if min(self.group) < 1:
            raise ValueError(f"group sizes must be positive, got {self.group}")

    @property
    def rate_map(self) -> dict[str, float]:
        """``rates`` as a dict."""
        return dict(self.rates)

    @property
    def pruned_layers(self) -> tuple[str, ...]:
        """Layers that get a mask: rate above 0 (or any listed layer in threshold mode)."""
        if self.threshold is not None:
            return tuple(name for name, _ in self.rates)
        return tuple(name for name, rate in self.rates if rate > 0)

    def replace(self, **changes) -> SparsityConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RegularizerConfig:
    """The group regularizer ``strength * sum_l c_l sum_g P_g ||W_g||``.

    Args:
        strength: lambda.
        reweighted: ``True``: ``P_g = 1 / (||W_g||^2 + eps)``, recomputed by
            :meth:`~rt3d_prune.regularizer.GroupRegularizer.reweight` (the paper's reweighted
            regularization). ``False``: ``P_g = 1`` (plain group lasso).
        eps: Keeps ``P_g`` finite for groups that reached zero.
        mac_weighted: ``c_l`` proportional to the layer's dense MACs (normalized to mean 1)
            so that expensive layers are pushed harder; otherwise ``c_l = 1``.
    """

    strength: float = 1e-4
    reweighted: bool = True
    eps: float = 1e-3
    mac_weighted: bool = False

    def __post_init__(self) -> None:
        if self.strength < 0 or self.eps <= 0:
            raise ValueError(f"strength must be >= 0 and eps > 0, got {self}")
