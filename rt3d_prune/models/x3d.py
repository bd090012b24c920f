"""X3D-XS and X3D-S (Feichtenhofer, CVPR 2020), as PyTorchVideo's ``create_x3d`` builds them.

A (2+1)D stem (1x3x3 conv, then a channel-wise 5x1x1 conv), four stages of bottlenecks whose
middle conv is a channel-wise (depthwise, ``groups = channels``) 3x3x3 conv followed by
squeeze-excitation (every other block) and Swish, and a head that widens to 432 channels,
pools, and projects to 2048 before the classifier. XS and S share the network (3.79 M
parameters with 400 classes) and differ only in their clip: 4x160x160 for XS, 13x160x160
for S.

Module names are PyTorchVideo's (``blocks.0.conv.conv_t`` is its stem's *spatial* conv and
``blocks.0.conv.conv_xy`` the temporal one, as there; ``blocks.N.res_blocks.M.branch2.conv_b``,
``...norm_b.1.block.{0,2}`` the SE convs, ``blocks.5.pool.{pre,post}_conv``,
``blocks.5.proj``), so ``x3d_xs`` / ``x3d_s`` hub state dicts load. The head returns logits
(no softmax) and pools globally instead of PyTorchVideo's fixed ``AvgPool3d`` (the same for the
model's own clip size).
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from ._pv_blocks import BottleneckBlock, ResBlock, ResStage


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """PyTorchVideo's ``round_width``: scale, round to a multiple of ``divisor``."""
    width *= multiplier
    new = max(min_width, int(width + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * width else new)


class SqueezeExcitation(nn.Module):
    """fvcore's 3D SE: mean over T, H, W -> 1x1x1 conv -> ReLU -> 1x1x1 conv -> sigmoid."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, 1, bias=True), nn.ReLU(),
            nn.Conv3d(reduced, channels, 1, bias=True), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class _Conv2plus1d(nn.Module):
    # PyTorchVideo's X3D stem passes its spatial conv as ``conv_t`` and its temporal conv as
    # ``conv_xy``; the names are kept so state dicts load
    def __init__(self, conv_t: nn.Conv3d, conv_xy: nn.Conv3d) -> None:
        super().__init__()
        self.conv_t = conv_t
        self.conv_xy = conv_xy

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_xy(self.conv_t(x))


class _Stem(nn.Module):
    def __init__(self, dim_out: int) -> None:
        super().__init__()
        self.conv = _Conv2plus1d(
            nn.Conv3d(3, dim_out, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False),
            nn.Conv3d(dim_out, dim_out, (5, 1, 1), 1, (2, 0, 0), groups=dim_out, bias=False),
        )
        self.norm = nn.BatchNorm3d(dim_out)
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.norm(self.conv(x)))


def _x3d_block(dim_in: int, dim_inner: int, dim_out: int, stride: int, se: bool) -> ResBlock:
    s = (1, stride, stride)
    branch2 = BottleneckBlock(dim_in, dim_inner, dim_out, (1, 1, 1), (3, 3, 3), s,
                              conv_b_groups=dim_inner)
    branch2.norm_b = nn.Sequential(
        nn.BatchNorm3d(dim_inner),
        SqueezeExcitation(dim_inner, round_width(dim_inner, 0.0625)) if se else nn.Identity(),
    )
    branch2.act_b = nn.SiLU()  # Swish
    # PyTorchVideo's X3D shortcut has a norm only where the width changes
    return ResBlock(branch2, dim_in, dim_out, s, shortcut_norm=dim_in != dim_out)


class _ProjectedPool(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, dim_out: int) -> None:
        super().__init__()
        self.pre_conv = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.pre_norm = nn.BatchNorm3d(dim_inner)
        self.pre_act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.post_conv = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.post_act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.pre_act(self.pre_norm(self.pre_conv(x))))
        return self.post_act(self.post_conv(x))


class _Head(nn.Module):
    def __init__(self, dim_in: int, dim_inner: int, dim_out: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.pool = _ProjectedPool(dim_in, dim_inner, dim_out)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(dim_out, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.dropout(self.pool(x).flatten(1)))


class X3D(nn.Module):
    """X3D with PyTorchVideo's defaults: width factor 2, depth factor 2.2, bottleneck 2.25.

    Stages of 3, 5, 11, 7 blocks with 24, 48, 96, 192 output and 54, 108, 216, 432 inner
    channels, each stage halving H and W (none strides in time).

    Args:
        num_classes: Output classes (400 for Kinetics).
        dropout: Dropout probability before the classifier.
        width_factor: Channel expansion of the base network (2.0 for XS, S, M).
        depth_factor: Depth expansion (2.2 for XS, S, M; 5.0 for L).
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.5, width_factor: float = 2.0,
                 depth_factor: float = 2.2) -> None:
        super().__init__()
        stem_dim = round_width(12, width_factor)
        stage_dims = [12]
        for _ in range(3):
            stage_dims.append(round_width(stage_dims[-1], 2.0))
        blocks: list[nn.Module] = [_Stem(stem_dim)]
        dim_in = stem_dim
        for base, depth in zip(stage_dims, (1, 2, 5, 3), strict=True):
            dim_out = round_width(base, width_factor)
            dim_inner = int(2.25 * dim_out)
            res_blocks = [
                _x3d_block(dim_in if i == 0 else dim_out, dim_inner, dim_out,
                           2 if i == 0 else 1, se=i % 2 == 0)
                for i in range(math.ceil(depth_factor * depth))
            ]
            blocks.append(ResStage(res_blocks))
            dim_in = dim_out
        blocks.append(_Head(dim_in, dim_inner, 2048, num_classes, dropout))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x
