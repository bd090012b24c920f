"""Machine and version facts recorded with every benchmark result."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "environment_info", "write_result"]


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (else the platform's)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment_info() -> dict[str, Any]:
    """CPU, cores, Python/TVM/torch/numpy versions, git commit and date."""
    import numpy
    import tvm

    from rt3d_passes.target import codegen_cpu, host_mattr

    system_cpu = tvm.target.codegen.llvm_get_system_cpu()
    mcpu = codegen_cpu(system_cpu)
    info = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "llvm_mcpu": system_cpu,
        "codegen_mcpu": mcpu,
        "codegen_mattr": host_mattr(mcpu),
        "python": platform.python_version(),
        "tvm": tvm.__version__,
        "numpy": numpy.__version__,
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def write_result(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` plus :func:`environment_info` as indented JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": environment_info(), **payload}, indent=1))
    return path
