"""Named pruning presets with the paper's per-layer rates.

* ``c3d-3.6x`` -- the paper's C3D rates: conv2 and conv3b 85 % of the KGS columns pruned,
  conv3a and conv4b 80 %, conv1, conv4a, conv5a, conv5b dense: 38.5 G -> 10.8 G MACs.
* ``r2plus1d-3.2x`` -- the paper gives only the overall 3.2x. We prune every (2+1)D block
  convolution (spatial 1x3x3 and temporal 3x1x1) at one uniform rate and keep the stem
  (3 input channels), the 1x1x1 downsampling shortcuts and the FC layer dense. Solving
  ``dense / (fixed + (1 - r) * prunable) = 3.2`` gives r = 0.702; we use 0.70 (3.18x).
* ``s3d-2.1x`` -- likewise only the overall 2.1x is published. We prune every convolution
  with a kernel larger than 1x1x1 and at least 4 input channels (the separable 1xkxk / kx1x1
  pairs of the stem and of every inception branch) at one rate, keeping the 3-channel stem and
  all 1x1x1 convolutions dense: r = 0.660 gives 2.10x at 16x224x224.
* ``c3d_small-3.6x`` -- the paper's C3D rates on the small C3D of the generated dataset, plus
  60 % on conv4a, conv5a and conv5b: at 16x32x32 the dense 3-channel conv1 is 10 % of the
  MACs, so the paper's rates alone give only 3.0x.
* ``c3d_small-5x`` -- a harsher pattern: conv2, conv3a, conv3b, conv4b 90 %, conv4a 85 %,
  conv5a/conv5b 80 %, conv1 dense.
* ``x3d_xs-3x``, ``x3d_s-3x``, ``slow_r50-3.2x``, ``ir_csn_50-2.6x``, ``slowfast_r50-2.9x``
  -- ours (RT3D has no rates for these models): one uniform rate on every ``groups = 1``
  conv3d except the 3-channel stems and X3D's squeeze-excitation convs (which run on a 1x1x1
  pooled tensor); depthwise / channel-wise convs stay dense. Rates aim at about 3x fewer conv
  MACs at :func:`~rt3d_prune.models.default_input_shape` (balanced KGS 8x4, measured):
  X3D 80 % (all its groups = 1 convs are 1x1x1; the depthwise 3x3x3 convs and the stem keep
  17 % of the MACs dense) -> 2.98x; Slow-R50 70 % -> 3.16x; SlowFast-R50 70 % (the 7x1x1
  laterals included) -> 2.89x. ir-CSN-50's dense 3x7x7 stem alone is 27 % of its MACs at
  8x128x128, so 85 % on the rest gives 2.56x (3x would need 93 %). On a 1x1x1 conv a KGS unit
  is a whole kernel group, so ``classify`` reports those layers as ``vanilla``.

Rates are per-layer fractions of units (KGS), ``kd`` planes (plane) or kernel groups
(vanilla); see :class:`~rt3d_prune.config.SparsityConfig`. The same rates with
``scheme="plane"`` give the KGS MACs up to rounding to whole planes per output group (a plane
is ``Kh*Kw`` units: on a 1x3x3 kernel the whole kernel group, on a 3x1x1 kernel one unit).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import torch

from .config import SparsityConfig

__all__ = ["PRESET_NAMES", "Preset", "get_preset"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named set of per-layer pruning rates for one zoo model."""

    name: str
    model: str
    """Zoo model name (:func:`rt3d_prune.models.build_model`)."""
    rates: tuple[tuple[str, float], ...]
    target_reduction: float
    """Model-level MAC reduction the paper claims (dense MACs / kept MACs)."""
    description: str

    def config(
        self, scheme: str = "kgs", group: tuple[int, int] = (8, 4)
    ) -> SparsityConfig:
        """The preset's rates as a :class:`SparsityConfig` of the given scheme and group.

        ``scheme="plane"`` keeps the rates: at balanced rates it removes the same share of
        MACs as KGS (to within one plane per output group).
        """
        return SparsityConfig(scheme=scheme, group=group, rates=self.rates)


_C3D_RATES = {"conv2": 0.85, "conv3a": 0.80, "conv3b": 0.85, "conv4b": 0.80}


