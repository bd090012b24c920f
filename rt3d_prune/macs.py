"""Per-layer MAC accounting for conv and linear layers, dense and after pruning."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LayerMACs", "count_macs", "total_macs"]


@dataclasses.dataclass(frozen=True)
class LayerMACs:
    """MACs of one conv or linear layer for one input of the given shape."""

    name: str
    """Qualified module name (``model.get_submodule(name)``)."""
    kind: str
    """Module class name, e.g. ``"Conv3d"``."""
    weight_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    """Weight and bias entries."""
    dense_macs: int
    """``weight.numel()`` times output positions (batch included)."""
    kept_macs: int
    """Non-zero weight entries times output positions: what an ideal sparse kernel computes.

    For an exact vanilla or KGS pattern this equals the kept MACs of
    ``rt3d_passes.sparsity.classify`` (whole zero units) times the output positions.
    """

    @property
    def reduction(self) -> float:
        """Dense over kept MACs (``inf`` when every weight is zero)."""
        return self.dense_macs / self.kept_macs if self.kept_macs else float("inf")


def _output_positions(module: nn.Module, out: torch.Tensor) -> int:
    # conv: batch x spatial positions; linear: every leading dim of the output
    if isinstance(module, nn.modules.conv._ConvNd):
        return out.shape[0] * int(torch.Size(out.shape[2:]).numel())
    return int(torch.Size(out.shape[:-1]).numel())


def _nonzero(weight: torch.Tensor) -> int:
    # a model built on the meta device has no values: count it as dense
    if weight.is_meta:
        return weight.numel()
    return int(torch.count_nonzero(weight.detach()))


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> list[LayerMACs]:
    """MACs of every ``nn.Conv*d`` and ``nn.Linear`` of ``model``, in execution order.

    Shapes are propagated on the meta device (no arithmetic runs, so C3D at 16x112x112 costs
    milliseconds); kept MACs read the current weights, including parametrized (masked)
    weights of a prepared sparsifier. A model on the meta device counts as dense. Pooling,
    normalization and activations are not counted, as in the papers' MAC figures.

    Args:
        model: The network; left unchanged.
        input_shape: Full input shape including the batch dimension.
    """
    records: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, _inputs, output):
        records.append((names[module], module, tuple(output.shape)))

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)
    ]
    # every parameter and buffer replaced by a meta tensor of the same shape
    meta = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict().items()}
    meta.update({k: torch.empty_like(v, device="meta") for k, v in model.named_parameters()})
    try:
        with torch.no_grad():
            torch.func.functional_call(
                model, meta, (torch.empty(tuple(input_shape), device="meta"),), strict=False
            )
    finally:
        for h in handles:
            h.remove()
    result = []
    seen = set()
    for name, module, out_shape in records:
        weight = module.weight  # the masked weight if the module is parametrized
        positions = _output_positions(module, torch.empty(out_shape, device="meta"))
        params = weight.numel() + (module.bias.numel() if module.bias is not None else 0)
        result.append(
            LayerMACs(
                name=name if name not in seen else f"{name}#{len(seen)}",
                kind=type(module).__name__,
                weight_shape=tuple(weight.shape),
                output_shape=out_shape,
                params=int(params),
                dense_macs=int(weight.numel()) * positions,
                kept_macs=_nonzero(weight) * positions,
            )
        )
        seen.add(name)
    return result


def total_macs(layers: Sequence[LayerMACs]) -> tuple[int, int]:
    """``(dense, kept)`` MACs summed over ``layers``."""
    return sum(x.dense_macs for x in layers), sum(x.kept_macs for x in layers)
