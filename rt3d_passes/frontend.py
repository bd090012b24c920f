"""``from_torch``: a PyTorch model to a Relax module with constant weights and layer names.

The only module of ``rt3d_passes`` that imports torch (lazily, inside the function).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import tvm
from tvm import relax

from .conv3d_analysis import CONV3D_OP, LAYER_NAMES_ATTR

__all__ = [
    "default_preset",
    "from_exported",
    "from_torch",
    "load_model_file",
    "model_from_spec",
]


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


def load_model_file(
    path: str,
    model: str | None = None,
    input_shape: Sequence[int] | None = None,
) -> tvm.IRModule:
    """Import a saved model for inspection or compilation.

    Accepts an RT3D checkpoint (``rt3d prune``'s output: a dict with ``arch`` and
    ``state_dict``), a plain state dict of a zoo model (``model`` names it), or an exported
    program saved with ``torch.export.save`` (``.pt2``).
    """
    import torch

    if str(path).endswith(".pt2"):
        exported = torch.export.load(path)
        return from_exported(exported)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "arch" in payload and "state_dict" in payload:
        from rt3d_prune.checkpoint import load_checkpoint

        net, meta = load_checkpoint(path)
        shape = input_shape or meta["input_shape"]
    elif isinstance(payload, dict) and payload and all(
        isinstance(v, torch.Tensor) for v in payload.values()
    ):
        from rt3d_prune.models import build_model, default_input_shape

        if model is None:
            raise ValueError(f"{path}: a plain state dict; name its zoo model with --model")
        net = build_model(model)
        try:
            net.load_state_dict(payload)
        except RuntimeError as err:  # missing/unexpected keys or shape mismatches
            first = str(err).strip().splitlines()
            raise ValueError(
                f"{path}: state dict does not fit zoo model {model!r}: "
                f"{' '.join(line.strip() for line in first[:3])}"
            ) from None
        shape = input_shape or default_input_shape(model)
    else:
        raise ValueError(
            f"{path}: not an RT3D checkpoint, a state dict or an exported program (.pt2)"
        )
    return from_torch(net, (torch.zeros(*shape),))


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


def model_from_spec(
    spec: str,
    preset: str | None = None,
    scheme: str = "kgs",
    group: Sequence[int] = (8, 4),
    input_shape: Sequence[int] | None = None,
) -> tvm.IRModule:
    """A model for ``rt3d tune`` / ``compile``: a zoo name (pruned one-shot to ``preset``,
    default the model's paper preset) or a saved file (see :func:`load_model_file`)."""
    import torch

    from rt3d_prune.models import MODEL_NAMES, build_model, default_input_shape

    if spec not in MODEL_NAMES:
        if not os.path.exists(spec):
            raise ValueError(f"{spec!r} is neither a zoo model ({', '.join(MODEL_NAMES)}) nor "
                             "a file")
        return load_model_file(spec, input_shape=input_shape)
    from rt3d_prune.oneshot import prune_oneshot

    preset = preset or default_preset(spec)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    if preset not in (None, "dense"):
        prune_oneshot(model, preset, scheme=scheme, group=tuple(group))
    shape = input_shape or default_input_shape(spec)
    return from_torch(model, (torch.zeros(*shape),))


def default_preset(model: str) -> str:
    """The first registered pruning preset of a zoo model (the paper's, for C3D/R(2+1)D/S3D)."""
    from rt3d_prune.presets import PRESET_NAMES, get_preset

    for name in PRESET_NAMES:
        if get_preset(name).model == model:
            return name
    raise ValueError(f"no pruning preset for model {model!r}; presets: {', '.join(PRESET_NAMES)}")
