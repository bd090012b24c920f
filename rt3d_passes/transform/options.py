"""``RewriteOptions``: what decides which conv3d layers RT3D rewrites, in one place.

:class:`~rt3d_passes.RewriteKGSConv3D`, :func:`rt3d_passes.inspect`, tuning's task extraction
and the ``rt3d`` pipeline all take these options, with these defaults, so a report shows
exactly what a compile does.
"""

from __future__ import annotations

import dataclasses

from ..sparsity import DEFAULT_STRAY_TOLERANCE

__all__ = ["RewriteOptions"]


@dataclasses.dataclass(frozen=True)
class RewriteOptions:
    """Which conv3d layers become RT3D operators.

    Parameters
    ----------
    min_mac_reduction : float
        Structured layers whose dense/kept MAC ratio is below this are not treated as sparse.
    group : (int, int), optional
        Kernel-group shape ``(g_m, g_n)``; ``None`` detects the best shape per layer.
    include_dense : bool
        Also rewrite layers without exploitable zeros (dense, unstructured, or below the
        threshold), computing every column: RT3D's own scheduled dense conv3d instead of
        TVM's unscheduled default. ``False`` rewrites only the pruned layers.
    stray_tolerance : float
        Fraction of zeros outside whole units tolerated before a layer counts as
        unstructured (see :func:`rt3d_passes.sparsity.classify`).
    """

    min_mac_reduction: float = 1.2
    group: tuple[int, int] | None = None
    include_dense: bool = True
    stray_tolerance: float = DEFAULT_STRAY_TOLERANCE

    def __post_init__(self):
        if self.min_mac_reduction < 1.0:
            raise ValueError(f"min_mac_reduction must be >= 1.0, got {self.min_mac_reduction}")
        if self.group is not None:
            group = tuple(int(v) for v in self.group)
            if len(group) != 2 or min(group) < 1:
                raise ValueError(f"group must be two positive sizes (g_m, g_n), got {self.group}")
            object.__setattr__(self, "group", group)
        object.__setattr__(self, "min_mac_reduction", float(self.min_mac_reduction))
        object.__setattr__(self, "include_dense", bool(self.include_dense))
        object.__setattr__(self, "stray_tolerance", float(self.stray_tolerance))

    @classmethod
    def of(cls, options: RewriteOptions | None = None, **overrides) -> RewriteOptions:
        """``options`` (default: the defaults) with the keyword arguments that are not None
        replacing its fields."""
        base = options or cls()
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown rewrite option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(base, **given) if given else base
