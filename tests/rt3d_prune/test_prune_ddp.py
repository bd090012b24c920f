"""Two CPU processes with gloo: DDP pruning gives identical masks and weights on every rank,
equal to a one-process run with the same global batch (the engine's DistributedSampler makes
the global batches the same; a model without BatchNorm and dropout makes the gradients so)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from rt3d_prune.config import ADMMConfig, MethodConfig, RegularizerConfig, SparsityConfig
from rt3d_prune.engine import EngineConfig, run_pruning
from rt3d_prune.models import build_model

_SHAPE = (1, 3, 16, 16, 16)
_SPARSE = SparsityConfig(rates={"conv2": 0.5, "conv3a": 0.75, "conv3b": 0.75})
_BATCH = 8


def _data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(32) % 4
    x = torch.randn(32, 3, 16, 16, 16, generator=g) + y[:, None, None, None, None] * 0.5
    return TensorDataset(x, y)


def _model():
    torch.manual_seed(0)
    return build_model("c3d_small", num_classes=4, input_size=(16, 16, 16),
                       widths=(8, 16, 16, 16, 32, 32, 32, 32), fc_dim=32, batch_norm=False,
                       dropout=0.0)


def _method(name: str) -> MethodConfig:
    return MethodConfig(method=name, reg_epochs=2, finetune_epochs=1, rounds=2,
                        regularizer=RegularizerConfig(strength=1e-3),
                        admm=ADMMConfig(rho=1e-2, stages=2))


def _run(method: str, run_dir: str | None) -> dict[str, torch.Tensor]:
    model = _model()
    run_pruning(model, _SPARSE, _method(method), _data(), EngineConfig(batch_size=_BATCH,
                                                                       device="cpu"),
                input_shape=_SHAPE, run_dir=run_dir)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, method: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    state = _run(method, out if rank == 0 else None)
    torch.save(state, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("method", ["reweighted", "admm"])
def test_two_gloo_ranks_match_each_other_and_one_process(method, tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), method, str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = _run(method, None)
    assert (tmp_path / "last.pt").exists() and (tmp_path / "history.json").exists()
    for key, value in single.items():
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # identical across ranks
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-4, atol=1e-5)
        if key.endswith("weight") and key.split(".")[0] in _SPARSE.rate_map:
            # the same pruned groups
            assert torch.equal(ranks[0][key] == 0, value == 0), key
