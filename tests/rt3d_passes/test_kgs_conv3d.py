"""The sparse KGS conv3d operator against torch.nn.functional.conv3d on fresh random inputs."""

import numpy as np
import pytest
import tvm
from tvm import s_tir

import schedules
from rt3d_passes import sparsity as S
from rt3d_passes.op import (
    Conv3DGeometry,
    channel_multiplier,
    column_offsets,
    kgs_conv3d_primfunc,
)
from rt3d_passes.target import host_target
from rt3d_passes.testing import structured_weight
from schedules.contract import KGS_CONV3D_ATTR
from tests.conftest import assert_close_rel, conv3d_reference, run_kgs

# (input NCDHW, M, kernel, strides, padding (3 or 6), dilation, group)
CASES = {
    "1x1x1": ((1, 16, 4, 6, 6), 32, (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1), (8, 4)),
    "3x3x3": ((1, 16, 4, 8, 8), 32, (3, 3, 3), (1, 1, 1), (1, 1, 1), (1, 1, 1), (8, 4)),
    "3x3x3-s2": ((1, 16, 5, 9, 9), 24, (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1), (8, 4)),
    "1x3x3-r2+1d": ((2, 45, 4, 8, 8), 144, (1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 1, 1), (8, 4)),
    "3x1x1-r2+1d": ((1, 144, 6, 5, 5), 45, (3, 1, 1), (2, 1, 1), (1, 0, 0), (1, 1, 1), (4, 4)),
    "3x7x7-stem": ((1, 3, 5, 16, 16), 45, (3, 7, 7), (1, 2, 2), (1, 3, 3), (1, 1, 1), (8, 2)),
    "1x7x7-stem": ((2, 3, 3, 14, 14), 64, (1, 7, 7), (1, 2, 2), (0, 3, 3), (1, 1, 1), (8, 2)),
    "dilation2": ((1, 16, 7, 9, 9), 16, (3, 3, 3), (1, 1, 1), (2, 2, 2), (2, 2, 2), (8, 4)),
    "asym-pad": ((1, 8, 4, 7, 9), 13, (2, 3, 3), (1, 2, 1), (0, 1, 2, 1, 0, 1), (1, 1, 1), (4, 4)),
    # W phases: stride 3 with dilation 2 and a padded row (17) no multiple of the stride
    "w-stride3-dil2": ((1, 8, 3, 6, 13), 16, (1, 3, 3), (1, 1, 3), (0, 1, 2), (1, 1, 2), (8, 4)),
}


def _run(func, target, args):
    sch = s_tir.Schedule(func)
    schedules.schedule_kgs_conv3d_cpu(sch)
    ex = tvm.compile(sch.mod, target=target)
    tensors = [tvm.runtime.tensor(a) for a in args]
    ex["main"](*tensors)
    return tensors[-1].numpy()


@pytest.mark.parametrize("scheme", ["kgs", "vanilla"])
@pytest.mark.parametrize("rate", [0.0, 0.95])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_torch(rng, case, scheme, rate):
    in_shape, m, kernel, strides, padding, dilation, group = CASES[case]
    w = structured_weight((m, in_shape[1], *kernel), scheme, rate, group, rng)
    if not w.any():  # 95% of few groups can prune everything; keep one unit so ref != 0
        w[0, 0, 0, 0, 0] = 1.0
    packed = S.compact(w, group)
    geo = Conv3DGeometry(in_shape, kernel, strides, padding, dilation)
    func = kgs_conv3d_primfunc(in_shape, packed, strides, padding, dilation)
    assert int(func.attrs[KGS_CONV3D_ATTR]) == group[0]
    x = rng.standard_normal(in_shape).astype(np.float32)
    out = _run(func, host_target(),
               [x, packed.values, column_offsets(packed, geo),
                np.zeros(geo.output_shape(m), np.float32)])
    assert_close_rel(out, conv3d_reference(x, w, strides, padding, dilation), 1e-5)


