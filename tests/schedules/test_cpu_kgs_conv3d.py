"""The CPU schedule rule: applicability, tunable design space, aarch64 codegen."""

import numpy as np
import pytest
import tvm
from tvm import s_tir, te

import schedules
from rt3d_passes import sparsity as S
from rt3d_passes.op import kgs_conv3d_primfunc
from rt3d_passes.target import host_target
from rt3d_passes.testing import structured_weight


def _func(rng, group=(8, 4)):
    w = structured_weight((24, 16, 3, 3, 3), "kgs", 0.7, group, rng)
    return kgs_conv3d_primfunc((1, 16, 4, 8, 8), S.compact(w, group), padding=(1, 1, 1))


def test_rule_returns_none_for_other_funcs():
    a = te.placeholder((16,), name="a")
    b = te.compute((16,), lambda i: a[i] * 2, name="b")
    func = te.create_prim_func([a, b])
    assert schedules.KGSConv3DCPU().apply(func, host_target(), False) is None


def test_rule_returns_none_for_gpu_targets(rng):
    gpu = tvm.target.Target("qcom/adreno-opencl")
    assert schedules.KGSConv3DCPU().apply(_func(rng), gpu, False) is None


def test_fixed_schedule_is_deterministic_and_tunable_one_samples(rng):
    func = _func(rng)
    fixed = [schedules.KGSConv3DCPU().apply(func, host_target(), False) for _ in range(2)]
    tvm.ir.assert_structural_equal(fixed[0].mod, fixed[1].mod)
    decisions = fixed[0].trace.decisions
    assert len(decisions) == 4  # W tile, H tile, D tile, unroll step
    sampled = s_tir.Schedule(func, seed=int(rng.integers(1, 1 << 30)))
    schedules.schedule_kgs_conv3d_cpu(sampled, fixed=False)
    assert len(sampled.trace.decisions) == 4


def test_aarch64_codegen_uses_neon_fma(rng):
    func = _func(rng, group=(4, 4))
    sch = s_tir.Schedule(func)
    schedules.schedule_kgs_conv3d_cpu(sch)
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                "mattr": ["+neon"]})
    asm = tvm.compile(sch.mod, target).mod.inspect_source("asm")
    assert "fmla" in asm and ".4s" in asm


def test_schedule_keeps_vector_width_of_group(rng):
    sch = s_tir.Schedule(_func(rng))
    schedules.schedule_kgs_conv3d_cpu(sch)
    asm = tvm.compile(sch.mod, host_target()).mod.inspect_source("asm")
    assert "ymm" in asm or "zmm" in asm  # 8 x fp32 accumulators
    assert np.any([line.strip().startswith("vfmadd") for line in asm.splitlines()])


@pytest.mark.parametrize("vector_axis", ["w", "m"])
@pytest.mark.parametrize("rows_outer", [True, False])
@pytest.mark.parametrize("strides", [(1, 1, 1), (1, 2, 2)])
def test_every_structural_variant_matches_torch(rng, vector_axis, rows_outer, strides):
    from rt3d_passes.op import Conv3DGeometry, column_offsets
    from tests.conftest import assert_close_rel, conv3d_reference

    in_shape = (1, 16, 4, 9, 14)
    w = structured_weight((20, 16, 3, 3, 3), "kgs", 0.6, (8, 4), rng)
    packed = S.compact(w, (8, 4))
    geo = Conv3DGeometry(in_shape, (3, 3, 3), strides, (1, 1, 1))
    sch = s_tir.Schedule(kgs_conv3d_primfunc(in_shape, packed, strides, (1, 1, 1)))
    with host_target():
        schedules.schedule_cpu(sch, rows_outer=rows_outer, vector_axis=vector_axis)
    ex = tvm.compile(sch.mod, host_target())
    x = rng.standard_normal(in_shape).astype(np.float32)
    args = [tvm.runtime.tensor(a) for a in (x, packed.values, column_offsets(packed, geo),
                                            np.zeros(geo.output_shape(20), np.float32))]
    ex["main"](*args)
    assert_close_rel(args[3].numpy(), conv3d_reference(x, w, strides, (1, 1, 1)), 1e-5)


