"""Bad input ends in a clear error naming the layer or file, or a documented fallback.

Each case checks the message (or the report's reason) and, where the model still compiles,
that the result equals PyTorch: a layer RT3D cannot take is left to TVM's conv3d, never
computed wrong. Report-only checks of the same cases live in test_rewrite_kgs_conv3d.py
(non-constant weight, fp16, NDHWC, NaN, a group larger than the channels), test_cli.py
(plain state dict of another model) and test_tuning.py (corrupt database, other target or
thread count, unknown target name).
"""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes.cli import main
from rt3d_passes.target import host_target, kryo_target
from rt3d_passes.testing import structured_weight
from rt3d_passes.tuning import open_database
from tests.conftest import assert_close_rel

X_SHAPE = (1, 16, 4, 8, 8)


def _conv_module(w, x_shape=X_SHAPE, dtype="float32", weight_param=False, relu=False,
                 **conv_kwargs):
    """main(x[, w]) = conv3d(x, W) (+ ReLU), W a constant unless ``weight_param``."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, dtype))
    params = [x]
    if weight_param:
        wv = relax.Var("w", relax.TensorType(w.shape, str(w.dtype)))
        params.append(wv)
    else:
        wv = relax.const(w)
    with bb.function("main", params):
        with bb.dataflow():
            h = bb.emit(relax.op.nn.conv3d(x, wv, padding=(1, 1, 1), **conv_kwargs))
            if relu:
                h = bb.emit(relax.op.nn.relu(h))
            out = bb.emit_output(h)
        bb.emit_func_output(out)
    return bb.get()


def _compile_run(mod, *args):
    target = host_target()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args]).numpy()


def _torch_conv(x, w, padding=1):
    return torch.nn.functional.conv3d(torch.from_numpy(np.asarray(x, np.float32)),
                                      torch.from_numpy(np.asarray(w, np.float32)),
                                      padding=padding).numpy()


@pytest.fixture
def kgs_weight(rng):
    return structured_weight((32, 16, 3, 3, 3), "kgs", 0.8, (8, 4), rng)


# ---------------------------------------------------------------- weights as parameters
def test_parameter_weights_are_left_to_tvm_and_correct(kgs_weight, rng):
    """Fallback: a weight passed at run time is reported and computed by TVM's conv3d."""
    mod = _conv_module(kgs_weight, weight_param=True, relu=True)
    (report,) = rt3d_passes.inspect(mod)
    assert not report.rewrite and "not a constant" in report.reason
    assert "BindParams" in report.reason  # says how to bind them on request
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    out = _compile_run(mod, x, kgs_weight)
    assert_close_rel(out, np.maximum(_torch_conv(x, kgs_weight), 0), 1e-5)


# ---------------------------------------------------------------- dynamic shapes
class _TwoConv(torch.nn.Module):
    def __init__(self, rng):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(8, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv3d(16, 16, 3, padding=1)
        with torch.no_grad():
            self.conv2.weight.copy_(torch.from_numpy(
                structured_weight((16, 16, 3, 3, 3), "kgs", 0.75, (8, 4), rng)))

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


@pytest.mark.parametrize("axis, name, shapes", [
    (0, "batch", [(1, 8, 4, 8, 8), (3, 8, 4, 8, 8)]),
    pytest.param(2, "frames", [(2, 8, 4, 8, 8), (2, 8, 6, 8, 8)]),
])
def test_dynamic_shapes_are_left_dense_and_correct(rng, axis, name, shapes):
    """torch.export with a symbolic batch or frame count: every conv3d is reported as
    "dynamic shape" and compiled by TVM's conv3d; the module runs at several sizes."""
    from torch.export import Dim

    net = _TwoConv(rng).eval()
    example = torch.zeros(2, 8, 4, 8, 8)
    exported = torch.export.export(net, (example,),
                                   dynamic_shapes={"x": {axis: Dim(name, min=1, max=32)}})
    mod = rt3d_passes.from_exported(exported)
    reports = rt3d_passes.inspect(mod)
    assert [r.layer for r in reports] == ["conv1", "conv2"]
    assert all(not r.rewrite and r.reason == "dynamic shape" for r in reports)
    assert "tvm conv3d: dynamic shape" in rt3d_passes.format_reports(reports)
    target = host_target()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline("rt3d", target=target))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    for shape in shapes:
        x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
        out = vm["main"](tvm.runtime.tensor(x.numpy())).numpy()
        with torch.no_grad():
            assert_close_rel(out, net(x).numpy(), 1e-5)


# ---------------------------------------------------------------- layout
def test_ndhwc_is_left_to_tvm_and_correct(kgs_weight, rng):
    w = np.ascontiguousarray(kgs_weight.transpose(2, 3, 4, 1, 0))  # DHWIO
    mod = _conv_module(w, x_shape=(1, 4, 8, 8, 16), data_layout="NDHWC", kernel_layout="DHWIO")
    (report,) = rt3d_passes.inspect(mod)
    assert not report.rewrite and report.reason.startswith("layout NDHWC/DHWIO/NDHWC")
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    out = _compile_run(mod, x.transpose(0, 2, 3, 4, 1))
    assert_close_rel(out, _torch_conv(x, kgs_weight).transpose(0, 2, 3, 4, 1), 1e-5)


