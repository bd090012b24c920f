"""``from_torch``: a PyTorch model to a Relax module with constant weights and layer names.

With :mod:`rt3d_passes.cli` the only module of ``rt3d_passes`` that imports torch (lazily,
inside the function).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tvm
from tvm import relax

from .transform.analysis import CONV3D_OP, LAYER_NAMES_ATTR

__all__ = ["from_exported", "from_torch"]


@relax.expr_functor.visitor
class _WeightParamNames(relax.PyExprVisitor):
    """Names of the parameters used as conv3d weights, in binding order."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def visit_call_(self, call: relax.Call) -> None:
        if call.op.same_as(CONV3D_OP):
            w = call.args[1]
            self.names.append(w.name if isinstance(w, relax.Var) else "")
        super().visit_call_(call)


def from_torch(
    model: Any,
    example_inputs: Sequence[Any],
    *,
    keep_params_as_input: bool = False,
) -> tvm.IRModule:
    """Import a torch model with ``torch.export`` and ``from_exported_program``.

    Weights are bound as constants (what :class:`~rt3d_passes.RewriteKGSConv3D` needs), the
    single output is returned as a tensor rather than a 1-tuple, and the ``main`` function
    carries the torch module name of every conv3d (``rt3d.conv3d_names``) so reports name
    layers as the user does (``conv3b``, ``layer2.0.conv1.0``...).

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode before export.
    example_inputs : sequence of torch.Tensor
        Example positional inputs (their shapes become static).
    keep_params_as_input : bool
        Return weights as parameters of ``main`` (with ``params`` attribute) instead of
        constants; bind them later with ``relax.transform.BindParams``.
    """
    import torch

    model = model.eval()
    with torch.no_grad():
        exported = torch.export.export(model, tuple(example_inputs))
    return from_exported(exported, keep_params_as_input=keep_params_as_input)


def _with_names(mod: tvm.IRModule, names: list[str]) -> tvm.IRModule:
    mod["main"] = mod["main"].with_attr(LAYER_NAMES_ATTR, names)
    return mod


def from_exported(exported: Any, *, keep_params_as_input: bool = False) -> tvm.IRModule:
    """An ``ExportedProgram`` to Relax, as :func:`from_torch` does after exporting."""
    from tvm.relax.frontend.torch import from_exported_program

    mod = from_exported_program(exported, keep_params_as_input=True,
                                unwrap_unit_return_tuple=True)
    finder = _WeightParamNames()
    finder.visit_expr(mod["main"])
    # exported placeholders are named p_<path>; the signature maps them to "conv1.weight"
    to_param = dict(exported.graph_signature.inputs_to_parameters)
    names = [to_param.get(n, n).removesuffix(".weight") for n in finder.names]
    if not keep_params_as_input:
        num_input = int(mod["main"].attrs["num_input"])
        mod, params = relax.frontend.detach_params(mod)
        param_vars = [p.name for p in mod["main"].params[num_input:]]
        mod = relax.transform.BindParams("main", dict(zip(param_vars, params["main"])))(mod)
    return _with_names(mod, names)