def test_default_vector_axis_follows_the_w_stride(rng):
    """Along W when reads are consecutive: unit stride, or a W stride with a padded copy split
    into phases; over channels for a strided flat view (no padding), a narrow map or a
    pointwise conv whose rows are no whole vectors."""
    from schedules.cpu_kgs_conv3d import vector_axis_default

    for kernel, strides, padding, width, axis in (
            ((3, 3, 3), (1, 1, 1), (1, 1, 1), 16, "w"), ((3, 3, 3), (2, 1, 1), (1, 1, 1), 16, "w"),
            ((3, 3, 3), (1, 2, 2), (1, 1, 1), 32, "w"), ((3, 3, 3), (1, 2, 2), (1, 1, 1), 8, "m"),
            ((1, 1, 1), (1, 2, 2), (0, 0, 0), 32, "m"),
            # pointwise rows that are no whole vectors (X3D's 10- and 5-wide maps)
            ((1, 1, 1), (1, 1, 1), (0, 0, 0), 10, "m"), ((1, 1, 1), (1, 1, 1), (0, 0, 0), 5, "m"),
            ((1, 1, 1), (1, 1, 1), (0, 0, 0), 16, "w"), ((1, 3, 3), (1, 1, 1), (0, 1, 1), 10, "w")):
        w = structured_weight((16, 8, *kernel), "kgs", 0.5, (8, 4), rng)
        func = kgs_conv3d_primfunc((1, 8, 4, 8, width), S.compact(w, (8, 4)), strides, padding)
        assert vector_axis_default(s_tir.Schedule(func)) == axis, (kernel, strides, width)


def test_depthwise_convs_sweep_groups_outside_rows(rng):
    """Each depthwise group reads one channel: groups outside keep it in cache."""
    from rt3d_passes.transform.analysis import ungroup
    from schedules.cpu_kgs_conv3d import rows_outer_default

    depthwise = S.compact(ungroup(rng.standard_normal((16, 1, 3, 3, 3)).astype(np.float32), 16),
                          (1, 1))
    func = kgs_conv3d_primfunc((1, 16, 4, 8, 8), depthwise, padding=(1, 1, 1))
    assert rows_outer_default(s_tir.Schedule(func)) is False
    assert rows_outer_default(s_tir.Schedule(_func(rng))) is True


