"""A compiler pass that fuses bias, residual add and ReLU / SiLU into RT3D's conv3d calls."""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter

import numpy as np
import tvm
from tvm import IRModule, relax

from schedules.contract import (
    KGS_GEOMETRY_ATTR,
    WINOGRAD_CONV3D_ATTR,
    is_rt3d_conv3d,
    is_winograd_conv3d,
)

from ..op.epilogue import kgs_conv3d_epilogue_te
from ..op.kgs_conv3d import geometry_kwargs
from ..op.winograd_conv3d import winograd_conv3d_te
from .analysis import static_shape

__all__ = ["FuseKGSConv3DEpilogue"]

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")
_ADD = tvm.ir.Op.get("relax.add")
_RELU = tvm.ir.Op.get("relax.nn.relu")
_SILU = tvm.ir.Op.get("relax.nn.silu")
_SIGMOID = tvm.ir.Op.get("relax.sigmoid")
_MULTIPLY = tvm.ir.Op.get("relax.multiply")
_RESHAPE = tvm.ir.Op.get("relax.reshape")


@tvm.transform.module_pass(opt_level=0, name="FuseKGSConv3DEpilogue")
class FuseKGSConv3DEpilogue:
    """Fuse the elementwise ops that follow an RT3D conv3d call into the operator.

    A chain ``call_tir(kgs_conv3d, ...)`` (or ``winograd_conv3d``, whose output transform
    then applies the epilogue) → ``R.add(., bias)`` → ``R.add(., residual)`` →
    ``R.nn.relu(.)`` or SiLU / Swish (``R.nn.silu(.)``, or ``R.multiply(v, R.sigmoid(v))`` as
    torch's importer writes ``nn.SiLU``) (each step optional, in this order; ``bias`` a
    constant with one value per output channel, ``residual`` any tensor of the output's
    shape) becomes one call of :func:`rt3d_passes.op.kgs_conv3d_epilogue_te`. A step is only
    fused when the value before it has no other user (SiLU's sigmoid and multiply aside), so
    nothing is computed twice. The result keeps the chain's last variable; the replaced
    PrimFuncs are removed.

    Notes
    -----
    Run it after :class:`~rt3d_passes.RewriteKGSConv3D` and before ``LegalizeOps``. Torch's
    conv bias, folded batch norm (:class:`~rt3d_passes.FoldBatchNormToConv3D`) and
    ResNet-style ``relu(conv(x) + b + identity)`` blocks all take this form.
    """

    def transform_module(self, mod: IRModule, _ctx: tvm.transform.PassContext) -> IRModule:
        """IRModule-level transformation"""
        chains = {g_var: _find_chains(mod, func) for g_var, func in mod.functions_items()
                  if isinstance(func, relax.Function)}
        chains = {g_var: found for g_var, found in chains.items() if found}
        if not chains:
            return mod
        # operators every call of which gets fused go first, so the fused ones take their
        # names (kgs_conv3d, not kgs_conv3d1)
        fused_calls = Counter(c.call.args[0] for found in chains.values() for c in found)
        refs = _global_refs(mod)
        replaced = [gv for gv, n in fused_calls.items() if refs[gv] == n]
        fuser = _EpilogueFuser(IRModule({gv: f for gv, f in mod.functions_items()
                                         if gv not in replaced}, attrs=mod.attrs))
        for g_var, found in chains.items():
            fuser.chains = {c.end: c for c in found}
            fuser.dead = {v for c in found for v in c.dead}
            fuser.builder_.update_func(g_var, fuser.visit_expr(mod[g_var]))
        return fuser.builder_.get()


@dataclasses.dataclass
class _Chain:
    """One fusable chain: the KGS call, its epilogue, the bindings it replaces."""

    call: relax.Call  # call_tir(kgs_conv3d or winograd_conv3d, (x, values, offsets))
    func: tvm.tirx.PrimFunc
    end: relax.Var  # the variable that holds the fused result
    dead: list[relax.Var]  # variables whose bindings disappear
    bias: np.ndarray | None = None
    residual: relax.Expr | None = None
    relu: bool = False
    silu: bool = False
    # a pointwise conv computed on rows (op.kgs_conv3d.pointwise_rows) is followed by a view
    # back to its output's shape: the epilogue runs on the operator's shape (``flat``), the
    # view (to ``view``) after it
    flat: tuple[int, ...] | None = None
    view: tuple[int, ...] | None = None


