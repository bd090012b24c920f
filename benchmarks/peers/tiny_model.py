"""The tiny 3D CNN the smoke script and the tests push through every peer."""

from __future__ import annotations

import torch
from torch import nn

TINY_SHAPE = (1, 3, 8, 32, 32)


def tiny_3d_cnn(num_classes: int = 10) -> nn.Module:
    """Conv3d+BN+ReLU+MaxPool3d (x2), AdaptiveAvgPool3d, Linear: every op class C3D uses."""
    return nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.MaxPool3d((1, 2, 2)),
        nn.Conv3d(8, 16, 3, padding=1),
        nn.BatchNorm3d(16),
        nn.ReLU(),
        nn.MaxPool3d(2),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def randomize_bn(model: nn.Module) -> nn.Module:
    """Give BatchNorm layers non-trivial statistics so that BN folding is actually checked."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model
