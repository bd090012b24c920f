"""Weight generators shared by tests and benchmarks (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..sparsity import broadcast_unit_mask

__all__ = ["structured_weight"]


def structured_weight(
    shape: Sequence[int],
    scheme: str,
    rate: float,
    group: Sequence[int] = (8, 4),
    rng: np.random.Generator | None = None,
    balanced: bool = False,
) -> np.ndarray:
    """A random float32 conv3d weight with an exact zero pattern.

    Parameters
    ----------
    shape : (M, N, Kd, Kh, Kw)
    scheme : ``"kgs"`` (units pruned), ``"vanilla"`` (whole kernel groups pruned),
        ``"plane"`` (whole ``Kh x Kw`` planes of a kernel group pruned, at one ``kd`` each:
        the Winograd-compatible scheme), ``"unstructured"`` (single weights pruned) or
        ``"dense"``.
    rate : float
        Fraction of units / groups / weights pruned, in [0, 1].
    group : (g_m, g_n)
    rng : np.random.Generator
    balanced : bool
        KGS only: every output group keeps the same number of units, as ``rt3d_prune``'s
        balanced ranking (its default) produces.
    """
    rng = rng or np.random.default_rng()
    m, n, *k = (int(s) for s in shape)
    w = rng.standard_normal((m, n, *k)).astype(np.float32)
    gm, gn = int(group[0]), int(group[1])
    mg, ng, k3 = -(-m // gm), -(-n // gn), int(np.prod(k))
    if scheme == "dense" or rate == 0:
        return w
    if scheme == "kgs" and balanced:
        mask = np.stack([_keep_mask((ng, k3), rate, rng) for _ in range(mg)])
    elif scheme == "kgs":
        mask = _keep_mask((mg, ng, k3), rate, rng)
    elif scheme == "vanilla":
        mask = np.repeat(_keep_mask((mg, ng, 1), rate, rng), k3, axis=2)
    elif scheme == "plane":
        kd = k[0] if k else 1
        planes = _keep_mask((mg, ng, kd), rate, rng)
        mask = np.repeat(planes, k3 // kd, axis=2)  # positions are (kd, kh, kw), kd outermost
    elif scheme == "unstructured":
        return w * _keep_mask(w.shape, rate, rng)
    else:
        raise ValueError(f"unknown scheme {scheme!r}: dense, kgs, vanilla, plane, "
                         "unstructured")
    return w * broadcast_unit_mask(mask, w.shape, (gm, gn))


def _keep_mask(shape: Sequence[int], rate: float, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``round(rate * size)`` entries pruned, at random positions.

    An exact count (not a Bernoulli draw per entry) so that small layers get the rate they
    were asked for: with 12 kernel groups, independent draws at 50% leave 3 or fewer groups
    pruned one time in 14.
    """
    size = int(np.prod(shape))
    pruned = rng.permutation(size) < round(rate * size)
    return ~pruned.reshape(tuple(shape))
