"""The RT3D sparsity format: kernel-group zero patterns of conv3d weights, in numpy only.

This module is the one contract between the two halves of RT3D: ``rt3d_prune`` writes
weights whose zeros follow these patterns and ``rt3d_passes`` reads them back. It imports
nothing but numpy.

Vocabulary, for a conv3d weight ``W`` of shape ``[M, N, Kd, Kh, Kw]`` (OIDHW):

* a **kernel group** is a block of ``g_m x g_n`` whole kernels: output channels
  ``i*g_m ... (i+1)*g_m-1`` times input channels ``j*g_n ... (j+1)*g_n-1``. When ``M`` or ``N``
  is not a multiple of the group shape, the last group along that axis is smaller (an *edge
  group*);
* a **unit** is one kernel position ``p = (kd, kh, kw)`` of one kernel group, i.e. the
  ``g_m x g_n`` weights ``W[i-group, j-group, kd, kh, kw]``. Units are what KGS prunes;
* a **plane** is the ``Kh x Kw`` units at one ``kd`` of one kernel group. A Winograd
  convolution transforms a ``(kh, kw)`` plane as a whole (``G g G^T`` fills any hole inside
  it), so whole planes are what a Winograd kernel can skip;
* a **column** is one (input channel, kd, kh, kw) of one output-channel group. A kept unit
  contributes ``g_n`` columns; all ``g_m`` output channels of the group share them, which is
  what keeps each group's GEMM dense.

Schemes:

* ``dense`` -- no unit is entirely zero;
* ``vanilla`` -- whole kernel groups are zero (every position of a group together);
* ``plane`` -- a ``kgs`` pattern whose zero units come in whole planes: for every group and
  ``kd`` either all ``Kh*Kw`` units are zero or none (and it is not vanilla). The KGS kernel
  computes it exactly as KGS (it is a special case); a Winograd kernel can skip its planes.
  Only reported when ``Kh*Kw > 1`` (with one ``(kh, kw)`` position every unit is a plane and
  the weight stays ``kgs``); with ``Kd = 1`` a plane is a whole group (``vanilla``);
* ``kgs`` -- units are zero, and inside a group different positions may be kept;
* ``unstructured`` -- zeros that are not whole units (more than ``stray_tolerance`` of the
  entries). Such weights are reported, never compacted into a kernel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_GROUP_CANDIDATES",
    "KGSCompact",
    "SparsityFormatError",
    "SparsityInfo",
    "broadcast_unit_mask",
    "classify",
    "compact",
    "detect_group",
    "plane_mask",
    "unit_mask",
]

#: Group shapes tried by :func:`detect_group`, in order of preference on ties.
DEFAULT_GROUP_CANDIDATES: tuple[tuple[int, int], ...] = (
    (8, 4),
    (4, 4),
    (4, 8),
    (8, 8),
    (16, 4),
    (8, 2),
    (4, 2),
    (2, 4),
    (2, 2),
)

#: Fraction of entries allowed to be zero outside whole zero units before a weight is called
#: unstructured. Trained fp32 weights are almost never exactly zero, so a few stray zeros are
#: noise; a magnitude-pruned weight has a large fraction of them.
DEFAULT_STRAY_TOLERANCE = 0.01


class SparsityFormatError(ValueError):
    """A weight or group shape that the sparsity format cannot describe."""


def _check_weight(weight: np.ndarray, name: str) -> np.ndarray:
    weight = np.asarray(weight)
    if weight.ndim != 5:
        raise SparsityFormatError(
            f"{name}: a conv3d weight must be 5-D [M, N, Kd, Kh, Kw], got shape {weight.shape}"
        )
    if 0 in weight.shape:
        raise SparsityFormatError(f"{name}: weight of shape {weight.shape} has an empty axis")
    if not np.issubdtype(weight.dtype, np.floating):
        raise SparsityFormatError(f"{name}: weight dtype must be floating, got {weight.dtype}")
    return weight


def _check_group(group: Sequence[int], shape: tuple[int, ...], name: str) -> tuple[int, int]:
    if len(group) != 2:
        raise SparsityFormatError(f"{name}: group must be (g_m, g_n), got {group!r}")
    gm, gn = int(group[0]), int(group[1])
    if gm < 1 or gn < 1:
        raise SparsityFormatError(f"{name}: group sizes must be positive, got ({gm}, {gn})")
    if gm > shape[0] or gn > shape[1]:
        raise SparsityFormatError(
            f"{name}: group ({gm}, {gn}) is larger than the weight's channels "
            f"(M={shape[0]}, N={shape[1]}) of shape {shape}"
        )
    return gm, gn


def _group_sizes(extent: int, g: int) -> np.ndarray:
    """Sizes of the groups along one axis: full groups, then a smaller edge group."""
    sizes = np.full((extent + g - 1) // g, g, dtype=np.int64)
    if extent % g:
        sizes[-1] = extent % g
    return sizes


def _pad_to_groups(weight: np.ndarray, gm: int, gn: int) -> np.ndarray:
    """View of ``weight`` as ``[Mg, gm, Ng, gn, K3]``, edge groups padded with zeros."""
    m, n = weight.shape[:2]
    k3 = int(np.prod(weight.shape[2:]))
    mp, np_ = -(-m // gm) * gm, -(-n // gn) * gn
    w = weight.reshape(m, n, k3)
    if (mp, np_) != (m, n):
        w = np.pad(w, ((0, mp - m), (0, np_ - n), (0, 0)))
    return w.reshape(mp // gm, gm, np_ // gn, gn, k3)


def unit_mask(weight: np.ndarray, group: Sequence[int], name: str = "weight") -> np.ndarray:
    """Which units hold a non-zero weight.

    Parameters
    ----------
    weight : np.ndarray
        Conv3d weight ``[M, N, Kd, Kh, Kw]``.
    group : (int, int)
        Kernel-group shape ``(g_m, g_n)``.
    name : str
        Layer name used in error messages.

    Returns
    -------
    mask : np.ndarray
        Boolean ``[ceil(M/g_m), ceil(N/g_n), Kd*Kh*Kw]``; ``True`` where the unit is kept.
        NaN and Inf count as non-zero.
    """
    weight = _check_weight(weight, name)
    gm, gn = _check_group(group, weight.shape, name)
    return (_pad_to_groups(weight, gm, gn) != 0).any(axis=(1, 3))


def plane_mask(weight: np.ndarray, group: Sequence[int], name: str = "weight") -> np.ndarray:
    """Which ``kd`` planes hold a non-zero weight (the plane scheme's mask).

    Parameters are :func:`unit_mask`'s.

    Returns
    -------
    mask : np.ndarray
        Boolean ``[ceil(M/g_m), ceil(N/g_n), Kd]``; ``True`` where any of the plane's
        ``Kh*Kw`` units is kept.
    """
    weight = _check_weight(weight, name)
    units = unit_mask(weight, group, name)
    return units.reshape(*units.shape[:2], weight.shape[2], -1).any(axis=3)


def broadcast_unit_mask(
    mask: np.ndarray, weight_shape: Sequence[int], group: Sequence[int]
) -> np.ndarray:
    """Expand a unit mask ``[Mg, Ng, K3]`` to a weight-shaped boolean mask (edge groups cut)."""
    m, n, *k = (int(s) for s in weight_shape)
    gm, gn = int(group[0]), int(group[1])
    mg, ng, k3 = -(-m // gm), -(-n // gn), int(np.prod(k))
    if mask.shape != (mg, ng, k3):
        raise SparsityFormatError(
            f"unit mask of shape {mask.shape} does not fit weight {tuple(weight_shape)} with "
            f"group ({gm}, {gn}): expected {(mg, ng, k3)}"
        )
    full = np.repeat(np.repeat(mask.astype(bool), gm, axis=0), gn, axis=1)
    return full[:m, :n].reshape(m, n, *k)


@dataclasses.dataclass(frozen=True)
class SparsityInfo:
    """What :func:`classify` found in one conv3d weight.

    MAC counts are per output voxel and batch element; multiply by ``N * OD * OH * OW``
    for a layer's MACs.
    """

    scheme: str
    """``"dense"``, ``"vanilla"``, ``"plane"``, ``"kgs"`` or ``"unstructured"``."""
    group: tuple[int, int] | None
    """Group shape the structured zeros were measured with (``None`` for a 0-d case)."""
    shape: tuple[int, ...]
    dense_macs: int
    """``M * N * Kd * Kh * Kw``."""
    kept_macs: int
    """MACs left after removing whole zero units: what a KGS kernel computes."""
    zero_fraction: float
    """Fraction of weights that are exactly zero."""
    stray_zero_fraction: float
    """Fraction of weights that are zero but not part of a whole zero unit."""
    pruned_group_fraction: float
    """Fraction of kernel groups that are entirely zero."""
    nonfinite: int
    """Number of NaN or Inf weights."""
    computed_macs: int = 0
    """MACs the KGS operator executes: every output group padded to the longest group's kept
    columns, the edge group to ``g_m`` rows (``kept_macs`` up to the groups' imbalance)."""

    @property
    def mac_reduction(self) -> float:
        """Dense MACs over kept MACs (``inf`` for an all-zero weight)."""
        return self.dense_macs / self.kept_macs if self.kept_macs else float("inf")

    @property
    def kept_fraction(self) -> float:
        """Kept MACs over dense MACs."""
        return self.kept_macs / self.dense_macs

    @property
    def is_structured(self) -> bool:
        """True for vanilla, plane and KGS: zeros a sparse KGS kernel can skip exactly."""
        return self.scheme in ("vanilla", "plane", "kgs")


def _structured_stats(weight: np.ndarray, gm: int, gn: int):
    """(unit mask, kept MACs, stray zeros, group-level pruned mask) for one group shape."""
    m, n = weight.shape[:2]
    mask = unit_mask(weight, (gm, gn))
    units_size = np.outer(_group_sizes(m, gm), _group_sizes(n, gn))  # [Mg, Ng]
    kept_macs = int((mask * units_size[:, :, None]).sum())
    zeros = int((weight == 0).sum())
    structured_zeros = int(((~mask) * units_size[:, :, None]).sum())
    return mask, kept_macs, zeros - structured_zeros, ~mask.any(axis=2)


def _whole_planes(mask: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Every (group, kd) plane of a unit mask is all kept or all zero (``Kh*Kw > 1`` only)."""
    kd, kh, kw = shape[2:]
    if kh * kw == 1:  # every unit is a plane: nothing to tell apart from KGS
        return False
    planes = mask.reshape(*mask.shape[:2], kd, kh * kw)
    return bool((planes.all(axis=3) | ~planes.any(axis=3)).all())


def classify(
    weight: np.ndarray,
    group: Sequence[int] | None = None,
    *,
    stray_tolerance: float = DEFAULT_STRAY_TOLERANCE,
    name: str = "weight",
) -> SparsityInfo:
    """Classify the exact zero pattern of a conv3d weight.

    The scheme is ``"unstructured"`` (too many stray zeros), else ``"dense"``, ``"vanilla"``,
    ``"plane"`` or ``"kgs"``, the first that fits (see the module docstring).

    Parameters
    ----------
    weight : np.ndarray
        Conv3d weight ``[M, N, Kd, Kh, Kw]`` (OIDHW).
    group : (int, int), optional
        Kernel-group shape. ``None`` detects it with :func:`detect_group`.
    stray_tolerance : float
        Largest fraction of entries that may be zero outside whole zero units before the
        weight is called ``"unstructured"``.
    name : str
        Layer name used in error messages.

    Returns
    -------
    info : SparsityInfo
    """
    weight = _check_weight(weight, name)
    if group is None:
        group = detect_group(weight, name=name)
    gm, gn = _check_group(group, weight.shape, name)
    mask, kept, stray, group_pruned = _structured_stats(weight, gm, gn)
    total = weight.size
    stray_fraction = stray / total
    if stray_fraction > stray_tolerance:
        scheme = "unstructured"
    elif mask.all():
        scheme = "dense"
    elif np.array_equal(mask, np.broadcast_to(~group_pruned[:, :, None], mask.shape)):
        # every group is either entirely kept or entirely pruned
        scheme = "vanilla"
    elif _whole_planes(mask, weight.shape):
        scheme = "plane"
    else:
        scheme = "kgs"
    # columns per output group (edge input groups are narrower), padded to the longest
    columns = (mask * _group_sizes(weight.shape[1], gn)[None, :, None]).sum(axis=(1, 2))
    computed = int(mask.shape[0] * gm * max(1, int(columns.max())))
    return SparsityInfo(
        scheme=scheme,
        group=(gm, gn),
        shape=tuple(int(s) for s in weight.shape),
        dense_macs=int(total),
        kept_macs=kept,
        zero_fraction=float((weight == 0).sum() / total),
        stray_zero_fraction=float(stray_fraction),
        pruned_group_fraction=float(group_pruned.mean()),
        nonfinite=int((~np.isfinite(weight)).sum()),
        computed_macs=computed,
    )


def detect_group(
    weight: np.ndarray,
    candidates: Sequence[Sequence[int]] = DEFAULT_GROUP_CANDIDATES,
    name: str = "weight",
) -> tuple[int, int]:
    """The kernel-group shape whose whole zero units remove the most MACs.

    Candidates larger than the weight's channels are skipped. Ties (for instance a vanilla
    8x4 pattern is also an exact 4x4 pattern) go to the larger group, then to the earlier
    candidate, because larger groups give the kernel longer vectors.

    Returns
    -------
    group : (int, int)
        The best candidate; for a dense weight, the first candidate that fits.
    """
    weight = _check_weight(weight, name)
    m, n = weight.shape[:2]
    fitting = [(int(a), int(b)) for a, b in candidates if a <= m and b <= n]
    if not fitting:
        # tiny layers (e.g. a 3-channel stem with N < every g_n): fall back to 1-wide groups
        fitting = [(min(m, int(a)), min(n, int(b))) for a, b in candidates[:1]]
    best, best_key = fitting[0], None
    for rank, (gm, gn) in enumerate(fitting):
        _, kept, _, _ = _structured_stats(weight, gm, gn)
        # among equal savings prefer the larger group; a dense weight ties everywhere and
        # keeps the first (preferred) candidate
        key = (kept, -(gm * gn) if kept < weight.size else 0, rank)
        if best_key is None or key < best_key:
            best, best_key = (gm, gn), key
    return best


@dataclasses.dataclass(frozen=True)
class KGSCompact:
    """Compacted weights of a structured conv3d, the layout the sparse operator reads.

    For output-channel group ``i`` (``G = ceil(M / g_m)`` groups), the kept columns are
    ``columns[i, :counts[i]]``, each ``(c, kd, kh, kw)``, ordered by channel then position;
    ``values[i, t, r]`` is the weight of output channel ``i*g_m + r`` at column ``t``. Groups
    are padded to a common length ``T = max(counts)`` with column ``(0, 0, 0, 0)`` and weight
    0, and the edge output group with zero rows, so padding reads valid memory and adds 0.
    """

    group: tuple[int, int]
    weight_shape: tuple[int, int, int, int, int]
    values: np.ndarray
    """``[G, T, g_m]`` weights, same dtype as the dense weight."""
    columns: np.ndarray
    """``[G, T, 4]`` int32 ``(c, kd, kh, kw)``."""
    counts: np.ndarray
    """``[G]`` int32 number of valid columns per output group."""

    @property
    def num_groups(self) -> int:
        return int(self.values.shape[0])

    @property
    def max_columns(self) -> int:
        return int(self.values.shape[1])

    @property
    def kept_macs(self) -> int:
        """MACs per output voxel the compacted weight holds (padding excluded)."""
        gm = self.group[0]
        m = self.weight_shape[0]
        rows = np.full(self.num_groups, gm)
        if m % gm:
            rows[-1] = m % gm
        return int((self.counts.astype(np.int64) * rows).sum())

    @property
    def computed_macs(self) -> int:
        """MACs per output voxel the operator executes, padding slots included."""
        return self.num_groups * self.max_columns * self.group[0]

    def to_dense(self) -> np.ndarray:
        """Scatter back to a dense ``[M, N, Kd, Kh, Kw]`` weight (the round-trip check)."""
        m, n, kd, kh, kw = self.weight_shape
        gm = self.group[0]
        out = np.zeros((self.num_groups * gm, n, kd, kh, kw), self.values.dtype)
        for i in range(self.num_groups):
            cnt = int(self.counts[i])
            c, a, b, e = self.columns[i, :cnt].T
            out[i * gm : (i + 1) * gm, c, a, b, e] = self.values[i, :cnt].T
        return out[:m]


def compact(weight: np.ndarray, group: Sequence[int], name: str = "weight") -> KGSCompact:
    """Compact a structured conv3d weight into the operator's layout.

    Every unit that holds a non-zero weight is kept whole, so ``compact(w).to_dense()``
    equals ``w`` exactly for any weight (stray zeros inside kept units stay as zeros).
    Callers decide whether compaction is worth it with :func:`classify`. The parameters are
    :func:`unit_mask`'s.
    """
    weight = _check_weight(weight, name)
    gm, gn = _check_group(group, weight.shape, name)
    m, n, kd, kh, kw = weight.shape
    mask = unit_mask(weight, (gm, gn))  # [G, Ng, K3]
    g_count = mask.shape[0]
    wp = _pad_to_groups(weight, gm, gn)  # [G, gm, Ng, gn, K3]
    chan = np.arange(-(-n // gn) * gn).reshape(-1, gn)  # [Ng, gn] channel of each slot
    per_group = []
    for i in range(g_count):
        js, ps = np.nonzero(mask[i])  # kept units, ordered by (input group, position)
        cs = chan[js]  # [U, gn]
        valid = cs < n  # edge input group: slots past N do not exist
        c_flat = cs[valid]
        p_flat = np.broadcast_to(ps[:, None], cs.shape)[valid]
        vals = wp[i][:, js[:, None], np.arange(gn)[None, :], ps[:, None]]  # [gm, U, gn]
        # order columns by (channel, position): neighbouring kernel positions of one channel
        # read neighbouring input, so consecutive columns share cache lines
        order = np.lexsort((p_flat, c_flat))
        per_group.append((c_flat[order], p_flat[order], vals[:, valid][:, order]))
    t_max = max(1, max(len(c) for c, _, _ in per_group))
    values = np.zeros((g_count, t_max, gm), weight.dtype)
    columns = np.zeros((g_count, t_max, 4), np.int32)
    counts = np.zeros(g_count, np.int32)
    for i, (c_flat, p_flat, vals) in enumerate(per_group):
        cnt = len(c_flat)
        counts[i] = cnt
        columns[i, :cnt, 0] = c_flat
        columns[i, :cnt, 1] = p_flat // (kh * kw)
        columns[i, :cnt, 2] = (p_flat // kw) % kh
        columns[i, :cnt, 3] = p_flat % kw
        values[i, :cnt] = vals.T
    return KGSCompact(
        group=(gm, gn),
        weight_shape=(int(m), int(n), int(kd), int(kh), int(kw)),
        values=values,
        columns=columns,
        counts=counts,
    )
