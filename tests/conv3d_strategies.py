"""Hypothesis strategies for random conv3d blocks, and the torch module they describe.

A drawn :class:`Conv3DCase` is plain data (its ``repr`` is the whole falsifying example: the
weights come from ``seed``), so a failure printed by hypothesis can be replayed by pasting it
into :func:`build_block`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import strategies as st

from rt3d_passes.sparsity import DEFAULT_GROUP_CANDIDATES, broadcast_unit_mask
from rt3d_passes.testing import structured_weight

#: Zero patterns a weight is drawn with; ``mixed`` = some output groups vanilla, others KGS.
#: (Hypothesis favours the first entries: the pruned schemes come first.)
SCHEMES = ("kgs", "mixed", "vanilla", "kgs_balanced", "unstructured", "dense")
#: What follows the conv (after an optional BatchNorm3d), in order.
EPILOGUES = ((), ("relu",), ("add",), ("add", "relu"), ("relu", "add"))
#: Output extent per spatial axis; small so that one compile + run takes about a second.
MAX_OUT = 3


@dataclasses.dataclass(frozen=True)
class Conv3DCase:
    """One conv3d block: ``[pad] -> conv3d -> [BatchNorm3d] -> epilogue``."""

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    dilation: tuple[int, int, int]
    pad_before: tuple[int, int, int]
    pad_after: tuple[int, int, int]
    input_size: tuple[int, int, int]
    scheme: str
    rate: float
    group: tuple[int, int]
    bias: bool
    batch_norm: bool
    epilogue: tuple[str, ...]
    seed: int

    @property
    def asymmetric(self) -> bool:
        return self.pad_before != self.pad_after

    def output_size(self) -> tuple[int, ...]:
        return tuple(
            (i + b + a - d * (k - 1) - 1) // s + 1
            for i, b, a, d, k, s in zip(self.input_size, self.pad_before, self.pad_after,
                                        self.dilation, self.kernel, self.stride))


@st.composite
def conv3d_cases(draw, max_channels: int = 96, grouped: bool = True,
                 temporal: bool = False) -> Conv3DCase:
    """Random conv3d blocks: batch 1-3, channels 1-``max_channels``, groups 1 / 2 /
    channel-wise, kernels 1-7, strides and dilations 1-3, symmetric or asymmetric padding,
    every zero-pattern scheme at rates 0-100%, bias, BatchNorm3d, ReLU and residual add.
    ``grouped=False``: groups=1 only. ``temporal=True``: kernels ``Kd x 1 x 1`` (Kd 2-7), padded
    along D, the layers whose padded copy an AVX2 host keeps in DHCW."""
    kinds = ["1", "1", "1", "1", "2", "depthwise"] if grouped else ["1"]
    groups_kind = draw(st.sampled_from(kinds))
    half = max_channels // 2
    if groups_kind == "1":
        n = draw(st.integers(1, max_channels))
        m = draw(st.integers(1, max_channels))
        groups = 1
    elif groups_kind == "2":
        n, m, groups = 2 * draw(st.integers(1, half)), 2 * draw(st.integers(1, half)), 2
    else:
        n = draw(st.integers(1, half))
        m, groups = n * draw(st.integers(1, 2)), n
    axis = st.integers(1, 3)
    kernel = ((draw(st.integers(2, 7)), 1, 1) if temporal
              else tuple(draw(st.integers(1, 7)) for _ in range(3)))
    stride = tuple(draw(axis) for _ in range(3))
    dilation = tuple(draw(axis) for _ in range(3))
    pad_before = tuple(draw(st.integers(int(temporal and axis_ == 0), 3)) for axis_ in range(3))
    if draw(st.booleans()):
        pad_after = pad_before  # symmetric: the conv's own padding
    else:
        pad_after = tuple(draw(st.integers(0, 3)) for _ in range(3))
    size = []
    for k, s, d, b, a in zip(kernel, stride, dilation, pad_before, pad_after):
        out = draw(st.integers(1, MAX_OUT))
        extra = draw(st.integers(0, s - 1))  # rows the stride skips at the end
        size.append(max(1, (out - 1) * s + d * (k - 1) + 1 - b - a + extra))
    scheme = draw(st.sampled_from(SCHEMES))
    # mostly rates a pruned model has, and the ends of the range: 0 (dense), 1 (all zero)
    rate = draw(st.one_of(st.floats(0.5, 0.98), st.sampled_from([1.0, 0.0]),
                          st.floats(0.0, 1.0)))
    group = draw(st.sampled_from(DEFAULT_GROUP_CANDIDATES))
    return Conv3DCase(
        batch=draw(st.integers(1, 3)), in_channels=n, out_channels=m, groups=groups,
        kernel=kernel, stride=stride, dilation=dilation, pad_before=pad_before,
        pad_after=pad_after, input_size=tuple(size), scheme=scheme, rate=round(rate, 3),
        group=group, bias=draw(st.booleans()), batch_norm=draw(st.booleans()),
        epilogue=draw(st.sampled_from(EPILOGUES)), seed=draw(st.integers(0, 2**32 - 1)))


@st.composite
def winograd_cases(draw, max_channels: int = 40) -> Conv3DCase:
    """Random conv3d blocks Winograd can run: kernel ``Kd x 3 x 3`` (Kd 1-3), unit stride and
    dilation, groups 1, symmetric or asymmetric padding 0-2, maps up to 11 x 11 (several
    tiles, partial last tiles), batch 1-2, channels not multiples of the group, every
    zero-pattern scheme (``plane`` included) at rates 0-100 %, bias, BatchNorm3d, ReLU,
    residual add."""
    n = draw(st.integers(1, max_channels))
    m = draw(st.integers(1, max_channels))
    kernel = (draw(st.integers(1, 3)), 3, 3)
    pad_before = tuple(draw(st.integers(0, 2)) for _ in range(3))
    pad_after = pad_before if draw(st.booleans()) else tuple(
        draw(st.integers(0, 2)) for _ in range(3))
    out = (draw(st.integers(1, 3)), draw(st.integers(1, 11)), draw(st.integers(1, 11)))
    size = tuple(max(1, o + k - 1 - b - a)
                 for o, k, b, a in zip(out, kernel, pad_before, pad_after))
    rate = draw(st.one_of(st.floats(0.3, 0.95), st.sampled_from([1.0, 0.0])))
    return Conv3DCase(
        batch=draw(st.integers(1, 2)), in_channels=n, out_channels=m, groups=1, kernel=kernel,
        stride=(1, 1, 1), dilation=(1, 1, 1), pad_before=pad_before, pad_after=pad_after,
        input_size=size, scheme=draw(st.sampled_from(("plane", "dense", *SCHEMES[:4]))),
        rate=round(rate, 3), group=draw(st.sampled_from(DEFAULT_GROUP_CANDIDATES)),
        bias=draw(st.booleans()), batch_norm=draw(st.booleans()),
        epilogue=draw(st.sampled_from(EPILOGUES)), seed=draw(st.integers(0, 2**32 - 1)))


def mixed_weight(shape, rate: float, group, rng: np.random.Generator) -> np.ndarray:
    """Each output group drawn vanilla (whole kernel groups) or KGS (units), at ``rate``."""
    m, n, *k = shape
    gm, gn = group
    mg, ng, k3 = -(-m // gm), -(-n // gn), int(np.prod(k))
    mask = np.empty((mg, ng, k3), bool)
    for r in range(mg):
        if rng.random() < 0.5:
            keep = rng.permutation(ng) >= round(rate * ng)
            mask[r] = keep[:, None]
        else:
            mask[r] = (rng.permutation(ng * k3) >= round(rate * ng * k3)).reshape(ng, k3)
    w = rng.standard_normal(shape).astype(np.float32)
    return w * broadcast_unit_mask(mask, shape, group)


def case_weight(case: Conv3DCase, rng: np.random.Generator) -> np.ndarray:
    """The conv weight ``[M, N / groups, Kd, Kh, Kw]`` with the case's zero pattern."""
    shape = (case.out_channels, case.in_channels // case.groups, *case.kernel)
    # a group larger than the weight is cut to it (the pattern is then whole-layer)
    group = (min(case.group[0], shape[0]), min(case.group[1], shape[1]))
    if case.scheme == "mixed":
        return mixed_weight(shape, case.rate, group, rng)
    scheme, balanced = case.scheme, case.scheme == "kgs_balanced"
    return structured_weight(shape, "kgs" if balanced else scheme, case.rate, group, rng,
                             balanced=balanced)


class Conv3DBlock(torch.nn.Module):
    """``[F.pad] -> Conv3d -> [BatchNorm3d] -> relu / + residual`` as the case says."""

    def __init__(self, case: Conv3DCase):
        super().__init__()
        self.case = case
        rng = np.random.default_rng(case.seed)
        padding = 0 if case.asymmetric else case.pad_before
        self.conv = torch.nn.Conv3d(case.in_channels, case.out_channels, case.kernel,
                                    stride=case.stride, padding=padding,
                                    dilation=case.dilation, groups=case.groups, bias=case.bias)
        self.bn = torch.nn.BatchNorm3d(case.out_channels) if case.batch_norm else None
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(case_weight(case, rng)))
            if case.bias:
                self.conv.bias.copy_(torch.from_numpy(
                    rng.standard_normal(case.out_channels).astype(np.float32)))
            if self.bn is not None:
                m = case.out_channels
                for t, v in ((self.bn.weight, rng.uniform(0.5, 2, m)),
                             (self.bn.bias, rng.standard_normal(m)),
                             (self.bn.running_mean, rng.standard_normal(m)),
                             (self.bn.running_var, rng.uniform(0.5, 2, m))):
                    t.copy_(torch.from_numpy(v.astype(np.float32)))

    def forward(self, x, residual=None):
        c = self.case
        if c.asymmetric:  # F.pad takes (w_before, w_after, h_before, h_after, d_b, d_a)
            x = torch.nn.functional.pad(x, (c.pad_before[2], c.pad_after[2], c.pad_before[1],
                                            c.pad_after[1], c.pad_before[0], c.pad_after[0]))
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        for op in c.epilogue:
            y = torch.relu(y) if op == "relu" else y + residual
        return y


