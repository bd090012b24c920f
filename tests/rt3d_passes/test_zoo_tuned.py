"""Whole models compiled with a tuning database compute PyTorch eager's logits.

A pruned zoo model is tuned (``tune_model``: the measured default schedule of every task, then
MetaSchedule's search) into a fresh database and compiled through the ``rt3d`` pipeline with
it. The test checks that the database is what scheduled the model, not just that compiling
succeeded: every RT3D operator, right after the pipeline's ``RT3DApplyTuningDatabase`` pass,
is the database's best record for its workload. Since tuning with a couple of trials often
keeps the default schedule as the best, the model is compiled a second time with the
*searched* records only (the same database without the default schedules): then the
operators run schedules found by the search, which differ from the untuned ones. Both builds
equal PyTorch eager on fresh random clips (relative error <= 1e-5 of the largest logit).

The default ``-m tuning`` run tunes the smallest zoo model (c3d_small, 7 tasks, batch 1) at its
preset and at random per-layer rates, with 2 trials per task, the measured default and one
searched candidate (minutes each); every zoo model with ``RT3D_FUZZ_MODELS=all`` (X3D has 35
tasks: tens of minutes each). A build without a database is checked by
``test_zoo_equivalence.py``.
"""

from __future__ import annotations

import pytest
import torch
import tvm
import tvm_ffi
from tvm import relax

import rt3d_passes
import schedules.meta_schedule as rt3d_ms
from rt3d_passes.tuning import extract_tasks, open_database, tune_model
from rt3d_prune.models import MODEL_NAMES
from tests.conv3d_strategies import rel_error
from tests.zoo_cases import (
    LONG,
    logits_tolerance,
    pruned_at_preset,
    pruned_at_random_rates,
    zoo_inputs,
)

pytestmark = [pytest.mark.tuning, pytest.mark.slow]

REL = 1e-5
#: Per task: the measured default schedule and one searched candidate.
TRIALS = 2
#: Tuned in the default ``-m tuning`` run; the others with RT3D_FUZZ_MODELS=all.
DEFAULT_MODELS = {"c3d_small"}
#: The pass of the ``rt3d`` pipeline that applies the database.
APPLY_PASS = "RT3DApplyTuningDatabase"


@tvm.instrument.pass_instrument
class _ModuleAfter:
    """Keeps the module as it is right after the pass named ``pass_name``."""

    def __init__(self, pass_name: str):
        self.pass_name = pass_name  # not ``name``: a read-only property of PassInstrument
        self.mod = None

    def run_after_pass(self, mod, info):
        if info.name == self.pass_name:
            self.mod = mod


def _compile(mod, target, database):
    """``tvm.compile`` with the ``rt3d`` pipeline and ``database``; also the PrimFuncs as the
    database pass left them, by name."""
    after = _ModuleAfter(APPLY_PASS)
    with tvm.transform.PassContext(instruments=[after]):
        ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
            "rt3d", target=target, database=database))
    assert after.mod is not None, f"the rt3d pipeline did not run {APPLY_PASS}"
    return ex, {gv.name_hint: f for gv, f in after.mod.functions_items()
                if isinstance(f, tvm.tirx.PrimFunc)}


def _same(a: tvm.tirx.PrimFunc, b: tvm.tirx.PrimFunc) -> bool:
    """Structurally equal, whatever the symbol name and the is_scheduled mark."""
    def norm(f):
        return f.with_attr("global_symbol", "main").with_attr("tirx.is_scheduled", True)
    return tvm_ffi.structural_equal(norm(a), norm(b))


def _default(task, target) -> tvm.tirx.PrimFunc:
    """``task`` under RT3D's untuned default schedule."""
    sch = tvm.s_tir.Schedule(task.mod)
    with target:
        rt3d_ms.schedule_for(target)(sch, True)
    return sch.mod["main"]


def _replayed(task, record) -> tvm.tirx.PrimFunc:
    sch = tvm.s_tir.Schedule(task.mod)
    record.trace.apply_to_schedule(sch, remove_postproc=False)
    return sch.mod["main"]


