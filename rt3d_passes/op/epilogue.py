"""The KGS conv3d operator with its elementwise epilogue: bias, residual add, ReLU or SiLU.

``y = act(kgs_conv3d(x) + bias[m] + residual)`` (each part optional; ``act`` ReLU or SiLU /
Swish, the latter :func:`~rt3d_passes.op.sigmoid.silu_expr`) as one PrimFunc: the
epilogue is a separate TE block (:data:`KGS_EPILOGUE_BLOCK`) that the schedules inline into
the accumulator write-back, so the output is written once instead of being re-read and
re-written by up to three elementwise kernels (R(2+1)D spent ~20% of its time in them).
"""

from __future__ import annotations

from typing import Any

from tvm import te, tirx

from schedules.contract import KGS_EPILOGUE_BLOCK, NO_SCHEDULE_RULE

from .kgs_conv3d import kgs_conv3d_te
from .sigmoid import silu_expr

__all__ = ["epilogue_te", "kgs_conv3d_epilogue_te"]


def kgs_conv3d_epilogue_te(
    x: te.Tensor,
    values: te.Tensor,
    offsets: te.Tensor,
    *extra: te.Tensor,
    bias: bool = False,
    residual: bool = False,
    relu: bool = False,
    silu: bool = False,
    **conv: Any,
) -> te.Tensor:
    """TE compute of the KGS conv3d followed by its epilogue.

    Parameters
    ----------
    x, values, offsets :
        As in :func:`rt3d_passes.op.kgs_conv3d_te`.
    *extra : te.Tensor
        The bias ``[M]`` when ``bias``, then the residual ``[N, M, OD, OH, OW]`` when
        ``residual``, in that order.
    bias, residual, relu, silu : bool
        Which parts of the epilogue to apply (in the order bias, residual, then ReLU or
        SiLU).
    **conv :
        The convolution's keyword arguments (``out_channels``, ``kernel``, ``strides``,
        ``padding``, ``dilation``), as in :func:`rt3d_passes.op.kgs_conv3d_te`.

    Returns
    -------
    y : te.Tensor
        ``[N, M, OD, OH, OW]``.
    """
    if len(extra) != int(bias) + int(residual):
        raise ValueError(f"expected {int(bias) + int(residual)} extra tensors (bias={bias}, "
                         f"residual={residual}), got {len(extra)}")
    conv = kgs_conv3d_te(x, values, offsets, **conv)
    bias_t = extra[0] if bias else None
    res_t = extra[-1] if residual else None
    # the operator's own rule schedules it (inlined into the write-back)
    return epilogue_te(conv, bias_t, res_t, relu, KGS_EPILOGUE_BLOCK, silu=silu)


def epilogue_te(conv: te.Tensor, bias: te.Tensor | None, residual: te.Tensor | None,
                relu: bool, name: str, silu: bool = False) -> te.Tensor:
    """``act(conv + bias[m] + residual)`` (each part optional; ``act`` ReLU when ``relu``,
    SiLU ``v * sigmoid(v)`` when ``silu``) as one elementwise block named ``name``, marked for
    the operator's own schedule rule (which inlines it into the convolution's write-back).
    Shared by the direct and the Winograd operators."""
    if relu and silu:
        raise ValueError("an epilogue applies ReLU or SiLU, not both")
    shape = tuple(int(s) for s in conv.shape)
    if bias is not None and tuple(int(s) for s in bias.shape) != (shape[1],):
        raise ValueError(f"bias shape {tuple(bias.shape)} is not ({shape[1]},)")
    if residual is not None and tuple(int(s) for s in residual.shape) != shape:
        raise ValueError(f"residual shape {tuple(residual.shape)} is not the output {shape}")

    def _epilogue(n, m, d, h, w):
        v = conv[n, m, d, h, w]
        if bias is not None:
            v = v + bias[m]
        if residual is not None:
            v = v + residual[n, m, d, h, w]
        if relu:
            v = tirx.max(v, tirx.const(0, conv.dtype))
        if silu:
            v = silu_expr(v)
        return v

    return te.compute(shape, _epilogue, name=name, attrs={"schedule_rule": NO_SCHEDULE_RULE})
