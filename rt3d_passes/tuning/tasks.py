"""Tuning tasks: the RT3D operators of a model, as the ``rt3d`` pipeline produces them."""

from __future__ import annotations

import dataclasses

import numpy as np
import tvm
from tvm import relax
from tvm.target import Target

from schedules.contract import WINOGRAD_CONV3D_ATTR, is_rt3d_conv3d, is_winograd_conv3d

from ..op.kgs_conv3d import geometry_kwargs
from ..op.winograd_conv3d import WinogradGeometry
from ..transform import RewriteOptions, rt3d_rewrite

__all__ = ["TuningTask", "extract_tasks"]


@dataclasses.dataclass
class TuningTask:
    """One KGS conv3d PrimFunc to tune, with the real column offsets of (one of) its layers."""

    name: str
    mod: tvm.IRModule
    weight: int
    """How many layers of the model call this PrimFunc."""
    offsets: np.ndarray
    macs: int
    """Computed MACs of one call (including group padding)."""


def extract_tasks(mod: tvm.IRModule, target: Target, options: RewriteOptions | None = None,
                  fuse_epilogue: bool = True) -> list[TuningTask]:
    """The KGS conv3d tasks of ``mod`` after :func:`~rt3d_passes.transform.rt3d_rewrite`.

    The PrimFuncs are exactly those the ``rt3d`` pipeline with the same options schedules
    (the database is keyed by their structure, attributes included), so a database tuned
    here applies there.
    """
    with target:
        rewritten = rt3d_rewrite(RewriteOptions.of(options).for_target(target),
                                 fuse_epilogue)(mod)
    calls: dict[str, list[relax.Call]] = {}

    def _visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
                expr.op.name == "relax.call_tir":
            calls.setdefault(expr.args[0].name_hint, []).append(expr)

    for func in rewritten.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, _visit)
    tasks = []
    for g_var, func in rewritten.functions_items():
        if not is_rt3d_conv3d(func):
            continue
        uses = calls.get(g_var.name_hint, [])
        if not uses:
            continue
        values, offsets = (uses[0].args[1].fields[i].value.numpy() for i in (1, 2))
        out_shape = [int(v) for v in uses[0].ty.shape.values]
        if is_winograd_conv3d(func):
            # the transformed-domain GEMM: alpha^2 x channels x kept columns x positions
            geo = geometry_kwargs(func.attrs)
            positions = WinogradGeometry(geo["input_shape"], geo["kernel"], geo["padding"],
                                         int(func.attrs[WINOGRAD_CONV3D_ATTR])).positions
            macs = out_shape[0] * positions * int(np.prod(values.shape))
        else:
            macs = int(np.prod(out_shape)) // out_shape[1] * int(np.prod(values.shape))
        tasks.append(TuningTask(
            name=g_var.name_hint,
            mod=tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
            weight=len(uses), offsets=offsets, macs=macs))
    return tasks
