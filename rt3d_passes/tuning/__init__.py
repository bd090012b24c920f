"""Tuning RT3D's operators with MetaSchedule, locally or over an RPC tracker.

* :mod:`.tasks` -- a model's operators as the ``rt3d`` pipeline produces them;
* :mod:`.measure` -- builder and runner (with TVM 0.27 workarounds);
* :mod:`.database` -- one JSON database per target, and the pass that applies it;
* :mod:`.tune` -- :func:`tune_model`, resumable;
* :mod:`.select` -- direct or Winograd per layer from the database's measured times.

The pipeline applies a database with ``relax.get_pipeline("rt3d", target=..., database=...)``.
"""

from .database import apply_database, open_database, target_key
from .measure import (
    alloc_arguments,
    fast_build,
    make_builder,
    make_runner,
    meta_schedule_logging,
)
from .select import candidate_workloads, measured_choices, with_measured
from .tasks import TuningTask, extract_tasks
from .tune import tune_model

__all__ = [
    "TuningTask",
    "alloc_arguments",
    "apply_database",
    "candidate_workloads",
    "extract_tasks",
    "fast_build",
    "make_builder",
    "make_runner",
    "measured_choices",
    "meta_schedule_logging",
    "open_database",
    "target_key",
    "tune_model",
    "with_measured",
]
