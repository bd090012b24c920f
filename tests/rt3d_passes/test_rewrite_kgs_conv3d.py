"""RewriteKGSConv3D: structure (Before/Expected), negatives, well-formedness, numerics."""

import numpy as np
import pytest
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes import sparsity as S
from rt3d_passes.op import (
    Conv3DGeometry,
    column_offsets,
    kgs_conv3d_attrs,
    kgs_conv3d_te,
    pad_columns,
)
from rt3d_passes.testing import structured_weight
from tests.conftest import assert_close_rel, conv3d_reference, run_vm

X_SHAPE = (1, 16, 4, 8, 8)


def _before(weights, x_shape=X_SHAPE, dtype="float32", **conv_kwargs):
    """main(x) = relu(conv3d(... conv3d(x, W0) ..., Wk)) with constant weights."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = x
            for w in weights:
                h = bb.emit(relax.op.nn.conv3d(h, relax.const(w), padding=(1, 1, 1),
                                               **conv_kwargs))
                h = bb.emit(relax.op.nn.relu(h))
            out = bb.emit_output(h)
        bb.emit_func_output(out)
    return bb.get()


def test_rewrites_pruned_conv3d_structurally(rng):
    w0 = structured_weight((32, 16, 3, 3, 3), "kgs", 0.75, (8, 4), rng)
    w1 = structured_weight((16, 32, 3, 3, 3), "vanilla", 0.6, (8, 4), rng)
    before = _before([w0, w1])
    after = rt3d_passes.RewriteKGSConv3D(group=(8, 4))(before)

    # Expected: the same graph with each conv3d replaced by call_tir of the KGS operator
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X_SHAPE, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            h = x
            for w in (w0, w1):
                packed = S.compact(w, (8, 4))
                geo = Conv3DGeometry(tuple(int(v) for v in h.ty.shape), w.shape[2:],
                                     padding=(1, 1, 1))
                h = bb.emit(bb.call_te(
                    kgs_conv3d_te, h, relax.const(packed.values),
                    relax.const(column_offsets(packed, geo)), w.shape[0], w.shape[2:],
                    (1, 1, 1), geo.padding, (1, 1, 1),
                    primfunc_name_hint="kgs_conv3d",
                    primfunc_attrs=kgs_conv3d_attrs(geo, 8)))
                h = bb.emit(relax.op.nn.relu(h))
            out = bb.emit_output(h)
        bb.emit_func_output(out)
    expected = bb.get()

    assert relax.analysis.check_well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_dense_weights_leave_module_unchanged(rng):
    before = _before([structured_weight((32, 16, 3, 3, 3), "dense", 0, rng=rng)])
    after = rt3d_passes.RewriteKGSConv3D(include_dense=False)(before)
    tvm.ir.assert_structural_equal(after, before)


def test_below_threshold_and_unstructured_stay_dense(rng):
    mild = structured_weight((32, 16, 3, 3, 3), "kgs", 0.1, (8, 4), rng)
    unstructured = structured_weight((32, 32, 3, 3, 3), "unstructured", 0.8, rng=rng)
    before = _before([mild, unstructured])
    after = rt3d_passes.RewriteKGSConv3D(min_mac_reduction=1.5, include_dense=False)(before)
    tvm.ir.assert_structural_equal(after, before)
    reports = rt3d_passes.inspect(before, min_mac_reduction=1.5, include_dense=False)
    assert [r.rewrite for r in reports] == [False, False]
    assert reports[0].reason.startswith("below threshold")
    assert reports[1].reason.startswith("unstructured")


def test_include_dense_rewrites_every_layer(rng):
    before = _before([structured_weight((32, 16, 3, 3, 3), "dense", 0, rng=rng)])
    after = rt3d_passes.RewriteKGSConv3D(include_dense=True)(before)
    calls = [f for f in after.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(calls) == 1 and "rt3d.kgs_conv3d" in calls[0].attrs
    assert relax.analysis.check_well_formed(after)


def test_layer_names_left_name_the_calls_left(rng):
    """Like the Winograd pass, the rewrite keeps ``rt3d.conv3d_names`` naming the conv3d calls
    it leaves, so a later pass (or report) names them right."""
    from rt3d_passes.transform.analysis import LAYER_NAMES_ATTR

    before = _before([structured_weight((32, 16, 3, 3, 3), "dense", 0, rng=rng),
                      structured_weight((32, 32, 3, 3, 3), "kgs", 0.8, (8, 4), rng)])
    before["main"] = before["main"].with_attr(LAYER_NAMES_ATTR, ["stem", "pruned"])
    after = rt3d_passes.RewriteKGSConv3D(include_dense=False)(before)
    assert [str(v) for v in after["main"].attrs[LAYER_NAMES_ATTR]] == ["stem"]
    assert [r.layer for r in rt3d_passes.inspect(after)] == ["stem"]


@pytest.mark.parametrize("scheme,rate", [("kgs", 0.85), ("vanilla", 0.5), ("kgs", 0.95)])
def test_numeric_through_vm(rng, scheme, rate):
    ws = [structured_weight((24, 16, 3, 3, 3), scheme, rate, (8, 4), rng),
          structured_weight((16, 24, 3, 3, 3), scheme, rate, (8, 4), rng)]
    for w in ws:
        w[0, 0, 1, 1, 1] = 1.0  # never all-zero
    mod = rt3d_passes.RewriteKGSConv3D()(_before(ws))
    assert sum(isinstance(f, tvm.tirx.PrimFunc) for f in mod.functions.values()) == 2
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    out = run_vm(mod, x)
    ref = x
    for w in ws:
        ref = np.maximum(conv3d_reference(ref, w, padding=(1, 1, 1)), 0)
    assert_close_rel(out, ref, 1e-5)


def test_weights_as_parameters_need_bind_params(rng):
    """The documented path for weights that arrive as function parameters."""
    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.8, (8, 4), rng)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X_SHAPE, "float32"))
    wv = relax.Var("conv_w", relax.TensorType(w.shape, "float32"))
    with bb.function("main", [x, wv]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.conv3d(x, wv, padding=(1, 1, 1)))
        bb.emit_func_output(out)
    mod = bb.get()

    reports = rt3d_passes.inspect(mod)
    assert not reports[0].rewrite and "not a constant" in reports[0].reason
    tvm.ir.assert_structural_equal(rt3d_passes.RewriteKGSConv3D()(mod), mod)

    bound = relax.transform.BindParams("main", {"conv_w": tvm.runtime.tensor(w)})(mod)
    after = rt3d_passes.RewriteKGSConv3D()(bound)
    assert any(isinstance(f, tvm.tirx.PrimFunc) for f in after.functions.values())
    xs = rng.standard_normal(X_SHAPE).astype(np.float32)
    out = run_vm(after, xs, "rt3d")
    assert_close_rel(out, conv3d_reference(xs, w, padding=(1, 1, 1)), 1e-5)


def test_unsupported_layers_are_reported_not_rewritten(rng):
    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.8, (8, 4), rng)
    cases = {
        "only float32": _before([w.astype(np.float16)], dtype="float16"),
        "layout": _before([np.ascontiguousarray(w.transpose(2, 3, 4, 1, 0))],
                          x_shape=(1, 4, 8, 8, 16), data_layout="NDHWC",
                          kernel_layout="DHWIO"),
    }
    for reason, mod in cases.items():
        (report,) = rt3d_passes.inspect(mod)
        assert not report.rewrite and reason in report.reason, report.reason
        tvm.ir.assert_structural_equal(rt3d_passes.RewriteKGSConv3D()(mod), mod)


def test_nan_weights_are_reported_and_left_dense(rng):
    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.8, (8, 4), rng)
    w[3, 2, 1, 1, 1] = np.nan
    mod = _before([w])
    (report,) = rt3d_passes.inspect(mod)
    assert not report.rewrite and "NaN/Inf" in report.reason
    tvm.ir.assert_structural_equal(rt3d_passes.RewriteKGSConv3D()(mod), mod)


def test_group_that_does_not_fit_is_reported(rng):
    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.8, (8, 4), rng)
    (report,) = rt3d_passes.inspect(_before([w]), group=(64, 4), include_dense=False)
    assert not report.rewrite and "group does not fit" in report.reason
    assert "larger than the weight's channels" in report.reason


def test_bad_pass_options():
    with pytest.raises(ValueError, match="min_mac_reduction"):
        rt3d_passes.RewriteKGSConv3D(min_mac_reduction=0.5)


@pytest.mark.parametrize("strides", [(2, 2, 2), (1, 2, 2)])
def test_strided_1x1x1_is_sliced_then_unit_stride(rng, strides):
    """ResNet downsampling: the input is sliced first and the operator runs at unit stride."""
    x_shape = (1, 16, 5, 9, 8)  # odd extents: the slice keeps the last voxel like the conv
    w = structured_weight((24, 16, 1, 1, 1), "kgs", 0.5, (8, 4), rng)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(relax.op.nn.conv3d(x, relax.const(w),
                                                            strides=strides)))
        bb.emit_func_output(out)
    before = bb.get()
    after = rt3d_passes.RewriteKGSConv3D(group=(8, 4))(before)
    assert relax.analysis.check_well_formed(after)
    script = after.script()
    assert "R.strided_slice" in script
    (prim,) = [f for f in after.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert [int(s) for s in prim.attrs["rt3d.strides"]] == [1, 1, 1]
    xin = rng.standard_normal(x_shape).astype(np.float32)
    assert_close_rel(run_vm(before, xin), conv3d_reference(xin, w, strides), 1e-5)


@pytest.mark.parametrize("channels,groups,out_channels", [
    (16, 16, 16),   # depthwise (X3D, CSN)
    (16, 2, 24),    # two groups
    (32, 8, 32),    # ResNeXt-like: 4 channels per group
    (12, 12, 24),   # channel multiplier 2
])
def test_grouped_conv3d_runs_on_rt3d_operator(rng, channels, groups, out_channels):
    """Grouped and depthwise conv3d run on RT3D's operator (block-diagonal weight: each output
    group reads only its channel group), never on TVM's unscheduled default conv3d."""
    w = rng.standard_normal((out_channels, channels // groups, 3, 3, 3)).astype(np.float32)
    x_shape = (1, channels, 4, 8, 8)
    mod = _before([w], x_shape=x_shape, groups=groups)
    (report,) = rt3d_passes.inspect(mod)
    assert report.rewrite and report.kernel == "rt3d dense", report.reason
    assert f"groups={groups}" in report.reason and report.scheme == "grouped"
    assert report.dense_macs == report.kept_macs == w.size * 4 * 8 * 8  # the grouped MACs
    assert not rt3d_passes.inspect(mod, include_dense=False)[0].rewrite
    x = rng.standard_normal(x_shape).astype(np.float32)
    out = run_vm(mod, x, "rt3d")
    ref = np.maximum(conv3d_reference(x, w, padding=(1, 1, 1), groups=groups), 0)
    assert_close_rel(out, ref, 1e-5)


def test_pruned_grouped_conv3d_is_sparse(rng):
    """KGS zeros inside a grouped conv's blocks are skipped too."""
    w = rng.standard_normal((32, 4, 3, 3, 3)).astype(np.float32)
    w[:, :, 0] = 0  # every kernel's first depth slice: whole units of any group shape
    mod = _before([w], x_shape=(1, 32, 4, 8, 8), groups=8)
    (report,) = rt3d_passes.inspect(mod)
    assert report.kernel == "rt3d sparse" and report.mac_reduction == pytest.approx(1.5)
    x = rng.standard_normal((1, 32, 4, 8, 8)).astype(np.float32)
    ref = np.maximum(conv3d_reference(x, w, padding=(1, 1, 1), groups=8), 0)
    assert_close_rel(run_vm(mod, x, "rt3d"), ref, 1e-5)


def test_unpadded_conv_reads_a_flat_view(rng):
    """A conv without padding (pointwise, temporal kx1x1 without padding) gathers from a
    reshape of its input: no padded copy, also with the fused epilogue."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Conv3d(24, 24, 1)
            self.b = torch.nn.Conv3d(24, 24, (3, 1, 1))

        def forward(self, x):
            y = torch.relu(self.a(x) + x)
            return self.b(y)

    net = Block().eval()
    x = torch.from_numpy(rng.standard_normal((2, 24, 5, 6, 7)).astype(np.float32))
    mod = rt3d_passes.from_torch(net, (x,))
    with rt3d_passes.host_target():
        rewritten = rt3d_passes.transform.rt3d_rewrite()(mod)
    prims = [f for f in rewritten.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(prims) == 2
    assert all("kgs_pad" not in f.script() for f in prims)
    assert rewritten["main"].script().count("R.reshape") >= 2
    with torch.no_grad():
        assert_close_rel(run_vm(mod, x), net(x).numpy(), 1e-5)


AVX2 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3", "num-cores": 2})


@pytest.mark.parametrize("target,extent,multiple", [
    (AVX2, 16, 32),
    (tvm.target.Target({"kind": "llvm", "mcpu": "znver4"}), 0, 1),     # AVX-512: unmeasured
    (tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}), 0, 1),
    (None, 0, 1),
])
def test_rows_and_columns_for_the_target(rng, target, extent, multiple):
    """Inside an AVX2 target's scope, a conv whose 14-wide rows are no whole vectors becomes
    the operator computing 16-wide rows (``op.whole_vector_rows``), cropped, and its groups'
    columns (32 channels x 27 taps x half, 432) are padded to a multiple of the column block
    (``pad_columns``, 448); other targets, and a rewrite outside any target, keep both."""
    w = structured_weight((16, 32, 3, 3, 3), "kgs", 0.5, (8, 4), rng, balanced=True)
    x_shape = (1, 32, 4, 14, 14)
    before = _before([w], x_shape)
    if target is None:
        after = rt3d_passes.RewriteKGSConv3D(group=(8, 4))(before)
    else:
        with target:
            after = rt3d_passes.RewriteKGSConv3D(group=(8, 4))(before)

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            packed = pad_columns(S.compact(w, (8, 4)), multiple)
            assert packed.values.shape[1] == (448 if multiple > 1 else 432)
            geo = Conv3DGeometry(x_shape, w.shape[2:], padding=(1, 1, 1))
            h = bb.emit(bb.call_te(
                kgs_conv3d_te, x, relax.const(packed.values),
                relax.const(column_offsets(packed, geo)), 16, w.shape[2:], (1, 1, 1),
                geo.padding, (1, 1, 1), geo.input_shape, 0, extent,
                primfunc_name_hint="kgs_conv3d",
                primfunc_attrs=kgs_conv3d_attrs(geo, 8, 0, extent)))
            out = bb.emit_output(bb.emit(relax.op.nn.relu(h)))
        bb.emit_func_output(out)
    tvm.ir.assert_structural_equal(after, bb.get())


def test_rows_of_whole_vectors_numeric_through_the_pipeline(rng):
    """Two layers on 14x14 maps (13 output channels: a partial group too) compiled for an
    AVX2 target by the ``rt3d`` pipeline: 16-wide rows, cropped in the write-back with the
    fused ReLU, equal PyTorch's."""
    ws = [structured_weight((13, 16, 3, 3, 3), "kgs", 0.6, (8, 4), rng),
          structured_weight((16, 13, 3, 3, 3), "kgs", 0.0, (8, 4), rng)]
    ws[0][0, 0, 1, 1, 1] = 1.0
    x_shape = (1, 16, 4, 14, 14)
    mod = _before(ws, x_shape)
    with AVX2:
        rewritten = rt3d_passes.RewriteKGSConv3D()(mod)
    extents = [int(f.attrs["rt3d.row_extent"]) for f in rewritten.functions.values()
               if isinstance(f, tvm.tirx.PrimFunc)]
    assert extents == [16, 16]
    x = rng.standard_normal(x_shape).astype(np.float32)
    ex = tvm.compile(mod, AVX2, relax_pipeline=relax.get_pipeline("rt3d", target=AVX2))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    ref = x
    for w in ws:
        ref = np.maximum(conv3d_reference(ref, w, padding=(1, 1, 1)), 0)
    assert_close_rel(out, ref, 1e-5)


def test_temporal_convs_dhcw_copy_through_the_pipeline(rng):
    """A (2+1)D pair compiled for an AVX2 target by the ``rt3d`` pipeline: the 3x1x1 conv
    keeps its padded copy in DHCW (7-wide rows computed 8 wide read past the last row into
    the copy's spare rows), the 1x3x3 conv in CDHW; with the fused ReLUs, equal to PyTorch.
    Also for a host without AVX2's config, whatever it picks."""
    ws = [structured_weight((24, 16, 1, 3, 3), "kgs", 0.5, (8, 4), rng),
          structured_weight((16, 24, 3, 1, 1), "kgs", 0.6, (8, 4), rng)]
    ws[1][0, 0, 1, 0, 0] = 1.0
    x_shape = (2, 16, 5, 6, 5)  # padded (1, 1, 1): the 3x1x1 conv's output is 7 wide
    mod = _before(ws, x_shape)
    with AVX2:
        rewritten = rt3d_passes.RewriteKGSConv3D()(mod)
    layouts = sorted((str(f.attrs["rt3d.copy_layout"]), int(f.attrs["rt3d.row_extent"]))
                     for f in rewritten.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
    assert layouts == [("CDHW", 0), ("DHCW", 8)]
    x = rng.standard_normal(x_shape).astype(np.float32)
    ref = x
    for w in ws:
        ref = np.maximum(conv3d_reference(ref, w, padding=(1, 1, 1)), 0)
    for target in (AVX2, rt3d_passes.host_target()):
        ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
        out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
        assert_close_rel(out, ref, 1e-5)


@pytest.mark.parametrize("channels,hw,blocked", [(12, 10, True), (16, 16, False)])
def test_depthwise_channel_blocks_through_the_pipeline(rng, channels, hw, blocked):
    """An X3D block's depthwise conv + BatchNorm + SiLU from PyTorch, compiled by the ``rt3d``
    pipeline for AVX2: on 10-wide maps the layer gets the channel-blocked copy (12 channels:
    a partial second block, cropped in the write-back with the SiLU applied), on 16-wide maps
    the CDHW copy; both equal PyTorch. Also for the host's own target."""
    import torch

    torch.manual_seed(int(rng.integers(1 << 31)))
    model = torch.nn.Sequential(
        torch.nn.Conv3d(channels, channels, 3, padding=1, groups=channels, bias=False),
        torch.nn.BatchNorm3d(channels), torch.nn.SiLU()).eval()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, channels, 3, hw, hw)
    mod = rt3d_passes.from_torch(model, (x,))
    with AVX2:
        rewritten = rt3d_passes.RewriteKGSConv3D(include_dense=True)(mod)
    layouts = [str(f.attrs["rt3d.copy_layout"]) for f in rewritten.functions.values()
               if isinstance(f, tvm.tirx.PrimFunc) and "rt3d.copy_layout" in f.attrs]
    assert layouts == ["CDHW8c" if blocked else "CDHW"]
    with torch.no_grad():
        ref = model(x).numpy()
    for target in (AVX2, rt3d_passes.host_target()):
        ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
            "rt3d", target=target, include_dense=True))
        out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x.numpy()))
        assert_close_rel(out.numpy(), ref, 1e-5)
