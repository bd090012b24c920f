"""Shared ONNX export: ONNX Runtime, OpenVINO and MNN all start from the same ``.onnx`` file."""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path

import torch

from .base import PeerUnsupported, first_line, redirect_native_output

ONNX_NAME = "model.onnx"
INPUT_NAME = "input"
OUTPUT_NAME = "output"

# workdir -> (model, input shape) whose export is in it (export once per model and workdir)
_EXPORTED: dict[Path, tuple[weakref.ref[torch.nn.Module], tuple[int, ...]]] = {}


def export_onnx(model: torch.nn.Module, example: torch.Tensor, workdir: Path) -> Path:
    """Export ``model`` once into ``workdir/model.onnx`` with ``torch.onnx.export(dynamo=True)``.

    Static shapes (those of ``example``), one input ``input`` and one output ``output``; the
    weights are stored inside the file.  Later calls with the same model and workdir reuse the
    file.  Raises :class:`PeerUnsupported` if the export fails.
    """
    workdir = Path(workdir).resolve()
    path = workdir / ONNX_NAME
    done = _EXPORTED.get(workdir)
    if done and done[0]() is model and done[1] == tuple(example.shape) and path.exists():
        return path
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with (
            warnings.catch_warnings(),
            redirect_native_output(workdir / "onnx_export.log"),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.eval(),
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                verbose=False,
            )
            program.save(str(path), external_data=False)
    except Exception as exc:
        raise PeerUnsupported(f"ONNX export failed: {first_line(exc)}") from exc
    _EXPORTED[workdir] = (weakref.ref(model), tuple(example.shape))
    return path
