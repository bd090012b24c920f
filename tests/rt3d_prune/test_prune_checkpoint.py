"""Checkpoint format: weights_only loading, exact zeros, metadata, refusal of masked models."""

from __future__ import annotations

import pytest
import torch

from rt3d_passes.sparsity import classify
from rt3d_prune.checkpoint import load_checkpoint, save_checkpoint
from rt3d_prune.config import SparsityConfig
from rt3d_prune.models import build_model
from rt3d_prune.oneshot import prune_oneshot
from rt3d_prune.sparsifier import GroupSparsifier


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = prune_oneshot(build_model("c3d_small", num_classes=5), "c3d_small-3.6x")
    path = tmp_path / "sub" / "pruned.pt"
    info = {"method": "oneshot", "scheme": "kgs", "group": (8, 4), "preset": "c3d_small-3.6x",
            "rates": {"conv2": 0.85}}
    save_checkpoint(path, model, "c3d_small", {"num_classes": 5}, (1, 3, 16, 32, 32), info)
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"arch", "arch_kwargs", "input_shape", "state_dict", "pruning"}
    assert raw["pruning"]["group"] == [8, 4] and raw["input_shape"] == [1, 3, 16, 32, 32]
    loaded, meta = load_checkpoint(path)
    assert meta["arch"] == "c3d_small" and "state_dict" not in meta
    w = loaded.conv2.weight.detach()
    assert torch.equal(w, model.conv2.weight.detach())
    assert classify(w.numpy(), (8, 4)).scheme == "kgs"
    x = torch.randn(1, 3, 16, 32, 32)
    model.eval()
    assert torch.allclose(loaded(x), model(x))


def test_refuses_unsquashed_model(tmp_path):
    model = build_model("c3d_small")
    sp = GroupSparsifier()
    sp.prepare(model, SparsityConfig(rates={"conv2": 0.5}))
    with pytest.raises(ValueError, match="squash"):
        save_checkpoint(tmp_path / "x.pt", model, "c3d_small", {}, (1, 3, 16, 32, 32), {})
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "y.pt", build_model("c3d_small"), "c3d_small", {},
                        (1, 3, 16, 32, 32), {"bad": object()})
