"""PyTorch eager: the reference every other peer is checked against."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import PeerRunner


class TorchEagerRunner(PeerRunner):
    """``model.eval()`` under ``torch.inference_mode`` with ``torch.set_num_threads``."""

    name = "torch_eager"
    requires = ("torch",)

    def prepare(
        self, model: torch.nn.Module, example: torch.Tensor, workdir: Path, threads: int
    ) -> None:
        """Keep the eval-mode model; nothing to export."""
        self.threads = threads
        torch.set_num_threads(threads)
        self.model = model.eval()
        self.warm_up(example)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One eager forward pass."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(x)).numpy()
