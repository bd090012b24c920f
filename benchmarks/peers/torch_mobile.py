"""PyTorch Mobile: TorchScript, frozen, (optionally) ``optimize_for_mobile``, lite interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import PeerRunner, PeerUnsupported, first_line

NO_XNNPACK = "optimize_for_mobile unavailable: XNNPACK not enabled in this torch build"


def xnnpack_enabled() -> bool:
    """Whether this torch build has XNNPACK (needed by ``optimize_for_mobile``)."""
    probe = getattr(torch._C, "_is_xnnpack_enabled", None)
    return bool(probe()) if probe is not None else False


class TorchMobileRunner(PeerRunner):
    """``torch.jit.trace`` → ``torch.jit.freeze`` → ``optimize_for_mobile`` (if XNNPACK) →
    ``_save_for_lite_interpreter`` → ``_load_for_lite_interpreter``."""

    name = "torch_mobile"
    requires = ("torch",)

    def prepare(
        self, model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int
    ) -> None:
        """Script, freeze, optimise where possible, save and load with the lite interpreter."""
        from torch.jit.mobile import _load_for_lite_interpreter

        self.threads = threads
        torch.set_num_threads(threads)
        try:
            with torch.no_grad():
                scripted = torch.jit.freeze(torch.jit.trace(model.eval(), example))
        except Exception as exc:
            raise PeerUnsupported(f"TorchScript trace/freeze failed: {first_line(exc)}") from exc
        if xnnpack_enabled():
            from torch.utils.mobile_optimizer import optimize_for_mobile

            try:
                scripted = optimize_for_mobile(scripted)
                self.notes.append("optimize_for_mobile applied")
            except Exception as exc:
                self.notes.append(f"optimize_for_mobile failed ({first_line(exc, 80)}); skipped")
        else:
            self.notes.append(NO_XNNPACK + "; TorchScript + freeze + lite interpreter")
        path = Path(workdir) / "model.ptl"
        try:
            scripted._save_for_lite_interpreter(str(path))
            self.module = _load_for_lite_interpreter(str(path))
        except Exception as exc:
            raise PeerUnsupported(f"lite interpreter: {first_line(exc)}") from exc
        self.warm_up(example)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One lite-interpreter forward pass."""
        with torch.no_grad():
            return self.module(torch.from_numpy(x)).numpy()
