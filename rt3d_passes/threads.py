"""Thread count of TVM's CPU runtime.

TVM sizes its worker pool once, at the first parallel launch of a process, from
``TVM_NUM_THREADS`` (then ``OMP_NUM_THREADS``); without either it takes *half* the logical
CPUs on x86, assuming two hyper-threads per core. On a VM whose vCPUs are whole cores (this
project's 2-vCPU machine) that silently runs every kernel on one thread while PyTorch, ONNX
Runtime and MNN use two, so every benchmark and every measurement during tuning sets the
count explicitly.
"""

from __future__ import annotations

import os
import warnings

import tvm
import tvm_ffi

__all__ = ["available_cpus", "set_num_threads"]

#: ``runtime.config_threadpool`` mode: bind workers to the fastest cores (all of them on a
#: homogeneous CPU), as TVM does by default.
_BIG_CORES = 1


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's CPU count)."""
    return len(os.sched_getaffinity(0))


def set_num_threads(num_threads: int | None = None) -> int:
    """Make TVM's CPU runtime use ``num_threads`` threads in this process and its children.

    Parameters
    ----------
    num_threads : int, optional
        Defaults to :func:`available_cpus`.

    Returns
    -------
    threads : int
        The pool's thread count afterwards. It can be lower than asked when the pool was
        created earlier in this process with a smaller limit (a warning says so): call this
        before running any TVM kernel.
    """
    n = available_cpus() if num_threads is None else int(num_threads)
    if n < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    # children (MetaSchedule runner workers, RPC servers) size their own pools from it
    os.environ["TVM_NUM_THREADS"] = str(n)
    tvm_ffi.get_global_func("runtime.config_threadpool")(_BIG_CORES, n)
    got = int(tvm.runtime.num_threads())
    if got != n:
        warnings.warn(
            f"TVM's thread pool runs {got} thread(s), not {n}: it was created before "
            "set_num_threads was called; set TVM_NUM_THREADS before the first TVM kernel runs",
            RuntimeWarning, stacklevel=2)
    return got
