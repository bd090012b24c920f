"""Device, mixed precision and ``torch.distributed`` set-up for the training engine.

One process per device, as ``torchrun`` starts them: the environment variables ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` select distributed mode;
without them everything runs in this process. The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["AMP_MODES", "Runtime", "broadcast_", "resolve_amp", "setup"]

#: Values of ``--amp``.
AMP_MODES: tuple[str, ...] = ("none", "bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where this process trains: rank, world size and device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.world > 1


def setup(device: str = "auto") -> Runtime:
    """Resolve ``device`` (``auto``, ``cpu``, ``cuda``) and join the process group if the
    environment asks for one (``WORLD_SIZE`` > 1; idempotent).

    Raises:
        ValueError: ``cuda`` requested but not available, or an unknown device.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use cpu or auto)")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if use_cuda:
        dev = torch.device("cuda", local_rank if world > 1 else torch.cuda.current_device())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Runtime(rank=rank, world=world, local_rank=local_rank, device=dev)


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """``(autocast dtype or None, needs a GradScaler)`` for ``--amp``.

    Raises:
        ValueError: fp16 on a CPU (CPU autocast computes in bf16 only; use ``bf16``), or an
            unknown mode.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "none":
        return None, False
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("--amp fp16 needs a CUDA device; on CPU use --amp bf16 or none")
        return torch.float16, True
    return torch.bfloat16, False


def broadcast_(tensors: Any, runtime: Runtime) -> None:
    """Copy rank 0's tensors (a tensor, or a dict / list of them) to every rank, in place."""
    if not runtime.distributed:
        return
    if isinstance(tensors, dict):
        for key in sorted(tensors):
            broadcast_(tensors[key], runtime)
    elif isinstance(tensors, list | tuple):
        for t in tensors:
            broadcast_(t, runtime)
    else:
        # gloo cannot broadcast bool tensors on every version: go through uint8
        buf = tensors.to(torch.uint8) if tensors.dtype == torch.bool else tensors
        dist.broadcast(buf, 0)
        if buf is not tensors:
            tensors.copy_(buf.bool())
