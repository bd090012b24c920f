"""The PyTorchVideo-style zoo models (X3D-XS/S, Slow-R50, ir-CSN-50, SlowFast-R50): published
parameter and MAC figures, PyTorchVideo's state-dict names, forward / export shapes, KGS presets
through the sparsity contract, and the ``rt3d`` pipeline against PyTorch eager.

MACs are counted by :func:`rt3d_prune.macs.count_macs` (conv and linear layers; one
multiply-add = one "FLOP" in the papers' and PyTorchVideo's convention, pooling / BN /
activations / SE gating not counted).
"""

from __future__ import annotations

import argparse
import functools
import json

import numpy as np
import pytest
import torch

from rt3d_passes.sparsity import classify
from rt3d_prune.cli import register
from rt3d_prune.macs import count_macs, total_macs
from rt3d_prune.models import (
    MODEL_NAMES,
    PAPER_INPUT_SHAPES,
    build_model,
    default_input_shape,
    input_shapes,
)
from rt3d_prune.oneshot import prune_oneshot
from rt3d_prune.presets import PRESET_NAMES, get_preset

NEW_MODELS = ("x3d_xs", "x3d_s", "slow_r50", "ir_csn_50", "slowfast_r50")
PRESETS = {"x3d_xs": "x3d_xs-3x", "x3d_s": "x3d_s-3x", "slow_r50": "slow_r50-3.2x",
           "ir_csn_50": "ir_csn_50-2.6x", "slowfast_r50": "slowfast_r50-2.9x"}
# small clips: every stride still leaves >= 1 position (SlowFast: the fast clip)
SMALL = {"x3d_xs": (1, 3, 4, 32, 32), "x3d_s": (1, 3, 4, 32, 32),
         "slow_r50": (1, 3, 4, 32, 32), "ir_csn_50": (1, 3, 8, 32, 32),
         "slowfast_r50": (1, 3, 8, 32, 32)}

# Sources (400 classes; MACs = "FLOPs" of a single clip):
#  [PSF] PySlowFast MODEL_ZOO.md (X3D): XS 3.8 M / 0.60 G at 4x160x160, S 3.8 M / 1.96 G at
#        13x160x160 -- the X3D paper's Table 3 figures (its params column reads 3.76 M).
#  [PTV] PyTorchVideo model_zoo.md, Kinetics-400: X3D XS/S 3.79 M params; Slow R50 8x8
#        32.45 M / 54.52 G; SlowFast R50 8x8 34.57 M / 65.71 G (8 + 32 frames). Its FLOPs are
#        for the 256x256 test crops (3 crops x 10 clips), so they are checked at 256x256.
#  [CSN] Tran et al., ICCV 2019, Table 3: ir-CSN-50, 8x224x224 clips: 13.1 M params,
#        10.6 GFLOPs.
# (name, input, params M, params tolerance, G MACs, MAC tolerance, source)
PUBLISHED = [
    ("x3d_xs", (1, 3, 4, 160, 160), 3.79, 0.01, 0.60, 0.01, "PSF/PTV"),
    ("x3d_s", (1, 3, 13, 160, 160), 3.79, 0.01, 1.96, 0.01, "PSF/PTV"),
    ("slow_r50", PAPER_INPUT_SHAPES["slow_r50"], 32.45, 0.01, 54.52, 0.01, "PTV"),
    ("ir_csn_50", PAPER_INPUT_SHAPES["ir_csn_50"], 13.1, 0.05, 10.6, 0.05, "CSN"),
    ("slowfast_r50", PAPER_INPUT_SHAPES["slowfast_r50"], 34.57, 0.01, 65.71, 0.01, "PTV"),
]


