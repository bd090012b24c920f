"""The CPU rule of the Winograd conv3d: vectorized transforms, the GEMM's channel tile.

Numerics against PyTorch are in ``tests/rt3d_passes/test_winograd_conv3d.py`` and the fuzz
suite; these tests check the loop structure the schedule promises."""

import numpy as np
import pytest
import tvm
from tvm import s_tir
from tvm.tirx import ForKind

from rt3d_passes.op.winograd_conv3d import WinogradGeometry, winograd_conv3d_primfunc
from schedules import contract
from schedules.cpu_kgs_conv3d import AVX2
from schedules.cpu_winograd_conv3d import (
    CHUNK_WEIGHT_BYTES,
    GEMM_COLUMN_BLOCK,
    gemm_column_block,
    positions_chunk,
    schedule_winograd_conv3d_cpu,
    schedule_winograd_cpu,
    transform_lanes,
)


def _scheduled(shape, out, kernel, padding, tile, group_m=8, **kw):
    w = np.random.default_rng(0).standard_normal((out, shape[1], *kernel)).astype("float32")
    func, _, _ = winograd_conv3d_primfunc(shape, w, padding, tile, group_m=group_m)
    return schedule_winograd_conv3d_cpu(s_tir.Schedule(func), **kw)


def _loops(sch, block):
    return [sch.get(loop) for loop in sch.get_loops(sch.get_sblock(block))]


@pytest.mark.parametrize("n_w,lanes,expected", [(14, 8, 7), (7, 8, 7), (4, 8, 4), (16, 8, 8),
                                                (28, 16, 14), (13, 8, 1)])
def test_transform_lanes_divide_the_tile_row(n_w, lanes, expected):
    assert transform_lanes(n_w, lanes) == expected


@pytest.mark.parametrize("tile", [2, 4])
def test_padded_copy_is_split_into_w_phases(tile):
    geo = WinogradGeometry((1, 3, 4, 14, 14), (3, 3, 3), (1, 1, 1), tile)
    assert geo.stored_row == tile * (geo.n_w + 1) >= geo.tiled_spatial[2]
    w = np.ones((8, 3, 3, 3, 3), "float32")
    func, _, _ = winograd_conv3d_primfunc((1, 3, 4, 14, 14), w, (1, 1, 1), tile)
    shape = [int(v) for v in func.attrs[contract.WINOGRAD_SHAPE_ATTR]]
    assert shape[2] == geo.stored_row


@pytest.mark.parametrize("tile,width,vector", [(4, 28, 7), (2, 28, 7), (4, 16, 4)])
def test_both_transforms_run_vectors_over_the_tiles_of_a_row(tile, width, vector):
    sch = _scheduled((1, 16, 4, width, width), 16, (3, 3, 3), (1, 1, 1), tile)
    for block in (contract.WINOGRAD_PACK_BLOCK, contract.WINOGRAD_INVERSE_BLOCK):
        loops = _loops(sch, block)
        assert loops[0].kind == ForKind.PARALLEL
        assert loops[-1].kind == ForKind.VECTORIZED, block
        assert int(loops[-1].extent) == vector, block


def test_output_transform_stays_scalar_on_a_partial_last_tile():
    # 7 output columns with m = 4: the second tile of a row is cropped
    sch = _scheduled((1, 16, 2, 7, 7), 16, (3, 3, 3), (1, 1, 1), 4)
    assert ForKind.VECTORIZED not in [loop.kind for loop in
                                      _loops(sch, contract.WINOGRAD_INVERSE_BLOCK)]
    assert _loops(sch, contract.WINOGRAD_PACK_BLOCK)[-1].kind == ForKind.VECTORIZED


