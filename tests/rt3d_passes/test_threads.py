"""set_num_threads: TVM's pool gets the count asked for (its x86 default is half the CPUs)."""

import os
import subprocess
import sys

import pytest

from rt3d_passes.threads import available_cpus

_CHILD = """
import os, sys, warnings
import tvm
from rt3d_passes.threads import set_num_threads
warnings.simplefilter("error")
if {touch}:
    tvm.runtime.num_threads()  # the pool starts here, with the environment's count
got = set_num_threads({n})
print(got, tvm.runtime.num_threads(), os.environ["TVM_NUM_THREADS"])
"""


def _child(n, env_threads=None, touch=False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    if env_threads:
        env["TVM_NUM_THREADS"] = str(env_threads)
    code = _CHILD.format(n=n, touch=touch)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


@pytest.mark.parametrize("n", [1, None])
def test_fresh_process_gets_the_count(n):
    proc = _child(n)
    assert proc.returncode == 0, proc.stderr
    want = n or available_cpus()
    assert proc.stdout.split() == [str(want), str(want), str(want)]


@pytest.mark.skipif(available_cpus() < 2, reason="needs 2 CPUs")
def test_pool_started_smaller_warns():
    # a pool created with TVM_NUM_THREADS=1 cannot grow: the call says so instead of lying
    proc = _child(2, env_threads=1, touch=True)
    assert proc.returncode != 0 and "RuntimeWarning" in proc.stderr
    assert "set TVM_NUM_THREADS before" in proc.stderr


def test_rejects_zero():
    from rt3d_passes.threads import set_num_threads

    with pytest.raises(ValueError, match="num_threads must be >= 1"):
        set_num_threads(0)