def test_large_weights_go_inside_rows_when_they_stream_fewer_bytes(rng):
    """Weights over ROWS_OUTER_WEIGHT_BYTES: groups outside, unless the input is larger than
    an L2 and streaming the weights once per row tile moves fewer bytes than the input once
    per group (C3D's conv4b at 85 %: 4.2 MB of weights, a 3.1 MB padded copy)."""
    from schedules.cpu_kgs_conv3d import (
        GROUPS_OUTER_INPUT_BYTES,
        ROWS_OUTER_WEIGHT_BYTES,
        rows_outer_default,
        stream_bytes,
    )

    w = structured_weight((512, 512, 3, 3, 3), "kgs", 0.85, (8, 4), rng)
    packed = S.compact(w, (8, 4))
    assert packed.values.nbytes > ROWS_OUTER_WEIGHT_BYTES
    conv4b = s_tir.Schedule(kgs_conv3d_primfunc((1, 512, 4, 14, 14), packed, padding=(1,) * 3))
    conv5a = s_tir.Schedule(kgs_conv3d_primfunc((1, 512, 2, 7, 7), packed, padding=(1,) * 3))
    copy = 512 * 6 * 16 * 16 * 4
    assert copy > GROUPS_OUTER_INPUT_BYTES > 512 * 4 * 9 * 9 * 4
    assert rows_outer_default(conv4b, 28) is True
    rows, cols = stream_bytes(packed.values.nbytes, copy, 64, 28)
    assert rows < cols
    # many row tiles: the weights would stream more bytes than the input
    assert rows_outer_default(conv4b, 64 * copy // packed.values.nbytes + 1) is False
    assert rows_outer_default(conv4b) is False  # no tile known: the old rule
    assert rows_outer_default(conv5a, 7) is False  # its input stays in L2


def test_register_tile_fits_the_register_file():
    from schedules.cpu_kgs_conv3d import register_tile

    for ow, oh in ((56, 56), (28, 28), (14, 14), (7, 7), (112, 112)):
        for gm, lanes, regs in ((8, 8, 24), (8, 8, 12), (4, 4, 24), (8, 4, 24)):
            r_w, r_h = register_tile(ow, oh, gm, lanes, regs, "w")
            assert ow % r_w == 0 and oh % r_h == 0
            assert gm * -(-r_w // lanes) * r_h <= max(regs, gm)
            r_w, r_h = register_tile(ow, oh, gm, lanes, regs, "m")
            assert r_w * r_h * -(-gm // lanes) <= regs
    assert register_tile(56, 56, 8, 8, 24, "w") == (14, 1)  # two ymm per channel row


def test_seven_wide_maps_vectorize_over_channels(rng):
    from schedules.cpu_kgs_conv3d import vector_axis_default

    w = structured_weight((16, 8, 3, 3, 3), "kgs", 0.5, (8, 4), rng)
    func = kgs_conv3d_primfunc((1, 8, 2, 7, 7), S.compact(w, (8, 4)), (1, 1, 1), (1, 1, 1))
    assert vector_axis_default(s_tir.Schedule(func), lanes=8) == "m"
    assert vector_axis_default(s_tir.Schedule(func), lanes=4) == "w"  # NEON: 4 lanes fit


def test_w_tile_is_at_most_two_registers():
    """Longer W vectors (20, 28, 40 positions) were legalized lane by lane: 5-20x slower."""
    from schedules.cpu_kgs_conv3d import register_tile

    for ow in (112, 80, 56, 40, 28, 20, 14, 10):
        r_w, _ = register_tile(ow, 8, 8, 8, 24, "w")
        assert r_w <= 16 and ow % r_w == 0
    assert register_tile(80, 8, 8, 8, 24, "w")[0] == 16
    assert register_tile(40, 8, 8, 8, 24, "w") == (8, 2)  # whole registers, two rows


@pytest.mark.parametrize("channels", [1, 6])
def test_pad_copy_is_parallel_over_channels_only(rng, channels):
    """The zero-padded input copy runs parallel over batch x channels, with depth, rows and
    columns as plain inner loops: fused into the parallel loop, depth left a division and a
    modulo per element (2.7x a memcpy). A single channel keeps depth in it (both threads
    work)."""
    from tvm.tirx import ForKind

    from schedules.contract import KGS_PAD_BLOCK
    from schedules.cpu_kgs_conv3d import schedule_kgs_conv3d_cpu

    shape = (1, channels, 4, 6, 6)
    w = structured_weight((8, channels, 3, 3, 3), "dense", 0, rng=rng)
    func = kgs_conv3d_primfunc(shape, S.compact(w, (8, 1)), padding=(1, 1, 1))
    sch = schedule_kgs_conv3d_cpu(s_tir.Schedule(func))
    loops = [sch.get(loop) for loop in sch.get_loops(sch.get_sblock(KGS_PAD_BLOCK))]
    assert [loop.kind == ForKind.PARALLEL for loop in loops] == [True] + [False] * (
        len(loops) - 1)
    padded = (4 + 2) * (6 + 2) * (6 + 2)
    expected = channels if channels > 1 else 4 + 2
    assert int(loops[0].extent) == expected
    inner = 1
    for loop in loops[1:]:
        inner *= int(loop.extent)
    assert int(loops[0].extent) * inner == channels * padded


def test_avx2_w_tile_keeps_half_a_vector_at_least(rng):
    """On AVX2 a W tile of 8 + 2 positions (10) ran 3.7x slower than a 5-wide one on Zen 3
    (X3D's depthwise 10x10 / 20x20 maps): the default tile leaves no part-filled vector with
    fewer than 4 lanes after whole ones; the 8-lane AVX-512 config keeps such tiles."""
    from schedules.cpu_kgs_conv3d import AVX2, AVX512_YMM, register_tile

    assert AVX2.min_tail == 4 and AVX512_YMM.min_tail == 1
    for ow in (10, 20, 40, 30):
        r_w, _ = register_tile(ow, 10, 1, 8, 12, "w", AVX2.min_tail)
        assert ow % r_w == 0 and (r_w <= 8 or r_w % 8 == 0 or r_w % 8 >= 4), (ow, r_w)
    assert register_tile(10, 10, 1, 8, 12, "w", 4)[0] == 5
    assert register_tile(10, 10, 1, 8, 12, "w", 1)[0] == 10
    assert register_tile(56, 8, 1, 8, 12, "w", 4)[0] == 14  # 8 + 6: kept


def test_avx512_zmm_tiles_are_one_vector_or_whole_vectors():
    """With 512-bit vectors a W tile is at most one vector or whole vectors: 28 = 16 + 12
    lanes ran 25x slower (legalized through the stack). C3D's 56-, 28- and 14-wide maps take
    14-lane tiles, 112 whole vectors; the config is chosen by the target's ``mattr``."""
    from rt3d_passes.target import host_mattr
    from schedules.cpu_kgs_conv3d import AVX512, AVX512_YMM, cpu_config, register_tile

    assert (AVX512.lanes, AVX512.min_tail, AVX512_YMM.lanes) == (16, 16, 8)
    for ow, want in ((112, 16), (56, 14), (28, 14), (14, 14), (7, 7), (40, 10), (80, 16)):
        r_w, _ = register_tile(ow, 8, 8, AVX512.lanes, AVX512.max_registers, "w",
                               AVX512.min_tail)
        assert r_w == want, (ow, r_w)
    spr = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids"})
    wide = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids",
                              "mattr": host_mattr("sapphirerapids")})
    zen4 = tvm.target.Target({"kind": "llvm", "mcpu": "znver4", "mattr": host_mattr("znver4")})
    assert host_mattr("sapphirerapids") == ["-prefer-256-bit"] and host_mattr("znver4") == []
    assert host_mattr("haswell") == [] and host_mattr("znver3") == []
    assert cpu_config(wide) is AVX512
    assert cpu_config(spr) is AVX512_YMM and cpu_config(zen4) is AVX512_YMM


def test_avx2_depthwise_on_ten_wide_maps_matches_torch(rng):
    """The AVX2 default schedule of a channel-wise layer on 10x10 maps (5-wide W tiles)."""
    from rt3d_passes.op import Conv3DGeometry
    from rt3d_passes.transform.analysis import ungroup
    from schedules.cpu_kgs_conv3d import schedule_cpu
    from tests.conftest import assert_close_rel, run_kgs

    shape, c = (1, 24, 3, 10, 10), 24
    wg = rng.standard_normal((c, 1, 3, 3, 3)).astype(np.float32)
    packed = S.compact(ungroup(wg, c), (1, 1))
    geo = Conv3DGeometry(shape, (3, 3, 3), padding=(1, 1, 1))
    target = tvm.target.Target({"kind": "llvm", "mcpu": "haswell", "num-cores": 2})
    sch = schedule_cpu(s_tir.Schedule(kgs_conv3d_primfunc(shape, packed, padding=(1, 1, 1))),
                       target=target)
    wi = sch.get_loops(sch.get_sblock("kgs_conv3d_update"))[-1]
    assert int(sch.get(wi).extent) == 5
    x = rng.standard_normal(shape).astype(np.float32)
    import torch

    ref = torch.nn.functional.conv3d(torch.from_numpy(x), torch.from_numpy(wg), padding=1,
                                     groups=c).numpy()
    assert_close_rel(run_kgs(sch.mod, x, packed, geo, c, target), ref, 1e-5)


@pytest.mark.parametrize("m,row_extent", [(16, 0), (13, 16)])
@pytest.mark.parametrize("tile", [0, 4])
def test_column_blocks_match_torch(rng, m, row_extent, tile):
    """A group whose column count (148 channels x 27 taps, padded to a multiple of 32) the
    block divides runs its column loop in blocks outside the W tiles (the row's
    accumulators in a local buffer), with whole or 4-channel tiles, also with a partial last
    group and 16-wide rows cropped to 14; the output equals PyTorch's and every element is
    written."""
    from rt3d_passes.op import Conv3DGeometry, pad_columns
    from schedules.cpu_kgs_conv3d import column_block
    from tests.conftest import assert_close_rel, conv3d_reference, run_kgs

    shape = (1, 148, 2, 4, 14)
    w = structured_weight((m, 148, 3, 3, 3), "kgs", 0.0, (8, 4), rng)
    packed = pad_columns(S.compact(w, (8, 4)), 32)
    columns = packed.values.shape[1]
    assert columns == 4000 and column_block(columns, 32) == 32
    assert column_block(3996, 32) == 0 and column_block(32, 32) == 0  # no multiple; one block
    assert column_block(192, 32, (1, 3, 3)) == 32 and column_block(96, 32, (1, 1, 1)) == 0
    assert column_block(192, 32, (3, 1, 1)) == 0 and column_block(288, 32, (5, 1, 1)) == 32
    geo = Conv3DGeometry(shape, (3, 3, 3), padding=(1, 1, 1))
    func = kgs_conv3d_primfunc(shape, packed, padding=(1, 1, 1), row_extent=row_extent)
    sch = schedules.schedule_kgs_conv3d_cpu(s_tir.Schedule(func), block_columns=32,
                                            channel_tile=tile, vector_axis="w")
    loops = {sch.get(loop).loop_var.name: int(sch.get(loop).extent)
             for loop in sch.get_loops(sch.get_sblock("kgs_conv3d_update"))}
    assert columns // 32 in loops.values() and 32 in loops.values()  # blocks, block columns
    assert loops.get("m_1_0") == (2 if tile else None)  # two tiles of 4 channels
    x = rng.standard_normal(shape).astype(np.float32)
    out = run_kgs(sch.mod, x, packed, geo, m)
    assert_close_rel(out, conv3d_reference(x, w, padding=(1, 1, 1)), 1e-5)


def test_sparse_spatial_layer_with_few_columns_runs_in_blocks(rng):
    """A 1x3x3 layer of 64 input channels at 70 % KGS (about 173 columns, the rewrite pads
    them to 192 for AVX2) runs its column loop in 32-column blocks, and a 3x1x1 layer of the
    same column count does not; both equal PyTorch's output."""
    from rt3d_passes.op import Conv3DGeometry, pad_columns
    from schedules.cpu_kgs_conv3d import column_multiple
    from tests.conftest import assert_close_rel, conv3d_reference, run_kgs

    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3"})
    shape = (1, 64, 2, 6, 16)
    for kernel, padding, blocked in (((1, 3, 3), (0, 1, 1), True),
                                     ((3, 1, 1), (1, 0, 0), False)):
        cin = 64 if kernel == (1, 3, 3) else 192  # the same ~173 columns at 70 %
        shape = (1, cin, 2, 6, 16)
        w = structured_weight((16, cin, *kernel), "kgs", 0.7, (8, 4), rng)
        compact = S.compact(w, (8, 4))
        assert 128 <= compact.max_columns < 256
        multiple = column_multiple(avx2, compact.max_columns, kernel)
        assert multiple == (32 if blocked else 1)
        packed = pad_columns(compact, multiple)
        columns = packed.values.shape[1]
        geo = Conv3DGeometry(shape, kernel, padding=padding)
        func = kgs_conv3d_primfunc(shape, packed, padding=padding)
        sch = schedules.schedule_kgs_conv3d_cpu(s_tir.Schedule(func), block_columns=32,
                                                channel_tile=4, vector_axis="w")
        extents = [int(sch.get(loop).extent)
                   for loop in sch.get_loops(sch.get_sblock("kgs_conv3d_update"))]
        if blocked:
            assert 32 in extents and columns // 32 in extents
        else:
            assert columns in extents  # one loop over every column
        x = rng.standard_normal(shape).astype(np.float32)
        out = run_kgs(sch.mod, x, packed, geo, 16)
        assert_close_rel(out, conv3d_reference(x, w, padding=padding), 1e-5)


def test_avx2_tiles_channels_and_pads_columns_to_its_blocks():
    """AVX2 holds 4 of a group's 8 channels x 2 rows x one vector in accumulators, and asks
    the rewrite for column counts its 32-column blocks divide, when the padding is at most
    an eighth of the columns; other targets keep whole groups and their column counts."""
    from schedules.cpu_kgs_conv3d import (
        AVX2,
        AVX512,
        AVX512_YMM,
        NEON,
        column_multiple,
        register_tile,
        tile_channels,
    )

    assert (AVX2.channel_tile, AVX512.channel_tile, AVX512_YMM.channel_tile,
            NEON.channel_tile) == (4, 0, 0, 0)
    assert tile_channels(8, 4) == 4 and tile_channels(8, 0) == 8
    assert tile_channels(4, 4) == 4 and tile_channels(6, 4) == 6 and tile_channels(1, 4) == 1
    for ow, oh in ((56, 56), (32, 28), (16, 14)):  # C3D's maps, rows of whole vectors
        assert register_tile(ow, oh, 4, 8, AVX2.max_registers, "w", AVX2.min_tail, 1) == (8, 2)
    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3"})
    assert column_multiple(avx2, 2764) == 32 and column_multiple(avx2, 6912) == 32
    assert column_multiple(avx2, 260) == 32  # 28 more: within an eighth
    assert column_multiple(avx2, 36) == 1  # 28 more on 36: too many
    # from 128 columns (R(2+1)D's 1x3x3 layers at 70 %: ~173 -> 192), but a temporal conv's
    # loop is blocked only from 256
    assert column_multiple(avx2, 173, (1, 3, 3)) == 32 and column_multiple(avx2, 120) == 1
    assert column_multiple(avx2, 173, (3, 1, 1)) == 1
    assert column_multiple(avx2, 260, (3, 1, 1)) == 32
    for other in (tvm.target.Target({"kind": "llvm", "mcpu": "znver4"}),
                  tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}),
                  tvm.target.Target("qcom/adreno-opencl"), None):
        assert column_multiple(other, 2764) == 1


