"""``rt3d bench --model all``: which models run, and the summary table of their results."""

import pytest

from benchmarks.e2e import report, zoo
from benchmarks.e2e.models import BadInput


def test_model_list():
    assert zoo.model_list("c3d") is None  # one model: the usual single run
    assert zoo.model_list("c3d, r2plus1d") == ["c3d", "r2plus1d_18"]
    every = zoo.model_list("all")
    assert "c3d_small" not in every and {"c3d", "x3d_xs", "slow_r50"} <= set(every)
    with pytest.raises(BadInput, match="unknown model 'nope'"):
        zoo.model_list("c3d,nope")


def test_summary_table_and_plot(tmp_path):
    rows = [{"name": "openvino", "median_ms": 120.0}, {"name": "torch_eager", "median_ms": 300.0},
            {"name": report.DENSE, "median_ms": 200.0}, {"name": report.SPARSE, "median_ms": 80.0}]
    macs = {"dense_gmacs": 10.0, "kept_gmacs": 4.0, "pruning_rate": 2.5}
    payload = {"preset": "x-3x", "input_shape": [1, 3, 4, 8, 8], "macs": macs,
               "results": [{"threads": 2, "rows": rows, "speedups": report.speedups(rows),
                            "bars": report.bars("x3d_xs", macs, rows)}]}
    summary = {"models": {"x3d_xs": zoo._digest(payload, 0), "s3d": {"status": "failed (exit 1)"}}}
    table = zoo.format_summary(summary)
    line = next(ln for ln in table.splitlines() if ln.startswith("x3d_xs"))
    assert "1.50x" in line  # 120 / 80 over the fastest peer
    assert " 1.00 " in line  # (200 / 80) / 2.5
    assert "failed (exit 1)" in table
    assert zoo.plot_summary(tmp_path / "s.png", summary).exists()


def test_op_kinds_compare_rt3d_with_torch():
    from benchmarks.e2e import rt3d

    rows = [{"op": "kgs_conv3d [conv1]", "kind": "conv3d (RT3D kernel)", "ms": 10.0},
            {"op": "max_pool3d", "kind": "pooling", "ms": 3.0},
            {"op": "fused_sigmoid_multiply", "kind": "elementwise/other", "ms": 1.0}]
    torch_kinds = {"conv3d": 20.0, "pooling": 1.0, "elementwise/other": 1.0, "batch norm": 2.0}
    kinds = {k["kind"]: k for k in rt3d.compare_kinds(rows, torch_kinds)}
    assert kinds["conv3d"]["ratio"] == 0.5 and kinds["conv3d"]["within_limit"]
    assert kinds["pooling"]["ratio"] == 3.0 and not kinds["pooling"]["within_limit"]
    assert kinds["batch norm"]["rt3d_ms"] == 0.0  # folded into the convolutions
    assert "> 1.5x PyTorch" in rt3d.format_kinds(list(kinds.values()))
    assert rt3d.op_kind("aten::max_pool3d_with_indices") == "pooling"
    assert rt3d.op_kind("aten::mkldnn_convolution") == "conv3d"
