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

    rows = [{"op": "kgs_conv3d [conv1]", "kind": "conv3d", "ms": 10.0},
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


def test_conv_classes_are_the_same_in_every_profile():
    from benchmarks.e2e.rt3d import conv_class

    assert conv_class(54, [54, 1, 3, 3, 3]) == "conv3d depthwise"
    assert conv_class(24, [24, 1, 5, 1, 1]) == "conv3d depthwise"  # X3D's temporal stem
    assert conv_class(256, [256, 8, 3, 3, 3]) == "conv3d grouped"  # ResNeXt, 32 groups
    assert conv_class(3, [64, 3, 1, 7, 7]) == "conv3d stem"
    assert conv_class(64, [256, 64, 1, 1, 1]) == "conv3d pointwise"
    assert conv_class(64, [64, 64, 3, 1, 1]) == "conv3d temporal"
    assert conv_class(64, [128, 64, 3, 3, 3]) == "conv3d spatial"
    assert conv_class(1, [8, 1, 3, 3, 3]) == "conv3d stem"  # one channel: not depthwise


def test_op_kinds_compare_with_openvino_per_conv_class():
    """OpenVINO's nodes go to the kinds RT3D's and PyTorch's ops go to (its convolutions by
    their ONNX weight shapes, its layout reorders a kind of their own); a profile with one
    "conv3d" kind makes the comparison use the classes' sum."""
    from benchmarks.e2e import rt3d

    nodes = [
        {"node": "node_Conv_1/WithoutBiases", "type": "GroupConvolution", "ms": 4.0,
         "conv": {"in_channels": 54, "weight_shape": [54, 1, 3, 3, 3]}},
        {"node": "node_Conv_2", "type": "Convolution", "ms": 6.0,
         "conv": {"in_channels": 24, "weight_shape": [54, 24, 1, 1, 1]}},
        {"node": "node_Conv_3", "type": "Convolution", "ms": 1.0, "conv": None},
        {"node": "node_silu", "type": "Subgraph", "ms": 2.0, "conv": None},
        {"node": "node_mean", "type": "ReduceMean", "ms": 0.5, "conv": None},
        {"node": "in_reorder", "type": "Reorder", "ms": 0.25, "conv": None},
    ]
    ov = rt3d.openvino_kinds(nodes)
    assert ov == {"conv3d depthwise": 4.0, "conv3d pointwise": 6.0, "conv3d": 1.0,
                  "elementwise/other": 2.0, "pooling": 0.5, "layout reorder": 0.25}
    rows = [{"op": "kgs_conv3d [a]", "kind": "conv3d depthwise", "ms": 2.0},
            {"op": "kgs_conv3d1 [b]", "kind": "conv3d pointwise", "ms": 3.0},
            {"op": "fused_sigmoid", "kind": "elementwise/other", "ms": 1.0}]
    torch_kinds = {"conv3d depthwise": 8.0, "conv3d pointwise": 9.0, "elementwise/other": 1.0}
    kinds = {k["kind"]: k for k in rt3d.compare_kinds(rows, torch_kinds, openvino=ov)}
    # OpenVINO's unclassified conv: every profile is compared on the sum of its convs
    assert kinds["conv3d"]["rt3d_ms"] == 5.0 and kinds["conv3d"]["openvino_ms"] == 11.0
    assert kinds["conv3d"]["torch_ms"] == 17.0
    assert kinds["elementwise/other"]["openvino_ratio"] == 0.5
    assert kinds["layout reorder"]["rt3d_ms"] == 0.0
    del ov["conv3d"]
    kinds = {k["kind"]: k for k in rt3d.compare_kinds(rows, torch_kinds, openvino=ov)}
    assert kinds["conv3d depthwise"]["openvino_ratio"] == 0.5
    assert kinds["conv3d pointwise"]["ratio"] == 3.0 / 9.0
    table = rt3d.format_kinds(list(kinds.values()))
    assert "OpenVINO ms" in table.splitlines()[0]
    line = next(ln for ln in table.splitlines() if ln.startswith("conv3d depthwise"))
    assert line.split()[-2:] == ["4.00", "0.50x"]


def test_each_model_keeps_its_json_beside_the_summary(tmp_path):
    """``--model a,b`` runs the script once per model; each model's JSON (its rows, bars and
    ``--profile``) is kept as ``<summary stem>_<model>.json``, and a model whose run fails is
    reported in the summary."""
    import json

    script = tmp_path / "fake_bench.py"
    script.write_text(
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "model, out = args[args.index('--model') + 1], args[args.index('--out') + 1]\n"
        "if model == 'x3d_s':\n"
        "    sys.exit(3)\n"
        "rows = [{'name': 'openvino', 'median_ms': 2.0},\n"
        "        {'name': 'RT3D sparse', 'median_ms': 1.0}]\n"
        "res = {'threads': 2, 'rows': rows, 'speedups': {'openvino': 2.0}, 'bars': []}\n"
        "json.dump({'preset': 'p', 'input_shape': [1], 'macs': {}, 'results': [res],\n"
        "           'profile_kinds': [], 'argv': args}, open(out, 'w'))\n")
    summary = zoo.run_models(script, ["--model", "all", "--runs", "3", "--out", "x.json"],
                             ["c3d", "x3d_s"], tmp_path, prefix="e2e_all")
    kept = json.loads((tmp_path / "e2e_all_c3d.json").read_text())
    assert kept["argv"][:2] == ["--model", "c3d"] and "--runs" in kept["argv"]
    assert "profile_kinds" in kept and summary["models"]["c3d"]["status"] == "ok"
    assert summary["models"]["x3d_s"]["status"] == "failed (exit 3)"
