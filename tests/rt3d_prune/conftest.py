"""One intra-op thread for the pruning tests: their tensors are tiny, and on a shared 2-core
machine two spinning threads per process made a 3-second training run take 20 seconds."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
