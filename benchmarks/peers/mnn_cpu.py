"""MNN, CPU backend: ONNX → ``.mnn`` with the converter extension shipped in the ``MNN`` wheel.

Never use the wheel's ``mnnconvert`` console script or import ``MNN.tools``: importing
``MNN.tools.utils.log`` runs ``pip install aliyun-log-python-sdk`` and contacts an Alibaba
logging endpoint.  The converter itself is the C++ extension ``_tools`` (top-level module in
site-packages), called here directly; it makes no network connections (checked with
``strace -e trace=network``).  As a safeguard, :func:`block_mnn_telemetry` puts a stub in place
of the logging module so that even an accidental ``import MNN.tools`` stays offline.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import torch

from .base import PeerRunner, PeerUnsupported, first_line, redirect_native_output
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx

_LOG_MODULE = "MNN.tools.utils.log"


def block_mnn_telemetry() -> None:
    """Register a stub ``MNN.tools.utils.log`` with ``mnn_logger = None`` (no pip, no network)."""
    if _LOG_MODULE not in sys.modules:
        stub = types.ModuleType(_LOG_MODULE)
        stub.mnn_logger = None  # type: ignore[attr-defined]
        sys.modules[_LOG_MODULE] = stub


def convert_onnx_to_mnn(onnx_path: Path, mnn_path: Path) -> None:
    """Convert with ``_tools.mnnconvert`` (the wheel's C++ converter), output to a log file."""
    block_mnn_telemetry()
    import _tools

    argv = [
        "mnnconvert",
        "-f",
        "ONNX",
        "--modelFile",
        str(onnx_path),
        "--MNNModel",
        str(mnn_path),
        "--bizCode",
        "rt3d",
    ]
    log = mnn_path.with_suffix(".convert.log")
    mnn_path.unlink(missing_ok=True)
    with redirect_native_output(log):
        ok = _tools.mnnconvert(argv)
    if not ok or not mnn_path.exists():
        raise PeerUnsupported(f"MNN converter failed (see {log})")


class MnnRunner(PeerRunner):
    """``MNN.nn`` module API, CPU backend, ``numThread`` threads, high (fp32) precision."""

    name = "mnn"
    requires = ("MNN", "_tools", "onnx", "onnxscript")

    def prepare(
        self, model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int
    ) -> None:
        """Export to ONNX (shared), convert to ``.mnn``, load it with a CPU runtime manager."""
        block_mnn_telemetry()
        import MNN

        self.threads = threads
        onnx_path = export_onnx(model, example, workdir)
        mnn_path = Path(workdir) / "model.mnn"
        convert_onnx_to_mnn(onnx_path, mnn_path)
        config = {"backend": "CPU", "numThread": threads, "precision": "high"}
        try:
            with redirect_native_output(Path(workdir) / "mnn_load.log"):
                runtime = MNN.nn.create_runtime_manager((config,))
                self.module = MNN.nn.load_module_from_file(
                    str(mnn_path), [INPUT_NAME], [OUTPUT_NAME], runtime_manager=runtime
                )
        except Exception as exc:
            raise PeerUnsupported(f"MNN load failed: {first_line(exc)}") from exc
        self._mnn = MNN
        self.shape = list(example.shape)
        self.warm_up(example)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One ``Module.forward``; the output is read back to NumPy."""
        expr = self._mnn.expr
        out = self.module.forward(expr.const(x, self.shape, expr.NCHW))
        if isinstance(out, list | tuple):
            out = out[0]
        if out.data_format == expr.NC4HW4:
            out = expr.convert(out, expr.NCHW)
        return np.array(out.read(), copy=True)

    def versions(self) -> dict[str, str]:
        """MNN's version (``MNN.version()``), ONNX exporter packages."""
        versions = super().versions()
        versions.pop("_tools", None)
        try:
            import MNN

            versions["MNN"] = str(MNN.version())
        except Exception:
            versions["MNN"] = "-"
        return versions
