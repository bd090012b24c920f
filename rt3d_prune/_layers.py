"""Resolve and validate the layers a SparsityConfig names (shared by pruner and regularizer)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .config import SparsityConfig
from .schemes import effective_group


def prunable_layer_names(model: nn.Module) -> list[str]:
    """Names of the conv and linear layers of ``model``."""
    return [
        n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)
    ]


def resolve_layers(model: nn.Module, config: SparsityConfig) -> dict[str, nn.Module]:
    """The modules of ``config.pruned_layers``; raises ValueError naming any bad layer."""
    modules = dict(model.named_modules())
    valid = prunable_layer_names(model)
    for name, rate in config.rates:
        if name not in modules or name not in valid:
            shown = ", ".join(valid[:12]) + (", ..." if len(valid) > 12 else "")
            raise ValueError(
                f"layer {name!r} is not a conv or linear layer of the model; "
                f"valid layers: {shown}"
            )
        if config.threshold is None and not 0.0 <= rate < 1.0:
            raise ValueError(f"layer {name!r}: rate must be in [0, 1), got {rate}")
    if config.threshold is not None and config.threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {config.threshold}")
    result = {}
    for name in config.pruned_layers:
        module = modules[name]
        shape = tuple(module.weight.shape)
        if getattr(module, "groups", 1) != 1 and config.scheme in ("kgs", "plane", "vanilla"):
            raise ValueError(f"layer {name!r}: grouped convolutions are not supported")
        if config.scheme == "plane" and len(shape) != 5:
            raise ValueError(
                f"layer {name!r}: the plane scheme prunes kd planes of conv3d weights "
                f"[M, N, Kd, Kh, Kw]; this {type(module).__name__} has a {len(shape)}-D weight "
                f"of shape {shape}; keep it dense (rate 0) or use kgs"
            )
        gm, gn = effective_group(config.scheme, config.group, shape)
        if gm > shape[0] or gn > shape[1]:
            raise ValueError(
                f"layer {name!r}: group ({gm}, {gn}) is larger than the layer's channels "
                f"(out={shape[0]}, in={shape[1]}); keep it dense (rate 0) or use a smaller group"
            )
        result[name] = module
    return result


def mac_coefficients(
    model: nn.Module, names: list[str], input_shape: Sequence[int] | None
) -> dict[str, float]:
    """Per-layer ``c_l`` proportional to the layers' dense MACs, normalized to mean 1.

    One layer needs no shape (its coefficient is 1).

    Raises:
        ValueError: Several layers and no ``input_shape``.
    """
    if len(names) <= 1:
        return {n: 1.0 for n in names}
    if input_shape is None:
        raise ValueError("MAC-weighted regularization needs input_shape")
    from .macs import count_macs

    macs = {x.name: x.dense_macs for x in count_macs(model, input_shape)}
    mean = sum(macs[n] for n in names) / len(names)
    return {n: macs[n] / mean for n in names}


def following_batchnorms(model: nn.Module, names: list[str]) -> dict[str, nn.Module | None]:
    """The BatchNorm that normalizes each named layer's output, or ``None``.

    Found by registration order: the first ``BatchNorm*`` module after the layer (and before
    the next conv or linear layer) with as many features as the layer has outputs. This is
    how C3D (``conv1``, ``bn1``), R(2+1)D and S3D (``Conv3d`` then ``BatchNorm3d`` in one
    ``Sequential``) are written.
    """
    ordered = list(model.named_modules())
    index = {n: i for i, (n, _) in enumerate(ordered)}
    out: dict[str, nn.Module | None] = {}
    for name in names:
        found = None
        layer = ordered[index[name]][1]
        features = layer.weight.shape[0]
        for _, module in ordered[index[name] + 1:]:
            if isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
                break
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.num_features == features:
                    found = module
                break
        out[name] = found
    return out
