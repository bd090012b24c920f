"""``RewriteOptions``: what decides which conv3d layers RT3D rewrites, in one place.

:class:`~rt3d_passes.RewriteKGSConv3D`, :func:`rt3d_passes.inspect`, tuning's task extraction
and the ``rt3d`` pipeline all take these options, with these defaults, so a report shows
exactly what a compile does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ..sparsity import DEFAULT_STRAY_TOLERANCE

__all__ = ["ALGORITHMS", "MEASURED_ALGORITHMS", "RewriteOptions"]

#: Values of :attr:`RewriteOptions.algorithms`.
ALGORITHMS: tuple[str, ...] = ("direct", "winograd", "winograd2", "winograd4")
#: The algorithms a layer can be measured with (a Winograd operator has a fixed tile).
MEASURED_ALGORITHMS: tuple[str, ...] = ("direct", "winograd2", "winograd4")


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
    winograd : bool
        Let :class:`~rt3d_passes.SelectConv3DAlgorithm` run eligible layers (``k x 3 x 3``,
        stride 1, undilated, groups 1) as Winograd when its cost model expects them faster.
        ``False`` keeps every layer on the direct kernel (results closer to PyTorch's: see
        :data:`rt3d_passes.op.WINOGRAD_RTOL`).
    algorithms : mapping of layer name to algorithm, optional
        Force a layer's algorithm: ``"direct"``, ``"winograd"`` (tile chosen by the cost
        model), ``"winograd2"`` or ``"winograd4"`` (``F(2x2, 3x3)`` / ``F(4x4, 3x3)``). A
        forced Winograd on an ineligible layer is an error naming the layer; a name that
        matches no layer is an error too (see :func:`rt3d_passes.inspect` for the names).
    measured : tuple of (layer, algorithm, reason), optional
        Algorithms chosen from measured times (a tuning database that holds a layer's
        direct and Winograd operators: :func:`rt3d_passes.tuning.measured_choices`); they
        replace the cost model's choice for those layers, ``algorithms`` still wins.
    """

    min_mac_reduction: float = 1.2
    group: tuple[int, int] | None = None
    include_dense: bool = True
    stray_tolerance: float = DEFAULT_STRAY_TOLERANCE
    winograd: bool = True
    algorithms: tuple[tuple[str, str], ...] = ()
    measured: tuple[tuple[str, str, str], ...] = ()

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
        object.__setattr__(self, "winograd", bool(self.winograd))
        forced = self.algorithms
        items = forced.items() if isinstance(forced, Mapping) else forced
        pairs = tuple(sorted((str(k), str(v)) for k, v in items))
        bad = [f"{k}={v}" for k, v in pairs if v not in ALGORITHMS]
        if bad:
            raise ValueError(f"unknown conv3d algorithm(s) {', '.join(bad)}; valid: "
                             f"{', '.join(ALGORITHMS)}")
        object.__setattr__(self, "algorithms", pairs)
        measured = tuple(sorted((str(k), str(v), str(why)) for k, v, why in self.measured))
        bad = [f"{k}={v}" for k, v, _ in measured if v not in MEASURED_ALGORITHMS]
        if bad:
            raise ValueError(f"measured algorithm(s) {', '.join(bad)} not one of "
                             f"{', '.join(MEASURED_ALGORITHMS)}")
        object.__setattr__(self, "measured", measured)

    def for_target(self, target) -> RewriteOptions:
        """These options for ``target``: unchanged on CPUs; without Winograd on GPU targets,
        which have no Winograd schedule (a Winograd forced there is an error naming the
        layers)."""
        if "gpu" not in target.keys:
            return self
        forced = sorted(k for k, v in self.algorithms if v != "direct")
        if forced:
            raise ValueError(f"Winograd forced for {', '.join(forced)}, but target "
                             f"{target.kind.name} ({', '.join(target.keys)}) has no Winograd "
                             "schedule (CPU targets only)")
        return dataclasses.replace(self, winograd=False)

    def forced_algorithm(self, layer: str) -> str | None:
        """The algorithm forced for ``layer``, if any."""
        return dict(self.algorithms).get(layer)

    def measured_algorithm(self, layer: str) -> tuple[str, str] | None:
        """``(algorithm, reason)`` chosen for ``layer`` from measured times, if any."""
        return next(((v, why) for k, v, why in self.measured if k == layer), None)

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
