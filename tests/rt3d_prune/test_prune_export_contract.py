"""Export contract: every preset, squashed, is classified by rt3d_passes.sparsity as pruned.

The layers' zeros must be exact whole units, ``classify`` must report the same scheme and
group, ``detect_group`` must find the group, and the model-level MAC reduction must be close
to the preset's claim.
"""

from __future__ import annotations

import functools

import pytest
import torch

from rt3d_passes.sparsity import classify, compact, detect_group
from rt3d_prune.macs import count_macs, total_macs
from rt3d_prune.models import build_model, default_input_shape
from rt3d_prune.oneshot import prune_oneshot
from rt3d_prune.presets import PRESET_NAMES, get_preset


@functools.cache
def _pruned(preset: str, scheme: str):
    torch.manual_seed(0)
    model = build_model(get_preset(preset).model)
    return prune_oneshot(model, preset, scheme=scheme, group=(8, 4))


def _expected(scheme: str, kernel: tuple[int, int, int]) -> str:
    """What ``classify`` calls a layer pruned with ``scheme``: a 1x1x1 kernel has one position,
    so its KGS units are whole kernel groups ("vanilla", the bottleneck models' pointwise
    convs); a plane of a Kd = 1 kernel (1x3x3) is the whole kernel group ("vanilla"), and a
    plane of a Kh = Kw = 1 kernel (3x1x1) is one unit ("kgs")."""
    kd, kh, kw = kernel
    if kd * kh * kw == 1 or (scheme == "plane" and kd == 1):
        return "vanilla"
    if scheme == "plane" and kh * kw == 1:
        return "kgs"
    return scheme


@pytest.mark.parametrize("scheme", ["kgs", "plane", "vanilla"])
@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_every_pruned_layer_classifies(preset, scheme):
    model = _pruned(preset, scheme)
    rates = dict(get_preset(preset).rates)
    modules = dict(model.named_modules())
    for name, rate in rates.items():
        w = modules[name].weight.detach().numpy()
        info = classify(w, (8, 4), name=name)
        if rate == 0:
            assert info.scheme == "dense", name
            continue
        expected = _expected(scheme, w.shape[2:])
        assert info.scheme == expected, name
        # random init leaves a handful of exact zeros (~1e-7) inside kept units
        assert info.stray_zero_fraction < 1e-5, name
        found = detect_group(w, name=name)
        if expected in ("kgs", "plane"):
            assert found == (8, 4), name
        else:  # aligned vanilla groups may also form a larger exact group; same savings
            assert classify(w, found).kept_macs == info.kept_macs, name
        # a layer with few groups can only hit the rate to within half a group; balanced KGS
        # (plane) rounds per output group, within half of one of its units (planes)
        per_group = {"kgs": w[0, 0].size, "plane": w.shape[2], "vanilla": 1}[scheme]
        groups = (info.kept_macs // 32 if scheme == "kgs"
                  else w.shape[0] * w.shape[1] // 32)
        row_units = -(-w.shape[1] // 4) * per_group
        slack = max(0.02, 0.5 / max(groups, 1), 0.5 / row_units if scheme != "vanilla" else 0)
        assert 1 - info.kept_fraction == pytest.approx(rate, abs=slack), name
    dense, kept = total_macs(count_macs(model, default_input_shape(get_preset(preset).model)))
    tolerance = 0.03 if scheme == "kgs" or preset.startswith(("c3d-", "r2p")) else 0.1
    if scheme == "plane":
        # rates rounded to whole planes per output group (12 a row on c3d_small's conv2):
        # c3d_small-5x reaches 5.21x
        tolerance = 0.05
    assert dense / kept == pytest.approx(get_preset(preset).target_reduction, rel=tolerance)


def test_c3d_preset_is_the_papers():
    preset = get_preset("c3d-3.6x")
    assert dict(preset.rates) == {"conv2": 0.85, "conv3b": 0.85, "conv3a": 0.80, "conv4b": 0.80}
    model = _pruned("c3d-3.6x", "kgs")
    _, kept = total_macs(count_macs(model, default_input_shape("c3d")))
    assert kept / 1e9 == pytest.approx(10.8, abs=0.05)
    # the compiler's compaction round-trips the pruned layer exactly
    w = model.conv3b.weight.detach().numpy()
    packed = compact(w, (8, 4))
    assert (packed.to_dense() == w).all()
    assert packed.kept_macs == classify(w, (8, 4)).kept_macs


@pytest.mark.parametrize("preset", ["c3d-3.6x", "c3d_small-3.6x"])
def test_plane_preset_keeps_the_kgs_macs(preset):
    """The same per-layer rates with scheme="plane": equal MACs up to the rounding to whole
    planes per output group, so accuracy comparisons of the two schemes are at equal cost."""
    shape = default_input_shape(get_preset(preset).model)
    _, kgs = total_macs(count_macs(_pruned(preset, "kgs"), shape))
    _, plane = total_macs(count_macs(_pruned(preset, "plane"), shape))
    assert plane == pytest.approx(kgs, rel=0.02)
    w = _pruned(preset, "plane").conv3b.weight.detach().numpy()
    info = classify(w, (8, 4))
    assert info.scheme == "plane" and info.computed_macs == info.kept_macs  # balanced
    packed = compact(w, (8, 4))
    assert (packed.to_dense() == w).all() and packed.kept_macs == info.kept_macs


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match=r"c3d-3\.6x.*r2plus1d-3\.2x.*s3d-2\.1x"):
        get_preset("c3d-9x")


def test_baselines_are_not_kernel_group_patterns():
    torch.manual_seed(0)
    model = prune_oneshot(build_model("c3d_small"), "c3d_small-3.6x", scheme="unstructured")
    assert classify(model.conv2.weight.detach().numpy(), (8, 4)).scheme == "unstructured"
    model = prune_oneshot(build_model("c3d_small"), "c3d_small-3.6x", scheme="filter")
    w = model.conv3b.weight.detach()
    zero_filters = (w.flatten(1) == 0).all(dim=1)
    assert zero_filters.float().mean().item() == pytest.approx(0.85, abs=0.02)
    assert classify(w.numpy(), (1, w.shape[1])).scheme == "vanilla"
