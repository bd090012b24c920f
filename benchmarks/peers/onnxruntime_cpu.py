"""ONNX Runtime, CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import PeerRunner, PeerUnsupported, first_line
from .onnx_export import export_onnx


class OnnxRuntimeRunner(PeerRunner):
    """``onnxruntime.InferenceSession`` on the exported ONNX file, all graph optimisations."""

    name = "onnxruntime"
    requires = ("onnxruntime", "onnx", "onnxscript")

    def prepare(
        self, model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int
    ) -> None:
        """Export to ONNX (shared), create a session with ``threads`` intra-op threads."""
        import onnxruntime as ort

        self.threads = threads
        path = export_onnx(model, example, workdir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise PeerUnsupported(f"session creation failed: {first_line(exc)}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.warm_up(example)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One ``session.run``."""
        return self.session.run(None, {self.input_name: x})[0]
