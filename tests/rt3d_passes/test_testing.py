"""The weight generator prunes exactly the rate it is asked for (tests rely on it)."""

import numpy as np
import pytest

from rt3d_passes.sparsity import classify
from rt3d_passes.testing import structured_weight


@pytest.mark.parametrize("scheme", ["kgs", "vanilla"])
def test_structured_weight_prunes_exact_count(rng, scheme):
    # 24x16 with 8x4 groups: 12 kernel groups, 324 (group, position) units
    w = structured_weight((24, 16, 3, 3, 3), scheme, 0.5, (8, 4), rng)
    groups = np.abs(w).reshape(3, 8, 4, 4, 27).sum(axis=(1, 3))  # [mg, ng, k3]
    zero_units = int((groups == 0).sum())
    assert zero_units == (162 if scheme == "kgs" else 6 * 27)
    info = classify(w, (8, 4))
    assert info.scheme == scheme


def test_structured_weight_unstructured_count(rng):
    w = structured_weight((8, 8, 3, 3, 3), "unstructured", 0.25, rng=rng)
    assert int((w == 0).sum()) == round(0.25 * w.size)


def test_structured_weight_balanced_has_no_padding(rng):
    from rt3d_passes.sparsity import compact

    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.85, (8, 4), rng, balanced=True)
    packed = compact(w, (8, 4))
    assert packed.computed_macs == packed.kept_macs
    assert len(set(packed.counts.tolist())) == 1
