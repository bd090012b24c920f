"""Sigmoid and SiLU (Swish) as float32 arithmetic LLVM vectorizes.

TVM lowers ``sigmoid`` to ``1 / (1 + exp(-x))`` with ``exp`` a call to the C library's
``expf``, one element at a time: on X3D-S the Swish and squeeze-excitation chains took 35 ms
of 95, 7x PyTorch's vectorized time. Here ``exp`` is Cephes' ``expf`` written out (Cody-Waite
range reduction with ln 2 in two parts, a degree-6 polynomial, the power of two built in the
exponent bits): plain multiplies, adds, ``floor`` and shifts, which LLVM vectorizes.

Accuracy (float32, measured against float64 on 4 M points in [-90, 90], see the tests): the
sigmoid's largest relative error is 1.5e-7 (about 1 ulp), the same as PyTorch's vectorized
sigmoid. The argument of ``exp`` is clamped to [-87, 88], so ``sigmoid(x)`` for x < -88 is
about 6e-39 instead of smaller denormals or 0 (an absolute error below 1e-38).
"""

from __future__ import annotations

from tvm import te, tirx

__all__ = ["sigmoid_te", "silu_expr", "silu_te", "vector_exp"]

# Cephes expf: ln 2 split in two for an exact range reduction, then the polynomial of e^r - 1 - r
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
_LOG2E = 1.44269504088896341
_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
         1.6666665459e-1, 5.0000001201e-1)
_MIN_ARG, _MAX_ARG = -87.0, 88.0  # 2^n stays a normal float32: n in [-126, 127]


def _f32(v: float) -> tirx.PrimExpr:
    return tirx.const(v, "float32")


def vector_exp(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``exp(x)`` of a float32 expression, ``x`` clamped to [-87, 88], as vectorizable
    arithmetic (relative error about 1e-7)."""
    x = tirx.max(tirx.min(x, _f32(_MAX_ARG)), _f32(_MIN_ARG))
    n = tirx.floor(x * _f32(_LOG2E) + _f32(0.5))
    r = x - n * _f32(_LN2_HI) - n * _f32(_LN2_LO)
    p = _f32(_POLY[0])
    for c in _POLY[1:]:
        p = p * r + _f32(c)
    p = p * r * r + r + _f32(1.0)
    two_n = tirx.reinterpret("float32", tirx.shift_left(n.astype("int32") + 127, 23))
    return p * two_n


def silu_expr(v: tirx.PrimExpr) -> tirx.PrimExpr:
    """SiLU / Swish of a float32 expression, ``v * sigmoid(v) = v / (1 + exp(-v))``, with
    :func:`vector_exp` (also the conv epilogue's activation)."""
    return v / (_f32(1.0) + vector_exp(-v))


def sigmoid_te(x: te.Tensor) -> te.Tensor:
    """``1 / (1 + exp(-x))`` elementwise, with :func:`vector_exp` (float32)."""
    one = _f32(1.0)
    return te.compute(x.shape, lambda *i: one / (one + vector_exp(-x(*i))), name="sigmoid",
                      tag="elemwise")


def silu_te(x: te.Tensor) -> te.Tensor:
    """SiLU / Swish elementwise (:func:`silu_expr`)."""
    return te.compute(x.shape, lambda *i: silu_expr(x(*i)), name="silu", tag="elemwise")
