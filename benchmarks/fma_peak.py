"""The host's fp32 FMA peak: the real ceiling of any direct (non-Winograd) kernel.

A loop of independent vector FMAs in C intrinsics (AVX-512, AVX2 + FMA, or NEON: picked from
the CPU's flags), compiled at run time with the system C compiler (``-O2 -march=native``) and
run on 1..N threads through ctypes (which releases the GIL). Enough independent accumulators
cover the FMA latency on every current core, so the loop measures throughput.

numpy's sgemm reaches ~80% of this peak here; OpenVINO's dense C3D runs at ~100% of it, which
is why efficiency claims are made against this number, measured in the same run.

    python benchmarks/fma_peak.py [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["FMAPeak", "detect_isa", "fma_peak"]

#: (header, vector type, lanes, accumulators, set1, fma, store) per instruction set. The
#: accumulator counts leave registers for the two operands (AVX2: 16 registers, 12 chains;
#: AVX-512 and NEON: 32 registers, 24 chains) and exceed latency x FMA ports on every core.
_ISA = {
    "avx512": ("immintrin.h", "__m512", 16, 24, "_mm512_set1_ps", "_mm512_fmadd_ps",
               "_mm512_storeu_ps"),
    "avx2": ("immintrin.h", "__m256", 8, 12, "_mm256_set1_ps", "_mm256_fmadd_ps",
             "_mm256_storeu_ps"),
    "neon": ("arm_neon.h", "float32x4_t", 4, 24, "vdupq_n_f32", None, "vst1q_f32"),
}


def detect_isa() -> str:
    """The widest FMA instruction set of this CPU: ``avx512``, ``avx2`` or ``neon``."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return "neon"
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line
                break
    except OSError:
        pass
    words = set(flags.split())
    if "avx512f" in words:
        return "avx512"
    if "avx2" in words and "fma" in words:
        return "avx2"
    raise RuntimeError(f"no AVX2+FMA, AVX-512 or NEON on this CPU ({machine}): no FMA peak")


def _source(isa: str) -> str:
    header, vec, lanes, accs, set1, fma, store = _ISA[isa]
    # NEON's vfmaq_f32(acc, b, c) = acc + b * c; x86's fmadd(a, b, c) = a * b + c
    step = ("a{i} = vfmaq_f32(a{i}, b, c);" if isa == "neon" else
            f"a{{i}} = {fma}(a{{i}}, b, c);")
    decl = "\n    ".join(f"{vec} a{i} = {set1}((float){i});" for i in range(accs))
    body = "\n        ".join(step.format(i=i) for i in range(accs))
    total = " + ".join(f"out[{i}]" for i in range(lanes))
    stores = "\n    ".join(
        f"{store}(out, a{i}); s += {total};" for i in range(accs))
    return f"""#include <{header}>
/* {accs} independent FMA chains of {lanes} fp32 lanes: {accs * lanes} MACs per iteration */
int rt3d_macs_per_iter(void) {{ return {accs * lanes}; }}
float rt3d_fma_loop(long iters) {{
    {vec} b = {set1}(0.999999f), c = {set1}(1e-6f);
    {decl}
    for (long it = 0; it < iters; ++it) {{
        {body}
    }}
    float out[{lanes}], s = 0.0f;
    {stores}
    return s;
}}
"""


class FMAPeak:
    """The compiled loop: :meth:`gmacs` measures G MAC/s on ``threads`` threads."""

    def __init__(self, isa: str | None = None, cc: str | None = None):
        self.isa = isa or detect_isa()
        cc = cc or os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise RuntimeError("the FMA peak loop needs a C compiler (gcc or cc on PATH, or $CC)")
        self._dir = tempfile.mkdtemp(prefix="rt3d-fma-")
        src, lib = Path(self._dir, "fma.c"), Path(self._dir, "fma.so")
        src.write_text(_source(self.isa))
        arch = ["-march=native"] if self.isa != "neon" else ["-mcpu=native"]
        proc = subprocess.run([cc, "-O2", *arch, "-shared", "-fPIC", str(src), "-o", str(lib)],
                              capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"compiling the {self.isa} FMA loop with {cc} failed:\n"
                               f"{proc.stderr.strip()}")
        self._lib = ctypes.CDLL(str(lib))
        self._lib.rt3d_fma_loop.argtypes = [ctypes.c_long]
        self._lib.rt3d_fma_loop.restype = ctypes.c_float
        self.macs_per_iter = int(self._lib.rt3d_macs_per_iter())

    def gmacs(self, threads: int = 1, seconds: float = 0.3, repeat: int = 3) -> float:
        """Best of ``repeat`` runs of ``threads`` threads looping ~``seconds`` each (G MAC/s)."""
        iters = self._calibrate(seconds)
        best = 0.0
        for _ in range(repeat):
            barrier = threading.Barrier(threads + 1)

            def work():
                barrier.wait()
                self._lib.rt3d_fma_loop(iters)

            pool = [threading.Thread(target=work) for _ in range(threads)]
            for t in pool:
                t.start()
            barrier.wait()
            t0 = time.perf_counter()
            for t in pool:
                t.join()
            elapsed = time.perf_counter() - t0
            best = max(best, threads * iters * self.macs_per_iter / elapsed / 1e9)
        return best

    def _calibrate(self, seconds: float) -> int:
        iters = 100_000
        while True:
            t0 = time.perf_counter()
            self._lib.rt3d_fma_loop(iters)
            elapsed = time.perf_counter() - t0
            if elapsed > 0.05:
                return max(1, int(iters * seconds / elapsed))
            iters *= 4


def fma_peak(threads: int = 2, seconds: float = 0.3, repeat: int = 3) -> dict:
    """``{"isa", "threads", "gmacs", "gmacs_1thread"}``: the FMA peak on ``threads`` threads
    and on one, measured now (call it in the same run as the figures it bounds)."""
    peak = FMAPeak()
    return {"isa": peak.isa, "threads": threads,
            "gmacs": peak.gmacs(threads, seconds, repeat),
            "gmacs_1thread": peak.gmacs(1, seconds, repeat)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.3, help="per run")
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args(argv)
    result = fma_peak(args.threads, args.seconds)
    print(f"{'isa':<8} {'threads':>7} {'G MAC/s':>8}")
    print(f"{result['isa']:<8} {1:>7} {result['gmacs_1thread']:>8.1f}")
    print(f"{result['isa']:<8} {args.threads:>7} {result['gmacs']:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
