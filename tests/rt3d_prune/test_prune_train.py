"""Inference helpers of the training loop: chunked passes and top-1 evaluation."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rt3d_prune.models import build_model
from rt3d_prune.train import CPU_INFER_CHUNK, evaluate, infer


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("c3d_small", num_classes=4, input_size=(16, 16, 16),
                       widths=(8, 16, 16, 16, 32, 32, 32, 32), fc_dim=32)


def _batches(model: torch.nn.Module) -> list[tuple[int, bool]]:
    """(clips, channels-last) of every call of the model's first conv, recorded."""
    seen: list[tuple[int, bool]] = []
    model.conv1.register_forward_pre_hook(lambda mod, args: seen.append(
        (len(args[0]), args[0].is_contiguous(memory_format=torch.channels_last_3d))))
    return seen


def test_infer_in_chunks_equals_one_pass():
    model = _model().eval()
    seen = _batches(model)
    x = torch.randn(2 * CPU_INFER_CHUNK + 3, 3, 16, 16, 16)
    whole = infer(model, x, chunk=0)
    chunked = infer(model, x)  # a CPU: passes of CPU_INFER_CHUNK
    assert [n for n, _ in seen] == [len(x), CPU_INFER_CHUNK, CPU_INFER_CHUNK, 3]
    assert not chunked.requires_grad
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)


def test_infer_refuses_to_split_a_batch_in_training_mode():
    model = _model().train()
    x = torch.randn(CPU_INFER_CHUNK + 1, 3, 16, 16, 16)
    with pytest.raises(ValueError, match=r"C3D is in training mode.*model\.eval"):
        infer(model, x)
    assert infer(model, x[:CPU_INFER_CHUNK]).shape == (CPU_INFER_CHUNK, 4)  # one pass: fine


def test_evaluate_counts_top1_in_the_asked_layout():
    model = _model().train()
    x = torch.randn(20, 3, 16, 16, 16)
    with torch.no_grad():
        labels = model.eval()(x).argmax(1)
    labels[:5] = (labels[:5] + 1) % 4  # 5 of 20 wrong
    model.train()
    seen = _batches(model)
    loader = DataLoader(TensorDataset(x, labels), batch_size=10)
    assert evaluate(model, loader, memory_format=torch.channels_last_3d) == pytest.approx(0.75)
    assert not model.training
    assert seen and all(cl for _, cl in seen)
    assert max(n for n, _ in seen) == CPU_INFER_CHUNK
    seen.clear()
    assert evaluate(model, loader, chunk=0) == pytest.approx(0.75)
    assert {(n, cl) for n, cl in seen} == {(10, False)}
