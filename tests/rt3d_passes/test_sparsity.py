"""The numpy sparsity format: classification, group detection, compaction."""

import numpy as np
import pytest

from rt3d_passes import sparsity as S
from rt3d_passes.testing import structured_weight


@pytest.mark.parametrize("group", [(8, 4), (4, 4), (4, 8), (2, 2)])
@pytest.mark.parametrize("shape", [(32, 16, 3, 3, 3), (45, 13, 1, 3, 3), (144, 45, 3, 1, 1)])
def test_classify_kgs_and_vanilla(rng, group, shape):
    kgs = structured_weight(shape, "kgs", 0.6, group, rng)
    info = S.classify(kgs, group)
    assert info.scheme == "kgs"
    assert info.group == group
    assert info.stray_zero_fraction == 0
    # kept MACs equal the non-zero units times their (edge-aware) sizes
    assert info.kept_macs == int(S.broadcast_unit_mask(S.unit_mask(kgs, group), shape,
                                                       group).sum())
    assert info.mac_reduction > 1.5

    van = structured_weight(shape, "vanilla", 0.5, group, rng)
    vinfo = S.classify(van, group)
    assert vinfo.scheme == "vanilla"
    assert vinfo.pruned_group_fraction > 0


def test_classify_dense_and_unstructured(rng):
    w = structured_weight((16, 8, 3, 3, 3), "dense", 0, rng=rng)
    info = S.classify(w)
    assert info.scheme == "dense" and info.kept_macs == info.dense_macs == w.size
    assert info.mac_reduction == 1.0

    un = structured_weight((16, 8, 3, 3, 3), "unstructured", 0.7, rng=rng)
    uinfo = S.classify(un, (8, 4))
    assert uinfo.scheme == "unstructured"
    assert uinfo.stray_zero_fraction > 0.5
    # the structured part it would skip still computes exactly: compact round-trips
    np.testing.assert_array_equal(S.compact(un, (8, 4)).to_dense(), un)


@pytest.mark.parametrize("group", [(8, 4), (4, 4), (4, 8), (8, 8), (2, 2)])
def test_detect_group_finds_the_pruning_group(rng, group):
    w = structured_weight((64, 32, 3, 3, 3), "kgs", 0.7, group, rng)
    assert S.detect_group(w) == group
    assert S.classify(w).group == group


def test_detect_group_prefers_larger_group_on_vanilla_ties(rng):
    w = structured_weight((64, 32, 3, 3, 3), "vanilla", 0.5, (8, 4), rng)
    # a vanilla 8x4 pattern is also an exact 4x4 / 2x2 pattern: keep the coarsest
    assert S.detect_group(w) == (8, 4)


@pytest.mark.parametrize("shape,group", [((45, 3, 3, 7, 7), (8, 2)), ((144, 45, 3, 3, 3), (8, 4)),
                                         ((20, 13, 3, 1, 1), (4, 4)), ((8, 4, 1, 1, 1), (8, 4))])
