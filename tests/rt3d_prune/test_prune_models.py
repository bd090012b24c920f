"""Model zoo: published parameter / MAC figures, export-ability, registry errors."""

from __future__ import annotations

import pytest
import torch

from rt3d_prune.macs import count_macs, total_macs
from rt3d_prune.models import C3D_CONV_NAMES, MODEL_NAMES, build_model, default_input_shape


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "params_m", "macs_g"),
    [
        ("c3d", 78.4, 38.5),  # Tran et al. 2015 / RT3D Table 3
        ("r2plus1d_18", 31.5, 40.5),  # torchvision r2plus1d_18 (400 classes)
        ("s3d", 8.3, None),  # torchvision s3d (400 classes)
    ],
)
def test_published_figures(name, params_m, macs_g):
    model = build_model(name)
    assert _params(model) / 1e6 == pytest.approx(params_m, abs=0.05)
    if macs_g is not None:
        dense, kept = total_macs(count_macs(model, default_input_shape(name)))
        assert dense / 1e9 == pytest.approx(macs_g, abs=0.1)
        assert kept == pytest.approx(dense, rel=1e-3)  # random init: essentially no zeros


def test_c3d_layer_names_and_macs():
    model = build_model("c3d")
    layers = {x.name: x for x in count_macs(model, default_input_shape("c3d"))}
    for name in C3D_CONV_NAMES:
        assert isinstance(getattr(model, name), torch.nn.Conv3d)
    # conv2: 64 -> 128, 3x3x3, on 16x56x56 after pool1 (1, 2, 2)
    assert layers["conv2"].dense_macs == 128 * 64 * 27 * 16 * 56 * 56
    assert layers["conv2"].output_shape == (1, 128, 16, 56, 56)
    assert model.fc6.in_features == 8192


def test_r2plus1d_mid_planes_match_torchvision():
    model = build_model("r2plus1d_18")
    # torchvision: midplanes = in*out*27 // (in*9 + 3*out)
    assert model.layer2[0].conv1[0][0].out_channels == 230
    assert model.layer4[1].conv2[0][0].out_channels == 1152


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shape_small(name):
    # small clips keep this fast; C3D's fc6 is sized for its input, so use the small variant
    shapes = {"c3d": None, "c3d_small": (2, 3, 16, 32, 32), "r2plus1d_18": (1, 3, 4, 32, 32),
              "s3d": (1, 3, 8, 64, 64), "x3d_xs": (1, 3, 4, 32, 32), "x3d_s": (1, 3, 4, 32, 32),
              "slow_r50": (1, 3, 4, 32, 32), "ir_csn_50": (1, 3, 8, 32, 32),
              "slowfast_r50": (1, 3, 8, 32, 32)}  # SlowFast: the fast clip alone
    if shapes[name] is None:
        model = build_model(name, num_classes=7, widths=(4,) * 8, fc_dim=16)
        x = torch.randn(1, 3, 16, 112, 112)
    else:
        model, x = build_model(name, num_classes=7), torch.randn(shapes[name])
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (x.shape[0], 7)


@pytest.mark.parametrize("name", ["c3d_small", "r2plus1d_18"])
def test_torch_export(name):
    model = build_model(name, num_classes=5).eval()
    x = torch.randn(1, 3, 8, 32, 32) if name == "r2plus1d_18" else torch.randn(1, 3, 16, 32, 32)
    exported = torch.export.export(model, (x,))
    assert torch.allclose(exported.module()(x), model(x), atol=1e-5)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match=r"c3d.*r2plus1d_18.*s3d"):
        build_model("resnet50")
    with pytest.raises(ValueError, match="valid names"):
        default_input_shape("nope")
