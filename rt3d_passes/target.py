"""Targets RT3D builds for, by name: ``host``, ``kryo`` (aarch64 + NEON), ``adreno`` (OpenCL)."""

from __future__ import annotations

import tvm
from tvm.target import Target

from .threads import available_cpus

__all__ = ["CODEGEN_CPU", "TARGET_NAMES", "codegen_cpu", "get_target", "host_target",
           "kryo_target"]

TARGET_NAMES = ("host", "kryo", "adreno")

#: Host CPUs whose own LLVM model compiles RT3D's kernels slower than another model of the
#: same instruction set does: host CPU -> the ``mcpu`` to compile with. ``znver3`` (Zen 3,
#: AVX2): its scheduling model unrolls the KGS column loop by 2 and spills an accumulator to
#: the stack inside it (a store-forward in the FMA chain; DEVELOPERS.md). Interleaved
#: whole-model A/B on a Zen 3 (2 threads, RT3D sparse at the presets, 7-11 rounds), znver3
#: -> haswell: C3D 217.9 -> 208.2 ms (231.7 -> 212.3 in another run), R(2+1)D-18 329.6 ->
#: 286.3, Slow-R50 129.9 -> 119.9, ir-CSN-50 40.0 -> 33.0, X3D-S 61.7 -> 61.6. Haswell's
#: features (AVX2, FMA, BMI2) are a subset of Zen 3's. Other CPUs keep their own model
#: (not measured).
CODEGEN_CPU = {"znver3": "haswell"}


def codegen_cpu(system_cpu: str) -> str:
    """The ``mcpu`` to compile for a host whose LLVM CPU name is ``system_cpu``."""
    return CODEGEN_CPU.get(system_cpu, system_cpu)


def host_target(num_cores: int | None = None) -> Target:
    """The LLVM target of this machine's CPU.

    ``mcpu`` is set to the host CPU (through :data:`CODEGEN_CPU`): without it LLVM emits
    baseline x86-64 (SSE2), half the vector width of AVX2.
    """
    cores = num_cores or available_cpus()
    return Target({"kind": "llvm",
                   "mcpu": codegen_cpu(tvm.target.codegen.llvm_get_system_cpu()),
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