def _use_counts(func: relax.Function) -> Counter:
    """How often every variable of ``func`` is read: by the bindings of each dataflow block
    (``relax.analysis.udchain``), of other blocks, and by the function's result."""
    uses: Counter = Counter()
    for block in func.body.blocks:
        if isinstance(block, relax.DataflowBlock):
            for var, users in relax.analysis.udchain(block).items():
                uses[var] += len(users)
        else:
            for binding in block.bindings:
                uses.update(relax.analysis.free_vars(binding.value))
    uses.update(relax.analysis.free_vars(func.body.body))
    return uses


def _channel_bias(expr: relax.Expr, out_shape: tuple[int, ...],
                  values: dict[relax.Var, relax.Expr]) -> np.ndarray | None:
    """``expr`` as a ``[M]`` array if it is a constant holding one value per output channel:
    a ``[1, M, 1, 1, 1]`` / ``[M, 1, 1, 1]`` constant, or ``R.reshape`` of an ``[M]`` one
    (how the torch importer adds a conv bias)."""
    m = out_shape[1]
    if static_shape(expr) not in {(1, m, 1, 1, 1), (m, 1, 1, 1)}:
        return None
    value = values.get(expr, expr) if isinstance(expr, relax.Var) else expr
    if isinstance(value, relax.Call) and value.op.same_as(_RESHAPE):
        value = value.args[0]
    if not isinstance(value, tvm.ir.expr.Constant):
        return None
    data = value.value.numpy()
    if data.size != m or data.dtype != np.float32:
        return None
    return data.reshape(m)


def _find_chains(mod: IRModule, func: relax.Function) -> list[_Chain]:
    uses = _use_counts(func)
    bindings = [b for block in func.body.blocks for b in block.bindings
                if isinstance(b, relax.VarBinding)]
    values = relax.analysis.get_var2val(func)
    consumers: dict[relax.Var, list[relax.VarBinding]] = {}
    for b in bindings:
        if isinstance(b.value, relax.Call):
            for arg in b.value.args:
                if isinstance(arg, relax.Var):
                    consumers.setdefault(arg, []).append(b)
    consumer = {var: found[0] for var, found in consumers.items()}
    chains = []
    claimed: set[relax.Var] = set()  # bindings already fused into a chain
    # later calls first: where two branches meet in a residual add, the branch computed last
    # takes it (its operand from the other branch already exists), so the fused calls keep
    # the order of the original convolutions (a downsample branch taking the add would move
    # its conv after the main branch's)
    for b in reversed(bindings):
        call = b.value
        if not (isinstance(call, relax.Call) and call.op.same_as(_CALL_TIR)
                and isinstance(call.args[0], relax.GlobalVar)):
            continue
        prim = mod[call.args[0]]
        if not (is_rt3d_conv3d(prim) and KGS_GEOMETRY_ATTR in prim.attrs):
            continue
        out_shape = static_shape(b.var)
        if out_shape is None:
            continue
        chain = _Chain(call=call, func=prim, end=b.var, dead=[])
        view = consumer.get(b.var)
        if (uses[b.var] == 1 and view is not None and view.value.op.same_as(_RESHAPE)
                and not is_winograd_conv3d(prim) and static_shape(view.var) is not None
                and len(static_shape(view.var)) == 5
                and static_shape(view.var)[:2] == out_shape[:2]):
            chain.flat, chain.view = out_shape, static_shape(view.var)
            chain.dead.append(b.var)
            chain.end, out_shape = view.var, chain.view
        viewed = len(chain.dead)
        stage = 0  # 0: bias may follow, 1: residual may follow, 2: relu may follow
        while True:
            swish = _swish(chain.end, consumers, uses) if stage <= 2 else None
            if swish is not None:
                sigmoid, nxt = swish
                chain.dead += [chain.end, sigmoid.var]
                chain.end, chain.silu = nxt.var, True
                break
            if uses[chain.end] != 1 or chain.end not in consumer:
                break
            nxt = consumer[chain.end]
            if nxt.var in claimed:
                # a residual add that another chain (the other branch) already took
                break
            value = nxt.value
            if value.op.same_as(_ADD) and stage <= 1:
                other = value.args[1] if value.args[0].same_as(chain.end) else value.args[0]
                bias = _channel_bias(other, out_shape, values) if stage == 0 else None
                if bias is not None:
                    chain.bias, stage = bias, 1
                elif static_shape(other) == out_shape and not other.same_as(chain.end):
                    chain.residual, stage = other, 2
                else:
                    break
            elif value.op.same_as(_RELU) and stage <= 2:
                chain.relu, stage = True, 3
            elif value.op.same_as(_SILU) and stage <= 2:
                chain.silu, stage = True, 3
            else:
                break
            chain.dead.append(chain.end)
            chain.end = nxt.var
            if stage == 3:
                break
        if len(chain.dead) > viewed:
            chains.append(chain)
            claimed.update(chain.dead[1:])
            claimed.add(chain.end)
    return chains