def test_pointwise_layers_on_large_maps_keep_whole_groups(rng):
    """A pointwise layer on a map of more than POINTWISE_TILE_POSITIONS positions keeps the
    whole group in its tile and one column loop (it ran slower tiled); on a small map, and any
    3x3x3 layer, takes the 4-channel tile."""
    from schedules.cpu_kgs_conv3d import POINTWISE_TILE_POSITIONS, tiles_channels

    assert tiles_channels((3, 3, 3), 10**6) and tiles_channels((1, 1, 1), 128)
    assert not tiles_channels((1, 1, 1), POINTWISE_TILE_POSITIONS + 1)
    for shape, tiled in (((1, 32, 4, 16, 16), False), ((1, 32, 2, 8, 8), True)):
        w = structured_weight((16, 32, 1, 1, 1), "dense", 0, rng=rng)
        func = kgs_conv3d_primfunc(shape, S.compact(w, (8, 4)))
        sch = schedules.schedule_kgs_conv3d_cpu(s_tir.Schedule(func), channel_tile=4,
                                                block_columns=32, vector_axis="w")
        names = [sch.get(loop).loop_var.name
                 for loop in sch.get_loops(sch.get_sblock("kgs_conv3d_update"))]
        assert ("m_1_0" in names) == tiled, names


