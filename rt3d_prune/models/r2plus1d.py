"""R(2+1)D-18 (Tran et al., CVPR 2018), the architecture of torchvision's ``r2plus1d_18``.

Module names match torchvision's, so its state dicts load unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn


class Conv2Plus1D(nn.Sequential):
    """A 3x3x3 convolution factored into a 1x3x3 spatial and a 3x1x1 temporal convolution."""

    def __init__(self, in_planes: int, out_planes: int, mid_planes: int, stride: int = 1):
        super().__init__(
            nn.Conv3d(in_planes, mid_planes, (1, 3, 3), (1, stride, stride), (0, 1, 1),
                      bias=False),
            nn.BatchNorm3d(mid_planes),
            nn.ReLU(inplace=True),
            nn.Conv3d(mid_planes, out_planes, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False),
        )


class BasicBlock(nn.Module):
    """Residual block of two (2+1)D convolutions."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        # mid width keeps the parameter count of the full 3x3x3 convolution (paper, Sec. 3.5)
        mid = (in_planes * planes * 27) // (in_planes * 9 + 3 * planes)
        self.conv1 = nn.Sequential(
            Conv2Plus1D(in_planes, planes, mid, stride), nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(Conv2Plus1D(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + identity)


class R2Plus1D18(nn.Module):
    """R(2+1)D-18: a (2+1)D stem, four stages of two basic blocks, global pool, one FC.

    31.5 M parameters with 400 classes; 40.5 G MACs for a 16x112x112 clip.

    Args:
        num_classes: Output classes (400 for Kinetics, 101 for UCF101).
    """

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), 1, (1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )
        in_planes = 64
        for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
            blocks = [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))