def _swish(value: relax.Var, consumers: dict, uses: Counter):
    """``(s = R.sigmoid(value), y = R.multiply(value, s))`` when those are the only two uses
    of ``value`` and ``s`` is read only by that multiply (torch's ``nn.SiLU``), else None."""
    found = consumers.get(value, [])
    if uses[value] != 2 or len(found) != 2:
        return None
    sig = next((b for b in found if b.value.op.same_as(_SIGMOID)), None)
    mul = next((b for b in found if b.value.op.same_as(_MULTIPLY)), None)
    if sig is None or mul is None or uses[sig.var] != 1:
        return None
    a, b = mul.value.args
    if not ((a.same_as(value) and b.same_as(sig.var)) or (b.same_as(value) and a.same_as(sig.var))):
        return None
    return sig, mul


@relax.expr_functor.mutator
class _EpilogueFuser(relax.PyExprMutator):
    """Drops the chains' inner bindings and rebinds each chain's last variable."""

    def __init__(self, mod: IRModule):
        super().__init__(mod)
        self.chains: dict[relax.Var, _Chain] = {}
        self.dead: set[relax.Var] = set()

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if binding.var in self.dead:
            return  # read only by the next step of its chain, which is fused
        chain = self.chains.get(binding.var)
        if chain is None:
            super().visit_var_binding_(binding)
            return
        self.builder_.emit_normalized(relax.VarBinding(binding.var, self._fused(chain)))

    def _fused(self, chain: _Chain) -> relax.Expr:
        x, values, offsets = (self.visit_expr(a) for a in chain.call.args[1].fields)
        extra = []
        if chain.bias is not None:
            extra.append(relax.const(chain.bias))
        if chain.residual is not None:
            residual = self.visit_expr(chain.residual)
            if chain.view is not None:
                residual = self.builder_.emit(relax.op.reshape(residual, list(chain.flat)))
            extra.append(residual)
        attrs = {str(k): v for k, v in chain.func.attrs.items()
                 if str(k) not in ("global_symbol",)}
        if is_winograd_conv3d(chain.func):
            operator = functools.partial(
                winograd_conv3d_te, tile=int(chain.func.attrs[WINOGRAD_CONV3D_ATTR]))
        else:
            operator = kgs_conv3d_epilogue_te
        call = self.builder_.call_te(
            operator, x, values, offsets, *extra,
            out_channels=static_shape(chain.end)[1], **geometry_kwargs(chain.func.attrs),
            bias=chain.bias is not None,
            residual=chain.residual is not None, relu=chain.relu, silu=chain.silu,
            primfunc_name_hint=chain.call.args[0].name_hint, primfunc_attrs=attrs,
        )
        if chain.view is not None:
            return self.builder_.normalize(
                relax.op.reshape(self.builder_.emit(call), list(chain.view)))
        return self.builder_.normalize(call)


def _global_refs(mod: IRModule) -> Counter:
    """How many times the Relax functions of ``mod`` refer to each global."""
    refs: Counter = Counter()

    @relax.expr_functor.visitor
    class _Refs(relax.PyExprVisitor):
        def visit_global_var_(self, gv: relax.GlobalVar) -> None:
            refs[gv] += 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            _Refs().visit_expr(func)
    return refs
