"""FoldBatchNormToConv3D: structure, numerics against torch, KGS zeros kept, negatives."""

import numpy as np
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes import sparsity as S
from rt3d_passes.testing import structured_weight
from tests.conftest import assert_close_rel, run_vm

X_SHAPE = (1, 8, 4, 6, 6)


def _stats(rng, m):
    return [rng.uniform(0.5, 1.5, m).astype(np.float32), rng.standard_normal(m).astype(np.float32),
            rng.standard_normal(m).astype(np.float32), rng.uniform(0.5, 2, m).astype(np.float32)]


def _before(w, stats, training=False, weight_param=False):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X_SHAPE, "float32"))
    params = [x]
    if weight_param:
        params.append(relax.Var("w", relax.TensorType(w.shape, "float32")))
    with bb.function("main", params):
        with bb.dataflow():
            wt = params[1] if weight_param else relax.const(w)
            c = bb.emit(relax.op.nn.conv3d(x, wt, padding=(1, 1, 1)))
            bn = bb.emit(relax.op.nn.batch_norm(c, *[relax.const(s) for s in stats], axis=1,
                                                training=training))
            out = bb.emit_output(relax.TupleGetItem(bn, 0))
        bb.emit_func_output(out)
    return bb.get()


def test_folds_into_constant_weight_and_bias(rng):
    w = structured_weight((16, 8, 3, 3, 3), "kgs", 0.6, (8, 4), rng)
    stats = _stats(rng, 16)
    before = _before(w, stats)
    original = before.script(show_meta=False)
    after = rt3d_passes.FoldBatchNormToConv3D()(before)
    assert before.script(show_meta=False) == original  # the input is not modified
    g, b, mu, v = (s.astype(np.float64) for s in stats)
    scale = g / np.sqrt(v + 1e-5)

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(X_SHAPE, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            folded = (w * scale.reshape(-1, 1, 1, 1, 1)).astype(np.float32)
            c = bb.emit(relax.op.nn.conv3d(x, relax.const(folded), padding=(1, 1, 1)))
            bias = (b - mu * scale).astype(np.float32).reshape(1, -1, 1, 1, 1)
            out = bb.emit_output(relax.op.add(c, relax.const(bias)))
        bb.emit_func_output(out)
    expected = relax.transform.DeadCodeElimination()(bb.get())
    after = relax.transform.DeadCodeElimination()(after)
    assert relax.analysis.check_well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_kgs_pattern_survives_and_numerics_match_torch(rng):
    conv = torch.nn.Conv3d(8, 16, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm3d(16)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(structured_weight((16, 8, 3, 3, 3), "kgs", 0.7,
                                                             (8, 4), rng)))
        for t, s in zip((bn.weight, bn.bias, bn.running_mean, bn.running_var), _stats(rng, 16)):
            t.copy_(torch.from_numpy(s))
    model = torch.nn.Sequential(conv, bn, torch.nn.ReLU()).eval()
    x = torch.from_numpy(rng.standard_normal(X_SHAPE).astype(np.float32))
    mod = rt3d_passes.from_torch(model, (x,))
    folded = rt3d_passes.FoldBatchNormToConv3D()(mod)
    assert "batch_norm" not in folded.script(show_meta=False)
    (report,) = rt3d_passes.inspect(folded)
    assert report.scheme == "kgs" and report.rewrite
    assert report.kept_macs == S.classify(conv.weight.detach().numpy()).kept_macs * 4 * 6 * 6
    out = run_vm(mod, x)
    with torch.no_grad():
        assert_close_rel(out, model(x).numpy(), 1e-5)


def test_training_mode_and_parameter_weights_are_left_alone(rng):
    w = structured_weight((16, 8, 3, 3, 3), "kgs", 0.6, (8, 4), rng)
    for mod in (_before(w, _stats(rng, 16), training=True),
                _before(w, _stats(rng, 16), weight_param=True)):
        tvm.ir.assert_structural_equal(rt3d_passes.FoldBatchNormToConv3D()(mod), mod)


def test_conv_bias_before_batch_norm_is_folded_too(rng):
    """torch's Conv3d(bias=True) + BatchNorm3d imports as batch_norm(conv3d + reshape(b))."""
    net = torch.nn.Sequential(torch.nn.Conv3d(8, 16, 3, padding=1, bias=True),
                              torch.nn.BatchNorm3d(16), torch.nn.ReLU()).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
        net[1].weight.uniform_(0.5, 2)
        net[1].bias.uniform_(-1, 1)
    x = torch.from_numpy(rng.standard_normal(X_SHAPE).astype(np.float32))
    mod = rt3d_passes.from_torch(net, (x,))
    assert "R.nn.batch_norm" in mod["main"].script()
    folded = rt3d_passes.FoldBatchNormToConv3D()(mod)
    assert "R.nn.batch_norm" not in relax.transform.DeadCodeElimination()(folded).script()
    with torch.no_grad():
        assert_close_rel(run_vm(mod, x), net(x).numpy(), 1e-5)
