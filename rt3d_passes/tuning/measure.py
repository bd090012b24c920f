"""MetaSchedule's builder and runner for RT3D's operators, with the TVM 0.27 workarounds.

Four of them, each explained where it is used: real index buffers during measurement
(:func:`alloc_arguments`), a builder that does not import the tensor intrinsics per worker
(:func:`fast_build`), a ``TuneContext`` that does not import them in the main process
either (:func:`without_tensor_intrin`), and MetaSchedule's logger set-up surviving handlers
it did not create (:func:`meta_schedule_logging`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
from collections.abc import Callable, Iterator

import numpy as np
import tvm
from tvm.target import Target

from ..rpc import RPCSettings

__all__ = ["alloc_arguments", "fast_build", "make_builder", "make_runner",
           "without_tensor_intrin"]


def fast_build(mod: tvm.IRModule, target: Target, _params) -> tvm.runtime.Module:
    """MetaSchedule's default build without ``import tvm.s_tir.tensor_intrin``.

    The default imports hundreds of TVMScript intrinsics (about a minute on 2 cores) in every
    builder worker, and the worker pool is re-created for every batch: builds time out.
    RT3D's spaces never tensorize, so the intrinsics are not needed.
    """
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.tirx.build(mod, target=target)


def make_builder(export: Callable | None = None):
    """MetaSchedule builder with :func:`fast_build` (``export``: ``f_export``, e.g. the aarch64
    cross-compiler of :func:`rt3d_passes.rpc.cross_export_aarch64`)."""
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(max_workers=min(2, os.cpu_count() or 1), f_build=fast_build,
                                   f_export=export, timeout_sec=120)


def make_runner(offsets: np.ndarray, rpc: RPCSettings | None = None):
    """MetaSchedule runner for one KGS task: local, or on the RPC devices of ``rpc``, with the
    task's real offsets."""
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=0,
                                       enable_cpu_cache_flush=False)
    alloc_local, alloc_rpc = alloc_arguments(offsets)
    if not rpc:
        return ms.runner.LocalRunner(evaluator_config=config, f_alloc_argument=alloc_local)
    return ms.runner.RPCRunner(
        rpc_config=rpc.runner_config(),
        evaluator_config=config,
        # the default session request has no deadline: with every server of the key gone,
        # tuning would wait forever instead of failing those trials
        f_create_session=rpc.create_session(),
        f_alloc_argument=alloc_rpc, max_workers=1)


def alloc_arguments(offsets: np.ndarray):
    """Argument allocators ``(local, rpc)`` that upload the real column offsets.

    MetaSchedule fills int32 inputs with random values; the gather then reads far out of
    bounds and kills the runner (``Subprocess terminated``). Offsets are the only int32
    argument of the operator; float inputs stay random.
    """

    def _make(device, args_info, alloc_repeat):
        out = []
        for _ in range(alloc_repeat):
            args = []
            for _kind, dtype, shape in args_info:
                shape = tuple(int(s) for s in shape)
                if "int" in str(dtype):
                    if shape != offsets.shape:
                        raise ValueError(f"int32 argument of shape {shape} is not the "
                                         f"offsets {offsets.shape}")
                    data = offsets
                else:
                    data = np.random.uniform(-1, 1, shape).astype(str(dtype))
                args.append(tvm.runtime.tensor(data, device))
            out.append(args)
        return out

    def local(device, args_info, alloc_repeat):
        return _make(device, args_info, alloc_repeat)

    def rpc(_session, device, args_info, alloc_repeat):
        return _make(device, args_info, alloc_repeat)

    return local, rpc


@contextlib.contextmanager
def without_tensor_intrin() -> Iterator[None]:
    """Create TuneContexts without importing ``tvm.s_tir.tensor_intrin``.

    ``TuneContext.__init__`` imports it unconditionally (about a minute here); RT3D's spaces
    do not use it. A placeholder module stands in for the duration only, so later code that
    needs the real intrinsics imports them as usual.
    """
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        yield
        return
    sys.modules[name] = types.ModuleType(name)
    try:
        yield
    finally:
        if isinstance(sys.modules.get(name), types.ModuleType) and \
                not hasattr(sys.modules[name], "__file__"):
            del sys.modules[name]


#: MetaSchedule's own logger (non-propagating once a tuning run has configured it).
META_SCHEDULE_LOGGER = "tvm.s_tir.meta_schedule"


@contextlib.contextmanager
def meta_schedule_logging() -> Iterator[None]:
    """Let MetaSchedule (re)configure its loggers although foreign handlers are attached.

    Every ``tune_tasks`` / ``tune_tir`` rebuilds its logging config and lists the handlers
    already on ``tvm.s_tir.meta_schedule`` by name; a handler without a name makes it fail
    with ``AttributeError: 'NoneType' object has no attribute 'format'`` (TVM 0.27,
    ``meta_schedule/logging.py``). pytest >= 9 attaches its capture handler, unnamed, to every
    non-propagating logger -- MetaSchedule's is one after its first run -- so the second
    tuning in one process failed. Unnamed handlers are detached for the duration and put back.
    """
    logger = logging.getLogger(META_SCHEDULE_LOGGER)
    unnamed = [h for h in logger.handlers if h.get_name() is None]
    for handler in unnamed:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in unnamed:
            logger.addHandler(handler)  # no-op when it is there again
