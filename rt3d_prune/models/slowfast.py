"""SlowFast-R50 (Feichtenhofer et al., ICCV 2019), as PyTorchVideo's ``slowfast_r50`` builds it.

Two ResNet-50 pathways: Slow (8 frames, full width, conv_a 1x1x1 in res2/res3 and 3x1x1 in
res4/res5) and Fast (``alpha`` times the frames, 1/8 of the width, conv_a 3x1x1 everywhere).
After the stems and after res2, res3 and res4 a lateral connection convolves the Fast features
with a temporally strided ``fusion_kernel x 1 x 1`` conv (stride ``alpha``, twice the Fast
width) and concatenates them to the Slow features. The head pools each pathway, concatenates
(2048 + 256 features) and classifies. The 8x8 model (``alpha = 4``, lateral kernel 7x1x1) is
PyTorchVideo's ``slowfast_r50``; the paper's 4x16 model has ``alpha = 8`` and a 5x1x1 kernel.

Module names are PyTorchVideo's (``blocks.N.multipathway_blocks.{0,1}`` = slow / fast,
``blocks.N.multipathway_fusion.conv_fast_to_slow``, ``blocks.6.proj``), so its state dicts load.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._pv_blocks import R50_DEPTHS, ResNetBasicHead, ResNetBasicStem, bottleneck_stage

#: Frame-rate ratio of the zoo's SlowFast (the 8x8 model: 8 slow and 32 fast frames).
DEFAULT_ALPHA = 4


class FuseFastToSlow(nn.Module):
    """Lateral connection: ``[cat(slow, relu(bn(conv(fast)))), fast]``."""

    def __init__(self, fast_dim: int, kernel: int, alpha: int) -> None:
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(fast_dim, 2 * fast_dim, (kernel, 1, 1), (alpha, 1, 1),
                                           (kernel // 2, 0, 0), bias=False)
        self.norm = nn.BatchNorm3d(2 * fast_dim)
        self.activation = nn.ReLU()

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        fuse = self.activation(self.norm(self.conv_fast_to_slow(x[1])))
        return [torch.cat([x[0], fuse], dim=1), x[1]]


class MultiPathWayWithFuse(nn.Module):
    """One stage of both pathways, then the lateral fusion (identity after res5)."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: nn.Module) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        x = [self.multipathway_blocks[0](x[0]), self.multipathway_blocks[1](x[1])]
        return self.multipathway_fusion(x)


class _PoolConcatPathway(nn.Module):
    # PyTorchVideo's ``blocks.5`` (no parameters): pool each pathway, concatenate channels
    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.ModuleList([nn.AdaptiveAvgPool3d(1), nn.AdaptiveAvgPool3d(1)])

    def forward(self, x: list[Tensor]) -> Tensor:
        return torch.cat([self.pool[0](x[0]), self.pool[1](x[1])], dim=1)


class SlowFastR50(nn.Module):
    """SlowFast-R50 taking the slow and the fast clip.

    ``forward(slow, fast)`` takes both clips (``fast`` has ``alpha`` times the frames of
    ``slow``); ``forward(fast)`` alone takes every ``alpha``-th frame of the fast clip as the
    slow one (frames 0, alpha, 2 alpha, ...), so the model also fits single-input tools
    (``count_macs``, ``rt3d models``) and :func:`~rt3d_prune.models.default_input_shape` gives
    the fast clip's shape.

    Args:
        num_classes: Output classes (400 for Kinetics).
        dropout: Dropout probability before the classifier.
        alpha: Frame-rate ratio of the pathways (4 for 8x8, 8 for 4x16); also the lateral
            convs' temporal stride.
        fusion_kernel: Temporal kernel of the lateral convs (7 for 8x8, 5 for 4x16).
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.5, alpha: int = DEFAULT_ALPHA,
                 fusion_kernel: int = 7) -> None:
        super().__init__()
        self.alpha = alpha
        beta_inv, fusion_ratio = 8, 2  # fast width 1/8 of slow, lateral doubles the fast width
        blocks: list[nn.Module] = [MultiPathWayWithFuse(
            ResNetBasicStem(3, 64, (1, 7, 7)), ResNetBasicStem(3, 64 // beta_inv, (5, 7, 7)),
            FuseFastToSlow(64 // beta_inv, fusion_kernel, alpha),
        )]
        dim_in, dim_out = 64, 256
        for i, depth in enumerate(R50_DEPTHS):
            stride = (1, 1, 1) if i == 0 else (1, 2, 2)
            slow = bottleneck_stage(depth, dim_in + dim_in * fusion_ratio // beta_inv,
                                    dim_out // 4, dim_out, (1, 1, 1) if i < 2 else (3, 1, 1),
                                    (1, 3, 3), stride)
            fast = bottleneck_stage(depth, dim_in // beta_inv, dim_out // 4 // beta_inv,
                                    dim_out // beta_inv, (3, 1, 1), (1, 3, 3), stride)
            fusion = (FuseFastToSlow(dim_out // beta_inv, fusion_kernel, alpha)
                      if i < len(R50_DEPTHS) - 1 else nn.Identity())
            blocks.append(MultiPathWayWithFuse(slow, fast, fusion))
            dim_in, dim_out = dim_out, dim_out * 2
        blocks.append(_PoolConcatPathway())
        blocks.append(ResNetBasicHead(dim_in + dim_in // beta_inv, num_classes, dropout,
                                      pool=False))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, fast: Tensor | None = None) -> Tensor:
        if fast is None:
            x, fast = x[:, :, :: self.alpha], x
        out = [x, fast]
        for block in self.blocks:
            out = block(out)
        return out