def test_temporal_convs_keep_padded_copy_in_dhcw():
    """Temporal convs (Kd x 1 x 1, Kd > 1) with a padded copy, not channel-wise, get the DHCW
    copy on AVX2 and on AVX-512 with 512-bit vectors; spatial kernels, pointwise, unpadded or
    channel-wise layers and the other targets (AVX-512 with 256-bit vectors too) keep CDHW."""
    from rt3d_passes.target import host_mattr
    from schedules.cpu_kgs_conv3d import AVX2, AVX512, AVX512_YMM, NEON, copy_layout

    assert (AVX2.dhcw_copy, AVX512.dhcw_copy, AVX512_YMM.dhcw_copy, NEON.dhcw_copy) == \
        (True, True, False, False)
    avx2 = tvm.target.Target({"kind": "llvm", "mcpu": "znver3"})
    zmm = tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids",
                             "mattr": host_mattr("sapphirerapids")})
    for kernel in ((3, 1, 1), (5, 1, 1), (7, 1, 1)):
        assert copy_layout(avx2, kernel, True, False) == "DHCW"
        assert copy_layout(zmm, kernel, True, False) == "DHCW"
    for kernel, padded, channelwise in (((3, 1, 1), False, False), ((3, 1, 1), True, True),
                                        ((1, 3, 3), True, False), ((3, 3, 3), True, False),
                                        ((1, 1, 1), True, False), ((3, 1, 3), True, False)):
        assert copy_layout(avx2, kernel, padded, channelwise) == "CDHW"
    for other in (tvm.target.Target({"kind": "llvm", "mcpu": "znver4"}),
                  tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"}),
                  tvm.target.Target("qcom/adreno-opencl"), None):
        assert copy_layout(other, (3, 1, 1), True, False) == "CDHW"


