"""OpenVINO, CPU plugin, reading the shared ONNX file.

``ov.Core().read_model`` is used rather than ``ov.convert_model``: the latter goes through the
model converter (``openvino.tools.ovc``), which sends usage telemetry (``openvino-telemetry``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import PeerRunner, PeerUnsupported, first_line
from .onnx_export import export_onnx


class OpenVinoRunner(PeerRunner):
    """Compiled for ``CPU`` with a latency hint, ``threads`` threads and f32 precision."""

    name = "openvino"
    requires = ("openvino", "onnx", "onnxscript")

    def prepare(
        self, model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int
    ) -> None:
        """Export to ONNX (shared), read and compile it for the CPU plugin."""
        self.threads = threads
        path = export_onnx(model, example, workdir)
        self.request = _compile(path, threads).create_infer_request()
        self.warm_up(example)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One synchronous inference."""
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.copy()


def _compile(path: Path, threads: int, perf_count: bool = False):
    """``path`` (ONNX) compiled for the CPU plugin with a latency hint, ``threads`` threads and
    f32 precision (``perf_count``: with OpenVINO's per-node counters)."""
    import openvino as ov

    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        # CPUs with AVX512-BF16/AMX would otherwise default to bf16: keep f32 like the others
        "INFERENCE_PRECISION_HINT": "f32",
    }
    if perf_count:
        config["PERF_COUNT"] = True
    core = ov.Core()
    try:
        return core.compile_model(core.read_model(str(path)), "CPU", config)
    except Exception as exc:
        raise PeerUnsupported(f"compile_model failed: {first_line(exc)}") from exc


def profile_nodes(model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int,
                  runs: int = 3) -> list[dict[str, Any]]:
    """OpenVINO's time per executed node (``PERF_COUNT``), the median over ``runs``
    inferences after a warm-up, compiled as :class:`OpenVinoRunner` compiles.

    Each row: ``node`` (OpenVINO's name: the ONNX node's, ``/WithoutBiases`` and the like
    appended after fusions), ``type`` (``Convolution``, ``GroupConvolution``, ``Subgraph``
    (fused elementwise), ``Reorder``...), ``exec_type`` (the oneDNN kernel, e.g.
    ``brgconv_avx2_dw_f32``), ``ms``, and for convolutions ``conv``: the ONNX Conv's input
    channels and weight shape ``[M, N / groups, Kd, Kh, Kw]`` (None when the node is not one
    of the file's Conv nodes). Nodes that took no time (inputs, reshapes) are left out."""
    import onnx

    path = export_onnx(model, example, workdir)
    request = _compile(path, threads, perf_count=True).create_infer_request()
    x = example.detach().cpu().numpy()
    for _ in range(2):
        request.infer({0: x})
    times: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(runs):
        request.infer({0: x})
        for info in request.get_profiling_info():
            key = (info.node_name, info.node_type, info.exec_type)
            times.setdefault(key, []).append(info.real_time.total_seconds() * 1e3)
    graph = onnx.load(str(path)).graph
    shapes = {init.name: [int(d) for d in init.dims] for init in graph.initializer}
    convs = {}
    for node in graph.node:
        if node.op_type == "Conv" and node.input[1] in shapes:
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            weight = shapes[node.input[1]]
            convs[node.name] = {"in_channels": weight[1] * groups, "weight_shape": weight}
    rows = []
    for (node, node_type, exec_type), ms in times.items():
        median = float(np.median(ms))
        if median > 0:
            rows.append({"node": node, "type": node_type, "exec_type": exec_type, "ms": median,
                         "conv": convs.get(node.split("/")[0])})
    return sorted(rows, key=lambda r: -r["ms"])
