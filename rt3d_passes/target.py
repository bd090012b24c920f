"""Targets RT3D builds for, by name: ``host``, ``kryo`` (aarch64 + NEON), ``adreno`` (OpenCL)."""

from __future__ import annotations

import tvm
from tvm.target import Target

from schedules.cpu_kgs_conv3d import WIDE_VECTORS_MATTR

from .threads import available_cpus

__all__ = ["CODEGEN_CPU", "NARROW_VECTOR_CPUS", "TARGET_NAMES", "codegen_cpu", "get_target",
           "host_mattr", "host_target", "kryo_target"]

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


#: AVX-512 CPUs RT3D compiles with 256-bit vectors (LLVM's own preference for them): Zen 4
#: runs a 512-bit operation as two 256-bit halves, and its 8-lane kernels were measured there.
#: Every other AVX-512 CPU gets 512-bit vectors (:func:`host_mattr`).
NARROW_VECTOR_CPUS = frozenset({"znver4"})


def host_mattr(mcpu: str) -> list[str]:
    """The ``mattr`` of the host target compiled for ``mcpu``: ``-prefer-256-bit`` on AVX-512
    CPUs (outside :data:`NARROW_VECTOR_CPUS`), so LLVM keeps the kernels' 16-lane vectors in
    512-bit registers instead of splitting each in two. On a Xeon with two 512-bit FMA ports
    (Emerald Rapids) 256-bit vectors reach half the FMA peak; with 512-bit ones C3D's dense
    layers ran 1.25-1.42x faster (``schedules.cpu_kgs_conv3d.AVX512``)."""
    probe = Target({"kind": "llvm", "mcpu": mcpu})
    if mcpu in NARROW_VECTOR_CPUS or not tvm.target.codegen.target_has_features(
            ["avx512f"], probe):
        return []
    return [WIDE_VECTORS_MATTR]


def host_target(num_cores: int | None = None) -> Target:
    """The LLVM target of this machine's CPU.

    ``mcpu`` is set to the host CPU (through :data:`CODEGEN_CPU`): without it LLVM emits
    baseline x86-64 (SSE2), half the vector width of AVX2. On AVX-512 CPUs ``mattr`` lifts
    LLVM's preference for 256-bit vectors (:func:`host_mattr`).
    """
    cores = num_cores or available_cpus()
    mcpu = codegen_cpu(tvm.target.codegen.llvm_get_system_cpu())
    spec = {"kind": "llvm", "mcpu": mcpu, "num-cores": int(cores)}
    mattr = host_mattr(mcpu)
    if mattr:
        spec["mattr"] = mattr
    return Target(spec)


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
