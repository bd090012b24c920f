"""Building blocks shared by the ResNet-style video models (Slow-R50, ir-CSN-50, SlowFast-R50,
X3D), with PyTorchVideo's module names (``pytorchvideo/models/{resnet,stem,head}.py``) so that
its state dicts load unchanged: a stem ``conv`` / ``norm``, residual blocks with ``branch1_conv``
/ ``branch1_norm`` / ``branch2.conv_{a,b,c}`` / ``branch2.norm_{a,b,c}``, stages holding
``res_blocks``, and a head whose classifier is ``proj``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


def _pad(kernel: Sequence[int]) -> tuple[int, ...]:
    return tuple(k // 2 for k in kernel)


class ResNetBasicStem(nn.Module):
    """Conv3d (no bias), BatchNorm3d, ReLU and an optional max-pool (PyTorchVideo's names)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Sequence[int],
                 stride: Sequence[int] = (1, 2, 2), pool: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, tuple(kernel), tuple(stride),
                              _pad(kernel), bias=False)
        self.norm = nn.BatchNorm3d(out_channels)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if pool else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.activation(self.norm(self.conv(x)))
        return x if self.pool is None else self.pool(x)


class BottleneckBlock(nn.Module):
    """conv_a (1x1x1 or Tx1x1) -> conv_b (spatial or 3x3x3, maybe grouped) -> conv_c (1x1x1),
    each followed by its norm; ReLU after a and b.

    ``norm_b`` and ``act_b`` may be replaced by the caller (X3D puts squeeze-excitation in
    ``norm_b`` and Swish in ``act_b``).
    """

    def __init__(self, dim_in: int, dim_inner: int, dim_out: int,
                 conv_a_kernel: Sequence[int] = (1, 1, 1),
                 conv_b_kernel: Sequence[int] = (1, 3, 3),
                 conv_b_stride: Sequence[int] = (1, 1, 1), conv_b_groups: int = 1) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, tuple(conv_a_kernel), 1, _pad(conv_a_kernel),
                                bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU()
        self.conv_b = nn.Conv3d(dim_inner, dim_inner, tuple(conv_b_kernel), tuple(conv_b_stride),
                                _pad(conv_b_kernel), groups=conv_b_groups, bias=False)
        self.norm_b: nn.Module = nn.BatchNorm3d(dim_inner)
        self.act_b: nn.Module = nn.ReLU()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """``activation(shortcut(x) + branch2(x))``; the shortcut is a strided 1x1x1 conv
    (``branch1_conv``, with ``branch1_norm`` unless ``shortcut_norm`` is false) when the
    shape changes, else the identity."""

    def __init__(self, branch2: BottleneckBlock, dim_in: int, dim_out: int,
                 stride: Sequence[int], shortcut_norm: bool = True) -> None:
        super().__init__()
        self.branch1_conv = None
        self.branch1_norm = None
        if dim_in != dim_out or any(s > 1 for s in stride):
            self.branch1_conv = nn.Conv3d(dim_in, dim_out, 1, tuple(stride), bias=False)
            if shortcut_norm:
                self.branch1_norm = nn.BatchNorm3d(dim_out)
        self.branch2 = branch2
        self.activation = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """A sequence of residual blocks, kept in ``res_blocks`` as PyTorchVideo does."""

    def __init__(self, res_blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(res_blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


def bottleneck_stage(depth: int, dim_in: int, dim_inner: int, dim_out: int,
                     conv_a_kernel: Sequence[int], conv_b_kernel: Sequence[int],
                     stride: Sequence[int], conv_b_groups: int = 1) -> ResStage:
    """PyTorchVideo's ``create_res_stage``: the first block strides (in conv_b and the
    shortcut), the others keep the shape."""
    blocks = []
    for i in range(depth):
        s = tuple(stride) if i == 0 else (1, 1, 1)
        d_in = dim_in if i == 0 else dim_out
        branch2 = BottleneckBlock(d_in, dim_inner, dim_out, conv_a_kernel, conv_b_kernel, s,
                                  conv_b_groups)
        blocks.append(ResBlock(branch2, d_in, dim_out, s))
    return ResStage(blocks)


#: Blocks per stage of a ResNet-50.
R50_DEPTHS = (3, 4, 6, 3)


class ResNet50(nn.Module):
    """PyTorchVideo's ``Net`` layout of a 3D ResNet-50: stem, four bottleneck stages
    (``blocks.1`` to ``blocks.4``), head (``blocks.5``).

    Args:
        stem_kernel: The stem conv's kernel (stride 1x2x2, then a 1x3x3 max-pool).
        stage: ``stage(i, dim_inner) -> (conv_a kernel, conv_b kernel, stride, conv_b
            groups)`` of stage ``i`` (0 to 3).
        num_classes: Output classes.
        dropout: Dropout probability before the classifier.
    """

    def __init__(self, stem_kernel: Sequence[int], stage, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ResNetBasicStem(3, 64, stem_kernel)]
        dim_in, dim_out = 64, 256
        for i, depth in enumerate(R50_DEPTHS):
            inner = dim_out // 4
            conv_a, conv_b, stride, groups = stage(i, inner)
            blocks.append(bottleneck_stage(depth, dim_in, inner, dim_out, conv_a, conv_b,
                                           stride, conv_b_groups=groups))
            dim_in, dim_out = dim_out, dim_out * 2
        blocks.append(ResNetBasicHead(dim_in, num_classes, dropout))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class ResNetBasicHead(nn.Module):
    """Global average pool, dropout and the linear classifier ``proj``.

    PyTorchVideo pools with a fixed ``AvgPool3d`` sized for its training crop and averages
    what is left; a global average is the same for that crop and works for any clip size.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5,
                 pool: bool = True) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1) if pool else None
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if self.pool is not None:
            x = self.pool(x)
        return self.proj(self.dropout(x.flatten(1)))
