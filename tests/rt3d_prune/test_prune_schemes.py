"""Group norms, masks at group granularity, broadcasting, ranking -- against rt3d_passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rt3d_passes.sparsity import broadcast_unit_mask, classify, plane_mask, unit_mask
from rt3d_prune.schemes import (
    broadcast_mask,
    group_norms,
    group_sizes,
    rank_mask,
    rank_mask_balanced,
)


@pytest.mark.parametrize("shape", [(16, 8, 3, 3, 3), (13, 6, 1, 3, 3), (10, 7, 3, 1, 1)])
def test_kgs_mask_round_trip_matches_contract(shape):
    gen = torch.Generator().manual_seed(0)
    mask = torch.rand(-(-shape[0] // 8), -(-shape[1] // 4), int(np.prod(shape[2:])),
                      generator=gen) > 0.5
    full = broadcast_mask(mask, shape, "kgs", (8, 4))
    ref = broadcast_unit_mask(mask.numpy(), shape, (8, 4))
    assert np.array_equal(full.numpy(), ref)
    weight = torch.randn(shape, generator=gen) * full
    assert np.array_equal(unit_mask(weight.numpy(), (8, 4)), mask.numpy())


def test_norms_shapes_and_values():
    w = torch.randn(10, 6, 3, 3, 3)
    kgs = group_norms(w, "kgs", (8, 4))
    assert kgs.shape == (2, 2, 27)
    assert torch.allclose(kgs[0, 0, 5], w[:8, :4].reshape(8, 4, 27)[:, :, 5].norm())
    assert torch.allclose(kgs[1, 1, 0], w[8:, 4:].reshape(2, 2, 27)[:, :, 0].norm())  # edge
    van = group_norms(w, "vanilla", (8, 4))
    assert van.shape == (2, 2)
    assert torch.allclose(van[1, 0], w[8:, :4].norm())
    assert group_norms(w, "filter", (8, 4)).shape == (10, 1)
    assert torch.allclose(group_norms(w, "unstructured", (8, 4)).flatten(), w.abs().flatten())
    sizes = group_sizes(w.shape, "kgs", (8, 4))
    assert sizes[0, 0, 0] == 32 and sizes[1, 1, 0] == 4


def test_rank_mask_prunes_smallest_at_rate():
    norms = torch.tensor([5.0, 1.0, 4.0, 0.5, 3.0, 2.0, 6.0, 7.0, 8.0, 9.0])
    keep = rank_mask(norms, torch.ones(10), 0.3)
    assert keep.tolist() == [True, False, True, False, True, False] + [True] * 4
    with pytest.raises(ValueError, match="rate"):
        rank_mask(norms, torch.ones(10), 1.0)


@pytest.mark.parametrize("shape", [(16, 8, 3, 3, 3), (13, 6, 3, 3, 3), (16, 8, 5, 3, 5)])
def test_plane_masks_prune_whole_planes(shape):
    gen = torch.Generator().manual_seed(0)
    mg, ng, kd = -(-shape[0] // 8), -(-shape[1] // 4), shape[2]
    mask = torch.rand(mg, ng, kd, generator=gen) > 0.5
    full = broadcast_mask(mask, shape, "plane", (8, 4))
    assert full.shape == shape
    # every (kh, kw) of a plane gets the plane's decision
    units = mask[:, :, :, None].expand(-1, -1, -1, shape[3] * shape[4]).reshape(mg, ng, -1)
    assert np.array_equal(full.numpy(), broadcast_unit_mask(units.numpy(), shape, (8, 4)))
    weight = torch.randn(shape, generator=gen) * full
    assert np.array_equal(plane_mask(weight.numpy(), (8, 4)), mask.numpy())
    norms = group_norms(weight, "plane", (8, 4))
    assert norms.shape == (mg, ng, kd)
    torch.testing.assert_close(norms[0, 1, 1], weight[:8, 4:8, 1].norm())
    assert ((norms == 0) == ~mask).all()
    sizes = group_sizes(shape, "plane", (8, 4))
    assert sizes.shape == (mg, ng, kd)
    assert sizes[0, 0, 0] == 32 * shape[3] * shape[4]
    edge = (shape[0] - 8 * (mg - 1)) * (shape[1] - 4 * (ng - 1)) * shape[3] * shape[4]
    assert sizes[-1, -1, -1] == edge


def test_plane_of_a_depth_one_kernel_is_the_kernel_group():
    w = torch.randn(16, 8, 1, 3, 3)
    torch.testing.assert_close(group_norms(w, "plane", (8, 4))[..., 0],
                               group_norms(w, "vanilla", (8, 4)))


@pytest.mark.parametrize("rate", [0.25, 0.6, 0.85])
@pytest.mark.parametrize("shape", [(32, 16, 3, 3, 3), (24, 12, 5, 3, 3)])
def test_balanced_plane_masks_keep_equal_counts(rate, shape):
    # channels are multiples of the group: an edge group's smaller planes weigh less in the
    # ranking (rank_mask meets the rate in weights), as for balanced KGS
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(shape, generator=gen)
    norms = group_norms(weight, "plane", (8, 4))
    sizes = group_sizes(shape, "plane", (8, 4))
    keep = rank_mask_balanced(norms, sizes, rate)
    per_group = keep.flatten(1).sum(1)
    assert (per_group == per_group[0]).all(), per_group
    planes = keep[0].numel()
    assert 1 - per_group[0] / planes == pytest.approx(rate, abs=1 / planes)
    pruned = weight * broadcast_mask(keep, shape, "plane", (8, 4))
    info = classify(pruned.numpy(), (8, 4))
    assert info.scheme == "plane" and info.computed_macs == info.kept_macs


def test_plane_needs_a_conv3d_weight():
    with pytest.raises(ValueError, match="5-D"):
        group_norms(torch.randn(8, 4, 3, 3), "plane", (8, 4))