def test_padding_slots_read_in_bounds(rng):
    """Short groups are padded to the longest; their slots must read valid memory and add 0."""
    in_shape = (1, 16, 4, 6, 6)
    w = structured_weight((32, 16, 3, 3, 3), "kgs", 0.7, (8, 4), rng)
    w[:8] = 0  # the first group keeps a single unit: nearly all its slots are padding
    w[0, 0, 1, 1, 1] = 1.0
    packed = S.compact(w, (8, 4))
    assert packed.counts.min() < packed.max_columns
    geo = Conv3DGeometry(in_shape, (3, 3, 3), padding=(1, 1, 1))
    offsets = column_offsets(packed, geo)
    # the largest read is offset + the last output voxel's base: within the padded input
    _, hp, wp = geo.padded_spatial
    last_base = ((geo.output_spatial[0] - 1) * hp + geo.output_spatial[1] - 1) * wp \
        + geo.output_spatial[2] - 1
    assert offsets.min() >= 0 and offsets.max() + last_base < geo.padded_size
    pad_slots = np.arange(offsets.shape[1])[None, :] >= packed.counts[:, None]
    assert (packed.values[pad_slots] == 0).all()
    x = rng.standard_normal(in_shape).astype(np.float32)
    out = _run(kgs_conv3d_primfunc(in_shape, packed, padding=(1, 1, 1)), host_target(),
               [x, packed.values, offsets, np.zeros(geo.output_shape(32), np.float32)])
    assert_close_rel(out, conv3d_reference(x, w, padding=(1, 1, 1)), 1e-5)


def test_work_is_proportional_to_kept_columns(rng):
    """The reduction loop runs over the compacted columns only."""
    in_shape = (1, 32, 4, 8, 8)
    dense = S.compact(structured_weight((32, 32, 3, 3, 3), "dense", 0, rng=rng), (8, 4))
    sparse = S.compact(structured_weight((32, 32, 3, 3, 3), "kgs", 0.8, (8, 4), rng), (8, 4))
    extents = []
    for packed in (dense, sparse):
        func = kgs_conv3d_primfunc(in_shape, packed, padding=(1, 1, 1))
        sch = s_tir.Schedule(func)
        loops = sch.get_loops(sch.get_sblock("kgs_conv3d"))
        extents.append(int(sch.get(loops[-1]).extent))
    assert extents[0] == 32 * 27
    assert extents[1] == sparse.max_columns < 0.35 * extents[0]


#: cases with a padded copy (DHCW needs one), each also run in the DHCW layout
DHCW_CASES = sorted(name for name, case in CASES.items() if any(case[4]))


@pytest.mark.parametrize("rate", [0.0, 0.8])
@pytest.mark.parametrize("case", DHCW_CASES)
def test_dhcw_copy_matches_torch(rng, case, rate):
    """The padded copy in DHCW (every channel's row of a plane and row together), whatever
    the kernel: strided, dilated, W phases, asymmetric padding, batch 2, partial groups;
    every output element written (NaN-filled buffer), whatever the host's CPU config."""
    in_shape, m, kernel, strides, padding, dilation, group = CASES[case]
    w = structured_weight((m, in_shape[1], *kernel), "kgs", rate, group, rng)
    if not w.any():
        w[0, 0, 0, 0, 0] = 1.0
    packed = S.compact(w, group)
    geo = Conv3DGeometry(in_shape, kernel, strides, padding, dilation, copy_layout="DHCW")
    func = kgs_conv3d_primfunc(in_shape, packed, strides, padding, dilation,
                               copy_layout="DHCW")
    assert str(func.attrs["rt3d.copy_layout"]) == "DHCW"
    pad = next(b for b in func.body.block.alloc_buffers if b.name == "kgs_pad")
    assert int(pad.shape[1]) == geo.padded_size
    sch = s_tir.Schedule(func)
    schedules.schedule_kgs_conv3d_cpu(sch)
    x = rng.standard_normal(in_shape).astype(np.float32)
    out = run_kgs(sch.mod, x, packed, geo, m)
    assert_close_rel(out, conv3d_reference(x, w, strides, padding, dilation), 1e-5)


