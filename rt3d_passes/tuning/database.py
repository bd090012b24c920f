"""Tuning databases: MetaSchedule's JSON database, one per target, applied by the pipeline."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import tvm
from tvm import relax
from tvm.target import Target

__all__ = ["TARGET_FILE", "apply_database", "open_database", "target_key"]

#: The file in a database directory that names the target it was tuned for.
TARGET_FILE = "rt3d_target.json"


def open_database(work_dir: str | os.PathLike, target: Target, create: bool = False):
    """The JSON database of ``work_dir`` for ``target``.

    A database remembers the target it was tuned for (``rt3d_target.json``). Opening it for
    another target raises: MetaSchedule's lookup ignores the target, so a foreign database
    would silently apply schedules tuned for other hardware.

    Raises
    ------
    FileNotFoundError
        ``create`` is False and there is no database in ``work_dir``.
    ValueError
        The database was tuned for another target, or its files are not valid JSON records.
    """
    from tvm.s_tir import meta_schedule as ms

    work = Path(work_dir)
    tag = work / TARGET_FILE
    key = target_key(target)
    cores = int(target.attrs.get("num-cores", 0))
    if tag.exists():
        try:
            info = json.loads(tag.read_text())
            saved = info["target"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{tag}: corrupt target file ({err})") from None
        if saved != key:
            raise ValueError(f"tuning database {work} was tuned for target {saved}, not {key}; "
                             "use one --work-dir per target")
        tuned_cores = int(info.get("num_cores", 0))
        if tuned_cores and cores and tuned_cores != cores:
            # parallel granularity and loop order were chosen for another thread count
            warnings.warn(f"tuning database {work} was measured with {tuned_cores} thread(s); "
                          f"this target runs {cores}: its schedules may not be the fastest",
                          RuntimeWarning, stacklevel=2)
    elif create:
        work.mkdir(parents=True, exist_ok=True)
        tag.write_text(json.dumps({"target": key, "num_cores": cores}))
    else:
        raise FileNotFoundError(f"no RT3D tuning database in {work} (run `rt3d tune` first)")
    try:
        return ms.database.JSONDatabase(work_dir=str(work))
    except Exception as err:  # TVM raises its own error types for malformed records
        raise ValueError(f"tuning database {work} is corrupt: {str(err).splitlines()[-1]}") \
            from None


def target_key(target: Target) -> str:
    """What identifies a target for a database: kind, triple, cpu, features, device."""
    attrs = target.attrs
    parts = [target.kind.name] + [f"{k}={attrs[k]}" for k in
                                  ("mtriple", "mcpu", "mattr", "device", "model") if k in attrs]
    return " ".join(str(p) for p in parts)


def apply_database(database) -> tvm.transform.Pass:
    """``MetaScheduleApplyDatabase`` with ``database`` as the current database (nothing when
    ``database`` is None): tuned schedules replace the PrimFuncs they were tuned for."""
    if database is None:
        return tvm.transform.Sequential([])

    @tvm.transform.module_pass(opt_level=0, name="RT3DApplyTuningDatabase")
    def _apply(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        with database:
            return relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)

    return _apply
