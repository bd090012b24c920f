"""Each optional peer runtime on a tiny 3D CNN, checked against PyTorch eager.

Marked ``bench``: needs ``pip install .[bench]``; a runtime that is not installed is skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from benchmarks.peers import run_peers
from benchmarks.peers.tiny_model import TINY_SHAPE, randomize_bn, tiny_3d_cnn

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    with torch.no_grad():
        model = randomize_bn(tiny_3d_cnn().eval())
    return model, torch.randn(*TINY_SHAPE)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")  # shared: the ONNX file is exported once


@pytest.mark.parametrize(
    ("peer", "modules"),
    [
        ("onnxruntime", ("onnxruntime", "onnxscript")),
        ("openvino", ("openvino", "onnxscript")),
        ("mnn", ("MNN", "onnxscript")),
    ],
)
def test_peer_matches_eager(
    peer: str, modules: tuple[str, ...], tiny: tuple[torch.nn.Module, torch.Tensor], workdir: Path
) -> None:
    for module in modules:
        pytest.importorskip(module)
    model, x = tiny
    (result,) = run_peers(model, x, workdir, [peer], runs=2, gap_ms=0)
    assert result.status == "ok", result.status
    assert result.max_abs_err is not None and result.max_abs_err < 1e-4
    assert len(result.times_ms) == 2
    assert result.info["threads"] == 2


def test_openvino_profile_names_each_conv_class(
    tiny: tuple[torch.nn.Module, torch.Tensor], workdir: Path
) -> None:
    """OpenVINO's per-node profile (``rt3d bench --profile``): every convolution node is
    matched to its ONNX Conv's weight shape, and the kinds cover the tiny model's convs."""
    pytest.importorskip("openvino")
    from benchmarks.e2e.rt3d import conv_class, openvino_kinds
    from benchmarks.peers.openvino_cpu import profile_nodes

    model, x = tiny
    nodes = profile_nodes(model, x, workdir, threads=2, runs=2)
    convs = [n for n in nodes if n["type"] in ("Convolution", "GroupConvolution")]
    expected = {conv_class(m.in_channels, list(m.weight.shape))
                for m in model.modules() if isinstance(m, torch.nn.Conv3d)}
    assert convs and all(n["conv"] is not None and n["ms"] > 0 for n in convs)
    assert {conv_class(n["conv"]["in_channels"], n["conv"]["weight_shape"])
            for n in convs} == expected
    kinds = openvino_kinds(nodes)
    assert set(kinds) >= expected and "conv3d" not in kinds


def test_mnn_stays_offline(tiny: tuple[torch.nn.Module, torch.Tensor], workdir: Path) -> None:
    pytest.importorskip("MNN")
    model, x = tiny
    run_peers(model, x, workdir, ["mnn"], runs=0)
    assert "aliyun" not in sys.modules  # the telemetry SDK the MNN tools would pip-install
    assert getattr(sys.modules.get("MNN.tools.utils.log"), "mnn_logger", None) is None


def test_executorch_reports_instead_of_crashing(
    tiny: tuple[torch.nn.Module, torch.Tensor], workdir: Path
) -> None:
    pytest.importorskip("executorch")
    model, x = tiny
    (result,) = run_peers(model, x, workdir, ["executorch"], runs=1, gap_ms=0)
    if result.status != "ok":  # XNNPACK has no 3D conv/pool; portable kernels lack 5-D support
        assert result.status.startswith("unsupported: "), result.status
        assert "max_pool3d" in result.status or "5" in result.status
        assert any("not delegated to XNNPACK" in n for n in result.info["notes"])


def test_onnx_exported_once_per_model(
    tiny: tuple[torch.nn.Module, torch.Tensor], tmp_path: Path
) -> None:
    pytest.importorskip("onnxscript")
    from benchmarks.peers.onnx_export import export_onnx

    model, x = tiny
    path = export_onnx(model, x, tmp_path)
    stamp = path.stat().st_mtime_ns
    assert export_onnx(model, x, tmp_path).stat().st_mtime_ns == stamp  # reused
    other = tiny_3d_cnn().eval()
    assert export_onnx(other, x, tmp_path).stat().st_mtime_ns != stamp  # new model: re-export