def _meta(name: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(name)


@pytest.mark.parametrize(("name", "shape", "params_m", "ptol", "gmacs", "mtol", "source"),
                         PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_figures(name, shape, params_m, ptol, gmacs, mtol, source):
    model = _meta(name)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=ptol)
    dense, _ = total_macs(count_macs(model, shape))
    assert dense / 1e9 == pytest.approx(gmacs, abs=mtol), source


def test_registry_and_benchmark_shapes():
    assert set(NEW_MODELS) <= set(MODEL_NAMES)
    assert set(PRESETS.values()) <= set(PRESET_NAMES)
    assert default_input_shape("x3d_xs") == (1, 3, 4, 160, 160)
    assert default_input_shape("x3d_s") == (1, 3, 13, 160, 160)
    for name in ("slow_r50", "ir_csn_50"):
        assert default_input_shape(name) == (1, 3, 8, 128, 128)
    # SlowFast: one shape (the fast clip) for single-input tools, both clips on request
    assert default_input_shape("slowfast_r50") == (1, 3, 32, 128, 128)
    assert input_shapes("slowfast_r50") == ((1, 3, 8, 128, 128), (1, 3, 32, 128, 128))
    assert input_shapes("slow_r50") == ((1, 3, 8, 128, 128),)


def test_rt3d_models_lists_them(capsys):
    parser = argparse.ArgumentParser(prog="rt3d")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", *NEW_MODELS, "--json"])
    assert args.func(args) == 0
    report = {e["model"]: e for e in json.loads(capsys.readouterr().out)}
    assert list(report) == list(NEW_MODELS)
    assert report["slowfast_r50"]["macs"] / 1e9 == pytest.approx(16.43, abs=0.01)
    assert report["x3d_xs"]["macs"] / 1e9 == pytest.approx(0.605, abs=0.001)


# --- PyTorchVideo state-dict names, written from its builders' rules (not from our model) ---

def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}
    return {**keys, f"{prefix}.num_batches_tracked": ()}


