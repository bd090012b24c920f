"""Targets RT3D builds for."""

from __future__ import annotations

import os

import tvm
from tvm.target import Target

__all__ = ["host_target"]


def host_target(num_cores: int | None = None) -> Target:
    """The LLVM target of this machine's CPU.

    ``mcpu`` is set to the host CPU: without it LLVM emits baseline x86-64 (SSE2), half the
    vector width of AVX2.
    """
    cores = num_cores or len(os.sched_getaffinity(0))
    return Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                   "num-cores": int(cores)})
