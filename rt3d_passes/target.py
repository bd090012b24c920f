"""Targets RT3D builds for, by name: ``host``, ``kryo`` (aarch64 + NEON), ``adreno`` (OpenCL)."""

from __future__ import annotations

import tvm
from tvm.target import Target

from .threads import available_cpus

__all__ = ["TARGET_NAMES", "get_target", "host_target", "kryo_target"]

TARGET_NAMES = ("host", "kryo", "adreno")


def host_target(num_cores: int | None = None) -> Target:
    """The LLVM target of this machine's CPU.

    ``mcpu`` is set to the host CPU: without it LLVM emits baseline x86-64 (SSE2), half the
    vector width of AVX2.
    """
    cores = num_cores or available_cpus()
    return Target({"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                   "num-cores": int(cores)})


def kryo_target(num_cores: int = 8, mcpu: str | None = None) -> Target:
    """A Kryo CPU: aarch64 + NEON.

    The triple is ``aarch64-linux-gnu`` so modules link with Debian's cross compiler and run
    on the emulated device; an Android phone needs ``aarch64-linux-android`` and the NDK.
    ``mcpu`` (e.g. ``cortex-a76`` for the Cortex-derived Kryo 4xx/5xx cores) is left unset by
    default: the emulated device's CPU model has only the baseline extensions.
    """
    spec = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"],
            "num-cores": int(num_cores)}
    if mcpu:
        spec["mcpu"] = mcpu
    return Target(spec)


def get_target(name: str) -> Target:
    """A target by name (see :data:`TARGET_NAMES`)."""
    if name == "host":
        return host_target()
    if name == "kryo":
        return kryo_target()
    if name == "adreno":
        return Target("qcom/adreno-opencl", host=kryo_target())
    raise ValueError(f"unknown target {name!r}; valid targets: {', '.join(TARGET_NAMES)}")