def test_dhcw_offsets_address_the_same_elements(rng):
    """Every kept column's offset, in either layout, addresses the copy element that holds
    the same input value (checked by laying a numbered input out both ways)."""
    in_shape = (1, 5, 3, 4, 6)
    w = structured_weight((8, 5, 3, 1, 1), "kgs", 0.5, (8, 1), rng)
    packed = S.compact(w, (8, 1))
    cdhw = Conv3DGeometry(in_shape, (3, 1, 1), padding=(1, 0, 0))
    dhcw = Conv3DGeometry(in_shape, (3, 1, 1), padding=(1, 0, 0), copy_layout="DHCW")
    assert dhcw.padded_size == 5 * (5 * 4 + 1) * 6  # one spare set of rows
    padded = np.pad(np.arange(5 * 3 * 4 * 6).reshape(5, 3, 4, 6) + 1,
                    ((0, 0), (1, 1), (0, 0), (0, 0)))
    flat_cdhw = padded.reshape(-1)
    flat_dhcw = np.concatenate([padded.transpose(1, 2, 0, 3).reshape(-1), np.zeros(5 * 6)])
    kept = np.arange(packed.values.shape[1])[None, :] < packed.counts[:, None]
    # output depth 1 (depth 0's first tap reads the zero plane in front), row 2, column 3
    a, b = (flat[column_offsets(packed, geo) + geo.copy_strides[1] + 2 * geo.copy_strides[2]
                 + 3][kept] for flat, geo in ((flat_cdhw, cdhw), (flat_dhcw, dhcw)))
    assert a.all() and np.array_equal(a, b)


