"""Shared fixtures: torch references and a fresh random generator per test."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def conv3d_reference(x, weight, strides=(1, 1, 1), padding=(0, 0, 0), dilation=(1, 1, 1),
                     groups=1):
    """``torch.nn.functional.conv3d`` with Relax's padding (3 or 6 values, asymmetric)."""
    import torch

    p = tuple(int(v) for v in padding)
    p = p * 2 if len(p) == 3 else p
    xt = torch.nn.functional.pad(torch.from_numpy(x), (p[2], p[5], p[1], p[4], p[0], p[3]))
    return torch.nn.functional.conv3d(
        xt, torch.from_numpy(weight), stride=tuple(strides), dilation=tuple(dilation),
        groups=groups,
    ).numpy()


def run_vm(mod, x, pipeline=None) -> np.ndarray:
    """Compile ``mod`` for the host (``pipeline``: a pass or a registered name; default the
    ``rt3d`` pipeline) and run ``main`` on ``x`` (numpy or torch) in the Relax VM."""
    import tvm
    from tvm import relax

    from rt3d_passes.target import host_target

    target = host_target()
    if pipeline is None:
        pipeline = relax.get_pipeline("rt3d", target=target)
    ex = tvm.compile(mod, target, relax_pipeline=pipeline)
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(np.asarray(x))).numpy()


def run_kgs(mod, x: np.ndarray, packed, geometry, out_channels: int, target=None
            ) -> np.ndarray:
    """Compile a scheduled standalone KGS PrimFunc (``op.kgs_conv3d_primfunc``) for
    ``target`` (the host's by default) and run it on ``x``; the output buffer starts as NaN,
    so an element the kernel never writes shows."""
    import tvm

    from rt3d_passes.op import column_offsets
    from rt3d_passes.target import host_target

    ex = tvm.compile(mod, target=target or host_target())
    args = [tvm.runtime.tensor(a) for a in (
        x, packed.values, column_offsets(packed, geometry),
        np.full(geometry.output_shape(out_channels), np.nan, np.float32))]
    ex["main"](*args)
    return args[-1].numpy()


def assert_close_rel(out: np.ndarray, ref: np.ndarray, rel: float = 1e-5) -> None:
    """max |out - ref| <= rel * max |ref| (and the reference is not trivially zero)."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    scale = float(np.abs(ref).max())
    assert scale > 0, "reference is all zeros: the test would prove nothing"
    err = float(np.abs(out - ref).max())
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel:g} * max |ref| {scale:.3g}"


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Fresh inputs every run (seeded from the OS), printed on failure for replay."""
    seed = int(np.random.SeedSequence().entropy % (2**32))
    request.node.user_properties.append(("seed", seed))
    return np.random.default_rng(seed)


class TinyC3D(torch.nn.Module):
    """conv-relu-pool-conv-relu-gap-linear: a 3D CNN small enough to compile in seconds."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(3, 16, 3, padding=1)
        self.pool = torch.nn.MaxPool3d((1, 2, 2))
        self.conv2 = torch.nn.Conv3d(16, 32, 3, padding=1)
        self.conv3 = torch.nn.Conv3d(32, 32, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.fc = torch.nn.Linear(32, 5)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return self.fc(x.mean((2, 3, 4)))


def pruned_tiny_c3d(rng: np.random.Generator, rate: float = 0.8) -> TinyC3D:
    """A :class:`TinyC3D` whose conv2 and conv3 carry exact KGS 8x4 zeros (conv1 stays dense)."""
    from rt3d_passes.testing import structured_weight

    torch.manual_seed(int(rng.integers(1 << 31)))
    model = TinyC3D().eval()
    with torch.no_grad():
        for conv in (model.conv2, model.conv3):
            w = structured_weight(conv.weight.shape, "kgs", rate, (8, 4), rng)
            conv.weight.copy_(torch.from_numpy(w))
    return model