@pytest.mark.parametrize("rate", [0.0, 0.5, 0.95])
def test_compact_round_trip_with_edge_groups(rng, shape, group, rate):
    w = structured_weight(shape, "kgs", rate, group, rng)
    packed = S.compact(w, group)
    np.testing.assert_array_equal(packed.to_dense(), w)
    assert packed.values.shape == (-(-shape[0] // group[0]), packed.max_columns, group[0])
    assert packed.columns.dtype == np.int32
    info = S.classify(w, group)
    assert packed.kept_macs == info.kept_macs
    assert packed.computed_macs == info.computed_macs >= packed.kept_macs
    # columns of each group are valid channel/kernel coordinates
    for i, cnt in enumerate(packed.counts):
        cols = packed.columns[i, :cnt]
        assert (cols[:, 0] < shape[1]).all() and (cols[:, 1:] < shape[2:]).all()


def test_compact_all_zero_weight():
    w = np.zeros((8, 4, 3, 3, 3), np.float32)
    packed = S.compact(w, (8, 4))
    assert packed.kept_macs == 0 and packed.max_columns == 1
    np.testing.assert_array_equal(packed.to_dense(), w)
    assert S.classify(w, (8, 4)).mac_reduction == float("inf")


def test_nonfinite_weights_are_reported(rng):
    w = structured_weight((16, 8, 3, 3, 3), "kgs", 0.5, (8, 4), rng)
    w[0, 0, 0, 0, 0] = np.nan
    w[1, 1, 1, 1, 1] = np.inf
    assert S.classify(w, (8, 4)).nonfinite == 2


@pytest.mark.parametrize(
    "weight,group,match",
    [
        (np.zeros((8, 4, 3, 3), np.float32), (8, 4), "5-D"),
        (np.zeros((8, 4, 3, 3, 3), np.int32), (8, 4), "floating"),
        (np.zeros((8, 4, 3, 3, 3), np.float32), (16, 4), r"larger than the weight's channels"),
        (np.zeros((8, 4, 3, 3, 3), np.float32), (0, 4), "positive"),
        (np.zeros((8, 4, 3, 3, 3), np.float32), (8,), r"\(g_m, g_n\)"),
    ],
)
def test_bad_input_is_named(weight, group, match):
    with pytest.raises(S.SparsityFormatError, match=match):
        S.classify(weight, group, name="layer7")
    with pytest.raises(S.SparsityFormatError, match="layer7"):
        S.compact(weight, group, name="layer7")


def test_broadcast_unit_mask_rejects_wrong_shape():
    with pytest.raises(S.SparsityFormatError, match="does not fit"):
        S.broadcast_unit_mask(np.ones((2, 2, 27), bool), (16, 4, 3, 3, 3), (8, 4))


def _plane_weight(shape, rate, group, rng):
    """A random weight with ``round(rate * planes)`` whole (group, kd) planes zeroed."""
    m, n, kd, kh, kw = shape
    mg, ng = -(-m // group[0]), -(-n // group[1])
    keep = np.ones(mg * ng * kd, bool)
    keep[rng.permutation(keep.size)[: round(rate * keep.size)]] = False
    keep = keep.reshape(mg, ng, kd)
    units = np.repeat(keep, kh * kw, axis=2)  # [Mg, Ng, Kd*Kh*Kw], (kd, kh, kw) row-major
    w = rng.standard_normal(shape).astype(np.float32)
    return w * S.broadcast_unit_mask(units, shape, group), keep


@pytest.mark.parametrize("group", [(8, 4), (4, 4), (2, 2)])
@pytest.mark.parametrize("shape", [(32, 16, 3, 3, 3), (45, 13, 3, 3, 3), (16, 8, 5, 3, 3)])
def test_classify_plane(rng, group, shape):
    w, keep = _plane_weight(shape, 0.6, group, rng)
    np.testing.assert_array_equal(S.plane_mask(w, group), keep)
    info = S.classify(w, group)
    assert info.scheme == "plane" and info.is_structured
    assert info.stray_zero_fraction == 0
    # kept MACs: the kept planes' (edge-aware) sizes times their Kh*Kw positions
    def sizes(extent, g):  # full groups, then the smaller edge group
        return np.diff(np.minimum(np.arange(0, extent + g, g), extent))[: -(-extent // g)]

    rows = sizes(shape[0], group[0])[:, None, None]
    cols = sizes(shape[1], group[1])[None, :, None]
    assert info.kept_macs == int((keep * rows * cols).sum()) * shape[3] * shape[4]
    assert info.kept_fraction == pytest.approx(0.4, abs=0.1)  # edge groups: not exactly
    # the KGS kernel's layout and group detection work on it unchanged
    packed = S.compact(w, group)
    np.testing.assert_array_equal(packed.to_dense(), w)
    assert packed.kept_macs == info.kept_macs
    if group == (8, 4):
        assert S.detect_group(w) == group

    # one hole inside a kept plane (a single unit zeroed): a KGS pattern, not a plane one
    i, j, d = np.argwhere(keep)[rng.integers(keep.sum())]
    holed = w.copy()
    holed[i * group[0]:(i + 1) * group[0], j * group[1]:(j + 1) * group[1], d, 1, 1] = 0
    assert S.classify(holed, group).scheme == "kgs"
    np.testing.assert_array_equal(S.plane_mask(holed, group), keep)  # the plane still holds


def test_classify_plane_against_other_schemes(rng):
    shape, group = (32, 16, 3, 3, 3), (8, 4)
    # random KGS holes almost never come in whole planes
    assert S.classify(structured_weight(shape, "kgs", 0.6, group, rng), group).scheme == "kgs"
    assert S.classify(structured_weight(shape, "dense", 0, group, rng), group).scheme == "dense"
    assert S.classify(structured_weight(shape, "vanilla", 0.5, group, rng),
                      group).scheme == "vanilla"
    # Kd = 1: a plane is the whole kernel group, so plane pruning is vanilla
    w, _ = _plane_weight((32, 16, 1, 3, 3), 0.5, group, rng)
    assert S.classify(w, group).scheme == "vanilla"
    # Kh = Kw = 1: every unit is a plane; the pattern is reported as the KGS it also is
    w, _ = _plane_weight((32, 16, 3, 1, 1), 0.5, group, rng)
    assert S.classify(w, group).scheme == "kgs"


def test_plane_mask_bad_input_is_named():
    with pytest.raises(S.SparsityFormatError, match=r"layer7.*5-D"):
        S.plane_mask(np.zeros((8, 4, 3, 3), np.float32), (8, 4), name="layer7")
    with pytest.raises(S.SparsityFormatError, match=r"layer7.*larger"):
        S.plane_mask(np.zeros((8, 4, 3, 3, 3), np.float32), (16, 4), name="layer7")
