"""The channel-blocked schedule of channel-wise (depthwise) conv3d: which layers take it,
loop structure, numerics against PyTorch (partial blocks, strides, AVX2 and AVX-512 tiles)."""

import numpy as np
import pytest
import torch
import tvm
from tvm import s_tir

from rt3d_passes import sparsity as S
from rt3d_passes.op import Conv3DGeometry, column_offsets, kgs_conv3d_primfunc, shares_taps
from rt3d_passes.transform.analysis import ungroup
from schedules.contract import KGS_COPY_LAYOUT_ATTR, channel_block
from schedules.cpu_channelwise_conv3d import channelwise_tile
from schedules.cpu_kgs_conv3d import (
    AVX2,
    AVX512,
    CHANNEL_BLOCK_COPY_BYTES,
    NEON,
    copy_layout,
    schedule_cpu,
    schedule_kgs_conv3d_cpu,
)
from tests.conftest import assert_close_rel, run_kgs

ZEN3 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3", "num-cores": 2})
ZEN4 = tvm.target.Target({"kind": "llvm", "mcpu": "znver4", "num-cores": 2})
ARM = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})


def _depthwise(rng, c, shape, strides, layout="CDHW8c", kernel=(3, 3, 3)):
    wg = rng.standard_normal((c, 1, *kernel)).astype(np.float32)
    packed = S.compact(ungroup(wg, c), (1, 1))
    padding = tuple(k // 2 for k in kernel)
    func = kgs_conv3d_primfunc(shape, packed, strides, padding, copy_layout=layout)
    geo = Conv3DGeometry(shape, kernel, strides, padding, copy_layout=layout)
    return wg, packed, func, geo, padding


def test_channel_block_names():
    assert [channel_block(v) for v in ("CDHW8c", "CDHW4c", "CDHW", "DHCW", "CDHWc")] == \
        [8, 4, 0, 0, 0]


def test_blocked_layout_only_where_rows_waste_lanes():
    """A blockable channel-wise layer gets ``CDHW8c`` on x86 when its output W is no
    multiple of 8 and one block's copy fits; W a multiple of 8, a copy too large, a layer that
    cannot be blocked, NEON and GPU targets keep CDHW."""
    assert (AVX2.channel_blocks, AVX512.channel_blocks, NEON.channel_blocks) == \
        (True, True, False)
    small = 15 * 12 * 12
    for target in (ZEN3, ZEN4):
        assert copy_layout(target, (3, 3, 3), True, True, True, 10, small) == "CDHW8c"
        assert copy_layout(target, (3, 3, 3), True, True, True, 5, small) == "CDHW8c"
        assert copy_layout(target, (3, 3, 3), True, True, True, 16, small) == "CDHW"
        big = CHANNEL_BLOCK_COPY_BYTES // (8 * 4) + 1
        assert copy_layout(target, (3, 3, 3), True, True, True, 10, big) == "CDHW"
        assert copy_layout(target, (3, 3, 3), True, True, False, 10, small) == "CDHW"
        assert copy_layout(target, (3, 3, 3), False, True, True, 10, small) == "CDHW"
    for target in (ARM, tvm.target.Target("qcom/adreno-opencl")):
        assert copy_layout(target, (3, 3, 3), True, True, True, 10, small) == "CDHW"


def test_shares_taps(rng):
    c = 6
    wg = rng.standard_normal((c, 1, 3, 3, 3)).astype(np.float32)
    assert shares_taps(S.compact(ungroup(wg, c), (1, 1)))
    wg[2, 0, 1, 1, 1] = 0.0  # one channel loses one tap: its column list differs
    assert not shares_taps(S.compact(ungroup(wg, c), (1, 1)))


@pytest.mark.parametrize("config", [AVX2, AVX512], ids=["avx2", "avx512"])
@pytest.mark.parametrize("c,shape,strides", [
    (16, (1, 16, 4, 10, 10), (1, 1, 1)),   # whole blocks
    (13, (2, 13, 3, 5, 7), (1, 1, 1)),     # a partial last block, batch 2
    (20, (1, 20, 5, 9, 11), (1, 2, 2)),    # stride 2 in H and W (no W phases)
    (9, (1, 9, 6, 6, 6), (2, 2, 2)),       # stride 2 everywhere, 1 + 1/8 blocks
])
def test_channel_blocked_depthwise_matches_torch(rng, config, c, shape, strides):
    """The blocked operator, scheduled with AVX2's register budget (12 accumulators) and
    AVX-512's (24; compiled for this host), equals PyTorch's depthwise conv; every output
    element is written (the buffer starts NaN)."""
    wg, packed, func, geo, padding = _depthwise(rng, c, shape, strides)
    assert geo.w_phases == 1 and geo.padded_size == -(-c // 8) * 8 * int(
        np.prod(geo.padded_spatial))
    sch = schedule_kgs_conv3d_cpu(s_tir.Schedule(func), lanes=config.lanes,
                                  max_registers=config.max_registers)
    x = rng.standard_normal(shape).astype(np.float32)
    ref = torch.nn.functional.conv3d(torch.from_numpy(x), torch.from_numpy(wg),
                                     stride=strides, padding=padding, groups=c).numpy()
    assert_close_rel(run_kgs(sch.mod, x, packed, geo, c), ref, 1e-5)


def test_channel_blocked_loop_structure(rng):
    """One task per (batch item, block) holds the block's padded copy and weights; the
    update's innermost loop is a vector of the block's 8 channels under the unrolled
    register tile (at most the config's 12 accumulators), the reduction over the taps
    outside it; the copy has no predicate."""
    _, _, func, _, _ = _depthwise(rng, 24, (1, 24, 4, 10, 10), (1, 1, 1))
    sch = schedule_cpu(s_tir.Schedule(func), target=ZEN3)
    update = sch.get_loops(sch.get_sblock("kgs_conv3d_update"))
    outer = sch.get(update[0])
    assert outer.kind == tvm.tirx.ForKind.PARALLEL and int(outer.extent) == 3
    assert int(sch.get(update[-1]).extent) == 8
    assert sch.get(update[-1]).kind == tvm.tirx.ForKind.VECTORIZED
    tile = [int(sch.get(loop).extent) for loop in update[-4:-1]]
    assert all(sch.get(loop).kind == tvm.tirx.ForKind.UNROLLED for loop in update[-4:-1])
    assert int(np.prod(tile)) <= AVX2.max_registers
    assert tuple(reversed(tile)) == channelwise_tile(10, 10, 4, AVX2.max_registers)
    assert int(sch.get(update[-5]).extent) == 27  # the taps, outside the tile
    for name in ("kgs_pad", "kgs_values_blocked"):
        assert sch.get(sch.get_loops(sch.get_sblock(name))[0]).same_as(outer)
    assert "T.where" not in sch.mod.script()
    assert str(func.attrs[KGS_COPY_LAYOUT_ATTR]) == "CDHW8c"


def test_channelwise_tile():
    """W first (the longest divisor within the registers), then H, then D rows."""
    assert channelwise_tile(10, 10, 13, 12) == (10, 1, 1)
    assert channelwise_tile(20, 20, 13, 12) == (10, 1, 1)
    assert channelwise_tile(4, 4, 1, 12) == (4, 2, 1)
    assert channelwise_tile(10, 10, 4, 24) == (10, 2, 1)
    assert channelwise_tile(5, 5, 4, 24) == (5, 1, 4)


def test_blocked_copy_needs_a_shared_tap_list(rng):
    """Column offsets for a blocked copy refuse a layer whose groups keep different taps or
    that is not channel-wise: the operator reads group 0's offsets for every channel."""
    c, shape = 8, (1, 8, 3, 5, 5)
    wg = rng.standard_normal((c, 1, 3, 3, 3)).astype(np.float32)
    wg[3, 0, 0, 0, 0] = 0.0
    packed = S.compact(ungroup(wg, c), (1, 1))
    geo = Conv3DGeometry(shape, (3, 3, 3), padding=(1, 1, 1), copy_layout="CDHW8c")
    with pytest.raises(ValueError, match="same taps"):
        column_offsets(packed, geo)
    dense = S.compact(rng.standard_normal((8, 8, 3, 3, 3)).astype(np.float32), (8, 4))
    with pytest.raises(ValueError, match="channel-wise layer with multiplier 1"):
        column_offsets(dense, geo)