def test_few_row_tiles_share_groups_among_threads(rng):
    """Rows outside groups with fewer row tiles than ``ROW_TASKS_MIN`` (a pointwise conv on
    one row of 128 positions, as Slow-R50's res5 computes its 8x4x4 maps): the groups join
    the parallel loop, so every thread gets tasks; the result still equals PyTorch."""
    import torch

    from rt3d_passes.op import Conv3DGeometry
    from schedules.cpu_kgs_conv3d import ROW_TASKS_MIN
    from tests.conftest import assert_close_rel, run_kgs

    shape, m = (1, 32, 1, 1, 128), 40
    w = structured_weight((m, 32, 1, 1, 1), "kgs", 0.5, (8, 4), rng)
    packed = S.compact(w, (8, 4))
    sch = schedules.schedule_kgs_conv3d_cpu(s_tir.Schedule(kgs_conv3d_primfunc(shape, packed)),
                                            rows_outer=True)
    outer = sch.get(sch.get_loops(sch.get_sblock("kgs_conv3d_update"))[0])
    assert outer.kind == tvm.tirx.ForKind.PARALLEL
    assert int(outer.extent) == m // 8 >= 1 and ROW_TASKS_MIN > 1
    x = rng.standard_normal(shape).astype(np.float32)
    ref = torch.nn.functional.conv3d(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    assert_close_rel(run_kgs(sch.mod, x, packed, Conv3DGeometry(shape, (1, 1, 1)), m), ref)
