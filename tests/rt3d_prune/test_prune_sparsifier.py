"""GroupSparsifier: prepare -> step -> squash, masked training, bad-config errors."""

from __future__ import annotations

import pytest
import torch

from rt3d_passes.sparsity import classify
from rt3d_prune.config import SparsityConfig
from rt3d_prune.models import build_model
from rt3d_prune.sparsifier import GroupSparsifier


def _small():
    torch.manual_seed(0)
    return build_model("c3d_small", num_classes=4)


@pytest.mark.parametrize("scheme", ["kgs", "vanilla", "filter", "unstructured"])
def test_rates_are_met_and_zeros_exact(scheme):
    model = _small()
    config = SparsityConfig(scheme=scheme, rates={"conv2": 0.5, "conv3b": 0.75})
    sp = GroupSparsifier()
    sp.prepare(model, config)
    sp.step()
    fractions = sp.pruned_fractions()
    assert fractions["conv2"] == pytest.approx(0.5, abs=0.02)
    assert fractions["conv3b"] == pytest.approx(0.75, abs=0.02)
    sp.squash_mask()
    assert not hasattr(model.conv2, "parametrizations")
    zero = (model.conv3b.weight == 0).float().mean().item()
    assert zero == pytest.approx(0.75, abs=0.02)
    assert (model.conv1.weight != 0).all()  # untouched layer


def test_ranking_prunes_the_smallest_units():
    model = _small()
    with torch.no_grad():
        model.conv2.weight[:8, :4, 0, 0, 0] = 1e-4  # one tiny unit per scheme
    sp = GroupSparsifier()
    sp.prepare(model, SparsityConfig(rates={"conv2": 0.01}))
    sp.step()
    assert not sp.masks()["conv2"][0, 0, 0]


def test_masked_training_keeps_zeros():
    model = _small()
    sp = GroupSparsifier()
    sp.prepare(model, SparsityConfig(rates={"conv2": 0.6}))
    sp.step()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(2):
        loss = model(torch.randn(2, 3, 16, 32, 32)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sp.squash_mask()
    info = classify(model.conv2.weight.detach().numpy(), (8, 4))
    assert info.scheme == "kgs"
    assert info.kept_fraction == pytest.approx(0.4, abs=0.02)


def test_threshold_mode():
    model = _small()
    with torch.no_grad():
        model.conv3a.weight[8:16] = 0.0
    sp = GroupSparsifier()
    sp.prepare(model, SparsityConfig(scheme="vanilla", rates={"conv3a": 0.0}, threshold=1e-6))
    sp.step()
    assert sp.pruned_fractions()["conv3a"] == pytest.approx(8 / 64)  # 8 of 64 filters


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (SparsityConfig(rates={"conv9": 0.5}), "'conv9'.*valid layers"),
        (SparsityConfig(rates={"conv2": 1.0}), "'conv2'.*rate"),
        (SparsityConfig(rates={"conv2": -0.1}), "'conv2'.*rate"),
        (SparsityConfig(rates={"conv1": 0.5}), "'conv1'.*larger than"),  # 3 input channels
        (SparsityConfig(group=(64, 4), rates={"conv2": 0.5}), "'conv2'.*larger than"),
    ],
)
def test_bad_configs_fail_at_prepare_naming_the_layer(config, match):
    with pytest.raises(ValueError, match=match):
        GroupSparsifier().prepare(_small(), config)


def test_bad_scheme_and_lifecycle():
    with pytest.raises(ValueError, match="scheme"):
        SparsityConfig(scheme="diagonal")
    sp = GroupSparsifier()
    with pytest.raises(RuntimeError):
        sp.step()
    config = SparsityConfig(rates={"conv2": 0.5})
    assert config == SparsityConfig(rates=[("conv2", 0.5)])  # frozen, compares by value
    with pytest.raises(AttributeError):
        config.scheme = "vanilla"


@pytest.mark.parametrize("balanced", [True, False])
def test_balanced_groups_compile_without_padding(balanced):
    """Balanced (the default): every output group keeps the same units, so the compacted
    operator computes no padding slots; layer-wide ranking leaves the counts scattered."""
    from rt3d_passes.sparsity import compact

    model = _small()
    config = SparsityConfig(rates={"conv3b": 0.85}, balanced=balanced)
    sp = GroupSparsifier()
    sp.prepare(model, config)
    sp.step()
    mask = sp.masks()["conv3b"]  # [Mg, Ng, K3]
    per_group = mask.flatten(1).sum(1)
    assert bool(per_group.min() == per_group.max()) is balanced
    sp.squash_mask()
    packed = compact(model.conv3b.weight.detach().numpy(), (8, 4))
    assert bool(packed.computed_macs == packed.kept_macs) is balanced


def test_plane_rates_are_met_with_whole_planes():
    model = _small()
    config = SparsityConfig(scheme="plane", rates={"conv2": 0.5, "conv3b": 0.75})
    sp = GroupSparsifier()
    sp.prepare(model, config)
    sp.step()
    assert sp.masks()["conv3b"].shape == (8, 16, 3)  # [Mg, Ng, Kd]
    fractions = sp.pruned_fractions()
    assert fractions["conv2"] == pytest.approx(0.5, abs=0.02)
    assert fractions["conv3b"] == pytest.approx(0.75, abs=0.02)
    sp.squash_mask()
    for name, rate in config.rates:
        info = classify(model.get_submodule(name).weight.detach().numpy(), (8, 4), name=name)
        assert info.scheme == "plane", name
        assert info.kept_fraction == pytest.approx(1 - rate, abs=0.02)
        assert info.computed_macs == info.kept_macs  # balanced: no padding slots


@pytest.mark.parametrize(
    ("layer", "match"),
    [("fc6", r"'fc6'.*plane scheme.*Linear.*2-D"),  # not a conv3d weight
     ("conv1", "'conv1'.*larger than")],
)
def test_plane_on_a_bad_layer_fails_at_prepare_naming_it(layer, match):
    with pytest.raises(ValueError, match=match):
        GroupSparsifier().prepare(_small(), SparsityConfig(scheme="plane", rates={layer: 0.5}))


def test_plane_on_a_conv2d_fails_naming_the_layer():
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 16, 3))
    with pytest.raises(ValueError, match=r"'0'.*plane scheme.*Conv2d.*4-D"):
        GroupSparsifier().prepare(model, SparsityConfig(scheme="plane", rates={"0": 0.5}))
