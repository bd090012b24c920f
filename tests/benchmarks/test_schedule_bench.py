"""schedule_bench's command line refuses rates that are no fraction of pruned columns."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("rate", ["1.0", "-0.1"])
def test_rates_outside_zero_one_are_refused(rate):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "schedule_bench.py"),
                          "--rates", "0", rate], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "--rates are fractions of KGS columns pruned, in [0, 1)" in out.stderr
    assert rate.lstrip("-") in out.stderr
