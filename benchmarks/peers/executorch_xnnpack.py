"""ExecuTorch with the XNNPACK delegate (``executorch`` wheel, ``executorch.runtime``).

XNNPACK has no 3D convolution or 3D pooling, so those ops stay outside the delegate and need
ExecuTorch's portable kernels, several of which do not exist or reject 5-D tensors.  The runner
then raises :class:`PeerUnsupported` naming the missing kernel / the runtime's message and the
ops XNNPACK did not take — itself evidence that mobile runtimes lack 3D support.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch

from .base import PeerRunner, PeerUnsupported, first_line, redirect_native_output

_NATIVE_ERROR = re.compile(r"\[[\w.]+:\d+\] (Missing operator: \[\d+\] (\S+)|.*(Expect|[Ff]ail).*)")


def native_error(log: Path) -> str:
    """The most telling ExecuTorch runtime log line in ``log`` (missing kernel, failed check)."""
    if not log.exists():
        return ""
    missing: list[str] = []
    other: list[str] = []
    for line in log.read_text(errors="replace").splitlines():
        m = _NATIVE_ERROR.search(line)
        if m is None:
            continue
        if m.group(2):
            missing.append(m.group(2))
        elif "cpuinfo" not in line and "midr" not in line:
            other.append(m.group(1).strip())
    if missing:
        return "missing kernel " + ", ".join(dict.fromkeys(missing))
    return other[0] if other else ""


def undelegated_ops(edge_program: torch.export.ExportedProgram) -> list[str]:
    """Compute ops left outside the XNNPACK delegate (run by portable kernels), with the rank
    of their output, e.g. ``["convolution(5-D)", "max_pool3d_with_indices(5-D)"]``."""
    ops: list[str] = []
    for node in edge_program.graph_module.graph.nodes:
        name = getattr(node.target, "__name__", str(node.target))
        if node.op != "call_function" or name in ("getitem", "executorch_call_delegate"):
            continue
        parts = name.split(".")
        op = parts[1] if parts[0] == "aten" and len(parts) > 1 else name
        val = node.meta.get("val")
        val = val[0] if isinstance(val, list | tuple) and val else val
        ndim = getattr(val, "ndim", None)
        ops.append(f"{op}({ndim}-D)" if ndim is not None else op)
    return list(dict.fromkeys(ops))


class ExecuTorchXnnpackRunner(PeerRunner):
    """``torch.export`` → ``to_edge_transform_and_lower(XnnpackPartitioner)`` → ``.pte`` →
    ``executorch.runtime``; the threadpool is resized to ``threads``."""

    name = "executorch"
    requires = ("executorch",)

    def prepare(
        self, model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int
    ) -> None:
        """Export and lower to XNNPACK, write the ``.pte``, load it and warm it up."""
        workdir = Path(workdir)
        self.threads = threads
        log = workdir / "executorch.log"
        log.write_text("")  # native_error() must only see this model's messages
        try:
            with warnings.catch_warnings(), redirect_native_output(log):
                warnings.simplefilter("ignore")
                from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                    XnnpackPartitioner,
                )
                from executorch.exir import to_edge_transform_and_lower

                exported = torch.export.export(model.eval(), (example,))
                edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
                left = undelegated_ops(edge.exported_program())
                buffer = edge.to_executorch().buffer
        except Exception as exc:
            raise PeerUnsupported(f"export/lowering failed: {first_line(exc)}") from exc
        if left:
            self.notes.append("not delegated to XNNPACK: " + ", ".join(left))
        path = workdir / "model.pte"
        path.write_bytes(buffer)
        try:
            with redirect_native_output(log):
                from executorch.extension.pybindings import portable_lib
                from executorch.runtime import Runtime

                portable_lib._unsafe_reset_threadpool(threads)
                program = Runtime.get().load_program(path)
                self.method = program.load_method("forward")
                self.warm_up(example)
        except Exception as exc:
            raise PeerUnsupported(native_error(log) or first_line(exc)) from exc

    def run(self, x: np.ndarray) -> np.ndarray:
        """One ``Method.execute``."""
        return self.method.execute([torch.from_numpy(x)])[0].numpy().copy()
