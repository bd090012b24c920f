"""MAC accounting: analytic counts, kept MACs after zeros, agreement with rt3d_passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rt3d_passes.sparsity import classify
from rt3d_prune.macs import count_macs, total_macs


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv3d(4, 8, 3, padding=1)
        self.b = nn.Conv3d(8, 16, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = self.b(self.a(x))
        return self.fc(x.mean(dim=(2, 3, 4)))


def test_analytic_counts():
    layers = count_macs(_Net(), (2, 4, 4, 8, 8))
    assert [x.name for x in layers] == ["a", "b", "fc"]
    assert layers[0].dense_macs == 2 * 4 * 8 * 8 * (8 * 4 * 27)
    assert layers[1].output_shape == (2, 16, 4, 4, 4)
    assert layers[1].dense_macs == 2 * 4 * 4 * 4 * (16 * 8 * 9)
    assert layers[2].dense_macs == 2 * 16 * 3
    assert layers[0].params == 8 * 4 * 27 + 8


def test_kept_macs_follow_zeros_and_match_classify():
    net = _Net()
    with torch.no_grad():
        w = net.b.weight
        w[:8, :4, :, 0, :] = 0  # one 8x4 kernel group loses the positions kh = 0 (KGS units)
    layer = count_macs(net, (1, 4, 4, 8, 8))[1]
    info = classify(net.b.weight.detach().numpy(), (8, 4))
    assert info.scheme == "kgs"
    positions = int(np.prod(layer.output_shape[2:]))
    assert layer.kept_macs == info.kept_macs * positions
    assert layer.dense_macs - layer.kept_macs == 8 * 4 * 3 * positions
    assert layer.reduction == pytest.approx(layer.dense_macs / layer.kept_macs)
    dense, kept = total_macs(count_macs(net, (1, 4, 4, 8, 8)))
    assert dense > kept


def test_kept_macs_see_sparsifier_masks():
    from rt3d_prune.config import SparsityConfig
    from rt3d_prune.sparsifier import GroupSparsifier

    net = _Net()
    sp = GroupSparsifier()
    sp.prepare(net, SparsityConfig(rates={"b": 0.5}))  # b: 16x8 -> 2x2 groups x 9 units
    sp.step()
    layer = count_macs(net, (1, 4, 4, 8, 8))[1]
    assert layer.kept_macs == layer.dense_macs // 2
