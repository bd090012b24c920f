"""A compiler pass that gives every conv3d layer its algorithm: Winograd or RT3D's direct
kernel (sparse or dense), as the cost model of :mod:`.algorithm` or the user chooses."""

from __future__ import annotations

from collections.abc import Mapping

import tvm
from tvm import IRModule

from .options import RewriteOptions
from .rewrite_kgs_conv3d import RewriteKGSConv3D
from .rewrite_winograd_conv3d import RewriteWinogradConv3D

__all__ = ["SelectConv3DAlgorithm"]


@tvm.transform.module_pass(opt_level=0, name="SelectConv3DAlgorithm")
class SelectConv3DAlgorithm:
    """Rewrite each conv3d into the operator its analysis chose.

    Layers the cost model (:func:`rt3d_passes.transform.algorithm.choose_algorithm`) or
    ``algorithms`` give to Winograd become :class:`RewriteWinogradConv3D` calls; the rest go
    to :class:`~rt3d_passes.RewriteKGSConv3D` (the direct operator, sparse or dense). What a
    layer gets and why is in :func:`rt3d_passes.inspect`'s report (its ``kernel`` column).

    Parameters
    ----------
    options : RewriteOptions, optional
        What is rewritten; ``winograd=False`` keeps every layer direct.
    winograd : bool, optional
        Replaces ``options.winograd`` when given.
    algorithms : mapping of layer name to algorithm, optional
        Replaces ``options.algorithms`` when given (``"direct"``, ``"winograd"``,
        ``"winograd2"``, ``"winograd4"``).

    Raises
    ------
    ValueError
        When a forced algorithm names no layer of the module, or forces Winograd on a layer
        that cannot run it (both name the layer).

    Notes
    -----
    Run it after :class:`~rt3d_passes.FoldBatchNormToConv3D` (so the folded weights are
    costed) and before ``LegalizeOps``.
    """

    def __init__(self, options: RewriteOptions | None = None, *, winograd: bool | None = None,
                 algorithms: Mapping[str, str] | None = None):
        self.options = RewriteOptions.of(options, winograd=winograd, algorithms=algorithms)

    def transform_module(self, mod: IRModule, _ctx: tvm.transform.PassContext) -> IRModule:
        """IRModule-level transformation"""
        # the Winograd pass runs first, on every conv3d: it checks the forced layer names
        mod = RewriteWinogradConv3D(self.options)(mod)
        return RewriteKGSConv3D(self.options)(mod)
