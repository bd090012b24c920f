"""Targets RT3D builds for, by name: ``host``, ``kryo`` (aarch64 + NEON), ``adreno`` (OpenCL)."""

from __future__ import annotations

import os

import tvm
from tvm.target import Target

__all__ = ["TARGET_NAMES", "get_target", "host_target", "kryo_target"]

TARGET_NAMES = ("host", "kryo", "adreno")


def host_target(num_cores: int | None = None) -> Target:
    """The LLVM target of this machine's CPU.

    ``mcpu`` is set to the host CPU: without it LLVM emits baseline x86-64 (SSE2), half the
    vector width of AVX2.
    """
    cores = num_cores or len(os.sched_getaffinity(0))
    return Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                   "num-cores": int(cores)})


def kryo_target(num_cores: int = 8, mcpu: str = "cortex-a76") -> Target:
    """A Kryo CPU (Snapdragon 865's Kryo 585 cores are Cortex-A77/A55 derivatives).

    The triple is ``aarch64-linux-gnu`` so modules link with Debian's cross compiler and run
    on the emulated device; an Android phone needs ``aarch64-linux-android`` and the NDK.
    """
    return Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu,
                   "mattr": ["+neon"], "num-cores": int(num_cores)})


def get_target(name: str) -> Target:
    """A target by name (see :data:`TARGET_NAMES`)."""
    if name == "host":
        return host_target()
    if name == "kryo":
        return kryo_target()
    if name == "adreno":
        return Target("qcom/adreno-opencl", host=kryo_target())
    raise ValueError(f"unknown target {name!r}; valid targets: {', '.join(TARGET_NAMES)}")