def _conv_names(model: str) -> list[tuple[str, tuple[int, ...]]]:
    from .models import build_model

    with torch.device("meta"):
        net = build_model(model)
    return [(n, tuple(m.weight.shape)) for n, m in net.named_modules()
            if isinstance(m, torch.nn.Conv3d)]


def _r2plus1d_rates() -> dict[str, float]:
    return {n: 0.70 for n, _ in _conv_names("r2plus1d_18") if ".conv" in n}


def _s3d_rates() -> dict[str, float]:
    return {n: 0.66 for n, s in _conv_names("s3d") if s[1] >= 4 and s[2] * s[3] * s[4] > 1}


def _groups1_rates(model: str, rate: float) -> dict[str, float]:
    # every groups=1 conv3d but the 3-channel stems and SE convs (X3D's ``norm_b.1.block``)
    from .models import build_model

    with torch.device("meta"):
        net = build_model(model)
    return {n: rate for n, m in net.named_modules()
            if isinstance(m, torch.nn.Conv3d) and m.groups == 1 and m.in_channels > 3
            and ".block." not in n}


_SMALL_36 = {**_C3D_RATES, "conv4a": 0.6, "conv5a": 0.6, "conv5b": 0.6}
_SMALL_5 = {"conv2": 0.9, "conv3a": 0.9, "conv3b": 0.9, "conv4a": 0.85, "conv4b": 0.9,
            "conv5a": 0.8, "conv5b": 0.8}


# name -> (model, rates factory, target reduction, description)
_REGISTRY: dict[str, tuple[str, Callable[[], dict[str, float]], float, str]] = {
    "c3d-3.6x": ("c3d", lambda: dict(_C3D_RATES), 3.6,
                 "paper Table 3: conv2/conv3b 85%, conv3a/conv4b 80%, rest dense"),
    "r2plus1d-3.2x": ("r2plus1d_18", _r2plus1d_rates, 3.2,
                      "uniform 70% on all (2+1)D block convs; stem, shortcuts, fc dense"),
    "s3d-2.1x": ("s3d", _s3d_rates, 2.1,
                 "uniform 66% on all separable convs with >= 4 inputs; 1x1x1 convs dense"),
    "c3d_small-3.6x": ("c3d_small", lambda: dict(_SMALL_36), 3.6,
                       "the c3d-3.6x rates plus 60% on conv4a/conv5 (conv1 costs more here)"),
    "c3d_small-5x": ("c3d_small", lambda: dict(_SMALL_5), 5.0,
                     "harsher: 90% on conv2-conv4b (conv4a 85%), conv5 80%, conv1 dense"),
    "x3d_xs-3x": ("x3d_xs", lambda: _groups1_rates("x3d_xs", 0.80), 3.0,
                  "80% on every groups=1 conv (1x1x1); stem, depthwise 3x3x3, SE dense"),
    "x3d_s-3x": ("x3d_s", lambda: _groups1_rates("x3d_s", 0.80), 3.0,
                 "80% on every groups=1 conv (1x1x1); stem, depthwise 3x3x3, SE dense"),
    "slow_r50-3.2x": ("slow_r50", lambda: _groups1_rates("slow_r50", 0.70), 3.2,
                      "uniform 70% on every conv but the 1x7x7 stem"),
    "ir_csn_50-2.6x": ("ir_csn_50", lambda: _groups1_rates("ir_csn_50", 0.85), 2.6,
                       "85% on every 1x1x1 conv; 3x7x7 stem (27% of MACs), depthwise dense"),
    "slowfast_r50-2.9x": ("slowfast_r50", lambda: _groups1_rates("slowfast_r50", 0.70), 2.9,
                          "uniform 70% on every conv (laterals included) but the two stems"),
}

#: Valid preset names.
PRESET_NAMES: tuple[str, ...] = tuple(_REGISTRY)


@functools.cache
def get_preset(name: str) -> Preset:
    """Look up a preset by name.

    Raises:
        ValueError: Unknown name (the message lists the valid presets).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(PRESET_NAMES)}")
    model, rates, target, description = _REGISTRY[name]
    return Preset(name, model, tuple(rates().items()), target, description)
