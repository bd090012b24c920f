"""Group norms, masks at group granularity, broadcasting, ranking -- against rt3d_passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rt3d_passes.sparsity import broadcast_unit_mask, unit_mask
from rt3d_prune.schemes import broadcast_mask, group_norms, group_sizes, rank_mask


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
