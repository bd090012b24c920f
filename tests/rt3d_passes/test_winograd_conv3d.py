"""The Winograd conv3d operator, its CPU schedule, the cost model and the passes that select it.

Numerics are checked against PyTorch on fresh random inputs, with the documented bound per
tile (:data:`rt3d_passes.op.WINOGRAD_RTOL`, relative to the reference's largest magnitude).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import relax, s_tir

import rt3d_passes
from rt3d_passes.op import (
    WINOGRAD_RTOL,
    Conv3DGeometry,
    WinogradGeometry,
    winograd_columns,
    winograd_conv3d_primfunc,
    winograd_matrices,
)
from rt3d_passes.testing import structured_weight
from rt3d_passes.transform.algorithm import choose_algorithm
from schedules import schedule_winograd_cpu
from schedules.contract import (
    WINOGRAD_CONV3D_ATTR,
    WINOGRAD_EPILOGUE_BLOCK,
    is_kgs_conv3d,
    is_winograd_conv3d,
)
from tests.conv3d_strategies import rel_error


def _torch_conv(x, w, padding):
    p = padding if len(padding) == 6 else tuple(padding) * 2
    xt = torch.nn.functional.pad(torch.from_numpy(x), (p[2], p[5], p[1], p[4], p[0], p[3]))
    return torch.nn.functional.conv3d(xt, torch.from_numpy(w)).numpy()


def _run_operator(x, w, padding, tile, group_m):
    func, values, offsets = winograd_conv3d_primfunc(x.shape, w, padding, tile, group_m)
    target = rt3d_passes.host_target()
    with target:
        sch = schedule_winograd_cpu(s_tir.Schedule(func), target=target)
    fn = tvm.compile(sch.mod, target=target)
    geo = WinogradGeometry(x.shape, w.shape[2:], padding, tile)
    y = tvm.runtime.tensor(np.zeros(geo.output_shape(w.shape[0]), np.float32))
    fn(tvm.runtime.tensor(x), tvm.runtime.tensor(values), tvm.runtime.tensor(offsets), y)
    return y.numpy()


def test_transform_matrices_compute_a_convolution():
    """``A^T [(G g G^T) * (B^T d B)] A`` is the 2-D correlation of ``d`` with ``g``."""
    rng = np.random.default_rng()
    for m in (2, 4):
        a, b, g = winograd_matrices(m)
        d, k = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
        y = a.T @ ((g @ k @ g.T) * (b.T @ d @ b)) @ a
        ref = np.array([[np.sum(d[i:i + 3, j:j + 3] * k) for j in range(m)] for i in range(m)])
        np.testing.assert_allclose(y, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("shape,out,kernel,padding,scheme,group_m", [
    ((1, 5, 4, 9, 11), 12, (3, 3, 3), (1, 1, 1), "dense", 8),  # partial tiles, partial group
    ((2, 3, 3, 7, 6), 10, (1, 3, 3), (0, 1, 1), "dense", 8),  # 1x3x3, batch 2
    ((1, 16, 5, 8, 8), 16, (3, 3, 3), (1, 0, 2, 0, 1, 1), "plane", 8),  # asymmetric padding
    ((1, 24, 4, 14, 14), 32, (3, 3, 3), (1, 1, 1), "plane", 8),  # C3D conv4-like
    ((1, 9, 2, 7, 7), 20, (2, 3, 3), (0, 1, 1), "kgs", 4),  # KGS holes fill whole planes
])
def test_operator_matches_torch(shape, out, kernel, padding, scheme, group_m, tile):
    rng = np.random.default_rng()
    x = rng.standard_normal(shape).astype(np.float32)
    w = structured_weight((out, shape[1], *kernel), scheme, 0.6, (group_m, 4), rng)
    y = _run_operator(x, w, padding, tile, group_m)
    ref = _torch_conv(x, w, padding)
    assert rel_error(y, ref) <= WINOGRAD_RTOL[tile]


@pytest.mark.parametrize("tile", [2, 4])
def test_error_bound_on_c3d_sized_layers(tile):
    """The documented bound holds where errors accumulate most: C3D's 3x3x3 layers' channel
    counts (reductions over 27 x 256 terms), at reduced maps."""
    rng = np.random.default_rng()
    errors = []
    for shape, out in (((1, 256, 2, 8, 8), 64), ((1, 128, 3, 12, 12), 32)):
        x = rng.standard_normal(shape).astype(np.float32)
        w = (rng.standard_normal((out, shape[1], 3, 3, 3)) / np.sqrt(27 * shape[1]))
        w = w.astype(np.float32)
        errors.append(rel_error(_run_operator(x, w, (1, 1, 1), tile, 8),
                                _torch_conv(x, w, (1, 1, 1))))
    print(f"F({tile}x{tile}) relative errors: {[f'{e:.2e}' for e in errors]}")
    assert max(errors) <= WINOGRAD_RTOL[tile]


def test_columns_keep_whole_planes():
    rng = np.random.default_rng(0)
    w = structured_weight((16, 8, 3, 3, 3), "plane", 0.5, (8, 4), rng)
    _, counts = winograd_columns(w, 8)
    kept = np.any(w != 0, axis=(3, 4)).reshape(2, 8, 8, 3).any(axis=1).sum(axis=(1, 2))
    np.testing.assert_array_equal(counts, kept)
    assert counts.max() < 8 * 3  # pruned planes are skipped
    # a KGS hole inside a plane does not drop it: the weight transform fills the plane
    w = np.ones((8, 4, 3, 3, 3), np.float32)
    w[:, :, 1, 1, 1] = 0
    assert winograd_columns(w, 8)[1].tolist() == [12]


def _choice(shape, out, kernel=(3, 3, 3), strides=(1, 1, 1), padding=(1, 1, 1), **opts):
    geo = Conv3DGeometry(shape, kernel, strides, padding)
    w = np.ones((out, shape[1], *kernel), np.float32)
    macs = int(np.prod(w.shape)) * shape[0] * int(np.prod(geo.output_spatial))
    return choose_algorithm(layer="conv", geometry=geo, weight=w, computed_macs=macs, groups=1,
                            group_m=None, options=rt3d_passes.RewriteOptions(**opts))


def test_cost_model_picks_winograd_where_it_pays():
    # C3D's unpruned deep layers: many channels, small maps
    assert _choice((1, 256, 4, 14, 14), 512).algorithm == "winograd"
    assert _choice((1, 512, 2, 7, 7), 512).algorithm == "winograd"
    # C3D's 3-channel conv1: the output transform of 64 x 16 x 112 x 112 costs more than
    # the 81 MACs per output Winograd saves
    c1 = _choice((1, 3, 16, 112, 112), 64)
    assert c1.algorithm == "direct" and "would be" in c1.reason
    # never for strided, dilated, non-3x3 or grouped layers, and the report says why
    assert "strided" in _choice((1, 64, 4, 14, 14), 64, strides=(1, 2, 2)).reason
    assert "not k x 3 x 3" in _choice((1, 64, 4, 14, 14), 64, kernel=(3, 1, 1),
                                      padding=(1, 0, 0)).reason
    assert _choice((1, 256, 4, 14, 14), 512, winograd=False).reason == "direct: winograd=False"


def test_transformed_tensors_cost_what_the_target_says():
    """Every CPU config charges the transformed tensors' memory traffic (5.5 vector-MACs a
    byte), a GPU nothing (it runs no Winograd); no target: the default config's. The term
    decides narrow layers on large maps: 32 -> 32 channels, 1x3x3 on 16x56x56, and C3D's
    3-channel conv1 stay direct with it (conv1's F(4x4): 0.79x on Zen 3) and would take
    F(4x4) without it. R(2+1)D-18's layer1 (64 -> 144) takes F(4x4): with vectorized
    transforms it ran 1.75x faster than direct on Zen 3. ``inspect`` reports for the target
    it is given."""
    from rt3d_passes.op.winograd_conv3d import WinogradGeometry
    from rt3d_passes.transform.algorithm import DIRECT_EFFICIENCY, _winograd_cost
    from schedules.cpu_kgs_conv3d import AVX2, AVX512, NEON, winograd_transform_byte_cost

    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3"})
    avx512 = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
    assert {c.transform_byte_cost for c in (AVX2, AVX512, NEON)} == {5.5}
    for target in (avx2, avx512, None):
        assert winograd_transform_byte_cost(target) == 5.5
    assert winograd_transform_byte_cost(tvm.target.Target("qcom/adreno-opencl")) == 0.0
    narrow = dict(shape=(1, 32, 16, 56, 56), out=32, kernel=(1, 3, 3), padding=(0, 1, 1))
    conv1 = dict(shape=(1, 3, 16, 112, 112), out=64, kernel=(3, 3, 3), padding=(1, 1, 1))
    layer1 = dict(shape=(1, 64, 16, 56, 56), out=144, kernel=(1, 3, 3), padding=(0, 1, 1))
    for target in (avx2, avx512):
        with target:
            assert _choice(**narrow).algorithm == _choice(**conv1).algorithm == "direct"
            assert _choice(**layer1).tile == 4
    for layer in (narrow, conv1):  # without the term: F(4x4) by more than the margin
        geo = WinogradGeometry(layer["shape"], layer["kernel"], layer["padding"], 4)
        direct = (layer["out"] * layer["shape"][1] * int(np.prod(layer["kernel"]))
                  * int(np.prod(geo.output_spatial))) / DIRECT_EFFICIENCY
        columns = layer["shape"][1] * layer["kernel"][0]
        assert direct / _winograd_cost(geo, layer["out"], columns, 0.0, 8) > 1.25
        assert direct / _winograd_cost(geo, layer["out"], columns, 5.5, 8) < 1.25

    # 28x28 maps give F(4x4) 7 tiles a row: 7-lane vectors on x86, scalar transforms with
    # NEON's 4 lanes, so a 64 -> 64 layer there is Winograd on x86 only
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 64, 8, 28, 28), "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(bb.emit(relax.op.nn.conv3d(
            x, relax.const(np.ones((64, 64, 1, 3, 3), np.float32)), padding=(0, 1, 1))))
    (on_avx2,) = rt3d_passes.inspect(bb.get(), include_dense=True, target=avx2)
    (on_arm,) = rt3d_passes.inspect(bb.get(), include_dense=True, target=tvm.target.Target(
        {"kind": "llvm", "mtriple": "aarch64-linux-gnu"}))
    assert (on_avx2.algorithm, on_arm.algorithm) == ("winograd", "direct")


def test_transform_terms_are_shared_by_a_vector_of_tiles():
    """The model charges a transform term once per vector of tiles
    (``transform_lanes``); the output transform stays scalar on a partial last tile."""
    from rt3d_passes.op.winograd_conv3d import WinogradGeometry
    from rt3d_passes.transform.algorithm import SCALAR_TERM_COST, _winograd_cost

    def transforms(shape, lanes):
        geo = WinogradGeometry(shape, (3, 3, 3), (1, 1, 1), 4)
        return (_winograd_cost(geo, 16, 16 * 3, 0.0, lanes)
                - _winograd_cost(geo, 16, 16 * 3, 0.0, 1)) / SCALAR_TERM_COST

    whole = (1, 16, 4, 56, 56)  # 14 tiles a row: 7 per vector, both transforms
    pack_tiles, inverse_tiles = WinogradGeometry(whole, (3, 3, 3), (1, 1, 1),
                                                 4).transform_elements(16)
    assert transforms(whole, 8) == pytest.approx(
        -(pack_tiles * 312 + inverse_tiles * 180) * (1 - 1 / 7))
    partial = (1, 16, 4, 14, 14)  # 14 = 3 x 4 + 2: 4 tiles a row, the last one cropped
    pack_tiles, inverse_tiles = WinogradGeometry(partial, (3, 3, 3), (1, 1, 1),
                                                 4).transform_elements(16)
    assert transforms(partial, 8) == pytest.approx(-pack_tiles * 312 * (1 - 1 / 4))


def test_forced_algorithms():
    assert _choice((1, 3, 16, 32, 32), 8, algorithms={"conv": "winograd4"}).tile == 4
    assert _choice((1, 256, 4, 14, 14), 512, algorithms={"conv": "direct"}).algorithm == \
        "direct"
    with pytest.raises(ValueError, match=r"layer conv: algorithm 'winograd' forced.*strided"):
        _choice((1, 8, 4, 8, 8), 8, strides=(2, 2, 2), algorithms={"conv": "winograd"})
    with pytest.raises(ValueError, match="unknown conv3d algorithm"):
        rt3d_passes.RewriteOptions(algorithms={"conv": "fft"})


class _Block(torch.nn.Module):
    """conv (3x3x3) -> BN -> ReLU (or SiLU) -> conv (1x3x3) + residual -> ReLU -> strided
    conv."""

    def __init__(self, act=torch.relu):
        super().__init__()
        self.act = act
        self.c1 = torch.nn.Conv3d(16, 24, 3, padding=1)
        self.bn = torch.nn.BatchNorm3d(24)
        self.c2 = torch.nn.Conv3d(24, 24, (1, 3, 3), padding=(0, 1, 1))
        self.c3 = torch.nn.Conv3d(24, 8, 3, padding=1, stride=(1, 2, 2))

    def forward(self, x):
        y = self.act(self.bn(self.c1(x)))
        y = torch.relu(self.c2(y) + y)
        return self.c3(y)


@pytest.fixture(params=["relu", "silu"])
def block(request):
    model = _Block(torch.relu if request.param == "relu" else torch.nn.functional.silu).eval()
    with torch.no_grad():
        model.bn.running_mean.normal_()
        model.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(1, 16, 4, 10, 10)
    return model, x, rt3d_passes.from_torch(model, (x,))


def test_select_pass_rewrites_the_chosen_layers(block):
    _, _, mod = block
    forced = {"c1": "winograd4", "c2": "winograd2"}
    reports = {r.layer: r for r in rt3d_passes.inspect(mod, algorithms=forced)}
    assert (reports["c1"].kernel, reports["c2"].kernel, reports["c3"].kernel) == (
        "rt3d winograd F(4x4)", "rt3d winograd F(2x2)", "rt3d dense")
    out = rt3d_passes.SelectConv3DAlgorithm(algorithms=forced)(mod)
    prims = [f for f in out.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    tiles = sorted(int(f.attrs[WINOGRAD_CONV3D_ATTR]) for f in prims if is_winograd_conv3d(f))
    assert tiles == [2, 4]
    assert sum(is_kgs_conv3d(f) for f in prims) == 1
    assert "relax.nn.conv3d" not in out["main"].script()
    # layer names stay right for the direct pass that runs after the Winograd one, and name
    # no call once every conv3d is rewritten
    opts = rt3d_passes.RewriteOptions(algorithms=forced)
    winograd_only = rt3d_passes.RewriteWinogradConv3D(opts)(mod)
    assert [str(v) for v in winograd_only["main"].attrs["rt3d.conv3d_names"]] == ["c3"]
    assert [str(v) for v in out["main"].attrs["rt3d.conv3d_names"]] == []
    # nothing forced: no change of the direct-only result
    direct = rt3d_passes.SelectConv3DAlgorithm(winograd=False)(mod)
    tvm.ir.assert_structural_equal(direct, rt3d_passes.RewriteKGSConv3D()(mod))


def test_select_pass_rejects_unknown_layer_names(block):
    _, _, mod = block
    with pytest.raises(ValueError, match=r"unknown layer.*c9.*the conv3d layers are: c1, c2"):
        rt3d_passes.SelectConv3DAlgorithm(algorithms={"c9": "winograd"})(mod)


@pytest.mark.parametrize("forced", [{}, {"c1": "winograd4", "c2": "winograd2"},
                                    {"c1": "winograd2", "c2": "winograd4"}])
def test_pipeline_fuses_the_epilogue_and_matches_torch(block, forced):
    model, x, mod = block
    target = rt3d_passes.host_target()
    seq = tvm.transform.Sequential([rt3d_passes.transform.rt3d_rewrite(
        rt3d_passes.RewriteOptions(algorithms=forced))])
    rewritten = seq(mod)
    wino = [f for f in rewritten.functions.values() if is_winograd_conv3d(f)]
    assert len(wino) == len(forced)
    # BN folded into c1's weights and bias, + ReLU or SiLU; c2's residual add + ReLU: all
    # fused
    assert all(WINOGRAD_EPILOGUE_BLOCK in f.script() for f in wino)
    assert "R.sigmoid" not in rewritten["main"].script()  # SiLU fused too
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
        "rt3d", target=target, algorithms=forced))
    y = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy())).numpy()
    with torch.no_grad():
        ref = model(x).numpy()
    assert rel_error(y, ref) <= WINOGRAD_RTOL[4]


def test_gpu_pipeline_refuses_forced_winograd(block):
    _, _, mod = block
    target = rt3d_passes.get_target("adreno")
    with pytest.raises(ValueError, match=r"Winograd forced for c1.*no Winograd schedule"):
        tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
            "rt3d", target=target, algorithms={"c1": "winograd4"}))


@pytest.mark.tuning
def test_winograd_task_tunes_and_the_tuned_build_matches_torch(tmp_path):
    """``rt3d tune``'s path: the Winograd operator is a task with its own design space; the
    records apply to the pipeline's build, which stays correct."""
    from rt3d_passes.tuning import open_database, tune_model

    rng = np.random.default_rng()
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 4, 8, 8), "float32"))
    w = rng.standard_normal((32, 16, 3, 3, 3)).astype(np.float32)
    with bb.function("main", [x]):
        out = bb.emit(relax.op.nn.conv3d(x, relax.const(w), padding=(1, 1, 1)),
                      name_hint="conv")
        bb.emit_func_output(out)
    mod = bb.get()
    opts = rt3d_passes.RewriteOptions(algorithms={"conv": "winograd4"})
    target = rt3d_passes.host_target()
    (row,) = tune_model(mod, target, tmp_path, trials_per_task=4, options=opts, progress=False)
    assert row["task"].startswith("winograd_conv3d") and row["records"] >= 2
    db = open_database(tmp_path, target)
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
        "rt3d", target=target, options=opts, database=db))
    xi = rng.standard_normal((1, 16, 4, 8, 8)).astype(np.float32)
    y = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(xi)).numpy()
    assert rel_error(y, _torch_conv(xi, w, (1, 1, 1))) <= WINOGRAD_RTOL[4]


def test_winograd_task_counts_its_gemm_macs():
    """``rt3d tune``'s summary: a Winograd task's MACs are its transformed-domain GEMM's."""
    from rt3d_passes.tuning.tasks import extract_tasks

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 4, 14, 14), "float32"))
    w = np.ones((32, 16, 3, 3, 3), np.float32)
    with bb.function("main", [x]):
        out = bb.emit(relax.op.nn.conv3d(x, relax.const(w), padding=(1, 1, 1)),
                      name_hint="conv")
        bb.emit_func_output(out)
    opts = rt3d_passes.RewriteOptions(algorithms={"conv": "winograd4"})
    (task,) = extract_tasks(bb.get(), rt3d_passes.host_target(), opts)
    geo = WinogradGeometry((1, 16, 4, 14, 14), (3, 3, 3), (1, 1, 1), 4)
    assert task.macs == geo.bgemm_macs(32, 16 * 3)
