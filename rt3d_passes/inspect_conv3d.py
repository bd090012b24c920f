"""``rt3d_passes.inspect``: the per-layer conv3d report of a Relax module."""

from __future__ import annotations

from collections.abc import Sequence

from tvm import IRModule, relax

from .conv3d_analysis import Conv3DReport, analyze_function
from .sparsity import DEFAULT_STRAY_TOLERANCE

__all__ = ["inspect"]


def inspect(
    mod: IRModule,
    min_mac_reduction: float = 1.2,
    group: Sequence[int] | None = None,
    include_dense: bool = False,
    stray_tolerance: float = DEFAULT_STRAY_TOLERANCE,
) -> list[Conv3DReport]:
    """Report every ``R.nn.conv3d`` of ``mod``: scheme, group, MACs, and what
    :class:`~rt3d_passes.RewriteKGSConv3D` with the same options would do, and why.

    Print the result with :func:`rt3d_passes.format_reports`.
    """
    options = dict(group=group, min_mac_reduction=min_mac_reduction,
                   include_dense=include_dense, stray_tolerance=stray_tolerance)
    reports: list[Conv3DReport] = []
    for g_var, func in mod.functions_items():
        if isinstance(func, relax.Function):
            reports.extend(analyze_function(func, g_var.name_hint, **options))
    return reports
