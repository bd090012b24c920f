"""The registered ``rt3d`` pipeline and RewriteKGSConv3D in front of a user's own pipeline."""

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes import sparsity as S
from tests.conftest import assert_close_rel, pruned_tiny_c3d, run_vm


@pytest.fixture
def pruned_model(rng):
    return pruned_tiny_c3d(rng)


def _kgs_funcs(mod):
    return [gv.name_hint for gv, f in mod.functions_items()
            if isinstance(f, tvm.tirx.PrimFunc) and "rt3d.kgs_conv3d" in (f.attrs or {})]


def test_registered_pipeline(pruned_model, rng):
    x = torch.from_numpy(rng.standard_normal((1, 3, 4, 16, 16)).astype(np.float32))
    mod = rt3d_passes.from_torch(pruned_model, (x,))
    assert list(mod["main"].attrs["rt3d.conv3d_names"]) == ["conv1", "conv2", "conv3"]
    target = rt3d_passes.host_target()
    pipeline = relax.get_pipeline("rt3d", target=target)
    lowered = pipeline(mod)
    # conv1 is dense: with the default include_dense it still runs on RT3D's kernel
    assert len(_kgs_funcs(lowered)) == 3
    for f in lowered.functions.values():
        if isinstance(f, tvm.tirx.PrimFunc) and "rt3d.kgs_conv3d" in f.attrs:
            assert f.attrs["tirx.is_scheduled"]
    out = run_vm(mod, x, pipeline)
    with torch.no_grad():
        assert_close_rel(out, pruned_model(x).numpy(), 1e-5)


def test_pipeline_by_name_takes_current_target(pruned_model, rng):
    x = torch.from_numpy(rng.standard_normal((2, 3, 4, 8, 8)).astype(np.float32))
    mod = rt3d_passes.from_torch(pruned_model, (x,))
    out = run_vm(mod, x, "rt3d")
    with torch.no_grad():
        assert_close_rel(out, pruned_model(x).numpy(), 1e-5)


def test_prepend_to_user_pipeline(pruned_model, rng):
    """A user who already has a pipeline puts RewriteKGSConv3D (and a schedule) in front."""
    from tvm.s_tir import dlight as dl

    import schedules

    x = torch.from_numpy(rng.standard_normal((1, 3, 4, 16, 16)).astype(np.float32))
    mod = rt3d_passes.from_torch(pruned_model, (x,))
    user_pipeline = relax.get_pipeline("default")  # what tvm.compile uses for llvm
    seq = tvm.transform.Sequential([
        rt3d_passes.RewriteKGSConv3D(include_dense=False),
        dl.ApplyDefaultSchedule(schedules.KGSConv3DCPU()),
        user_pipeline,
    ])
    rewritten = rt3d_passes.RewriteKGSConv3D(include_dense=False)(mod)
    assert len(_kgs_funcs(rewritten)) == 2  # conv2 and conv3; dense conv1 untouched
    out = run_vm(mod, x, seq)
    with torch.no_grad():
        assert_close_rel(out, pruned_model(x).numpy(), 1e-5)


def test_from_torch_keep_params_then_bind(pruned_model, rng):
    x = torch.from_numpy(rng.standard_normal((1, 3, 4, 8, 8)).astype(np.float32))
    mod = rt3d_passes.from_torch(pruned_model, (x,), keep_params_as_input=True)
    assert len(mod["main"].params) > 1
    assert not any(r.rewrite for r in rt3d_passes.inspect(mod))
    mod, params = relax.frontend.detach_params(mod)
    names = [p.name for p in mod["main"].params[1:]]
    bound = relax.transform.BindParams("main", dict(zip(names, params["main"])))(mod)
    reports = rt3d_passes.inspect(bound)
    assert [r.scheme for r in reports] == ["dense", "kgs", "kgs"]
    info = S.classify(pruned_model.conv2.weight.detach().numpy())
    assert reports[1].kept_macs == info.kept_macs * 4 * 4 * 4  # after the (1, 2, 2) pool


@pytest.mark.parametrize("system_cpu", sorted(rt3d_passes.target.CODEGEN_CPU))
def test_codegen_cpu_keeps_the_vector_instruction_set(system_cpu):
    """A host CPU compiled with another LLVM model (``target.CODEGEN_CPU``) keeps every
    vector feature the kernels use (and gains none the host lacks)."""
    from tvm.target import Target, codegen

    replacement = rt3d_passes.target.codegen_cpu(system_cpu)
    assert replacement != system_cpu
    for feature in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512vl"):
        has = [codegen.target_has_features([feature], Target({"kind": "llvm", "mcpu": cpu}))
               for cpu in (system_cpu, replacement)]
        assert has[0] == has[1], f"{feature}: {system_cpu} {has[0]}, {replacement} {has[1]}"


def test_host_target_compiles_with_the_codegen_cpu():
    from tvm.target import codegen

    target = rt3d_passes.host_target(2)
    system = codegen.llvm_get_system_cpu()
    assert str(target.attrs["mcpu"]) == rt3d_passes.target.codegen_cpu(system)
    assert rt3d_passes.target.codegen_cpu("znver4") == "znver4"  # not measured: kept
    assert int(target.attrs["num-cores"]) == 2
