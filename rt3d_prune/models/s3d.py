"""S3D (Xie et al., ECCV 2018): separable 3D convolutions in an Inception-v1 layout.

The layer widths and module names follow torchvision's ``s3d``; the head is a global average
pool and a linear layer (same parameters as torchvision's 1x1x1 conv head) so that any clip
size works.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _bn(planes: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(planes, eps=1e-3, momentum=1e-3)


class ConvBNReLU(nn.Sequential):
    """Conv3d (no bias), BatchNorm3d, ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel, stride=1, padding=0) -> None:
        super().__init__(
            nn.Conv3d(in_planes, out_planes, kernel, stride, padding, bias=False),
            _bn(out_planes),
            nn.ReLU(inplace=True),
        )


class SepConv(nn.Sequential):
    """A kxkxk convolution separated into 1xkxk (spatial) then kx1x1 (temporal)."""

    def __init__(self, in_planes: int, out_planes: int, k: int, stride: int, pad: int) -> None:
        super().__init__(
            ConvBNReLU(in_planes, out_planes, (1, k, k), (1, stride, stride), (0, pad, pad)),
            ConvBNReLU(out_planes, out_planes, (k, 1, 1), (stride, 1, 1), (pad, 0, 0)),
        )


class SepInception(nn.Module):
    """Inception block with separable 3x3x3 branches; outputs are concatenated on channels."""

    def __init__(self, in_planes: int, b0: int, b1_mid: int, b1: int, b2_mid: int, b2: int,
                 b3: int) -> None:
        super().__init__()
        self.branch0 = ConvBNReLU(in_planes, b0, 1)
        self.branch1 = nn.Sequential(ConvBNReLU(in_planes, b1_mid, 1), SepConv(b1_mid, b1, 3, 1, 1))
        self.branch2 = nn.Sequential(ConvBNReLU(in_planes, b2_mid, 1), SepConv(b2_mid, b2, 3, 1, 1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, 1, 1), ConvBNReLU(in_planes, b3, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(
            [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1
        )


class S3D(nn.Module):
    """S3D: 8.3 M parameters with 400 classes.

    Args:
        num_classes: Output classes.
        dropout: Dropout probability before the classifier.
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            SepConv(3, 64, 7, 2, 3),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            ConvBNReLU(64, 64, 1),
            SepConv(64, 192, 3, 1, 1),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            SepInception(192, 64, 96, 128, 16, 32, 32),
            SepInception(256, 128, 128, 192, 32, 96, 64),
            nn.MaxPool3d(3, 2, 1),
            SepInception(480, 192, 96, 208, 16, 48, 64),
            SepInception(512, 160, 112, 224, 24, 64, 64),
            SepInception(512, 128, 128, 256, 24, 64, 64),
            SepInception(512, 112, 144, 288, 32, 64, 64),
            SepInception(528, 256, 160, 320, 32, 128, 128),
            nn.MaxPool3d(2, 2, 0),
            SepInception(832, 256, 160, 320, 32, 128, 128),
            SepInception(832, 384, 192, 384, 48, 128, 128),
        )
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))
