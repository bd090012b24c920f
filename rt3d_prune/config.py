"""Frozen configuration dataclasses of the pruner and the regularizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from .schemes import SCHEMES
from .train import TrainConfig

__all__ = ["METHODS", "NORMALIZE_MODES", "ADMMConfig", "MethodConfig", "RegularizerConfig",
           "SparsityConfig"]

#: Pruning methods of :class:`MethodConfig`.
METHODS: tuple[str, ...] = ("heuristic", "group_lasso", "reweighted", "admm")

#: How :class:`RegularizerConfig` measures a group (see its ``normalize``).
NORMALIZE_MODES: tuple[str, ...] = ("none", "layer", "bn")


@dataclasses.dataclass(frozen=True)
class SparsityConfig:
    """What to prune: scheme, kernel-group shape and per-layer rates.

    Args:
        scheme: One of ``"kgs"``, ``"plane"``, ``"vanilla"``, ``"filter"``,
            ``"unstructured"`` (see :mod:`rt3d_prune.schemes`). ``"plane"`` (whole ``kd``
            planes of a kernel group, Winograd-compatible) prunes conv3d layers only.
        group: Kernel group ``(g_m, g_n)``: output x input channels (KGS, plane and vanilla).
        rates: Per-layer pruned fraction, as a mapping or ``(name, rate)`` pairs. For KGS it is
            the fraction of units (kernel columns) removed, for plane the fraction of ``kd``
            planes, for vanilla the fraction of kernel groups; each equals the fraction of the
            layer's MACs removed when the channels are multiples of the group. Layers with
            rate 0 stay dense.
        threshold: If set, prune by threshold instead: every group whose RMS
            (``norm / sqrt(size)``) is below it is pruned, in every layer named in ``rates``
            (whose values are then only used to select layers).
        balanced: KGS and plane with rates: rank within every output group, so all groups of
            a layer keep the same unit (plane) count (see
            :func:`~rt3d_prune.schemes.rank_mask_balanced`; the compiled kernel then has no
            padding). ``False`` ranks the whole layer.
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
        reweighted: ``True``: ``P_g = 1 / (||W_g||^power + eps)``, recomputed by
            :meth:`~rt3d_prune.regularizer.GroupRegularizer.reweight` (the paper's reweighted
            regularization). ``False``: ``P_g = 1`` (plain group lasso).
        eps: Keeps ``P_g`` finite for groups that reached zero.
        mac_weighted: ``c_l`` proportional to the layer's dense MACs (normalized to mean 1)
            so that expensive layers are pushed harder, as the paper weights them; otherwise
            ``c_l = 1``.
        normalize: What ``||W_g||`` measures. ``"none"``: the raw group norm. ``"layer"``:
            the group norm relative to the layer's RMS group norm
            (``||W_g|| sqrt(G) / ||W_l||``), so shrinking a whole layer -- free when BatchNorm
            follows it -- no longer lowers the penalty; ``eps`` is then relative too.
            ``"bn"``: the norm of the weight with the following BatchNorm's scale
            ``|gamma| / sqrt(running_var + eps)`` folded into its output channels (the
            scale is a constant of every step; layers without a following BN use 1).
        power: The exponent of ``P_g``'s norm: 2 as in the paper (``P_g ||W_g|| ~ 1/||W_g||``,
            a log-like penalty); 1 gives ``P_g ||W_g|| ~ 1`` for large groups (an L0-like
            count), for the ablation.
    """

    strength: float = 1e-4
    reweighted: bool = True
    eps: float = 1e-3
    mac_weighted: bool = True
    normalize: str = "none"
    power: float = 2.0

    def __post_init__(self) -> None:
        if self.strength < 0 or self.eps <= 0:
            raise ValueError(f"strength must be >= 0 and eps > 0, got {self}")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got "
                             f"{self.normalize!r}")
        if self.power <= 0:
            raise ValueError(f"power must be positive, got {self.power}")


@dataclasses.dataclass(frozen=True)
class ADMMConfig:
    """ADMM pruning as the authors' released code does it (CoCoPIE video-classification).

    The loss gets ``sum_l c_l rho/2 ||W_l - Z_l + U_l||^2``; every ``update_every`` epochs
    ``Z = project(W + U)`` (the per-layer rates of the SparsityConfig, balanced or layer-wide as
    it says) and ``U += W - Z``; ``rho`` is multiplied by ``rho_factor`` at every new stage.

    Args:
        rho: Initial penalty ``rho``.
        rho_factor: Multiplier per stage (the authors: x10).
        stages: Number of rho stages; the regularization epochs are split evenly among them.
        update_every: Epochs between Z/U updates.
        mac_weighted: ``c_l`` proportional to layer MACs (mean 1), else 1.
    """

    rho: float = 1e-3
    rho_factor: float = 10.0
    stages: int = 3
    update_every: int = 1
    mac_weighted: bool = False

    def __post_init__(self) -> None:
        if self.rho <= 0 or self.rho_factor < 1 or self.stages < 1 or self.update_every < 1:
            raise ValueError(f"need rho > 0, rho_factor >= 1, stages >= 1, update_every >= 1;"
                             f" got {self}")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """How to reach a SparsityConfig's pattern: regularize -> hard prune -> masked fine-tune.

    * ``heuristic``: no regularization; hard prune of the trained weights by group norm, then
      fine-tuning for ``reg_epochs + finetune_epochs`` (every method trains as long).
    * ``group_lasso``: ``lambda sum_l c_l sum_g ||W_g||`` for ``reg_epochs``.
    * ``reweighted``: ``lambda sum_l c_l sum_g P_g ||W_g||`` with ``P_g = 1/(||W_g||^2 + eps)``
      recomputed at the start of each of ``rounds`` equal rounds of the ``reg_epochs``.
    * ``admm``: the ADMM penalty of :class:`ADMMConfig` for ``reg_epochs``.

    Args:
        method: One of :data:`METHODS`.
        reg_epochs: Epochs of the regularization phase.
        finetune_epochs: Epochs of masked fine-tuning after the hard prune.
        regularizer: lambda, eps, MAC weighting, normalization (``reweighted`` is set from
            ``method``).
        rounds: Reweighting rounds (``reweighted`` only); ``reg_epochs`` is split among them.
        admm: rho, its schedule and the Z/U update period (``admm`` only).
        reg_train: Optimizer settings of the regularization phase (constant lr by default:
            a cosine schedule would leave the last rounds almost no step size).
        finetune_train: Optimizer settings of fine-tuning (its ``epochs`` is ignored);
            distillation and label smoothing go here.
    """

    method: str = "reweighted"
    reg_epochs: int = 4
    finetune_epochs: int = 4
    regularizer: RegularizerConfig = dataclasses.field(default_factory=RegularizerConfig)
    rounds: int = 4
    admm: ADMMConfig = dataclasses.field(default_factory=ADMMConfig)
    reg_train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(lr=0.01, schedule="constant"))
    finetune_train: TrainConfig = dataclasses.field(
        default_factory=lambda: TrainConfig(lr=0.01)
    )

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")
        if self.reg_epochs < 0 or self.finetune_epochs < 0:
            raise ValueError("epochs must be >= 0")

    @property
    def phases(self) -> tuple[tuple[str, int], ...]:
        """``(phase, epochs)`` in order: ``("regularize", n)`` (not for the heuristic), then
        ``("finetune", n)``."""
        if self.method == "heuristic":
            return (("finetune", self.reg_epochs + self.finetune_epochs),)
        return (("regularize", self.reg_epochs), ("finetune", self.finetune_epochs))