# ---------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype, rel", [("float16", 1e-2), ("bfloat16", 6e-2)])
def test_half_precision_is_left_to_tvm_and_correct(kgs_weight, rng, dtype, rel):
    """fp16 / bf16 weights: reported, computed by TVM's conv3d in that dtype. TVM accumulates
    the 432-term sums in the dtype itself, so against fp32 PyTorch on the same rounded inputs
    the error is a few of its epsilons (measured up to 0.4% fp16, 2.6% bf16 of max |ref|)."""
    import ml_dtypes

    np_dtype = np.float16 if dtype == "float16" else ml_dtypes.bfloat16
    w = kgs_weight.astype(np_dtype)
    x = rng.standard_normal(X_SHAPE).astype(np_dtype)
    mod = _conv_module(w, dtype=dtype)
    (report,) = rt3d_passes.inspect(mod)
    assert not report.rewrite and report.reason == f"dtype ['{dtype}'] (only float32)"
    out = _compile_run(mod, x).astype(np.float32)
    assert_close_rel(out, _torch_conv(x, w), rel)


def test_int8_is_left_to_tvm_and_exact(kgs_weight, rng):
    w = np.round(kgs_weight * 20).clip(-127, 127).astype(np.int8)
    x = rng.integers(-127, 128, X_SHAPE).astype(np.int8)
    mod = _conv_module(w, dtype="int8", out_dtype="int32")
    (report,) = rt3d_passes.inspect(mod)
    assert not report.rewrite and report.reason == "dtype ['int32', 'int8'] (only float32)"
    out = _compile_run(mod, x)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, _torch_conv(x, w).astype(np.int64))


# ---------------------------------------------------------------- NaN / Inf
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_propagate_as_in_torch(kgs_weight, rng, bad):
    """A NaN/Inf weight leaves the layer to TVM's conv3d: the same outputs are NaN/Inf as in
    PyTorch, the finite ones agree. (TVM's ReLU maps NaN to 0 where torch keeps NaN: that is
    TVM's operator, not a layer RT3D rewrote.)"""
    w = kgs_weight.copy()
    w[3, 2, 1, 1, 1] = bad
    mod = _conv_module(w)
    (report,) = rt3d_passes.inspect(mod)
    assert not report.rewrite and report.reason == "1 NaN/Inf weights"
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    out, ref = _compile_run(mod, x), _torch_conv(x, w)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(ref))
    assert np.isnan(ref).any() or np.isinf(ref).any()
    finite = np.isfinite(ref)
    assert_close_rel(out[finite], ref[finite], 1e-5)


# ---------------------------------------------------------------- group shapes
def test_channels_not_a_multiple_of_the_group_are_exact(rng):
    """20 output / 12 input channels with 8x4 groups: edge groups are smaller, the layer is
    still sparse and exact."""
    w = structured_weight((20, 12, 3, 3, 3), "kgs", 0.75, (8, 4), rng)
    x_shape = (1, 12, 4, 8, 8)
    mod = _conv_module(w, x_shape=x_shape)
    (report,) = rt3d_passes.inspect(mod)
    assert report.rewrite and report.group == (8, 4) and report.kernel == "rt3d sparse"
    x = rng.standard_normal(x_shape).astype(np.float32)
    assert_close_rel(_compile_run(mod, x), _torch_conv(x, w), 1e-5)


def test_group_option_that_does_not_match_the_zeros(kgs_weight, rng):
    """A --group (3x5) that divides neither channel count nor explains the 8x4 zeros: the
    layer is reported unstructured for that group and computed dense, exactly."""
    mod = _conv_module(kgs_weight)
    (report,) = rt3d_passes.inspect(mod, group=(3, 5), include_dense=False)
    assert not report.rewrite and report.reason.startswith("unstructured")
    (report,) = rt3d_passes.inspect(mod, group=(3, 5))
    assert report.rewrite and "computed dense by RT3D's kernel" in report.reason
    pipeline = relax.get_pipeline("rt3d", target=host_target(), group=(3, 5))
    ex = tvm.compile(mod, host_target(), relax_pipeline=pipeline)
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    assert_close_rel(out, _torch_conv(x, kgs_weight), 1e-5)


@pytest.mark.parametrize("group", [(0, 4), (8, -1)])
def test_group_of_non_positive_size_is_refused(group):
    with pytest.raises(ValueError, match="group must be two positive sizes"):
        rt3d_passes.RewriteOptions.of(group=group)


def test_cli_group_must_parse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["inspect", "x.pt", "--group", "8by4"])
    assert exc.value.code == 2
    assert "group must look like 8x4, got '8by4'" in capsys.readouterr().err


