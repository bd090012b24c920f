"""A compiler pass that gives sigmoid and SiLU a vectorizable float32 ``exp``."""

from __future__ import annotations

import tvm
from tvm import IRModule, relax
from tvm.relax import Call, Expr, PyExprMutator, expr_functor

from ..op.sigmoid import sigmoid_te, silu_te

__all__ = ["VectorizeSigmoid"]

_REWRITES = {"relax.sigmoid": (sigmoid_te, "sigmoid"), "relax.nn.silu": (silu_te, "silu")}


@expr_functor.mutator
class _SigmoidMutator(PyExprMutator):
    def visit_call_(self, call: Call) -> Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name not in _REWRITES:
            return call
        if getattr(call.args[0].ty, "dtype", None) != "float32":
            return call
        te_func, name = _REWRITES[call.op.name]
        return self.builder_.call_te(te_func, call.args[0], primfunc_name_hint=name)


@tvm.transform.module_pass(opt_level=0, name="VectorizeSigmoid")
class VectorizeSigmoid:
    """Rewrite float32 ``R.sigmoid`` and ``R.nn.silu`` into TE functions whose ``exp`` is
    polynomial arithmetic LLVM vectorizes (:mod:`rt3d_passes.op.sigmoid`).

    TVM's legalization computes ``exp`` with one C library call per element, which nothing
    vectorizes; X3D's Swish and squeeze-excitation chains spent 7x PyTorch's time there.
    The replacement is as accurate as PyTorch's sigmoid (about 1 ulp); the new functions are
    elementwise, so ``FuseOps`` fuses them with the multiplies around them as before.

    Notes
    -----
    Other dtypes are left to TVM. The ``rt3d`` pipeline runs it on CPU targets
    (``vectorize_sigmoid=False`` turns it off); GPUs have a native ``exp``.
    """

    def transform_module(self, mod: IRModule, _ctx: tvm.transform.PassContext) -> IRModule:
        """Module-level transformation"""
        mutator = _SigmoidMutator(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                mutator.builder_.update_func(gv, mutator.visit_expr(func))
        return mutator.builder_.get()
