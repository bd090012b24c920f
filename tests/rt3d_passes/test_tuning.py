"""MetaSchedule integration: task extraction, databases, and (marked) real tuning."""

import json

import numpy as np
import pytest
import torch
import tvm
from tvm import relax

import rt3d_passes
from rt3d_passes.target import get_target, host_target, kryo_target
from rt3d_passes.testing import structured_weight
from rt3d_passes.tuning import extract_tasks, meta_schedule_logging, open_database, tune_model
from schedules.contract import KGS_CONV3D_ATTR
from tests.conftest import assert_close_rel, run_vm


class _TwoConv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(8, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv3d(16, 16, 3, padding=1)
        self.conv3 = torch.nn.Conv3d(16, 16, 3, padding=1)

    def forward(self, x):
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


@pytest.fixture
def model_and_mod(rng):
    net = _TwoConv().eval()
    with torch.no_grad():
        for conv in (net.conv2, net.conv3):
            conv.weight.copy_(torch.from_numpy(
                structured_weight(conv.weight.shape, "kgs", 0.75, (8, 4), rng)))
    x = torch.from_numpy(rng.standard_normal((1, 8, 4, 12, 12)).astype(np.float32))
    return net, x, rt3d_passes.from_torch(net, (x,))


def test_extract_tasks_carries_real_offsets(model_and_mod):
    _, _, mod = model_and_mod
    tasks = extract_tasks(mod, host_target())
    assert len(tasks) == 3  # conv1 dense (kept by include_dense), conv2, conv3
    for task in tasks:
        func = task.mod["main"]
        assert KGS_CONV3D_ATTR in func.attrs
        assert task.offsets.dtype == np.int32 and task.offsets.ndim == 2
        assert task.offsets.min() >= 0  # real offsets: every gather in bounds
    # offsets index the padded input of one batch element: (16 or 8) x 6 x 14 x 14
    assert max(int(t.offsets.max()) for t in tasks) < 16 * 6 * 14 * 14


def test_database_remembers_its_target(tmp_path):
    open_database(tmp_path / "db", host_target(), create=True)
    with pytest.raises(ValueError, match="was tuned for target"):
        open_database(tmp_path / "db", kryo_target())
    with pytest.raises(FileNotFoundError, match="rt3d tune"):
        open_database(tmp_path / "missing", host_target())


def test_database_warns_about_another_thread_count(tmp_path):
    open_database(tmp_path / "db", host_target(2), create=True)
    with pytest.warns(RuntimeWarning, match="measured with 2 thread"):
        open_database(tmp_path / "db", host_target(1))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_database(tmp_path / "db", host_target(2))  # same count: silent


def test_corrupt_database_is_a_clear_error(tmp_path):
    work = tmp_path / "db"
    open_database(work, host_target(), create=True)
    (work / "database_workload.json").write_text("{not json\n")
    with pytest.raises(ValueError, match="corrupt"):
        open_database(work, host_target())
    (work / "rt3d_target.json").write_text("garbage")
    with pytest.raises(ValueError, match="corrupt target file"):
        open_database(work, host_target())


def test_named_targets():
    assert "arm_cpu" in get_target("kryo").keys
    adreno = get_target("adreno")
    assert "adreno" in adreno.keys and "aarch64" in str(adreno.host.attrs["mtriple"])
    assert get_target("host").kind.name == "llvm"
    with pytest.raises(ValueError, match="valid targets: host, kryo, adreno"):
        get_target("hexagon")


def test_meta_schedule_logging_survives_unnamed_handlers(tmp_path):
    """MetaSchedule rebuilds its logging config per tuning run and fails on an unnamed handler
    on its logger (pytest >= 9 attaches one to every non-propagating logger): the guard every
    tuning path uses detaches such handlers while it runs and puts them back."""
    import logging

    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir

    from rt3d_passes.tuning.measure import META_SCHEDULE_LOGGER

    logger = logging.getLogger(META_SCHEDULE_LOGGER)
    foreign = logging.NullHandler()  # no name, like pytest's LogCaptureHandler
    logger.addHandler(foreign)
    try:
        for run in range(2):  # the second run is the one that failed
            with meta_schedule_logging():
                assert foreign not in logger.handlers
                get_loggers_from_work_dir(str(tmp_path / f"run{run}"), ["main"])
            assert foreign in logger.handlers
    finally:
        logger.removeHandler(foreign)


@pytest.mark.tuning
def test_tune_apply_resume(model_and_mod, tmp_path):
    net, x, mod = model_and_mod
    target = host_target()
    work = tmp_path / "db"
    summary = tune_model(mod, target, work, trials_per_task=4, progress=False)
    assert len(summary) == 3
    assert all(row["records"] >= 1 and row["best_ms"] > 0 for row in summary)
    # the untuned default is measured first and kept: tuning never applies anything slower
    assert all(row["default_ms"] is not None for row in summary)
    assert all(row["best_ms"] <= row["default_ms"] for row in summary)
    # every task's workload is in the database and the pipeline applies it
    db = open_database(work, target)
    from rt3d_passes.transform import rt3d_rewrite
    from rt3d_passes.tuning import apply_database

    with target:
        applied = apply_database(db)(rt3d_rewrite()(mod))
    kgs = [f for f in applied.functions.values()
           if isinstance(f, tvm.tirx.PrimFunc) and KGS_CONV3D_ATTR in f.attrs]
    assert kgs and all(f.attrs.get("tirx.is_scheduled", False) for f in kgs)
    out = run_vm(mod, x, relax.get_pipeline(
        "rt3d", target=target, database=str(work)))
    with torch.no_grad():
        assert_close_rel(out, net(x).numpy(), 1e-5)
    # resume: nothing left to run, records kept
    again = tune_model(mod, target, work, trials_per_task=4, progress=False)
    assert [r["trials_run"] for r in again] == [0, 0, 0]
    assert [r["records"] for r in again] == [r["records"] for r in summary]
    assert json.loads((work / "rt3d_target.json").read_text())["target"].startswith("llvm")
