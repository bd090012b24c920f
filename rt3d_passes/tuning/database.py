"""Tuning databases: MetaSchedule's JSON database, one per target, applied by the pipeline."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import tvm
from tvm import relax
from tvm.target import Target

__all__ = ["RECORD_FILES", "TARGET_FILE", "apply_database", "open_database", "repair_record_file",
           "target_key"]

#: The file in a database directory that names the target it was tuned for.
TARGET_FILE = "rt3d_target.json"
#: MetaSchedule's JSONDatabase files: one JSON value per line, appended as tuning goes.
RECORD_FILES = ("database_workload.json", "database_tuning_record.json")


def open_database(work_dir: str | os.PathLike, target: Target, create: bool = False):
    """The JSON database of ``work_dir`` for ``target``.

    A database remembers the target it was tuned for (``rt3d_target.json``). Opening it for
    another target raises: MetaSchedule's lookup ignores the target, so a foreign database
    would silently apply schedules tuned for other hardware.

    MetaSchedule appends one line per record; a tuning process killed mid-append leaves a
    truncated last line. Opening repairs that (:func:`repair_record_file`, with a warning
    naming the file): the records before it are kept, the interrupted one is measured again
    on the next ``rt3d tune``.

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
        _write_atomic(tag, json.dumps({"target": key, "num_cores": cores}))
    else:
        raise FileNotFoundError(f"no RT3D tuning database in {work} (run `rt3d tune` first)")
    for name in RECORD_FILES:
        repair_record_file(work / name)
    try:
        return ms.database.JSONDatabase(work_dir=str(work))
    except Exception as err:  # TVM raises its own error types for malformed records
        raise ValueError(f"tuning database {work} is corrupt: {str(err).splitlines()[-1]}") \
            from None


def repair_record_file(path: str | os.PathLike) -> bool:
    """Make a JSON-lines record file whole again after a writer was killed mid-append.

    A last line without its newline is either complete (the newline is added) or truncated
    (it is dropped); the file is rewritten through a temporary file and ``os.replace``, so a
    crash during the repair leaves the old file. Lines before the last are not touched: a
    corrupt line there is reported by :func:`open_database` as a corrupt database.

    Returns
    -------
    repaired : bool
        Whether the file was changed (a ``RuntimeWarning`` names it and what was done).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    if not data or data.endswith(b"\n"):
        return False
    head, _, last = data.rpartition(b"\n")
    try:
        json.loads(last)
        fixed, what = data + b"\n", "completed its last line (missing newline)"
    except ValueError:
        kept = head.count(b"\n") + 1 if head else 0
        fixed = head + b"\n" if head else b""
        what = (f"dropped a truncated last line ({len(last)} bytes, a write interrupted "
                f"mid-record); {kept} line(s) kept")
    _write_atomic(path, fixed)
    warnings.warn(f"tuning database file {path}: {what}", RuntimeWarning, stacklevel=3)
    return True


def _write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` so that readers see the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