def block_magnitude(model: Conv3DBlock, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    """The block's output with every product taken in absolute value (``|x|``, ``|W|``,
    ``|bias|``, batch norm as ``|scale| * y + |shift|``, ``+ |residual|``): the magnitude
    :func:`rel_error` scales float32 rounding by when terms cancel."""
    c, f = model.case, torch.nn.functional
    with torch.no_grad():
        x = inputs[0].abs()
        if c.asymmetric:
            x = f.pad(x, (c.pad_before[2], c.pad_after[2], c.pad_before[1], c.pad_after[1],
                          c.pad_before[0], c.pad_after[0]))
        conv = model.conv
        bias = conv.bias.abs() if conv.bias is not None else None
        y = f.conv3d(x, conv.weight.abs(), bias, conv.stride, conv.padding, conv.dilation,
                     conv.groups)
        if model.bn is not None:
            bn = model.bn
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
            y = y * scale.abs().view(1, -1, 1, 1, 1) + shift.abs().view(1, -1, 1, 1, 1)
        if "add" in c.epilogue:
            y = y + inputs[1].abs()
    return y.numpy()


def build_block(case: Conv3DCase) -> tuple[Conv3DBlock, tuple[torch.Tensor, ...]]:
    """The eval-mode module and its inputs (``x``, and the residual when there is an add)."""
    rng = np.random.default_rng(case.seed + 1)
    model = Conv3DBlock(case).eval()
    x = rng.standard_normal((case.batch, case.in_channels, *case.input_size))
    inputs = [torch.from_numpy(x.astype(np.float32))]
    if "add" in case.epilogue:
        r = rng.standard_normal((case.batch, case.out_channels, *case.output_size()))
        inputs.append(torch.from_numpy(r.astype(np.float32)))
    return model, tuple(inputs)


def rel_error(out: np.ndarray, ref: np.ndarray, magnitude: np.ndarray | None = None) -> float:
    """max |out - ref| / max(max |ref|, tiny): 0 only when an all-zero reference is met
    exactly.

    ``magnitude``: the same conv of ``|x|`` and ``|w|`` (the sum of the products' absolute
    values per output). float32 rounding is proportional to it, not to the result: when the
    products cancel (a single output of a few dozen terms can come out 10-100x smaller than
    them) the scale is at least a tenth of its largest value."""
    assert out.shape == ref.shape, (out.shape, ref.shape)
    scale = max(float(np.abs(ref).max(initial=0.0)), float(np.finfo(np.float32).tiny))
    if magnitude is not None:
        scale = max(scale, 0.1 * float(np.abs(magnitude).max(initial=0.0)))
    return float(np.abs(out.astype(np.float64) - ref).max(initial=0.0)) / scale
