"""A compiler pass that folds inference-mode batch norm into the preceding conv3d's weights."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import IRModule, relax
from tvm.relax.dpl import TupleGetItemPattern, is_const, is_op, rewrite_call, wildcard

__all__ = ["FoldBatchNormToConv3D"]


@relax.transform.function_pass(opt_level=0, name="FoldBatchNormToConv3D")
class FoldBatchNormToConv3D:
    """Fold ``batch_norm(conv3d(x, W) [+ c], gamma, beta, mean, var)[0]`` into
    ``conv3d(x, W') + b``.

    With ``s = gamma / sqrt(var + eps)``: ``W' = W * s`` per output channel and
    ``b = beta + (c - mean) * s``, where ``c`` is an optional per-channel conv bias (a constant,
    or ``R.reshape`` of one, as torch's importer writes it; ``c = 0`` without one). The new
    weight is computed here, as a constant, so that
    :class:`~rt3d_passes.RewriteKGSConv3D` sees it; scaling an output channel keeps every zero
    of a KGS or vanilla pattern exact. 3D CNNs with batch norm (R(2+1)D, S3D) otherwise spend a
    quarter of their time in the normalization.

    Notes
    -----
    Run it before :class:`~rt3d_passes.RewriteKGSConv3D` (the ``rt3d`` pipeline does). Only
    inference-mode batch norm over the channel axis of an NCDHW/OIDHW float32 conv3d with
    constant weight and statistics is folded; anything else is left as it is.
    """

    def __init__(self):
        data, weight = wildcard(), is_const()
        conv = is_op("relax.nn.conv3d")(data, weight)
        bias = is_const() | is_op("relax.reshape")(is_const(), wildcard())
        biased = is_op("relax.add")(conv, bias)
        gamma, beta, mean, var = is_const(), is_const(), is_const(), is_const()
        bn = is_op("relax.nn.batch_norm")(conv | biased, gamma, beta, mean, var)
        self.parts = dict(data=data, weight=weight, conv=conv, bias=bias, bn=bn, gamma=gamma,
                          beta=beta, mean=mean, var=var)
        self.pattern = TupleGetItemPattern(bn, 0)

    def transform_function(self, func: relax.Function, _mod: IRModule,
                           _ctx: tvm.transform.PassContext) -> relax.Function:
        """Function-level transformation"""
        return rewrite_call(self.pattern, self._fold, func)

    def _fold(self, expr: relax.Expr, matches) -> relax.Expr:
        p = self.parts
        data, weight, conv, bn = p["data"], p["weight"], p["conv"], p["bn"]
        gamma, beta, mean, var = p["gamma"], p["beta"], p["mean"], p["var"]
        conv_call, bn_call = matches[conv], matches[bn]
        c_attrs, b_attrs = conv_call.attrs, bn_call.attrs
        if (bool(b_attrs.training) or int(b_attrs.axis) != 1
                or c_attrs.data_layout != "NCDHW" or c_attrs.kernel_layout != "OIDHW"
                or c_attrs.out_layout != "NCDHW"):
            return expr
        w = matches[weight].value.numpy()
        if w.dtype != np.float32:
            return expr
        stats = [matches[q].value.numpy().astype(np.float64) for q in (gamma, beta, mean, var)]
        g, b, mu, v = stats
        if not b_attrs.scale:
            g = np.ones_like(g)
        if not b_attrs.center:
            b = np.zeros_like(b)
        c = np.zeros_like(mu)
        if p["bias"] in matches:
            const = matches[p["bias"]]
            const = const.args[0] if isinstance(const, relax.Call) else const
            c = const.value.numpy().astype(np.float64)
            if c.size != mu.size:  # not one value per output channel: leave it alone
                return expr
            c = c.reshape(-1)
        scale = g / np.sqrt(v + float(b_attrs.epsilon))
        folded = (w * scale.reshape(-1, 1, 1, 1, 1)).astype(np.float32)
        bias = (b + (c - mu) * scale).astype(np.float32).reshape(1, -1, 1, 1, 1)
        new_conv = relax.Call(conv_call.op, [matches[data], relax.const(folded)], c_attrs)
        return relax.op.add(new_conv, relax.const(bias))