# ---------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from rt3d_prune.checkpoint import save_checkpoint
    from rt3d_prune.models import build_model

    path = tmp_path_factory.mktemp("ckpt") / "c3d_small.pt"
    save_checkpoint(path, build_model("c3d_small"), "c3d_small", {}, [1, 3, 16, 32, 32],
                    {"method": "none"})
    return path


def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("content", ["garbage", "empty", "truncated", "plain_pickle"])
def test_corrupt_checkpoint_is_one_line_naming_the_file(checkpoint, tmp_path, capsys,
                                                        content):
    import pickle

    data = {"garbage": b"not a checkpoint\x80\x04", "empty": b"",
            "truncated": checkpoint.read_bytes()[: checkpoint.stat().st_size // 2],
            "plain_pickle": pickle.dumps({"arch": "c3d_small"})[:-3]}[content]
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    err = _cli_error(["inspect", str(path)], capsys)
    assert err.count("\n") == 0, err
    assert err.startswith(f"rt3d inspect: error: {path}: not readable as a torch checkpoint "
                          "(corrupt, truncated or not a weights-only file)"), err


def test_corrupt_exported_program_names_the_file(tmp_path, capsys):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"PK\x03\x04 broken zip")
    err = _cli_error(["inspect", str(path)], capsys)
    assert err.count("\n") == 0, err
    assert f"{path}: not readable as an exported program (.pt2)" in err


def test_compile_of_corrupt_checkpoint_names_the_file(tmp_path, capsys):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x00" * 64)
    err = _cli_error(["compile", str(path), "-o", str(tmp_path / "m.so")], capsys)
    assert f"{path}: not readable as a torch checkpoint" in err


def test_checkpoint_for_another_architecture(checkpoint, tmp_path, capsys):
    payload = torch.load(checkpoint, weights_only=True)
    payload["arch"] = "s3d"  # c3d_small's weights under another zoo name
    path = tmp_path / "wrong.pt"
    torch.save(payload, path)
    err = _cli_error(["inspect", str(path)], capsys)
    assert f"{path}: state dict does not fit its architecture 's3d'" in err
    assert err.count("\n") == 0, err


def test_input_shape_the_model_cannot_take(checkpoint, capsys):
    err = _cli_error(["inspect", str(checkpoint), "--input-shape", "1,4,16,32,32"], capsys)
    assert f"{checkpoint} (c3d_small): the model does not run on input shape " \
           "(1, 4, 16, 32, 32)" in err
    assert "expected input[1, 4, 16, 32, 32] to have 3 channels" in err


# ---------------------------------------------------------------- targets
def test_unknown_target_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compile", "c3d_small", "--target", "hexagon"])
    assert exc.value.code == 2
    assert "invalid choice: 'hexagon'" in capsys.readouterr().err


def test_unknown_target_string_in_the_pipeline():
    with pytest.raises(ValueError, match='Target kind "phone-npu" is not defined'):
        relax.get_pipeline("rt3d", target="phone-npu")


# ---------------------------------------------------------------- tuning databases
def test_empty_database_compiles_untuned(kgs_weight, rng, tmp_path):
    """A database with no records (a tuning run that measured nothing): documented fallback,
    the default schedules, same result."""
    open_database(tmp_path / "db", host_target(), create=True)
    mod = _conv_module(kgs_weight)
    pipeline = relax.get_pipeline("rt3d", target=host_target(), database=str(tmp_path / "db"))
    ex = tvm.compile(mod, host_target(), relax_pipeline=pipeline)
    x = rng.standard_normal(X_SHAPE).astype(np.float32)
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    assert_close_rel(out, _torch_conv(x, kgs_weight), 1e-5)


def test_missing_database_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no RT3D tuning database in {tmp_path}"):
        relax.get_pipeline("rt3d", target=host_target(), database=str(tmp_path))


def test_database_of_another_target_in_the_pipeline(tmp_path):
    open_database(tmp_path / "db", host_target(), create=True)
    with pytest.raises(ValueError, match=r"was tuned for target llvm .* not llvm "
                                         r"mtriple=aarch64"):
        relax.get_pipeline("rt3d", target=kryo_target(), database=str(tmp_path / "db"))


@pytest.mark.parametrize("damage", ["workload", "empty_target_file"])
def test_corrupt_database_on_the_command_line(tmp_path, capsys, damage):
    work = tmp_path / "db"
    open_database(work, host_target(), create=True)
    if damage == "workload":
        (work / "database_workload.json").write_text('["not", "a workload"]\n{"x": 1}\n')
        expected = f"tuning database {work} is corrupt"
    else:
        (work / "rt3d_target.json").write_text("")
        expected = f"{work / 'rt3d_target.json'}: corrupt target file"
    err = _cli_error(["compile", "c3d_small", "--tuning-db", str(work),
                      "-o", str(tmp_path / "m.so")], capsys)
    assert expected in err, err
