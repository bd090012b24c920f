"""Sparsity schemes: how a weight is cut into prunable groups, at group granularity.

A weight of shape ``[M, N, *K]`` (conv) or ``[M, N]`` (linear, ``K3 = 1``) is viewed as
``[Mg, g_m, Ng, g_n, K3]`` with the edge groups padded by zeros, exactly as in
``rt3d_passes/sparsity.py``. Each scheme prunes one kind of group:

* ``"kgs"`` -- units: one kernel position of one ``g_m x g_n`` kernel group.
  Mask shape ``[Mg, Ng, K3]``.
* ``"plane"`` -- one ``kd`` plane (all ``Kh x Kw`` positions at one ``kd``) of one kernel
  group: the Winograd-compatible scheme. A Winograd convolution transforms every ``3x3``
  ``(kh, kw)`` plane as a whole (``G g G^T`` fills KGS holes inside a plane), so only whole
  planes removed from a kernel group save multiplications there. Conv3d weights only (5-D).
  Mask ``[Mg, Ng, Kd]``, broadcast over ``(kh, kw)``. For ``Kd = 1`` (a ``1x3x3`` kernel) a
  plane is the whole kernel group (vanilla); for ``Kh = Kw = 1`` it is one KGS unit.
* ``"vanilla"`` -- whole ``g_m x g_n`` kernel groups (all positions). Mask ``[Mg, Ng]``.
* ``"filter"`` -- whole output filters: vanilla with group ``(1, N)``. Mask ``[M, 1]``.
  A comparison baseline (channel pruning).
* ``"unstructured"`` -- single weights: KGS with group ``(1, 1)``. Mask ``[M, N, K3]``.
  A comparison baseline (magnitude pruning); its zeros are not a kernel-group pattern.

Masks are ``True`` where weights are kept. Norms are differentiable torch functions so the
regularizer can use them on live parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "BALANCED_SCHEMES",
    "SCHEMES",
    "broadcast_mask",
    "effective_group",
    "group_norms",
    "group_sizes",
    "rank_keep",
    "rank_mask",
    "rank_mask_balanced",
]

#: Supported scheme names.
SCHEMES: tuple[str, ...] = ("kgs", "plane", "vanilla", "filter", "unstructured")

#: Schemes whose rates can be met in every output group (row of the mask) on its own, so
#: that every output group keeps the same count (:func:`rank_mask_balanced`).
BALANCED_SCHEMES: tuple[str, ...] = ("kgs", "plane")


def effective_group(
    scheme: str, group: Sequence[int], weight_shape: Sequence[int]
) -> tuple[int, int]:
    """The ``(g_m, g_n)`` a scheme actually groups by for this weight shape."""
    if scheme in ("kgs", "plane", "vanilla"):
        return int(group[0]), int(group[1])
    if scheme == "filter":
        return 1, int(weight_shape[1])
    if scheme == "unstructured":
        return 1, 1
    raise ValueError(f"unknown scheme {scheme!r}; valid schemes: {', '.join(SCHEMES)}")


def _grouped(weight: Tensor, gm: int, gn: int) -> Tensor:
    """``[Mg, gm, Ng, gn, K3]`` view of ``weight`` with edge groups zero-padded."""
    m, n = weight.shape[:2]
    w = weight.reshape(m, n, -1)
    pm, pn = -m % gm, -n % gn
    if pm or pn:
        w = torch.nn.functional.pad(w, (0, 0, 0, pn, 0, pm))
    return w.reshape((m + pm) // gm, gm, (n + pn) // gn, gn, w.shape[-1])


def _check_plane(scheme: str, weight_shape: Sequence[int]) -> None:
    if scheme == "plane" and len(weight_shape) != 5:
        raise ValueError(
            f"the plane scheme needs a 5-D conv3d weight [M, N, Kd, Kh, Kw], got shape "
            f"{tuple(weight_shape)}"
        )


def group_norms(weight: Tensor, scheme: str, group: Sequence[int], squared: bool = False) -> Tensor:
    """L2 norm of every prunable group (differentiable).

    Args:
        weight: ``[M, N, *K]`` or ``[M, N]`` (``plane``: ``[M, N, Kd, Kh, Kw]`` only).
        scheme: One of :data:`SCHEMES`.
        group: ``(g_m, g_n)`` for ``kgs``, ``plane`` and ``vanilla``; ignored by the baselines.
        squared: Return squared norms (no square root, so no infinite gradient at zero).

    Returns:
        The norms at mask granularity (see the module docstring for shapes).

    Raises:
        ValueError: ``plane`` on a weight that is not 5-D.
    """
    _check_plane(scheme, weight.shape)
    gm, gn = effective_group(scheme, group, weight.shape)
    sq = _grouped(weight, gm, gn).square().sum(dim=(1, 3))  # [Mg, Ng, K3]
    if scheme in ("vanilla", "filter"):
        sq = sq.sum(dim=2)
    elif scheme == "plane":  # K3 = (kd, kh, kw) row-major: sum each kd's Kh*Kw positions
        sq = sq.reshape(*sq.shape[:2], weight.shape[2], -1).sum(dim=3)
    return sq if squared else sq.sqrt()


def group_sizes(weight_shape: Sequence[int], scheme: str, group: Sequence[int]) -> Tensor:
    """Number of weight entries in every group (smaller for edge groups), mask-shaped."""
    ones = torch.ones(tuple(weight_shape))
    return group_norms(ones, scheme, group, squared=True)


def broadcast_mask(
    mask: Tensor, weight_shape: Sequence[int], scheme: str, group: Sequence[int]
) -> Tensor:
    """Expand a group-granular mask to the weight's shape (edge groups cut)."""
    m, n = int(weight_shape[0]), int(weight_shape[1])
    gm, gn = effective_group(scheme, group, weight_shape)
    k3 = int(torch.Size(weight_shape[2:]).numel())
    if mask.dim() == 2:  # vanilla / filter: same decision for every position
        mask = mask.unsqueeze(-1).expand(-1, -1, k3)
    elif scheme == "plane":  # [Mg, Ng, Kd]: same decision for every (kh, kw) of a plane
        _check_plane(scheme, weight_shape)
        kd = int(weight_shape[2])
        mask = mask.unsqueeze(-1).expand(-1, -1, kd, k3 // kd).reshape(*mask.shape[:2], k3)
    mg, ng = mask.shape[:2]
    full = mask[:, None, :, None, :].expand(mg, gm, ng, gn, k3).reshape(mg * gm, ng * gn, k3)
    return full[:m, :n].reshape(tuple(weight_shape))


def rank_mask(norms: Tensor, sizes: Tensor, rate: float) -> Tensor:
    """Keep-mask that prunes the groups with the smallest RMS, ``rate`` of the layer's weights.

    Groups are ranked by ``norm / sqrt(size)`` so that smaller edge groups compete fairly, and
    pruned in that order until the pruned weight entries reach ``rate`` of the layer (rounded
    to the nearest group). When all groups have the same size this prunes
    ``round(rate * groups)`` groups, i.e. ``rate`` of the units (KGS), planes (plane) or kernel
    groups (vanilla).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    flat_n, flat_s = norms.detach().flatten(), sizes.flatten().to(norms.dtype)
    order = torch.argsort(flat_n / flat_s.sqrt(), stable=True)
    cum = torch.cumsum(flat_s[order], 0)
    target = rate * float(flat_s.sum())
    # number of groups whose cumulative size is closest to the target
    count = int(torch.argmin((torch.cat([cum.new_zeros(1), cum]) - target).abs()))
    keep = torch.ones_like(flat_n, dtype=torch.bool)
    keep[order[:count]] = False
    return keep.reshape(norms.shape)


def rank_mask_balanced(norms: Tensor, sizes: Tensor, rate: float) -> Tensor:
    """:func:`rank_mask` applied to every output group (row of ``norms``) on its own.

    Every output group then keeps the same number of units (KGS) or planes (plane), so the
    compiled KGS operator, whose loop runs to the longest group's column count, computes no
    padding slots: with a layer-wide ranking the groups' counts scatter and the padded work
    cost 10-20% on C3D and R(2+1)D. The price is a per-group constraint on which units
    survive.
    """
    rows = [rank_mask(n, s, rate) for n, s in zip(norms.unbind(0), sizes.unbind(0))]
    return torch.stack(rows).reshape(norms.shape)


def rank_keep(norms: Tensor, sizes: Tensor, rate: float, scheme: str, balanced: bool) -> Tensor:
    """The keep-mask of ranking ``norms`` at ``rate``: per output group
    (:func:`rank_mask_balanced`) when ``balanced`` and the scheme ranks per group
    (:data:`BALANCED_SCHEMES`), else layer-wide (:func:`rank_mask`). The one place the
    sparsifier and the ADMM projection decide that."""
    per_group = balanced and scheme in BALANCED_SCHEMES
    return (rank_mask_balanced if per_group else rank_mask)(norms, sizes, rate)
