"""Direct or Winograd per layer from a tuning database's measured times (rt3d_passes.tuning
.select): candidates, the choice, the pipeline compiling with it. Records are committed with
chosen run times, so the choice is known in advance (no tuning runs here)."""

import pytest
import torch
import tvm
import tvm_ffi
from tvm import relax
from tvm.s_tir import meta_schedule as ms

import rt3d_passes
from rt3d_passes.target import host_target
from rt3d_passes.transform import RewriteOptions, format_reports, inspect, rt3d_rewrite
from rt3d_passes.tuning import candidate_workloads, measured_choices, with_measured
from rt3d_passes.tuning.select import candidate_tasks, has_candidate_pairs
from rt3d_passes.tuning.tasks import extract_tasks
from tests.conftest import assert_close_rel
from tests.rt3d_passes.conftest import commit_measured

ALL = ("direct", "winograd2", "winograd4")


class _Net(torch.nn.Module):
    """conv_a: Winograd-eligible (3x3x3, stride 1); conv_b: strided, direct only."""

    def __init__(self):
        super().__init__()
        self.conv_a = torch.nn.Conv3d(8, 16, 3, padding=1)
        self.conv_b = torch.nn.Conv3d(16, 8, 3, padding=1, stride=2)

    def forward(self, x):
        return self.conv_b(torch.relu(self.conv_a(x)))


@pytest.fixture(scope="module")
def net_mod():
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(1, 8, 4, 10, 10)
    return net, x, rt3d_passes.from_torch(net, (x,))


def _database(workloads: dict[str, tvm.IRModule], ms_by_algorithm: dict[str, float]):
    return commit_measured(ms.database.MemoryDatabase(), workloads, ms_by_algorithm)


def test_candidates_are_the_eligible_layers_operators(net_mod):
    _, _, mod = net_mod
    cands = candidate_workloads(mod, host_target())
    assert set(cands) == {"conv_a"}  # conv_b is strided
    assert set(cands["conv_a"]) == set(ALL)
    hashes = {tvm_ffi.structural_hash(m) for m in cands["conv_a"].values()}
    assert len(hashes) == 3
    # a layer the user forces is not a candidate; nothing without Winograd
    assert candidate_workloads(mod, host_target(), RewriteOptions(
        algorithms={"conv_a": "direct"})) == {}
    assert candidate_workloads(mod, host_target(), RewriteOptions(winograd=False)) == {}


def test_candidate_workloads_are_what_tuning_extracts(net_mod):
    """The database is keyed by the tasks' PrimFuncs: a candidate must be one of them."""
    _, _, mod = net_mod
    cands = candidate_workloads(mod, host_target())["conv_a"]
    for algorithm, workload in cands.items():
        tasks = extract_tasks(mod, host_target(), RewriteOptions(
            algorithms={"conv_a": algorithm}))
        assert any(tvm_ffi.structural_equal(t.mod, workload) for t in tasks), algorithm
    default = extract_tasks(mod, host_target())
    extra = candidate_tasks(mod, host_target(), known=default)
    # with the default's own tasks, the other two candidates of conv_a
    assert len(extra) == 2 and all("@" in t.name for t in extra)
    every = [t.mod for t in default + extra]
    assert all(any(tvm_ffi.structural_equal(w, m) for m in every) for w in cands.values())


@pytest.mark.parametrize("times, expected", [
    ({"direct": 3.0, "winograd2": 1.0, "winograd4": 2.0}, "winograd2"),
    ({"direct": 1.0, "winograd2": 5.0, "winograd4": 2.0}, "direct"),
    ({"direct": 9.0, "winograd4": 2.0}, "winograd4"),
])
def test_the_fastest_measured_candidate_is_chosen(net_mod, times, expected):
    _, _, mod = net_mod
    cands = candidate_workloads(mod, host_target())["conv_a"]
    db = _database(cands, times)
    assert has_candidate_pairs(db)
    ((layer, algorithm, reason),) = measured_choices(mod, host_target(), db)
    assert (layer, algorithm) == ("conv_a", expected)
    assert reason.startswith("measured fastest (") and f"{times['winograd4']:.3g} ms" in reason
    report = {r.layer: r for r in inspect(mod, with_measured(mod, host_target(), db))}
    assert report["conv_a"].algorithm == ("direct" if expected == "direct" else "winograd")
    assert "measured fastest" in report["conv_a"].algorithm_reason
    assert "measured fastest" in format_reports(list(report.values()))


def test_one_measured_candidate_or_failures_leave_the_cost_model(net_mod):
    _, _, mod = net_mod
    cands = candidate_workloads(mod, host_target())["conv_a"]
    only_direct = _database(cands, {"direct": 1.0})
    assert not has_candidate_pairs(only_direct)
    assert measured_choices(mod, host_target(), only_direct) == ()
    failed = _database(cands, {"direct": 1.0, "winograd2": 1e13})  # failed runs: 1e10 s
    assert measured_choices(mod, host_target(), failed) == ()
    assert with_measured(mod, host_target(), None) == RewriteOptions()
    # what the user forces wins over measurements
    db = _database(cands, {"direct": 1.0, "winograd2": 5.0})
    forced = RewriteOptions(algorithms={"conv_a": "winograd4"})
    assert measured_choices(mod, host_target(), db, forced) == ()


def test_pipeline_compiles_with_the_measured_choice(net_mod):
    net, x, mod = net_mod
    cands = candidate_workloads(mod, host_target())["conv_a"]
    target = host_target()
    with torch.no_grad():
        ref = net(x).numpy()
    for times, op in (({"direct": 1.0, "winograd4": 9.0}, "kgs_conv3d"),
                      ({"direct": 9.0, "winograd4": 1.0}, "winograd_conv3d")):
        db = _database(cands, times)
        ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
            "rt3d", target=target, database=db))
        vm = relax.VirtualMachine(ex, tvm.cpu())
        assert_close_rel(vm["main"](tvm.runtime.tensor(x.numpy())).numpy(), ref, 5e-5)
        with target:
            rewritten = rt3d_rewrite(with_measured(mod, target, db))(mod)
        names = [g.name_hint for g in rewritten.get_global_vars()]
        assert sum(n.startswith("winograd_conv3d") for n in names) == (
            op == "winograd_conv3d"), names


def test_measured_choices_must_be_one_tile():
    with pytest.raises(ValueError, match="measured algorithm"):
        RewriteOptions(measured=(("conv_a", "winograd", "why"),))
