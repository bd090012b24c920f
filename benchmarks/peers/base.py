"""Common interface of the peer runtime runners.

Every peer runtime (PyTorch eager, PyTorch Mobile, ExecuTorch, ONNX Runtime, OpenVINO, MNN) is
wrapped in a :class:`PeerRunner`: it exports the given PyTorch model itself, loads it, warms it up
and then runs single inferences on NumPy arrays.  A runner never imports its optional runtime at
module import time, so this package can be imported with only ``torch`` and ``numpy``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

NOT_INSTALLED = "not installed (pip install .[bench])"


class PeerUnsupported(RuntimeError):
    """The runtime cannot run this model; ``str(exc)`` is a short human-readable reason."""


class PeerRunner(ABC):
    """One peer runtime: ``available`` → ``prepare`` (export, load, warm up) → ``run``.

    Subclasses set ``name`` (registry key), ``requires`` (top-level modules that must import) and
    implement :meth:`prepare` and :meth:`run`.  Notes worth reporting in the results table (e.g.
    a skipped optimisation) go into ``self.notes``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    warmup_runs: ClassVar[int] = 2

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.threads: int | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Return ``(True, "")`` if every required module imports, else ``(False, reason)``."""
        for module in cls.requires:
            try:
                with redirect_native_output(Path(os.devnull)):  # MNN prints a banner on import
                    importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
                    return False, f"import failed: {first_line(exc)}"
                return False, NOT_INSTALLED
            except Exception as exc:  # a broken install must not crash the benchmark
                return False, f"import failed: {type(exc).__name__}: {first_line(exc)}"
        return True, ""

    @abstractmethod
    def prepare(
        self, model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int
    ) -> None:
        """Export ``model`` for this runtime, load it with ``threads`` threads and warm it up.

        Raises :class:`PeerUnsupported` when the runtime cannot run the model.
        """

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one inference on ``x`` (float32, same shape as the example) and return the output."""

    def warm_up(self, example: torch.Tensor) -> None:
        """Run the prepared model a few times so that lazy initialisation is not timed."""
        x = example.detach().cpu().numpy()
        for _ in range(self.warmup_runs):
            self.run(x)

    def versions(self) -> dict[str, str]:
        """Versions of the packages this runner uses."""
        return {module: package_version(module) for module in self.requires}

    def info(self) -> dict[str, Any]:
        """Versions, thread count and notes, for the results JSON."""
        return {"versions": self.versions(), "threads": self.threads, "notes": list(self.notes)}


def package_version(module: str) -> str:
    """``module.__version__`` if importable, else ``"-"``."""
    try:
        return str(getattr(importlib.import_module(module), "__version__", "?"))
    except Exception:
        return "-"


def first_line(exc: BaseException, limit: int = 160) -> str:
    """First non-empty line of an exception message, shortened to ``limit`` characters."""
    for line in str(exc).splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= limit else line[: limit - 3] + "..."
    return type(exc).__name__


def check_output(
    ref: np.ndarray, out: np.ndarray, rtol: float = 1e-3, atol: float = 0.0
) -> tuple[bool, float]:
    """Compare a peer's output against the PyTorch eager reference.

    Passes if ``max|out - ref| <= atol + rtol * max|ref|`` (a scale-aware bound: conv algorithms
    differ in summation order, so element-wise relative error is meaningless near zero; and no
    absolute default, since randomly initialised deep models can have tiny outputs).
    Returns ``(ok, max_abs_err)``; a shape mismatch gives ``(False, inf)``.
    """
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        out = out.reshape(-1) if out.size == ref.size else out
        if out.size != ref.size:
            return False, float("inf")
        out = out.reshape(ref.shape)
    if not np.all(np.isfinite(out)):
        return False, float("inf")
    err = float(np.max(np.abs(out - ref))) if ref.size else 0.0
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    return err <= atol + rtol * scale, err


@contextlib.contextmanager
def redirect_native_output(logfile: Path) -> Iterator[None]:
    """Send stdout/stderr to ``logfile`` for the block: file descriptors 1 and 2 (C++ prints)
    and ``sys.stdout``/``sys.stderr`` (some bindings log through Python, e.g. under pytest)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(logfile, "a", buffering=1, errors="replace") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
