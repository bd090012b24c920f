"""The FMA-peak loop: the right intrinsics per instruction set, and it builds and runs here."""

import math

import pytest

from benchmarks import fma_peak


@pytest.mark.parametrize("isa,intrinsic,lanes", [("avx512", "_mm512_fmadd_ps", 16),
                                                 ("avx2", "_mm256_fmadd_ps", 8),
                                                 ("neon", "vfmaq_f32", 4)])
def test_source_has_independent_chains(isa, intrinsic, lanes):
    src = fma_peak._source(isa)
    accs = fma_peak._ISA[isa][3]
    assert src.count(intrinsic) == accs  # one FMA per chain per iteration
    assert f"return {accs * lanes};" in src


def test_loop_builds_and_runs_on_this_cpu():
    peak = fma_peak.FMAPeak()
    assert peak.isa == fma_peak.detect_isa()
    assert peak.macs_per_iter == fma_peak._ISA[peak.isa][2] * fma_peak._ISA[peak.isa][3]
    assert math.isfinite(peak._lib.rt3d_fma_loop(1000))
    assert peak.gmacs(threads=1, seconds=0.02, repeat=1) > 0


def test_dense_bar_against_openvino():
    from benchmarks.e2e import report

    rows = [{"name": "openvino", "median_ms": 300.0}, {"name": "RT3D dense", "median_ms": 400.0},
            {"name": "RT3D sparse", "median_ms": 150.0}]
    macs = {"dense_gmacs": 38.5, "kept_gmacs": 10.0, "pruning_rate": 3.85}
    bar = next(b for b in report.bars("r2plus1d", macs, rows) if "openvino" in b["bar"])
    assert bar["measured"] == pytest.approx(0.75) and not bar["holds"]
    sparse_bar = next(b for b in report.bars("r2plus1d", macs, rows) if "MAC reduction" in b["bar"])
    assert sparse_bar["required"] == pytest.approx(0.9 * 3.85)
