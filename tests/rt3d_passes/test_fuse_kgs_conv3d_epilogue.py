"""FuseKGSConv3DEpilogue: structure (Before/Expected), chains it must not take, numerics."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes import sparsity as S
from rt3d_passes.op import Conv3DGeometry, column_offsets, kgs_conv3d_attrs, kgs_conv3d_epilogue_te
from rt3d_passes.testing import structured_weight
from schedules.contract import KGS_EPILOGUE_BLOCK
from tests.conftest import assert_close_rel, run_vm

X_SHAPE = (1, 16, 4, 8, 8)


def _main(build, shape=X_SHAPE) -> tvm.IRModule:
    """``main(x)``: one dataflow block whose output is ``build(bb, x)`` (an emitted var)."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(build(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def _conv(bb, h, w):
    return bb.emit(relax.op.nn.conv3d(h, relax.const(w), padding=(1, 1, 1)))


def _bias_add(bb, h, b, reshaped=True):
    """Torch's importer adds a bias as ``R.add(conv, R.reshape(b, [1, M, 1, 1, 1]))``."""
    if reshaped:
        bias = bb.emit(relax.op.reshape(relax.const(b), (1, b.size, 1, 1, 1)))
    else:
        bias = relax.const(b.reshape(1, -1, 1, 1, 1))
    return bb.emit(relax.op.add(h, bias))


def _rewrite_and_fuse(mod):
    return tvm.transform.Sequential([rt3d_passes.RewriteKGSConv3D(group=(8, 4)),
                                     rt3d_passes.FuseKGSConv3DEpilogue()])(mod)


def _ops(mod) -> list[str]:
    """Relax ops called in main, in order (call_tir counted by name)."""
    names = []

    @relax.expr_functor.visitor
    class _V(relax.PyExprVisitor):
        def visit_call_(self, call):
            names.append(str(call.op.name) if hasattr(call.op, "name") else str(call.op))
            for a in call.args:
                self.visit_expr(a)

    _V().visit_expr(mod["main"])
    return names


def test_conv_bias_relu_becomes_one_call(rng):
    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.75, (8, 4), rng)
    b = rng.standard_normal(32).astype(np.float32)
    after = _rewrite_and_fuse(_main(lambda bb, x: bb.emit(relax.op.nn.relu(
        _bias_add(bb, _conv(bb, x, w), b, reshaped=False)))))

    assert relax.analysis.check_well_formed(after)
    tvm.ir.assert_structural_equal(after, _expected_fused(w, b, relu=True))


def _expected_fused(w, b, **activation) -> tvm.IRModule:
    """``main(x)``: the one fused call of a 32-channel 3x3x3 conv with bias ``b`` and
    ``activation`` (``relu=True`` or ``silu=True``)."""
    packed = S.compact(w, (8, 4))
    geo = Conv3DGeometry(X_SHAPE, (3, 3, 3), padding=(1, 1, 1))
    return _main(lambda bb, x: bb.emit(bb.call_te(
        kgs_conv3d_epilogue_te, x, relax.const(packed.values),
        relax.const(column_offsets(packed, geo)), relax.const(b), out_channels=32,
        kernel=[3, 3, 3], strides=[1, 1, 1], padding=list(geo.padding),
        dilation=[1, 1, 1], bias=True, residual=False, **activation,
        primfunc_name_hint="kgs_conv3d", primfunc_attrs=kgs_conv3d_attrs(geo, 8))))


def _has_epilogue(func) -> bool:
    return f'sblock("{KGS_EPILOGUE_BLOCK}")' in func.script()


def _residual_block(rng, m=16, reshaped=True, rate=0.8):
    """relu(conv2(relu(conv1(x) + b1)) + b2 + x): a ResNet basic block."""
    w1 = structured_weight((m, 16, 3, 3, 3), "kgs", rate, (8, 4), rng)
    w2 = structured_weight((16, m, 3, 3, 3), "kgs", rate, (8, 4), rng)
    b1, b2 = (rng.standard_normal(n).astype(np.float32) for n in (m, 16))

    def build(bb, x):
        h = bb.emit(relax.op.nn.relu(_bias_add(bb, _conv(bb, x, w1), b1, reshaped)))
        h = _bias_add(bb, _conv(bb, h, w2), b2, reshaped)
        return bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(h, x))))

    def reference(x_np):
        f = torch.nn.functional
        t = torch.from_numpy(x_np)
        h = f.relu(f.conv3d(t, torch.from_numpy(w1), torch.from_numpy(b1), padding=1))
        return f.relu(f.conv3d(h, torch.from_numpy(w2), torch.from_numpy(b2), padding=1)
                      + t).numpy()

    return _main(build), reference


@pytest.mark.parametrize("m", [16, 45], ids=["whole-groups", "edge-group-crop"])
def test_residual_block_fuses_and_matches_torch(rng, m):
    before, reference = _residual_block(rng, m)
    after = _rewrite_and_fuse(before)
    assert relax.analysis.check_well_formed(after)
    ops = _ops(after)
    assert ops.count("relax.call_tir") == 2
    assert not {"relax.add", "relax.nn.relu"} & set(ops), ops
    prims = [f for f in after.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(prims) == 2  # the unfused operators are gone
    assert all(_has_epilogue(f) for f in prims)
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    assert_close_rel(run_vm(before, x), reference(x), 1e-5)


def test_shared_intermediate_is_not_fused(rng):
    """conv + b is read twice: only the bias joins the operator, the ReLU and the add stay
    (fusing further would compute the convolution twice)."""
    w = structured_weight((16, 16, 3, 3, 3), "kgs", 0.8, (8, 4), rng)
    b = rng.standard_normal(16).astype(np.float32)

    def build(bb, x):
        h = _bias_add(bb, _conv(bb, x, w), b)
        return bb.emit(relax.op.add(bb.emit(relax.op.nn.relu(h)), h))

    before = _main(build)
    after = _rewrite_and_fuse(before)
    ops = _ops(after)
    assert ops.count("relax.call_tir") == 1 and "relax.nn.relu" in ops
    assert ops.count("relax.add") == 1
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    f = torch.nn.functional
    y = f.conv3d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1)
    assert_close_rel(run_vm(before, x), (f.relu(y) + y).numpy(), 1e-5)