def test_gemm_register_tile_holds_the_configured_channels():
    # 8 channels per group, tiles of 4 along positions: 4 channels x 3 vectors of 8 (24 | 48),
    # the vectors unrolled (one 24-lane vector ran 10x slower)
    sch = _scheduled((1, 16, 3, 16, 16), 16, (3, 3, 3), (1, 1, 1), 4, lanes=8,
                     max_registers=12, channel_tile=4)
    loops = _loops(sch, contract.WINOGRAD_BGEMM_BLOCK + "_update")
    assert [int(loop.extent) for loop in loops[-3:]] == [4, 3, 8]
    assert loops[-1].kind == ForKind.VECTORIZED
    assert loops[-2].kind == loops[-3].kind == ForKind.UNROLLED
    whole = _scheduled((1, 16, 3, 16, 16), 16, (3, 3, 3), (1, 1, 1), 4, lanes=8,
                       max_registers=12, channel_tile=0)
    loops = _loops(whole, contract.WINOGRAD_BGEMM_BLOCK + "_update")
    assert [int(loop.extent) for loop in loops[-2:]] == [8, 8]


@pytest.mark.parametrize("cpu,tasks,channels", [("znver3", 36 * 2, AVX2.channel_tile),
                                                ("znver4", 36 * 3, 8)])
def test_avx2_gemm_runs_every_group_of_a_position_tile_in_one_task(cpu, tasks, channels):
    """AVX2: one task per (point, position tile), all 3 groups inside, 48 columns in one
    block; AVX-512 keeps one task per (point, group)."""
    w = np.random.default_rng(1).standard_normal((24, 16, 3, 3, 3)).astype("float32")
    func, _, _ = winograd_conv3d_primfunc((1, 16, 3, 16, 16), w, (1, 1, 1), 4, group_m=8)
    sch = schedule_winograd_cpu(s_tir.Schedule(func),
                                target=tvm.target.Target({"kind": "llvm", "mcpu": cpu}))
    loops = _loops(sch, contract.WINOGRAD_BGEMM_BLOCK + "_update")
    assert loops[0].kind == ForKind.PARALLEL and int(loops[0].extent) == tasks
    lanes = [int(loop.extent) for loop in loops if loop.kind == ForKind.VECTORIZED]
    assert lanes == [8]
    tile = [int(loop.extent) for loop in loops if loop.kind == ForKind.UNROLLED]
    assert tile[0] == channels


def test_gemm_column_blocks_divide_the_columns():
    w = np.random.default_rng(2).standard_normal((8, 32, 3, 3, 3)).astype("float32")
    func, _, _ = winograd_conv3d_primfunc((1, 32, 2, 8, 8), w, (1, 1, 1), 2, group_m=8)
    sch = schedule_winograd_conv3d_cpu(s_tir.Schedule(func), channel_tile=4,
                                       column_block=GEMM_COLUMN_BLOCK)
    extents = [int(loop.extent) for loop in _loops(sch, contract.WINOGRAD_BGEMM_BLOCK +
                                                   "_update")]
    # 96 columns: 2 blocks of 48 (the largest divisor up to 64), then the channel tiles
    assert extents[-6:-3] == [2, 2, 48]
    assert gemm_column_block(AVX2) == GEMM_COLUMN_BLOCK


@pytest.mark.parametrize("out,chans,expected", [(64, 64, 1), (512, 64, 2)])
def test_gemm_tasks_take_several_position_tiles_when_a_points_weights_are_large(out, chans,
                                                                                expected):
    """64 x 64 x 3 columns: 48 KB of weights a point, one position tile a task; 512 x 64 x 3:
    384 KB (> CHUNK_WEIGHT_BYTES), two tiles a task (the largest divisor of 2 up to 8)."""
    w = np.ones((out, chans, 3, 3, 3), "float32")
    func, _, _ = winograd_conv3d_primfunc((1, chans, 2, 8, 8), w, (1, 1, 1), 2, group_m=8)
    assert positions_chunk(4 * out * chans * 3, 2) == expected
    assert (4 * out * chans * 3 > CHUNK_WEIGHT_BYTES) == (expected > 1)
    sch = schedule_winograd_conv3d_cpu(s_tir.Schedule(func), channel_tile=4,
                                       column_block=GEMM_COLUMN_BLOCK)
    loops = _loops(sch, contract.WINOGRAD_BGEMM_BLOCK + "_update")
    # 2 x 16 tiles = 32 positions, tiles of 16: 2 position tiles, in 2 // expected tasks
    assert int(loops[0].extent) == 16 * (2 // expected)