def _res_stage(prefix: str, depth: int, d_in: int, inner: int, d_out: int, ka, kb,
               groups: int = 1) -> dict:
    """``create_res_stage``: the first block of every stage here has a projection shortcut."""
    keys: dict = {}
    for i in range(depth):
        p, d = f"{prefix}.res_blocks.{i}", d_in if i == 0 else d_out
        if i == 0:
            keys[f"{p}.branch1_conv.weight"] = (d_out, d, 1, 1, 1)
            keys.update(_bn(f"{p}.branch1_norm", d_out))
        keys[f"{p}.branch2.conv_a.weight"] = (inner, d, *ka)
        keys[f"{p}.branch2.conv_b.weight"] = (inner, inner // groups, *kb)
        keys[f"{p}.branch2.conv_c.weight"] = (d_out, inner, 1, 1, 1)
        for n, c in (("norm_a", inner), ("norm_b", inner), ("norm_c", d_out)):
            keys.update(_bn(f"{p}.branch2.{n}", c))
    return keys


_DEPTHS = (3, 4, 6, 3)


def _pv_resnet(kind: str) -> dict:
    """``create_resnet`` (slow_r50) and ``create_csn`` (ir-CSN) keys."""
    k_stem = (1, 7, 7) if kind == "slow" else (3, 7, 7)
    keys = {"blocks.0.conv.weight": (64, 3, *k_stem), **_bn("blocks.0.norm", 64)}
    d_in, d_out = 64, 256
    for i, depth in enumerate(_DEPTHS):
        inner = d_out // 4
        if kind == "slow":
            ka, kb, g = ((1, 1, 1) if i < 2 else (3, 1, 1)), (1, 3, 3), 1
        else:
            ka, kb, g = (1, 1, 1), (3, 3, 3), inner
        keys.update(_res_stage(f"blocks.{i + 1}", depth, d_in, inner, d_out, ka, kb, g))
        d_in, d_out = d_out, d_out * 2
    return {**keys, "blocks.5.proj.weight": (400, 2048), "blocks.5.proj.bias": (400,)}


def _pv_slowfast() -> dict:
    """``create_slowfast`` with ``FastToSlowFusionBuilder`` (8x8: 7x1x1 laterals)."""
    keys: dict = {}
    for path, c, k in ((0, 64, (1, 7, 7)), (1, 8, (5, 7, 7))):
        keys[f"blocks.0.multipathway_blocks.{path}.conv.weight"] = (c, 3, *k)
        keys.update(_bn(f"blocks.0.multipathway_blocks.{path}.norm", c))

    def fusion(i: int, fast: int) -> None:
        keys[f"blocks.{i}.multipathway_fusion.conv_fast_to_slow.weight"] = (2 * fast, fast, 7, 1, 1)
        keys.update(_bn(f"blocks.{i}.multipathway_fusion.norm", 2 * fast))

    fusion(0, 8)
    d_in, d_out = 64, 256
    for i, depth in enumerate(_DEPTHS):
        slow_ka = (1, 1, 1) if i < 2 else (3, 1, 1)
        keys.update(_res_stage(f"blocks.{i + 1}.multipathway_blocks.0", depth,
                               d_in + d_in * 2 // 8, d_out // 4, d_out, slow_ka, (1, 3, 3)))
        keys.update(_res_stage(f"blocks.{i + 1}.multipathway_blocks.1", depth, d_in // 8,
                               d_out // 32, d_out // 8, (3, 1, 1), (1, 3, 3)))
        if i < 3:
            fusion(i + 1, d_out // 8)
        d_in, d_out = d_out, d_out * 2
    return {**keys, "blocks.6.proj.weight": (400, 2304), "blocks.6.proj.bias": (400,)}


def _pv_x3d() -> dict:
    """``create_x3d`` (XS and S share it): stage widths 24/48/96/192, inner 54/108/216/432,
    depths 3/5/11/7, SE on even blocks (fvcore's ``block.0`` / ``block.2``), a shortcut norm
    only where the width changes."""
    keys = {"blocks.0.conv.conv_t.weight": (24, 3, 1, 3, 3),
            "blocks.0.conv.conv_xy.weight": (24, 1, 5, 1, 1), **_bn("blocks.0.norm", 24)}
    d_in = 24
    for s, (d_out, inner, depth, se) in enumerate(
            ((24, 54, 3, 8), (48, 108, 5, 8), (96, 216, 11, 16), (192, 432, 7, 32)), 1):
        for i in range(depth):
            p, d = f"blocks.{s}.res_blocks.{i}", d_in if i == 0 else d_out
            if i == 0:
                keys[f"{p}.branch1_conv.weight"] = (d_out, d, 1, 1, 1)
                if d != d_out:
                    keys.update(_bn(f"{p}.branch1_norm", d_out))
            b = f"{p}.branch2"
            keys[f"{b}.conv_a.weight"] = (inner, d, 1, 1, 1)
            keys[f"{b}.conv_b.weight"] = (inner, 1, 3, 3, 3)
            keys[f"{b}.conv_c.weight"] = (d_out, inner, 1, 1, 1)
            keys.update({**_bn(f"{b}.norm_a", inner), **_bn(f"{b}.norm_b.0", inner),
                         **_bn(f"{b}.norm_c", d_out)})
            if i % 2 == 0:
                keys.update({f"{b}.norm_b.1.block.0.weight": (se, inner, 1, 1, 1),
                             f"{b}.norm_b.1.block.0.bias": (se,),
                             f"{b}.norm_b.1.block.2.weight": (inner, se, 1, 1, 1),
                             f"{b}.norm_b.1.block.2.bias": (inner,)})
        d_in = d_out
    return {**keys, "blocks.5.pool.pre_conv.weight": (432, 192, 1, 1, 1),
            **_bn("blocks.5.pool.pre_norm", 432),
            "blocks.5.pool.post_conv.weight": (2048, 432, 1, 1, 1),
            "blocks.5.proj.weight": (400, 2048), "blocks.5.proj.bias": (400,)}


_PV_KEYS = {"x3d_xs": _pv_x3d, "x3d_s": _pv_x3d, "slow_r50": lambda: _pv_resnet("slow"),
            "ir_csn_50": lambda: _pv_resnet("csn"), "slowfast_r50": _pv_slowfast}


@pytest.mark.parametrize("name", NEW_MODELS)
def test_pytorchvideo_state_dict_loads(name):
    expected = _PV_KEYS[name]()
    gen = torch.Generator().manual_seed(0)
    state = {k: (torch.tensor(7) if not s else torch.randn(s, generator=gen))
             for k, s in expected.items()}
    model = build_model(name)
    model.load_state_dict(state, strict=True)  # same names, same shapes, nothing left over
    loaded = model.state_dict()
    probe = next(k for k in expected if k.endswith("conv_b.weight"))
    assert torch.equal(loaded[probe], state[probe])


# --- forward and export ---

def _inputs(name: str, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen) for s in input_shapes(name, SMALL[name])]


@pytest.mark.parametrize("name", NEW_MODELS)
def test_forward_shape_small(name):
    model = build_model(name, num_classes=7).eval()
    with torch.no_grad():
        assert model(*_inputs(name)).shape == (1, 7)


def test_slowfast_single_input_samples_the_slow_clip():
    model = build_model("slowfast_r50", num_classes=5).eval()
    slow, fast = _inputs("slowfast_r50")
    with torch.no_grad():
        both = model(fast[:, :, ::4], fast)
        assert torch.equal(model(fast), both)
        assert not torch.allclose(model(slow, fast), both)  # the slow clip is really used


@pytest.mark.parametrize("name", ["x3d_xs", "slowfast_r50"])
def test_torch_export(name):
    model = build_model(name, num_classes=5).eval()
    xs = _inputs(name)
    exported = torch.export.export(model, tuple(xs))
    assert len(exported.graph_signature.user_inputs) == len(xs)
    with torch.no_grad():
        assert torch.allclose(exported.module()(*xs), model(*xs), atol=1e-5)


# --- presets through the sparsity contract ---

@functools.cache
def _pruned(preset: str, num_classes: int = 400) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(get_preset(preset).model, num_classes=num_classes)
    return prune_oneshot(model, preset, scheme="kgs", group=(8, 4)).eval()


@pytest.mark.parametrize("name", NEW_MODELS)
def test_preset_classifies_as_kgs(name):
    preset = get_preset(PRESETS[name])
    model = _pruned(preset.name)
    rates = dict(preset.rates)
    seen = set()
    for layer, module in model.named_modules():
        if not isinstance(module, torch.nn.Conv3d):
            continue
        w = module.weight.detach().numpy()
        if layer not in rates:
            info = classify(w, (min(8, w.shape[0]), min(4, w.shape[1])), name=layer)
            # stems (3 input channels), depthwise convs and X3D's SE convs stay dense
            assert module.groups > 1 or module.in_channels == 3 or ".block." in layer, layer
            assert info.scheme == "dense", layer
            continue
        assert module.groups == 1, layer
        info = classify(w, (8, 4), name=layer)
        # a 1x1x1 kernel has one position, so a KGS unit is the whole kernel group and
        # classify names the pattern "vanilla"; every larger kernel must read "kgs"
        one_position = module.weight[0, 0].numel() == 1
        assert info.scheme == ("vanilla" if one_position else "kgs"), layer
        seen.add(info.scheme)
        assert info.stray_zero_fraction < 1e-5, layer
        # balanced KGS rounds per output group: a small layer's rate moves in big steps
        assert 1 - info.kept_fraction == pytest.approx(rates[layer], abs=0.21), layer
    if name in ("slow_r50", "slowfast_r50"):
        assert seen == {"kgs", "vanilla"}
    dense, kept = total_macs(count_macs(model, default_input_shape(name)))
    assert dense / kept == pytest.approx(preset.target_reduction, rel=0.03)


# --- the rt3d pipeline on each network, small inputs, pruned at the preset ---

def _calibrated(model: torch.nn.Module, name: str) -> torch.nn.Module:
    """A copy whose BatchNorm statistics come from a batch of 4 random clips and whose
    classifier has no bias.

    At random init the running statistics (0, 1) let the activations shrink ~3x per stage, so
    the logits are mostly the classifier's bias and a comparison would test little. (A batch
    of one clip is not enough: the last stages have 1-2 positions per channel, and variances
    of 2 values amplify rounding by 1/sqrt(eps).)"""
    import copy

    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.reset_running_stats()
            m.momentum = None  # cumulative: one batch sets the statistics
    gen = torch.Generator().manual_seed(2)
    batch = [torch.randn((4, *s[1:]), generator=gen) for s in input_shapes(name, SMALL[name])]
    model.train()
    with torch.no_grad():
        model(*batch)
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.bias.zero_()
    return model.eval()


def _check_compiled(name: str) -> None:
    import tvm
    from tvm import relax

    import rt3d_passes

    xs = _inputs(name, seed=1)
    model = _calibrated(_pruned(PRESETS[name], num_classes=10), name)
    with torch.no_grad():
        ref = model(*xs).numpy()
    assert np.abs(ref).max() > 1e-3  # the logits carry the input, not a constant
    mod = rt3d_passes.from_torch(model, xs)
    target = rt3d_passes.host_target()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](
        *[tvm.runtime.tensor(x.numpy()) for x in xs]).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


# X3D-S is X3D-XS's network on a longer clip: compiling it again would test nothing new
@pytest.mark.slow
@pytest.mark.parametrize("name", ["x3d_xs", "slow_r50", "ir_csn_50", "slowfast_r50"])
def test_rt3d_pipeline_matches_eager(name):
    _check_compiled(name)