def test_without_kgs_calls_module_is_unchanged(rng):
    w = structured_weight((16, 16, 3, 3, 3), "dense", 0, rng=rng)
    before = _main(lambda bb, x: bb.emit(relax.op.nn.relu(_conv(bb, x, w))))
    tvm.ir.assert_structural_equal(rt3d_passes.FuseKGSConv3DEpilogue()(before), before)


def test_pipeline_without_fusion_matches(rng):
    before, reference = _residual_block(rng)
    target = rt3d_passes.host_target()
    pipeline = relax.get_pipeline("rt3d", target=target, fuse_epilogue=False)
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    assert_close_rel(run_vm(before, x, pipeline), reference(x), 1e-5)


def _swish(bb, h, form):
    if form == "silu":
        return bb.emit(relax.op.nn.silu(h))
    s = bb.emit(relax.op.sigmoid(h))  # torch's importer: nn.SiLU as h * sigmoid(h)
    return bb.emit(relax.op.multiply(h, s) if form == "h*s" else relax.op.multiply(s, h))


@pytest.mark.parametrize("form", ["h*s", "s*h", "silu"])
def test_conv_bias_swish_becomes_one_call(rng, form):
    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.75, (8, 4), rng)
    b = rng.standard_normal(32).astype(np.float32)
    before = _main(lambda bb, x: _swish(bb, _bias_add(bb, _conv(bb, x, w), b, reshaped=False),
                                        form))
    after = _rewrite_and_fuse(before)
    assert relax.analysis.check_well_formed(after)
    tvm.ir.assert_structural_equal(after, _expected_fused(w, b, silu=True))
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    f = torch.nn.functional
    y = f.conv3d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1)
    assert_close_rel(run_vm(before, x), f.silu(y).numpy(), 1e-5)


def test_swish_whose_input_is_read_elsewhere_is_not_fused(rng):
    """h feeds the Swish and a third op: fusing the Swish would compute the conv twice."""
    w = structured_weight((16, 16, 3, 3, 3), "kgs", 0.8, (8, 4), rng)

    def build(bb, x):
        h = _conv(bb, x, w)
        return bb.emit(relax.op.add(_swish(bb, h, "h*s"), h))

    after = _rewrite_and_fuse(_main(build))
    ops = _ops(after)
    assert ops.count("relax.call_tir") == 1
    assert "relax.sigmoid" in ops and "relax.multiply" in ops


ROWS_SHAPE = (1, 16, 4, 6, 20)  # W = 20: no multiple of 8; 480 positions = 5 rows of 96


def _pointwise_block(w, b):
    """relu(conv1x1x1(x) + b + x) on maps whose W is not vector-friendly."""

    def build(bb, x):
        h = bb.emit(relax.op.nn.conv3d(x, relax.const(w)))
        return bb.emit(relax.op.nn.relu(bb.emit(relax.op.add(_bias_add(bb, h, b, False), x))))

    return _main(build, ROWS_SHAPE)


def test_pointwise_rows_view_is_looked_through(rng):
    """A pointwise conv computed on rows (``op.pointwise_rows``) is followed by a view back to
    its shape; the epilogue fuses through the view: the residual is viewed as rows, the
    fused call writes rows, one view back."""
    from rt3d_passes.op import pointwise_rows

    w = structured_weight((16, 16, 1, 1, 1), "kgs", 0.5, (8, 4), rng)
    b = rng.standard_normal(16).astype(np.float32)
    before = _pointwise_block(w, b)
    after = _rewrite_and_fuse(before)
    assert relax.analysis.check_well_formed(after)

    geo = Conv3DGeometry(ROWS_SHAPE, (1, 1, 1))
    rows = pointwise_rows(geo)
    assert rows == (1, 16, 1, 5, 96)
    packed = S.compact(w, (8, 4))
    flat = Conv3DGeometry(rows, (1, 1, 1))

    def expected(bb, x):
        data = bb.emit(relax.op.reshape(x, [1, flat.padded_size]))
        res = bb.emit(relax.op.reshape(x, list(flat.output_shape(16))))
        call = bb.emit(bb.call_te(
            kgs_conv3d_epilogue_te, data, relax.const(packed.values),
            relax.const(column_offsets(packed, flat)), relax.const(b), res, out_channels=16,
            kernel=[1, 1, 1], strides=[1, 1, 1], padding=[0] * 6, dilation=[1, 1, 1],
            input_shape=list(rows), channel_multiplier=0, bias=True, residual=True,
            relu=True, primfunc_name_hint="kgs_conv3d",
            primfunc_attrs=kgs_conv3d_attrs(flat, 8)))
        return bb.emit(relax.op.reshape(call, list(ROWS_SHAPE)))

    tvm.ir.assert_structural_equal(after, _main(expected, ROWS_SHAPE))

    xs = rng.standard_normal(ROWS_SHAPE).astype(np.float32)
    f = torch.nn.functional
    t = torch.from_numpy(xs)
    ref = f.relu(f.conv3d(t, torch.from_numpy(w), torch.from_numpy(b)) + t).numpy()
    assert_close_rel(run_vm(before, xs), ref, 1e-5)
