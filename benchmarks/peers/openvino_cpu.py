"""OpenVINO, CPU plugin, reading the shared ONNX file.

``ov.Core().read_model`` is used rather than ``ov.convert_model``: the latter goes through the
model converter (``openvino.tools.ovc``), which sends usage telemetry (``openvino-telemetry``).
"""

from __future__ import annotations

from pathlib import Path

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
        import openvino as ov

        self.threads = threads
        path = export_onnx(model, example, workdir)
        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            # CPUs with AVX512-BF16/AMX would otherwise default to bf16: keep f32 like the others
            "INFERENCE_PRECISION_HINT": "f32",
        }
        try:
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        except Exception as exc:
            raise PeerUnsupported(f"compile_model failed: {first_line(exc)}") from exc
        self.request = compiled.create_infer_request()
        self.warm_up(example)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One synchronous inference."""
        self.request.infer({0: x})
        return self.request.get_output_tensor(0).data.copy()
