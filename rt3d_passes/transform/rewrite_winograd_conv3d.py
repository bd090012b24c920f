"""A compiler pass that rewrites the conv3d layers the cost model gives to Winograd."""

from __future__ import annotations

import tvm
from tvm import IRModule, relax

from schedules.contract import WINOGRAD_BGEMM_BLOCK

from ..op.winograd_conv3d import (
    WinogradGeometry,
    winograd_conv3d_attrs,
    winograd_conv3d_te,
    winograd_offsets,
    winograd_pack_weights,
)
from .analysis import (
    LAYER_NAMES_ATTR,
    Conv3DCallRewriter,
    Conv3DReport,
    analyze_function,
    check_forced_layers,
    conv3d_weight,
)
from .options import RewriteOptions

__all__ = ["RewriteWinogradConv3D"]


@tvm.transform.module_pass(opt_level=0, name="RewriteWinogradConv3D")
class RewriteWinogradConv3D:
    """Rewrite the conv3d layers whose analysis chose Winograd into RT3D's Winograd operator.

    Every ``R.nn.conv3d(x, W)`` whose report (:func:`rt3d_passes.inspect` with the same
    options) says ``algorithm == "winograd"`` becomes ``R.call_tir(winograd_conv3d, (x, U,
    offsets))``: ``U`` the weights transformed at compile time (only the ``(c, kd)`` planes an
    output group keeps), ``offsets`` their places in the transformed input
    (:func:`rt3d_passes.op.winograd_conv3d_te`). The layers it rewrites are dropped from the
    function's layer names, so a pass that runs after it names the remaining layers right.

    Parameters
    ----------
    options : RewriteOptions, optional
        As for :class:`~rt3d_passes.RewriteKGSConv3D`; ``winograd`` and ``algorithms`` decide.

    Raises
    ------
    ValueError
        When ``algorithms`` names no conv3d layer of the module, or forces Winograd on a
        layer that cannot run it.

    Notes
    -----
    Run it before :class:`~rt3d_passes.RewriteKGSConv3D` (which would take every layer) and
    ``LegalizeOps``; :class:`~rt3d_passes.SelectConv3DAlgorithm` runs both in that order.
    """

    def __init__(self, options: RewriteOptions | None = None):
        self.options = options or RewriteOptions()

    def transform_module(self, mod: IRModule, _ctx: tvm.transform.PassContext) -> IRModule:
        """IRModule-level transformation"""
        rewriter = Conv3DCallRewriter(mod, _takes, _emit_winograd_conv3d)
        analyzed = {g_var: analyze_function(func, g_var.name_hint, self.options)
                    for g_var, func in mod.functions_items()
                    if isinstance(func, relax.Function)}
        # every conv3d is still here: a forced name that matches none is an error
        check_forced_layers([r for reports in analyzed.values() for r in reports],
                            self.options)
        for g_var, reports in analyzed.items():
            func = mod[g_var]
            if not any(_takes(r) for r in reports):
                continue
            rewriter.reports = list(reports)
            new = rewriter.visit_expr(func)
            if func.attrs and LAYER_NAMES_ATTR in func.attrs:
                left = [r.layer for r in reports if not _takes(r)]
                new = new.with_attr(LAYER_NAMES_ATTR, left)
            rewriter.builder_.update_func(g_var, new)
        return rewriter.builder_.get()


def _takes(report: Conv3DReport) -> bool:
    return report.rewrite and report.algorithm == "winograd"


def _emit_winograd_conv3d(bb: relax.BlockBuilder, call: relax.Call, report: Conv3DReport):
    weight = conv3d_weight(call)
    geo = WinogradGeometry(report.input_shape, weight.shape[2:], report.padding,
                           report.winograd_tile)
    values, columns, counts = winograd_pack_weights(weight, geo.tile, report.winograd_group_m)
    return bb.call_te(
        winograd_conv3d_te,
        call.args[0],
        relax.const(values),
        relax.const(winograd_offsets(columns, counts, geo)),
        out_channels=int(weight.shape[0]),
        kernel=geo.kernel,
        padding=geo.padding,
        tile=geo.tile,
        primfunc_name_hint=WINOGRAD_BGEMM_BLOCK.replace("bgemm", "conv3d"),
        primfunc_attrs=winograd_conv3d_attrs(geo, report.winograd_group_m),
    )
