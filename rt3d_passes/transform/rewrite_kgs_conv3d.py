"""A compiler pass that rewrites pruned ``R.nn.conv3d`` layers into RT3D's sparse KGS operator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tvm
from tvm import IRModule, relax
from tvm.target import Target

from schedules.contract import KGS_CONV3D_BLOCK
from schedules.cpu_kgs_conv3d import (
    column_multiple,
    copy_layout,
    row_vector_lanes,
    tiles_channels,
)

from ..op.kgs_conv3d import (
    Conv3DGeometry,
    channel_multiplier,
    column_offsets,
    kgs_conv3d_attrs,
    kgs_conv3d_te,
    pad_columns,
    pointwise_rows,
    reads_flat_input,
    shares_taps,
    whole_vector_rows,
)
from ..sparsity import compact
from .analysis import (
    LAYER_NAMES_ATTR,
    Conv3DCallRewriter,
    Conv3DReport,
    analyze_function,
    conv3d_weight,
)
from .options import RewriteOptions

__all__ = ["RewriteKGSConv3D"]


@tvm.transform.module_pass(opt_level=0, name="RewriteKGSConv3D")
class RewriteKGSConv3D:
    """Rewrite conv3d layers with constant, structurally pruned weights into sparse KGS calls.

    Every ``R.nn.conv3d(x, W)`` whose weight ``W`` is a constant with an exact vanilla or KGS
    zero pattern (see :mod:`rt3d_passes.sparsity`) and at least ``min_mac_reduction`` fewer
    MACs becomes ``R.call_tir(kgs_conv3d, (x, values, offsets))``: the compacted weights and
    the column offsets are new constants, and the PrimFunc is the TE compute of
    :func:`rt3d_passes.op.kgs_conv3d_te`, carrying the ``rt3d.kgs_conv3d`` attribute
    and a ``schedule_rule`` block annotation that select its schedule. Nothing else in the
    module changes.

    Parameters
    ----------
    options : RewriteOptions, optional
        What is rewritten (default: :class:`~rt3d_passes.RewriteOptions`'s defaults, the
        ``rt3d`` pipeline's).
    min_mac_reduction, group, include_dense, stray_tolerance :
        Replace the field of the same name of ``options`` when given (see
        :class:`~rt3d_passes.RewriteOptions`): ``include_dense=False`` rewrites only the
        pruned layers.

    Notes
    -----
    Run it before ``LegalizeOps``, on a module whose conv3d weights are constants: import
    with ``from_exported_program(..., keep_params_as_input=False)`` (or
    :func:`rt3d_passes.from_torch`), or bind parameters first with
    ``relax.transform.BindParams``. Weights that are function parameters are left dense.
    The generated PrimFuncs are opaque to ``FuseOps``; give them a schedule with
    ``dlight.ApplyDefaultSchedule(schedules.default_rules(target))`` or MetaSchedule.
    """

    def __init__(
        self,
        options: RewriteOptions | None = None,
        *,
        min_mac_reduction: float | None = None,
        group: Sequence[int] | None = None,
        include_dense: bool | None = None,
        stray_tolerance: float | None = None,
    ):
        self.options = RewriteOptions.of(options, min_mac_reduction=min_mac_reduction,
                                         group=group, include_dense=include_dense,
                                         stray_tolerance=stray_tolerance)

    def transform_module(self, mod: IRModule, _ctx: tvm.transform.PassContext) -> IRModule:
        """IRModule-level transformation"""
        rewriter = Conv3DCallRewriter(mod, lambda r: r.rewrite, _emit_kgs_conv3d)
        for g_var, func in mod.functions_items():
            if isinstance(func, relax.Function):
                reports = analyze_function(func, g_var.name_hint, self.options)
                if any(r.rewrite for r in reports):
                    rewriter.reports = list(reports)
                    new = rewriter.visit_expr(func)
                    if func.attrs and LAYER_NAMES_ATTR in func.attrs:
                        # the names of the conv3d calls left, as RewriteWinogradConv3D does
                        new = new.with_attr(LAYER_NAMES_ATTR,
                                            [r.layer for r in reports if not r.rewrite])
                    rewriter.builder_.update_func(g_var, new)
        return rewriter.builder_.get()


def _emit_kgs_conv3d(bb: relax.BlockBuilder, call: relax.Call, report: Conv3DReport):
    weight = conv3d_weight(call)
    packed = compact(weight, report.group, name=f"{report.function}/{report.layer}")
    data, input_shape, strides = call.args[0], report.input_shape, report.strides
    if (tuple(weight.shape[2:]) == (1, 1, 1) and max(strides) > 1
            and not any(report.padding)):
        # a strided 1x1x1 conv (ResNet downsampling) reads one voxel in s_d*s_h*s_w: slice
        # them out first, so the operator runs at unit stride with vectors along W instead of
        # gathering strided inputs (measured 4-5 G MAC/s on R(2+1)D's downsample layers)
        _, _, d, h, w = input_shape
        data = bb.emit(relax.op.strided_slice(data, axes=[2, 3, 4], begin=[0, 0, 0],
                                              end=[d, h, w], strides=list(strides)))
        input_shape = tuple(int(v) for v in data.ty.shape)
        strides = (1, 1, 1)
    geo = Conv3DGeometry(input_shape, weight.shape[2:], strides, report.padding,
                         report.dilation)
    rows = pointwise_rows(geo)
    if rows is not None:
        # a pointwise conv on maps whose W fills no whole vectors: computed on rows of whole
        # vectors over the flattened positions, then viewed back to its output shape
        # (FuseKGSConv3DEpilogue looks through the view)
        out_shape = geo.output_shape(weight.shape[0])
        geo = Conv3DGeometry(rows, (1, 1, 1))
    if reads_flat_input(geo):
        # no padding: the operator gathers from a flat view (a reshape, no copy)
        data = bb.emit(relax.op.reshape(data, [input_shape[0], geo.padded_size]))
    multiplier = channel_multiplier(packed, geo)
    # rows of whole vectors along W and column counts the column blocks divide, where the
    # target wants them (the pipeline and tuning's task extraction both rewrite inside the
    # target's scope)
    target = Target.current(allow_none=True)
    layout = copy_layout(target, geo.kernel, any(geo.padding), bool(multiplier),
                         blockable=multiplier == 1 and shares_taps(packed),
                         output_w=geo.output_spatial[2],
                         padded_volume=int(np.prod(geo.padded_spatial)))
    if layout != geo.copy_layout:
        geo = Conv3DGeometry(geo.input_shape, geo.kernel, geo.strides, geo.padding,
                             geo.dilation, layout)
    extent = 0 if multiplier else whole_vector_rows(geo, row_vector_lanes(target))
    if not multiplier and tiles_channels(geo.kernel, int(np.prod(geo.output_spatial))):
        packed = pad_columns(packed, column_multiple(target, packed.max_columns, geo.kernel))
    call = bb.call_te(
        kgs_conv3d_te,
        data,
        relax.const(packed.values),
        relax.const(column_offsets(packed, geo)),
        int(weight.shape[0]),
        geo.kernel,
        geo.strides,
        geo.padding,
        geo.dilation,
        geo.input_shape,
        multiplier,
        extent,
        geo.copy_layout,
        primfunc_name_hint=KGS_CONV3D_BLOCK,
        primfunc_attrs=kgs_conv3d_attrs(geo, packed.group[0], multiplier, extent),
    )
    if rows is None:
        return call
    return relax.op.reshape(bb.emit(call), list(out_shape))
