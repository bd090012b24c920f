"""The emulated Kryo device: an aarch64 TVM RPC server under qemu-user runs a model compiled
with the rt3d pipeline for aarch64 and cross-exported on this host; outputs equal torch's.

Needs ``bash scripts/emulated_kryo.sh setup`` (skipped otherwise). By default the test starts
its own tracker and emulated server (registration takes a minute or more); to reuse one
started with ``scripts/emulated_kryo.sh start``, set ``RT3D_EMULATED_TRACKER=host:port``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes import rpc
from rt3d_passes.rpc.emulated_kryo import EMULATED_KEY, kryo_target, not_set_up_reason
from tests.conftest import assert_close_rel, pruned_tiny_c3d
from tests.rt3d_passes.conftest import kgs_task, measured_run_secs, tune_over_rpc

pytestmark = [
    pytest.mark.emulated,
    pytest.mark.skipif(not_set_up_reason() is not None, reason=str(not_set_up_reason())),
]


def test_model_on_emulated_kryo(kryo_tracker, rng):
    model = pruned_tiny_c3d(rng)
    x = rng.standard_normal((1, 3, 4, 16, 16)).astype(np.float32)
    mod = rt3d_passes.from_torch(model, (torch.from_numpy(x),))
    target = kryo_target()
    pipeline = relax.get_pipeline("rt3d", target=target)
    kgs = [f for f in pipeline(mod).functions.values()
           if isinstance(f, tvm.tirx.PrimFunc) and "rt3d.kgs_conv3d" in (f.attrs or {})]
    assert len(kgs) == 3  # RT3D's operator, not TVM's default conv3d, runs on the device
    ex = tvm.compile(mod, target, relax_pipeline=pipeline)
    outputs, timing = rpc.run_remote(ex, kryo_tracker, EMULATED_KEY, [x], target=target,
                                     number=1, repeat=2, timeout_s=120)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    err = float(np.abs(outputs[0] - ref).max())
    print(f"emulated run: {timing.mean * 1e3:.1f} ms, max abs error {err:.3g} "
          f"(max |ref| {np.abs(ref).max():.3g})")
    assert_close_rel(outputs[0], ref, 1e-5)
    assert len(timing.results) == 2


@pytest.mark.tuning
def test_tuning_on_emulated_kryo(kryo_tracker, tmp_path, rng):
    """MetaSchedule for aarch64: built and cross-exported here, measured on the emulated
    device through the tracker (the flow a phone would see)."""
    func, offsets = kgs_task(rng)
    tune_over_rpc(func, offsets, rpc.parse_address(kryo_tracker), EMULATED_KEY, tmp_path,
                  trials=2, per_iter=2, session_timeout_s=120, target=kryo_target(),
                  f_export=rpc.cross_export_aarch64)
    measured = measured_run_secs(tmp_path / "database_tuning_record.json")
    print(f"emulated tuning: run_secs {measured}")
    assert len(measured) == 2