def _measured(db, task) -> list:
    """The task's records that hold a real measurement, fastest first (failed runs: 1e10 s)."""
    records = db.get_top_k(db.commit_workload(task.mod), 10_000)
    return [r for r in records if r.run_secs and all(float(v) < 1e9 for v in r.run_secs)]


def _searched_only(db, tasks, target, work):
    """A copy of ``db`` without the default schedules: the records the search found."""
    from tvm.s_tir import meta_schedule as ms

    out = open_database(work, target, create=True)
    for task in tasks:
        default = _default(task, target)
        workload = out.commit_workload(task.mod)
        for record in _measured(db, task):
            if not _same(_replayed(task, record), default):
                out.commit_tuning_record(ms.database.TuningRecord(
                    record.trace, workload, record.run_secs, target, record.args_info))
    return out


def _check_logits(model, ex, name, rng, tol: float = REL) -> float:
    xs = zoo_inputs(name, rng, batch=1)  # fresh clips, not those the model was traced with
    with torch.no_grad():
        ref = model(*xs).numpy()
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](
        *[tvm.runtime.tensor(x.numpy()) for x in xs]).numpy()
    err = rel_error(out, ref)
    assert err <= tol, f"{name}: relative error {err:.3g} > {tol:g}"
    return err


@pytest.mark.parametrize("rates", ["preset", "random"])
@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n != "x3d_s"])
def test_tuned_zoo_model_matches_torch(name, rates, rng, tmp_path):
    if name not in DEFAULT_MODELS and not LONG:
        pytest.skip("tens of minutes to tune: long profile only (RT3D_FUZZ_MODELS=all)")
    model = (pruned_at_preset if rates == "preset" else pruned_at_random_rates)(name, rng)
    mod = rt3d_passes.from_torch(model, zoo_inputs(name, rng, batch=1))
    target = rt3d_passes.host_target()
    work = tmp_path / "tuned"
    summary = tune_model(mod, target, work, trials_per_task=TRIALS, num_trials_per_iter=2,
                         progress=False)
    tasks = extract_tasks(mod, target)
    assert tasks and [row["task"] for row in summary] == [t.name for t in tasks]

    # 1. as tuned: every RT3D operator (a task: KGS or Winograd conv3d) is its workload's best
    # record
    db = open_database(work, target)
    ex, applied = _compile(mod, target, work)
    assert {t.name for t in tasks} <= set(applied)
    for task in tasks:
        best = db.query_ir_module(task.mod, target, task.name)
        assert best is not None and _measured(db, task), f"{task.name}: no tuning record"
        assert _same(applied[task.name], best["main"]), \
            f"{task.name}: compiled schedule is not the database's best record"
    err = _check_logits(model, ex, name, rng, logits_tolerance(rt3d_passes.inspect(mod)))
    tuned = sum(not _same(applied[t.name], _default(t, target)) for t in tasks)
    print(f"{name} at {rates} rates: {len(tasks)} tasks; as tuned, {tuned} run a searched "
          f"schedule (the rest the measured default): relative error {err:.3g}")

    # 2. searched records only: the operators run schedules the search found
    searched = _searched_only(db, tasks, target, tmp_path / "searched")
    ex, applied = _compile(mod, target, tmp_path / "searched")
    found = 0
    for task in tasks:
        best = searched.query_ir_module(task.mod, target, task.name)
        if best is None:  # the search measured nothing but the default here
            continue
        assert _same(applied[task.name], best["main"])
        assert not _same(applied[task.name], _default(task, target))
        found += 1
    assert found >= 1, "the search measured no schedule other than the defaults"
    err = _check_logits(model, ex, name, rng, logits_tolerance(rt3d_passes.inspect(mod)))
    print(f"{name} at {rates} rates: searched schedules only, {found}/{len(tasks)} tasks: "
          f"relative error {err:.3g}")
