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
    CONV3D_OP,
    LAYER_NAMES_ATTR,
    Conv3DReport,
    analyze_function,
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

    Notes
    -----
    Run it before :class:`~rt3d_passes.RewriteKGSConv3D` (which would take every layer) and
    ``LegalizeOps``; :class:`~rt3d_passes.SelectConv3DAlgorithm` runs both in that order.
    """

    def __init__(self, options: RewriteOptions | None = None):
        self.options = options or RewriteOptions()

    def transform_module(self, mod: IRModule, _ctx: tvm.transform.PassContext) -> IRModule:
        """IRModule-level transformation"""
        rewriter = _WinogradRewriter(mod)
        for g_var, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            reports = analyze_function(func, g_var.name_hint, self.options)
            if not any(r.rewrite and r.algorithm == "winograd" for r in reports):
                continue
            rewriter.reports = list(reports)
            new = rewriter.visit_expr(func)
            if func.attrs and LAYER_NAMES_ATTR in func.attrs:
                left = [r.layer for r in reports
                        if not (r.rewrite and r.algorithm == "winograd")]
                new = new.with_attr(LAYER_NAMES_ATTR, left)
            rewriter.builder_.update_func(g_var, new)
        return rewriter.builder_.get()


@relax.expr_functor.mutator
class _WinogradRewriter(relax.PyExprMutator):
    """Replaces the conv3d calls whose report chose Winograd (reports in binding order)."""

    def __init__(self, mod: IRModule):
        super().__init__(mod)
        self.reports: list[Conv3DReport] = []

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = self.visit_expr_post_order(call)
        if not call.op.same_as(CONV3D_OP):
            return call
        report = self.reports.pop(0)
        if not (report.rewrite and report.algorithm == "winograd"):
            return call
        return _emit_winograd_conv3d(self.builder_, call, report)


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