def test_dhcw_needs_a_padded_non_channelwise_copy(rng):
    from tvm import te

    from rt3d_passes.op import kgs_conv3d_te

    with pytest.raises(ValueError, match="needs a padded copy"):
        Conv3DGeometry((1, 8, 4, 8, 8), (3, 1, 1), copy_layout="DHCW")
    with pytest.raises(ValueError, match="copy_layout must be one of"):
        Conv3DGeometry((1, 8, 4, 8, 8), (3, 1, 1), padding=(1, 0, 0), copy_layout="NDHWC")
    diagonal = np.zeros((8, 8, 3, 1, 1), np.float32)  # channel-wise, as the rewrite sees it
    diagonal[np.arange(8), np.arange(8)] = rng.standard_normal((8, 3, 1, 1))
    depthwise = S.compact(diagonal, (1, 1))
    geo = Conv3DGeometry((1, 8, 4, 8, 8), (3, 1, 1), padding=(1, 0, 0), copy_layout="DHCW")
    assert channel_multiplier(depthwise, geo) == 1
    with pytest.raises(ValueError, match="per channel"):
        column_offsets(depthwise, geo)
    values = te.placeholder(depthwise.values.shape, "float32", name="values")
    offsets = te.placeholder(depthwise.values.shape[:2], "int32", name="offsets")
    x = te.placeholder((1, 8, 4, 8, 8), "float32", name="x")
    with pytest.raises(ValueError, match="per channel"):
        kgs_conv3d_te(x, values, offsets, 8, (3, 1, 1), padding=(1, 0, 0),
                      channel_multiplier=1, copy_layout="DHCW")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_shape=(1, 8, 4, 8)), "NCDHW"),
        (dict(kernel=(3, 3)), "3 values"),
        (dict(padding=(1, 1)), "3 or 6"),
        (dict(strides=(0, 1, 1)), "invalid"),
        (dict(input_shape=(1, 8, 2, 8, 8), kernel=(5, 3, 3)), "does not fit"),
    ],
)
def test_bad_geometry(kwargs, match):
    args = dict(input_shape=(1, 8, 4, 8, 8), kernel=(3, 3, 3), strides=(1, 1, 1),
                padding=(1, 1, 1), dilation=(1, 1, 1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Conv3DGeometry(**args)


def test_offsets_reject_mismatched_weight(rng):
    packed = S.compact(structured_weight((8, 4, 3, 3, 3), "kgs", 0.5, (8, 4), rng), (8, 4))
    with pytest.raises(ValueError, match="input channels or kernel differ"):
        column_offsets(packed, Conv3DGeometry((1, 5, 4, 8, 8), (3, 3, 3)))


@pytest.mark.parametrize("strides,padding,phases", [
    ((1, 2, 2), (1, 1, 1), 2), ((1, 1, 3), (0, 1, 1), 3), ((2, 2, 1), (1, 1, 1), 1),
    ((1, 2, 2), (0, 0, 0), 1),  # no padding: a flat view of the input, no copy to split
])
def test_w_phases_store_every_padded_column_once(strides, padding, phases):
    geo = Conv3DGeometry((1, 2, 3, 5, 11), (1, 3, 3), strides, padding)
    assert geo.w_phases == phases
    row = geo.stored_spatial[2]
    wp = geo.padded_spatial[2]
    assert row % phases == 0 and wp <= row < wp + phases
    stored = geo.stored_column(np.arange(wp))
    assert len(set(stored.tolist())) == wp and stored.max() < row
    # output w at tap kw reads stored position w + (kw // s) of phase kw % s: consecutive in w
    for kw in range(3):
        cols = geo.stored_column(np.arange(geo.output_spatial[2]) * strides[2] + kw)
        assert np.all(np.diff(cols) == (1 if phases > 1 else strides[2]))


def test_depthwise_stride2_matches_torch(rng):
    """X3D / CSN's channel-wise conv with stride 2 (groups = channels, W phases)."""
    import torch

    from rt3d_passes.transform.analysis import ungroup

    in_shape, c = (1, 12, 5, 14, 18), 12
    wg = rng.standard_normal((c, 1, 3, 3, 3)).astype(np.float32)
    packed = S.compact(ungroup(wg, c), (1, 1))
    geo = Conv3DGeometry(in_shape, (3, 3, 3), (1, 2, 2), (1, 1, 1))
    func = kgs_conv3d_primfunc(in_shape, packed, (1, 2, 2), (1, 1, 1))
    x = rng.standard_normal(in_shape).astype(np.float32)
    out = _run(func, host_target(), [x, packed.values, column_offsets(packed, geo),
                                     np.zeros(geo.output_shape(c), np.float32)])
    ref = torch.nn.functional.conv3d(torch.from_numpy(x), torch.from_numpy(wg), stride=(1, 2, 2),
                                     padding=1, groups=c).numpy()
    assert_close_rel(out, ref, 1e-5)


def _is_parallel(sch, loop) -> bool:
    return sch.get(loop).kind == tvm.tirx.ForKind.PARALLEL


@pytest.mark.parametrize("shape,multiplier,strides,sparse", [
    ((1, 20, 4, 9, 11), 1, (1, 1, 1), False),  # per-channel copy inside each task
    ((2, 9, 3, 7, 6), 2, (1, 1, 1), True),     # multiplier 2, pruned taps, 2 x 18 tasks
    ((1, 6, 4, 8, 8), 1, (1, 1, 1), False),    # too few channels: one shared copy
    ((1, 18, 3, 9, 10), 1, (1, 2, 2), False),  # W phases, per channel too
])
def test_channelwise_matches_torch(rng, shape, multiplier, strides, sparse):
    """Depthwise layers (groups = C, M = k * C) read a per-channel padded copy with offsets
    relative to the channel; with enough channels each task pads its own channel (the pad
    runs inside the parallel loop, over the whole channel: no predicate), else one parallel
    copy."""
    import torch

    from rt3d_passes.op import channel_multiplier
    from rt3d_passes.transform.analysis import ungroup
    from schedules.contract import KGS_CHANNELWISE_ATTR
    from schedules.cpu_kgs_conv3d import CHANNEL_TASKS_MIN

    c = shape[1]
    wg = rng.standard_normal((c * multiplier, 1, 3, 3, 3)).astype(np.float32)
    if sparse:
        wg.reshape(-1, 27)[:, rng.permutation(27)[:10]] = 0
    packed = S.compact(ungroup(wg, c), (1, 1))
    geo = Conv3DGeometry(shape, (3, 3, 3), strides, (1, 1, 1))
    assert channel_multiplier(packed, geo) == multiplier
    offsets = column_offsets(packed, geo)
    assert 0 <= offsets.min() and offsets.max() < int(np.prod(geo.stored_spatial))
    func = kgs_conv3d_primfunc(shape, packed, strides, (1, 1, 1))
    assert int(func.attrs[KGS_CHANNELWISE_ATTR]) == multiplier
    sch = s_tir.Schedule(func)
    schedules.schedule_kgs_conv3d_cpu(sch)
    inside = shape[0] * c * multiplier >= CHANNEL_TASKS_MIN
    # inside the task: the pad shares the conv's parallel loop (n x groups)
    pad_outer = sch.get_loops(sch.get_sblock("kgs_pad"))[0]
    conv_outer = sch.get_loops(sch.get_sblock("kgs_conv3d_update"))[0]
    assert _is_parallel(sch, pad_outer)
    assert sch.get(pad_outer).same_as(sch.get(conv_outer)) == inside
    assert "T.where" not in sch.mod.script()
    ex = tvm.compile(sch.mod, target=host_target())
    x = rng.standard_normal(shape).astype(np.float32)
    args = [tvm.runtime.tensor(a) for a in (x, packed.values, offsets,
                                            np.zeros(geo.output_shape(c * multiplier),
                                                     np.float32))]
    ex["main"](*args)
    ref = torch.nn.functional.conv3d(torch.from_numpy(x), torch.from_numpy(wg), stride=strides,
                                     padding=1, groups=c).numpy()
    assert_close_rel(args[-1].numpy(), ref, 1e-5)


def test_channelwise_needs_one_channel_per_group(rng):
    """Grouped (2 channels per group), dense and unpadded layers are not channel-wise."""
    from rt3d_passes.op import channel_multiplier
    from rt3d_passes.transform.analysis import ungroup

    grouped = S.compact(ungroup(rng.standard_normal((8, 2, 3, 3, 3)).astype(np.float32), 4),
                        (1, 1))
    dense = S.compact(structured_weight((8, 8, 3, 3, 3), "dense", 0, rng=rng), (8, 4))
    depthwise = S.compact(ungroup(rng.standard_normal((8, 1, 3, 3, 3)).astype(np.float32), 8),
                          (1, 1))
    padded = Conv3DGeometry((1, 8, 4, 6, 6), (3, 3, 3), padding=(1, 1, 1))
    assert channel_multiplier(grouped, padded) == 0
    assert channel_multiplier(dense, padded) == 0
    assert channel_multiplier(depthwise, padded) == 1
    assert channel_multiplier(depthwise, Conv3DGeometry((1, 8, 4, 6, 6), (3, 3, 3))) == 0


def test_partial_group_cropped_in_the_write_back(rng):
    """A partial last output group (M = 13, groups of 8) is cropped by the register tile's
    write-back, inside the parallel loop, not by a second pass over a whole-group copy."""
    in_shape = (1, 8, 3, 6, 16)
    w = structured_weight((13, 8, 1, 3, 3), "kgs", 0.5, (8, 4), rng)
    packed = S.compact(w, (8, 4))
    geo = Conv3DGeometry(in_shape, (1, 3, 3), padding=(0, 1, 1))
    sch = s_tir.Schedule(kgs_conv3d_primfunc(in_shape, packed, padding=(0, 1, 1)))
    schedules.schedule_kgs_conv3d_cpu(sch)
    crop_outer = sch.get_loops(sch.get_sblock("kgs_crop"))[0]
    assert _is_parallel(sch, crop_outer)
    assert sch.get(crop_outer).same_as(
        sch.get(sch.get_loops(sch.get_sblock("kgs_conv3d_update"))[0]))
    ex = tvm.compile(sch.mod, target=host_target())
    x = rng.standard_normal(in_shape).astype(np.float32)
    args = [tvm.runtime.tensor(a) for a in (x, packed.values, column_offsets(packed, geo),
                                            np.zeros(geo.output_shape(13), np.float32))]
    ex["main"](*args)
    assert_close_rel(args[-1].numpy(), conv3d_reference(x, w, padding=(0, 1, 1)), 1e-5)


@pytest.mark.parametrize("shape,kernel,padding,rows", [
    ((1, 48, 13, 20, 20), (1, 1, 1), (0, 0, 0), (1, 48, 1, 65, 80)),   # X3D-S's 20x20 maps
    ((2, 8, 4, 10, 10), (1, 1, 1), (0, 0, 0), (2, 8, 1, 5, 80)),      # X3D-XS's 10x10
    ((1, 8, 13, 10, 10), (1, 1, 1), (0, 0, 0), None),   # 1300 positions: 16 does not divide
    ((1, 8, 4, 16, 16), (1, 1, 1), (0, 0, 0), None),    # W a multiple of 8 already
    ((1, 8, 4, 20, 20), (1, 1, 1), (0, 1, 1), None),    # padded: not a plain GEMM
    ((1, 8, 4, 20, 20), (3, 1, 1), (1, 0, 0), None),    # not pointwise
])
def test_pointwise_rows(shape, kernel, padding, rows):
    """Pointwise convs on maps whose W is not vector-friendly run on rows of whole vectors
    (a multiple of 16 positions, at most 128, dividing D * H * W)."""
    from rt3d_passes.op import pointwise_rows

    found = pointwise_rows(Conv3DGeometry(shape, kernel, padding=padding))
    assert found == rows
    if rows is not None:
        assert rows[3] * rows[4] == np.prod(shape[2:]) and rows[4] % 16 == 0 and rows[4] <= 128


@pytest.mark.parametrize("shape,kernel,strides,padding,lanes,extent", [
    ((1, 8, 4, 28, 28), (3, 3, 3), (1, 1, 1), (1, 1, 1), 8, 32),    # C3D conv3: 7 lanes -> 8
    ((1, 8, 2, 14, 14), (3, 3, 3), (1, 1, 1), (1, 1, 1), 8, 16),    # C3D conv4
    ((1, 8, 2, 14, 14), (3, 3, 3), (1, 1, 1), (1, 1, 1), 4, 16),    # 4 lanes: 16 / 14 = 8/7
    ((1, 8, 2, 10, 10), (3, 3, 3), (1, 1, 1), (1, 1, 1), 8, 0),     # 16 / 10 wastes too much
    ((1, 8, 2, 56, 56), (3, 3, 3), (1, 1, 1), (1, 1, 1), 8, 0),     # whole vectors already
    ((1, 8, 2, 7, 7), (3, 3, 3), (1, 1, 1), (1, 1, 1), 8, 8),       # C3D conv5: 7 -> 8
    ((1, 8, 2, 6, 6), (3, 3, 3), (1, 1, 1), (1, 1, 1), 8, 0),       # 8 / 6 wastes too much
    ((1, 8, 2, 20, 20), (3, 3, 3), (1, 1, 1), (1, 1, 1), 8, 0),     # 24 / 20 wastes too much
    ((1, 8, 2, 28, 28), (1, 1, 1), (1, 1, 1), (0, 0, 0), 8, 0),     # no padded copy
    ((1, 8, 2, 56, 56), (1, 3, 3), (1, 2, 2), (0, 1, 1), 8, 32),    # W phases (stride 2)
    ((1, 8, 2, 16, 16), (1, 3, 3), (1, 2, 2), (0, 1, 1), 8, 0),     # 8 wide: whole already
    ((1, 8, 4, 28, 28), (3, 3, 3), (1, 1, 1), (1, 1, 1), 0, 0),     # target keeps its rows
])
def test_whole_vector_rows(shape, kernel, strides, padding, lanes, extent):
    """Rows are computed as whole vectors only where that over-computes at most 8/7 of the
    row and a padded copy (W phases too) is read."""
    from rt3d_passes.op import whole_vector_rows

    geo = Conv3DGeometry(shape, kernel, strides, padding)
    assert whole_vector_rows(geo, lanes) == extent


@pytest.mark.parametrize("scheme,rate,m", [("kgs", 0.0, 16), ("kgs", 0.7, 13),
                                           ("vanilla", 0.5, 16)])
def test_whole_vector_rows_match_torch(rng, scheme, rate, m):
    """Rows computed 16 wide and cropped to 14 (and a partial output group cropped in the
    same write-back): the padded copy's extra zero channel keeps every read in bounds and
    the output equals PyTorch's; every output element is written (NaN-filled buffer)."""
    in_shape = (2, 12, 3, 14, 14)
    w = structured_weight((m, 12, 3, 3, 3), scheme, rate, (8, 4), rng)
    if not w.any():
        w[0, 0, 1, 1, 1] = 1.0
    packed = S.compact(w, (8, 4))
    geo = Conv3DGeometry(in_shape, (3, 3, 3), padding=(1, 1, 1))
    func = kgs_conv3d_primfunc(in_shape, packed, padding=(1, 1, 1), row_extent=16)
    pad = next(b for b in func.body.block.alloc_buffers if b.name == "kgs_pad")
    assert int(pad.shape[1]) == 13 * 5 * 16 * 16  # 12 channels and a zero one, 5x16x16 each
    sch = s_tir.Schedule(func)
    schedules.schedule_kgs_conv3d_cpu(sch)
    # the crop runs in the register tile's write-back (no second pass over the output)
    crop_outer = sch.get_loops(sch.get_sblock("kgs_crop"))[0]
    assert sch.get(crop_outer).same_as(
        sch.get(sch.get_loops(sch.get_sblock("kgs_conv3d_update"))[0]))
    x = rng.standard_normal(in_shape).astype(np.float32)
    out = run_kgs(sch.mod, x, packed, geo, m)
    assert_close_rel(out, conv3d_reference(x, w, padding=(1, 1, 1)), 1e-5)


@pytest.mark.parametrize("copy_layout", ["CDHW", "DHCW"])
@pytest.mark.parametrize("in_shape,strides,dilation,extent", [
    ((2, 12, 3, 28, 28), (1, 2, 2), (1, 1, 1), 16),  # R(2+1)D's strided 1x3x3: 14 -> 16
    ((1, 12, 2, 13, 42), (1, 1, 3), (1, 1, 2), 16),  # 3 phases, dilated: 14 -> 16
])
def test_whole_vector_rows_with_w_phases_match_torch(rng, copy_layout, in_shape, strides,
                                                     dilation, extent):
    """A W-strided conv's copy split into phases, rows computed as whole vectors: the reads
    past a phase's end stay in the copy (its spare zero channel or rows) and only cropped
    positions see them; every output element written (NaN-filled buffer)."""
    from rt3d_passes.op import whole_vector_rows

    w = structured_weight((13, in_shape[1], 1, 3, 3), "kgs", 0.5, (8, 4), rng)
    w[0, 0, 0, 1, 1] = 1.0
    packed = S.compact(w, (8, 4))
    geo = Conv3DGeometry(in_shape, (1, 3, 3), strides, (0, 1, 1), dilation, copy_layout)
    assert geo.w_phases == strides[2] and whole_vector_rows(geo, 8) == extent
    func = kgs_conv3d_primfunc(in_shape, packed, strides, (0, 1, 1), dilation,
                               row_extent=extent, copy_layout=copy_layout)
    sch = s_tir.Schedule(func)
    schedules.schedule_kgs_conv3d_cpu(sch)
    x = rng.standard_normal(in_shape).astype(np.float32)
    out = run_kgs(sch.mod, x, packed, geo, 13)
    assert_close_rel(out, conv3d_reference(x, w, strides, (0, 1, 1), dilation), 1e-5)


def test_whole_vector_rows_need_a_padded_copy(rng):
    """Longer rows read past a row's end: only a padded copy read by a non-channel-wise
    operator (its copy gets the extra zero channel) allows that; a flat input or a
    channel-wise operator are errors."""
    from tvm import te

    from rt3d_passes.op import kgs_conv3d_te

    in_shape = (1, 8, 3, 14, 14)
    depthwise = S.compact(structured_weight((8, 1, 3, 3, 3), "dense", 0.0, (1, 1), rng), (1, 1))
    values = te.placeholder(depthwise.values.shape, "float32", name="values")
    offsets = te.placeholder(depthwise.values.shape[:2], "int32", name="offsets")
    x = te.placeholder(in_shape, "float32", name="x")
    with pytest.raises(ValueError, match="channel multiplier 1"):
        kgs_conv3d_te(x, values, offsets, 8, (3, 3, 3), padding=(1, 1, 1),
                      channel_multiplier=1, row_extent=16)
    flat = te.placeholder((1, 8 * 3 * 14 * 14), "float32", name="x")
    dense = S.compact(structured_weight((8, 8, 1, 1, 1), "kgs", 0.0, (8, 4), rng), (8, 4))
    values = te.placeholder(dense.values.shape, "float32", name="values")
    offsets = te.placeholder(dense.values.shape[:2], "int32", name="offsets")
    with pytest.raises(ValueError, match="flat input"):
        kgs_conv3d_te(flat, values, offsets, 8, (1, 1, 1), input_shape=in_shape,
                      row_extent=16)
