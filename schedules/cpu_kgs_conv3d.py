"""CPU rule of the KGS sparse conv3d: x86-64 (AVX2 / AVX-512) and aarch64 (Kryo, NEON), one
schedule with a per-target :class:`CPUConfig` (vector lanes, accumulator registers).

All ``g_m`` output channels of a group share the group's kept columns; the kernel keeps a
register tile of ``g_m`` channels x ``Rh`` rows x ``R`` positions along W in accumulators for
the whole reduction, and per kept column loads one index. Two vector axes, a structural choice
(one design space each):

* ``"w"`` (default for unit stride along W): vectors run along W. Per column: one contiguous
  input vector load per row, ``g_m`` weight broadcasts from one cache line, ``g_m * Rh`` vector
  FMAs; accumulators store straight into the NCDHW output.
* ``"m"``: vectors run over the ``g_m`` channels. Per column: one weight vector, ``R * Rh``
  input broadcasts (``vfmadd231ps ...{1to8}`` / ``fmla v.4s, v.4s, v.s[i]``); the output
  store is a transpose. Needed when W is strided (the input row is not contiguous).

and two loop orders (rows outside groups, or groups outside rows; see
:func:`rows_outer_default`). On AVX2 the tile along ``"w"`` holds half a group's channels
(:attr:`CPUConfig.channel_tile`: 4 broadcasts and 2 input loads per 8 FMAs) and a group's
columns run in 32-column blocks outside the W and channel tiles (:func:`column_block`; the
rewrite pads the columns to a multiple, :func:`column_multiple`). A partial last output
group is cropped by the write-back of the register tile; a channel-wise operator with enough
channels pads each channel inside the task that convolves it (:data:`CHANNEL_TASKS_MIN`).

Knobs (``sample_perfect_tile`` / ``sample_categorical``; fixed decisions give the default):
``R`` and ``Rh`` (the W and H tiles) and the auto-unroll step of the parallel loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from tvm import s_tir, tirx
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule
from tvm.target import Target, codegen

from .contract import (
    KGS_CHANNELWISE_ATTR,
    KGS_CONV3D_ATTR,
    KGS_CONV3D_BLOCK,
    KGS_COPY_LAYOUT_ATTR,
    KGS_GEOMETRY_ATTR,
    KGS_PAD_BLOCK,
    KGS_PADDED_ATTR,
    KGS_STRIDES_ATTR,
    KGS_W_PHASES_ATTR,
    func_attr,
    is_kgs_conv3d,
)
from .cpu_channelwise_conv3d import is_channel_blocked, schedule_channelwise_conv3d_cpu
from .utils import (
    largest_divisor,
    place_write_back,
    producers_named,
    schedule_flat_pad,
    tile,
    unroll_knob,
)

__all__ = [
    "AVX2",
    "AVX512",
    "AVX512_YMM",
    "CHANNEL_BLOCK_COPY_BYTES",
    "COLUMN_BLOCK_MIN",
    "COLUMN_BLOCK_MIN_TEMPORAL",
    "COLUMN_PAD_SHARE",
    "NEON",
    "POINTWISE_TILE_POSITIONS",
    "ROW_TASKS_MIN",
    "WIDE_VECTORS_MATTR",
    "CPUConfig",
    "KGSConv3DCPU",
    "accumulators",
    "channel_blocked",
    "column_block",
    "column_block_min",
    "column_multiple",
    "copy_layout",
    "cpu_config",
    "depth_rows",
    "is_arm",
    "is_temporal",
    "register_tile",
    "row_vector_lanes",
    "rows_outer_default",
    "schedule_cpu",
    "schedule_kgs_conv3d_cpu",
    "stream_bytes",
    "tile_channels",
    "tiles_channels",
    "untuned_tile",
    "vector_axis_default",
    "w_is_contiguous",
    "wide_vectors",
    "winograd_cost_config",
    "winograd_transform_byte_cost",
]


@dataclasses.dataclass(frozen=True)
class CPUConfig:
    """What the CPU schedule needs to know of a target's vector unit.

    Parameters
    ----------
    name : str
    lanes : int
        fp32 lanes of the vectors the code uses.
    max_registers : int
        Vector registers the accumulator tile may take (the rest hold the loaded weight /
        input vectors and broadcasts).
    min_tail : int
        Fewest lanes a W tile may put in a part-filled vector after whole ones (see
        :func:`register_tile`); 1 allows any.
    column_block : int
        Columns per block of a group's column loop (see :func:`column_block`), and the
        multiple the KGS rewrite pads every group's columns to (:func:`column_multiple`);
        0: one loop, no padding.
    whole_rows : bool
        Output rows that are no whole vectors are computed as whole ones and cropped (see
        :func:`row_vector_lanes`).
    channel_tile : int
        Channels of a group the accumulator tile holds along ``"w"`` (the column loop then
        runs once per tile of channels; see :func:`tile_channels`); 0: the whole group.
    dhcw_copy : bool
        Temporal convs (``Kd x 1 x 1``) keep their padded copy in the DHCW layout (see
        :func:`copy_layout`).
    channel_blocks : bool
        Channel-wise layers whose groups share their taps keep a channel-blocked padded copy
        and vectorize over its channels (see :func:`copy_layout` and
        :mod:`schedules.cpu_channelwise_conv3d`).
    transform_byte_cost : float
        What the Winograd cost model (``rt3d_passes.transform.algorithm``) charges per byte
        of the Winograd operator's transformed tensors, in vector-MAC equivalents
        (:func:`winograd_transform_byte_cost`).
    """

    name: str
    lanes: int
    max_registers: int
    min_tail: int = 1
    column_block: int = 0
    whole_rows: bool = False
    channel_tile: int = 0
    dhcw_copy: bool = False
    channel_blocks: bool = False
    transform_byte_cost: float = 0.0


#: AVX2: 16 vector registers, 12 for accumulators. A W tile of 8 + 2 positions (10-wide: X3D's
#: 10x10 and 20x20 depthwise maps) ran 3-5x slower on Zen 3 than a 5-wide one (X3D-S's
#: 432-channel 10x10 depthwise conv: 4.23 -> 0.83 ms; 216 channels on 20x20: 5.43 -> 1.68):
#: a part-filled vector needs at least half its lanes. The accumulator tile holds 4 of a
#: group's 8 channels x 2 rows x 8 positions: per column 2 input loads and 4 broadcasts feed
#: 8 FMAs, where 8 channels x 8 positions needed 1 load and 8 broadcasts (broadcasts, not
#: FMAs, bounded the loop). With column loops in blocks of 32 (columns padded to a multiple),
#: interleaved on Zen 3, C3D dense conv2-conv4b: 44-59 -> 64-82 G MAC/s; at the paper's
#: preset (conv3a/3b/4b 80 %): 30-50 -> 52-66. Winograd's transformed tensors cost 5.5
#: vector-MACs a byte (see :func:`winograd_transform_byte_cost`).
AVX2 = CPUConfig("x86-avx2", lanes=8, max_registers=12, min_tail=4, column_block=32,
                 whole_rows=True, channel_tile=4, dhcw_copy=True, channel_blocks=True,
                 transform_byte_cost=5.5)
#: AVX-512 with 512-bit vectors (zmm): 16 lanes, 28 of the 32 registers for accumulators.
#: The target must lift LLVM's 256-bit preference (``-prefer-256-bit`` in ``mattr``, which
#: :func:`rt3d_passes.target.host_target` sets; :func:`cpu_config` reads it): otherwise LLVM
#: splits every 16-lane vector in two. A W tile is at most one vector or whole vectors
#: (``min_tail = 16``): 28 = 16 + 12 lanes was legalized lane by lane through the stack, 25x
#: slower (C3D conv2 dense 2513 ms). Interleaved on an Emerald Rapids Xeon (2 threads, 2
#: 512-bit FMA ports: a 256-bit vector reaches half the FMA peak), against :data:`AVX512_YMM`:
#: C3D dense conv1-conv4b 1.25-1.42x faster (conv2 115 -> 153 G MAC/s, conv4b 65 -> 84), at
#: 85 % KGS 1.15-1.30x; conv5's 7-wide maps unchanged. Temporal convs keep the DHCW copy
#: (:func:`copy_layout`), as on AVX2: whole models at their presets, interleaved there,
#: R(2+1)D-18 1.06-1.07x faster (123.6 -> 116.4, 118.9 -> 111.2 ms), SlowFast-R50 1.05x,
#: Slow-R50 1.04x. Channel blocks of 8 instead of 16 lanes: X3D-S and X3D-XS 3 % slower;
#: vectors over a group's 8 channels where a W row fills less than a vector (as on AVX2):
#: R(2+1)D-18 0.93x, Slow-R50 0.94x, X3D-S 0.91x.
AVX512 = CPUConfig("x86-avx512", lanes=16, max_registers=28, min_tail=16, dhcw_copy=True,
                   channel_blocks=True, transform_byte_cost=5.5)
#: AVX-512 compiled with LLVM's 256-bit preference (``znver4``, whose 512-bit operations are
#: two 256-bit halves, and any AVX-512 target without ``-prefer-256-bit``): 8 lanes, 24 of
#: the 32 registers for accumulators. Measured on Zen 4.
AVX512_YMM = CPUConfig("x86-avx512-ymm", lanes=8, max_registers=24, channel_blocks=True,
                       transform_byte_cost=5.5)
#: aarch64 NEON (every Kryo core): 32 registers of 4 fp32, 3/4 of them for accumulators
#: (vectorized over a group of ``g_m = 4`` channels it is the by-element
#: ``fmla v.4s, v.4s, v.s[i]`` form; along W, 4 positions per register). The Winograd traffic
#: cost is x86's (not measured on a phone).
NEON = CPUConfig("arm-neon", lanes=4, max_registers=24, transform_byte_cost=5.5)


def is_arm(target: Target) -> bool:
    return "arm_cpu" in target.keys or "aarch64" in str(target.attrs.get("mtriple", ""))


def cpu_config(target: Target | None = None) -> CPUConfig:
    """The config of ``target`` (the current target when None; AVX2 without any): on AVX-512,
    :data:`AVX512` when the target lifts LLVM's 256-bit preference, else :data:`AVX512_YMM`."""
    target = target or Target.current(allow_none=True)
    if target is None:
        return AVX2
    if is_arm(target):
        return NEON
    if codegen.target_has_features(["avx512f"], target):
        return AVX512 if wide_vectors(target) else AVX512_YMM
    return AVX2


#: The ``mattr`` entry that lifts LLVM's preference for 256-bit vectors (see :data:`AVX512`).
WIDE_VECTORS_MATTR = "-prefer-256-bit"


def wide_vectors(target: Target) -> bool:
    """Whether ``target`` lets LLVM use 512-bit registers for 16-lane vectors: its ``mattr``
    holds :data:`WIDE_VECTORS_MATTR`."""
    return WIDE_VECTORS_MATTR in [str(a) for a in target.attrs.get("mattr", [])]


def _config_of_cpu(target: Target | None) -> CPUConfig | None:
    """:func:`cpu_config` of a CPU ``target``; None for a GPU target or none at all."""
    return None if target is None or "cpu" not in target.keys else cpu_config(target)


def winograd_cost_config(target: Target | None) -> CPUConfig | None:
    """The config the Winograd cost model sizes a layer for: :func:`cpu_config` of a CPU
    ``target`` (its default without one), None for a GPU (which runs no Winograd)."""
    return cpu_config(None) if target is None else _config_of_cpu(target)


#: Largest padded copy of one channel block (bytes) a channel-wise layer is blocked with: the
#: copy is written and read back inside one task, so it should stay in L2. X3D-S's stride-2
#: layer on 80x80 maps (3.2 MB a block) ran 1.4x slower blocked; its 40x40 ones (0.85 MB)
#: faster or as fast.
CHANNEL_BLOCK_COPY_BYTES = 1 << 20


def channel_blocked(config: CPUConfig | None, output_w: int, padded_volume: int) -> bool:
    """Whether a channel-wise layer that can be blocked (multiplier 1, every group the same
    taps) keeps a channel-blocked copy (:mod:`schedules.cpu_channelwise_conv3d`) on a CPU
    with ``config``: when its output rows fill no whole vectors (``output_w`` no multiple of
    the lanes: along W the KGS schedule then wastes lanes) and a block's padded copy
    (``padded_volume`` positions) fits :data:`CHANNEL_BLOCK_COPY_BYTES`.

    Zen 3, interleaved, X3D-S's and ir-CSN-50's depthwise 3x3x3 layers, CDHW -> blocked:
    10- and 20-wide maps 0.86 -> 0.47 ms (108 channels, 13x20x20), 0.45 -> 0.21 (216 on
    13x10x10), 0.28 -> 0.13 (432 on 13x5x5), their stride-2 layers 1.06 -> 0.86, 0.53 ->
    0.38, 0.30 -> 0.21; 4-wide maps 0.061 -> 0.044 and 0.050 -> 0.040; maps whose W is a
    multiple of 8 lost (40x40 0.67 -> 1.00, ir-CSN's 32x32 and 16x16 0.33 -> 0.38, stride 2
    0.19 -> 0.30) or tied (8x8)."""
    return (config is not None and config.channel_blocks and output_w % config.lanes != 0
            and padded_volume * config.lanes * 4 <= CHANNEL_BLOCK_COPY_BYTES)


def is_temporal(kernel: Sequence[int]) -> bool:
    """Whether ``kernel`` is a temporal conv's: ``Kd x 1 x 1`` with ``Kd > 1``."""
    return len(kernel) == 3 and int(kernel[0]) > 1 and int(kernel[1]) == int(kernel[2]) == 1


def copy_layout(target: Target | None, kernel: Sequence[int], padded: bool,
                channelwise: bool, blockable: bool = False, output_w: int = 0,
                padded_volume: int = 0) -> str:
    """Layout of a KGS layer's padded copy on ``target`` (``rt3d_passes.op.COPY_LAYOUTS``):
    ``"CDHW8c"`` (blocks of the config's lanes) for a padded channel-wise layer that can be
    blocked (``blockable``: multiplier 1, every group the same taps) where
    :func:`channel_blocked` says so (``output_w``, ``padded_volume``: its output W and padded
    positions per channel); ``"DHCW"`` for a temporal conv (kernel ``Kd x 1 x 1``,
    ``Kd > 1``) that has a padded copy and is not channel-wise, on CPUs whose config says so
    (:attr:`CPUConfig.dhcw_copy`); else ``"CDHW"``.

    Per kept column, an output row of a temporal conv reads one row of one channel and depth
    plane: in CDHW hundreds of short lines 12.5 KB and more apart for each task, which the
    caches' prefetchers do not follow; in DHCW the rows of every channel at the task's few
    planes lie together. Zen 3 (AVX2), 2 threads, interleaved, dense, R(2+1)D-18's 3x1x1
    layers: 144 -> 64 channels on 16x56x56 26.7 -> 23.0 ms, 288 on 8x28x28 11.4 -> 9.7, 576
    on 4x14x14 6.1 -> 4.6, 1152 on 2x7x7 4.2 -> 2.3; KGS at 70 % 1.04-1.09x. Spatial layers
    gained or lost (C3D's 3x3x3 0.88-1.16x, 1x3x3 at stride 1 0.95x): they keep CDHW."""
    config = _config_of_cpu(target)
    if padded and channelwise and blockable and channel_blocked(config, output_w,
                                                               padded_volume):
        return f"CDHW{config.lanes}c"
    if config is None or not config.dhcw_copy or not padded or channelwise \
            or not is_temporal(kernel):
        return "CDHW"
    return "DHCW"


def winograd_transform_byte_cost(target: Target | None) -> float:
    """What the Winograd cost model charges per byte of the transformed input and of the
    GEMMs' output, which the Winograd operator writes to memory and reads back once each:
    :attr:`CPUConfig.transform_byte_cost` of a CPU ``target`` (of :func:`cpu_config`'s
    default without one), 0 for a GPU (which runs no Winograd).

    Session 11 (Zen 3, scalar transforms) added the term for AVX2 only: R(2+1)D-18's layer1
    (64 -> 144 channels on 16x56x56, 188 MB of transformed tensors for F(4x4)) ran 1.14x
    slower than direct there, 1.93x faster on Zen 4, whose constants were fitted without it.
    With vectorized transforms (session 12) the transforms no longer hide the traffic: every
    CPU config charges it at the memory's cost (5.5, as the weights'); then the model picks
    the measured fastest variant on all 12 layers of ``benchmarks/winograd_bench.py`` on Zen 3,
    the same picks as Zen 4's measured best, and keeps C3D's 3-channel conv1 direct (F(4x4)
    0.79x on Zen 3), which with no charge it would have taken."""
    config = winograd_cost_config(target)
    return 0.0 if config is None else config.transform_byte_cost


def row_vector_lanes(target: Target | None) -> int:
    """Lanes the KGS operator's output rows should be whole vectors of on ``target``, 0 for
    rows as they are (``rt3d_passes.op.whole_vector_rows``): 8 on x86 CPUs with AVX2 and no
    AVX-512, where a part-filled vector along W (C3D's 28- and 14-wide maps give 7 lanes) is
    assembled from three loads and two shuffles and stored lane by lane, while its
    accumulators are only 8 (C3D conv3a/conv3b at the paper's preset: 1.26-1.32x faster
    computing 32-wide rows, interleaved on Zen 3). AVX-512 (whose W tiles are whole 16-lane
    vectors or one vector of at most 16 lanes: 14 on C3D's maps), NEON and GPU targets keep
    their rows (:attr:`CPUConfig.whole_rows`): with 512-bit vectors on an Emerald Rapids Xeon
    rows of 32 and 64 ran C3D's conv2/conv3a dense 1.10x faster but conv3b 1.28x slower, and
    at 85 % KGS 0.97-1.02x."""
    config = _config_of_cpu(target)
    return config.lanes if config is not None and config.whole_rows else 0


#: Most padding :func:`column_multiple` adds, as a share of the columns.
COLUMN_PAD_SHARE = 0.125
#: Fewest columns a group's loop is blocked with (:func:`column_block`), temporal convs aside
#: (:data:`COLUMN_BLOCK_MIN_TEMPORAL`). Session 14, Zen 3, interleaved, 256 -> 128 (KGS at
#: 70 %): R(2+1)D-18's 1x3x3 64 -> 144 on 16x56x56 (about 170 columns, padded to 192) 24.3
#: -> 22.2 ms, its stride-2 64 -> 230 13.6 -> 11.3, Slow-R50's 64 -> 64 on 8x32x32 1.89 ->
#: 1.80, pointwise 512 -> 128 on 2x8x8 0.060 -> 0.052, dense 128 -> 512 on 2x8x8 0.119 ->
#: 0.106; the dense 64 -> 64 (576 columns) unchanged. Pointwise layers on large maps take no
#: blocks at any count (:data:`POINTWISE_TILE_POSITIONS`: ir-CSN-50's 64 -> 256 on 8x32x32
#: ran 4.4 -> 7.0 ms in blocks).
COLUMN_BLOCK_MIN = 128
#: Fewest columns a temporal conv's (``Kd x 1 x 1``, ``Kd > 1``) loop is blocked with: a
#: 144 -> 64 3x1x1 layer on 16x56x56 at 70 % (about 130 columns) ran 11.5 -> 15.1 ms in
#: blocks (Zen 3, interleaved): each column reads one short row of its own channel and plane,
#: and a block's accumulators are stored and reloaded per block.
COLUMN_BLOCK_MIN_TEMPORAL = 256


def column_block_min(kernel: Sequence[int] | None) -> int:
    """:data:`COLUMN_BLOCK_MIN_TEMPORAL` for a temporal ``kernel``, else
    :data:`COLUMN_BLOCK_MIN` (also for None: not known)."""
    return COLUMN_BLOCK_MIN_TEMPORAL if kernel is not None and is_temporal(kernel) \
        else COLUMN_BLOCK_MIN


def column_block(columns: int, block: int, kernel: Sequence[int] | None = None) -> int:
    """Columns per block of a group's column loop: ``block`` when the group has a multiple
    of it, and at least :func:`column_block_min` columns for its ``kernel``; 0 to keep one
    loop.

    A blocked loop runs each block over every W tile and channel tile of the row, the row's
    accumulators in a local buffer, so the input lines a block reads stay in L1 across the
    tiles. On Zen 3 (AVX2), interleaved, with the 4-channel tile: 32-column blocks against
    one loop, C3D conv3b dense (6912 columns) 52 -> 67 G MAC/s, conv4b at 80 % (2764 columns,
    padded to 2784) 32 -> 54, conv2 at 85 % (260 -> 288) 45 -> 58; 64-column blocks ran as
    fast on the large layers and slower on the small ones, a block that does not divide the
    columns (a predicate on every column) 2-3x slower: the rewrite pads the columns instead
    (:func:`column_multiple`)."""
    if block <= 0 or columns % block or columns < column_block_min(kernel):
        return 0
    return block


def column_multiple(target: Target | None, columns: int,
                    kernel: Sequence[int] | None = None) -> int:
    """The multiple the KGS rewrite pads a group's ``columns`` (the longest group's count)
    to on ``target``, 1 for none: :attr:`CPUConfig.column_block` on CPU targets that block
    their column loops (:func:`column_block`, for ``kernel``), when the padding adds at most
    :data:`COLUMN_PAD_SHARE` of the columns (zero weights at a valid address: computed, not
    counted)."""
    config = _config_of_cpu(target)
    block = 0 if config is None else config.column_block
    if block <= 0 or columns < column_block_min(kernel):
        return 1
    pad = -columns % block
    return block if pad <= COLUMN_PAD_SHARE * columns else 1


#: Pointwise (1x1x1) layers take the channel tile and column blocks only on maps of at most
#: this many output positions: ir-CSN-50's on 2x8x8 and 1x4x4 maps ran 1.2-1.6x faster with
#: them, those on 8x32x32 and 4x16x16 maps and X3D-XS's on 4x10x10 0.7-0.9x as fast (Zen 3,
#: interleaved, per layer); every layer with more taps gained.
POINTWISE_TILE_POSITIONS = 256


def tiles_channels(kernel: Sequence[int], positions: int) -> bool:
    """Whether a layer with ``kernel`` and ``positions`` output positions per batch item takes
    :attr:`CPUConfig.channel_tile` and :attr:`CPUConfig.column_block` (see
    :data:`POINTWISE_TILE_POSITIONS`)."""
    return math.prod(int(k) for k in kernel) > 1 or positions <= POINTWISE_TILE_POSITIONS


def tile_channels(group_m: int, tile: int) -> int:
    """Channels of a ``group_m``-channel group one accumulator tile holds along ``"w"``:
    ``tile`` when it splits the group into equal tiles, else the whole group."""
    return tile if 0 < tile < group_m and group_m % tile == 0 else group_m


#: Rows go outside groups when the compacted weights are at most this large. Rows outside
#: read each input row once for all groups instead of once per group; measured on C3D's
#: layers (schedule_bench) it wins for every pruned layer, even with weights of a few MB
#: streaming from L3, and ties on dense layers until their weights far exceed the caches.
ROWS_OUTER_WEIGHT_BYTES = 4 * 1024 * 1024
#: Inputs (padded copies) up to this size stay in a core's L2 cache while the groups sweep
#: them, so weights over :data:`ROWS_OUTER_WEIGHT_BYTES` keep groups outside however few
#: bytes :func:`stream_bytes` gives rows outside: C3D's conv5a at 85 % KGS (a 0.66 MB copy)
#: ran 1.4x slower with rows outside, and R(2+1)D-18 3 % slower (Emerald Rapids).
GROUPS_OUTER_INPUT_BYTES = 1024 * 1024
#: Rows outside groups: fewer row tiles than this, and the groups join the parallel loop
#: (tasks of one row tile and one group). Slow-R50's res5 pointwise convs (8x4x4 maps: one
#: row of 128 positions) ran on one thread: 512 -> 2048, Zen 3, 2 threads, interleaved,
#: dense 3.35 -> 1.64 ms, KGS at 70 % 1.70 -> 0.88; whole models, sparse / dense: Slow-R50
#: 88.8 -> 83.8 / 192.5 -> 186.7 ms, SlowFast-R50 110.5 -> 105.5 / 239.4 -> 237.2,
#: ir-CSN-50 unchanged.
ROW_TASKS_MIN = 8
#: Vector registers one accumulator row along W may take (see :func:`register_tile`).
MAX_W_REGISTERS = 2


#: A channel-wise operator pads each channel in the task that convolves it (instead of one
#: parallel copy of the whole input, written to memory and read back) when it has at least
#: this many channels to share out among the threads (the tasks are then whole channels).
#: Interleaved A/B on X3D-S's depthwise layers, one copy -> per channel: 80x80 stride 2
#: 2.32 -> 1.47 ms, 40x40 stride 2 0.76 -> 0.57, 40x40 0.62 -> 0.56, 20x20 0.46 -> 0.41,
#: 10x10 0.26 -> 0.20, 5x5 0.25 -> 0.17.
CHANNEL_TASKS_MIN = 16

#: Groups go outside rows when a group reads at most this many input channels' worth of
#: kernel taps (depthwise and narrow grouped convs: each group reads only its own channels, so
#: sweeping one group's rows keeps its input in cache; rows outside re-read every depth plane
#: from memory once per kernel tap along D). X3D-S's depthwise layers: 1.9-3x faster.
GROUPS_OUTER_CHANNELS = 4


def rows_outer_default(sch: s_tir.Schedule, row_tiles: int | None = None) -> bool:
    """Heuristic loop order: rows outside groups unless the compacted weights are large or
    each group reads only a few input channels (depthwise / grouped convs).

    Weights over :data:`ROWS_OUTER_WEIGHT_BYTES` still go inside the rows when the input is
    over :data:`GROUPS_OUTER_INPUT_BYTES` and, given the ``row_tiles`` of the register tile,
    streaming the weights once per row tile moves fewer bytes than reading the input once per
    group (:func:`stream_bytes`)."""
    reads = [r.source for r in sch.get(sch.get_sblock(KGS_CONV3D_BLOCK)).reads]
    values = next(buf for buf in reads if len(buf.shape) == 3)
    groups, columns, group_m = (int(v) for v in values.shape)
    kernel = _kernel(sch)
    if groups > 1 and columns <= GROUPS_OUTER_CHANNELS * kernel[0] * kernel[1] * kernel[2]:
        return False
    weight_bytes = 4 * groups * columns * group_m
    if weight_bytes <= ROWS_OUTER_WEIGHT_BYTES:
        return True
    # the activations it reads: the padded copy, or the input (the other float buffer)
    input_bytes = max(math.prod(int(v) for v in buf.shape) * 4 for buf in reads
                      if len(buf.shape) != 3 and str(buf.dtype).startswith("float"))
    if row_tiles is None or input_bytes <= GROUPS_OUTER_INPUT_BYTES:
        return False
    rows, cols = stream_bytes(weight_bytes, input_bytes, groups, row_tiles)
    return rows <= cols


def stream_bytes(weight_bytes: int, input_bytes: int, groups: int, row_tiles: int
                 ) -> tuple[int, int]:
    """Bytes each loop order streams from the outer caches: rows outside, the weights once
    per row tile; groups outside, the input once per group. C3D's conv4b at 85 % KGS (4.2 MB
    of weights, 28 row tiles; a 3.1 MB padded copy, 64 groups): 118 against 200 MB, and rows
    outside ran it 1.26x faster (Emerald Rapids, 2 threads, interleaved); dense (28 MB) and
    conv5a at 85 % (59 against 42 MB) stay groups outside (ties; rows outside 1.4-1.7x
    slower on conv5a)."""
    return weight_bytes * row_tiles, input_bytes * groups


def w_is_contiguous(sch: s_tir.Schedule) -> bool:
    """Whether the input is read with unit stride along W (a W vector is one load): a
    unit-stride conv, or a strided one whose padded copy is split into W phases."""
    stride = int(func_attr(sch.mod, KGS_STRIDES_ATTR)[2])
    return stride == 1 or _w_phases(sch) == stride


def _channel_multiplier(sch: s_tir.Schedule) -> int:
    return int(func_attr(sch.mod, KGS_CHANNELWISE_ATTR))


def _kernel(sch: s_tir.Schedule) -> list[int]:
    return [int(v) for v in func_attr(sch.mod, KGS_GEOMETRY_ATTR)[:3]]


def _w_phases(sch: s_tir.Schedule) -> int:
    return int(func_attr(sch.mod, KGS_W_PHASES_ATTR))


def vector_axis_default(sch: s_tir.Schedule, lanes: int = 8) -> str:
    """``"w"`` when the input is read with unit stride along W and a W vector is full, else
    ``"m"``: on 7x7 maps (C3D's conv5, R(2+1)D's layer4) a 7-lane W vector wastes a lane and
    splits into several instructions; vectors over 8 channels ran 1.3x faster there. A
    pointwise conv whose rows are no multiple of the vector (and not recomputed as rows of
    whole vectors, ``op.pointwise_rows``: X3D's 10x10 and 5x5 maps, W tiles of 5 lanes) takes
    ``"m"`` too: X3D-S's 96 -> 216, 216 -> 96, 192 -> 432 and 432 -> 192 convs at 80 % ran
    1.21-1.32x faster (Zen 3, interleaved); on 40x40 maps ``"w"`` stays faster."""
    if not w_is_contiguous(sch):
        return "m"
    gm = int(func_attr(sch.mod, KGS_CONV3D_ATTR))
    ow = int(sch.get(sch.get_loops(sch.get_sblock(KGS_CONV3D_BLOCK))[4]).extent)
    pointwise = _kernel(sch) == [1, 1, 1] and ow % lanes != 0
    return "m" if (ow < lanes or pointwise) and lanes <= gm else "w"


def register_tile(ow: int, oh: int, gm: int, lanes: int, max_registers: int,
                  vector_axis: str, min_tail: int = 1,
                  w_registers: int = MAX_W_REGISTERS) -> tuple[int, int]:
    """The untuned register tile ``(R, Rh)`` within ``max_registers`` vector registers.

    Along ``"m"`` each of the ``R * Rh`` accumulators holds ``g_m`` channels (one register
    when ``g_m <= lanes``); along ``"w"`` each of the ``g_m * Rh`` accumulators holds ``R``
    positions (``ceil(R / lanes)`` registers). A long W tile comes first (fewer input cache
    lines per FMA), then rows fill the rest of the budget (fewer weight loads per FMA).
    Along ``"w"``, a tile longer than one vector whose last vector holds fewer than
    ``min_tail`` lanes (10 = 8 + 2 with ``min_tail = 4``) is not taken when a shorter one is
    (:attr:`CPUConfig.min_tail`), nor one of more than ``w_registers`` registers (a tile of
    part of a group's channels takes one while rows fill the budget: 4 channels x 2 rows x 8
    positions ran 1.1-1.2x faster than 4 x 1 x 16 on C3D's and 16-wide maps, Zen 3).
    """
    if vector_axis == "m":
        per_position = -(-gm // lanes)
        r_w = largest_divisor(ow, max(1, max_registers // per_position))
        r_h = largest_divisor(oh, max(1, max_registers // (per_position * r_w)))
        return r_w, r_h
    regs_per_row = max(1, max_registers // gm)  # registers per accumulator row of R
    # At most two registers along W: LLVM legalizes longer W vectors (20, 28, 40 positions,
    # X3D's 80/40/20-wide and C3D's 28-wide maps) lane by lane through the stack, 5-20x
    # slower (measured); rows along H and D fill the rest of the register budget. Whole
    # registers are preferred unless they lose more than a quarter of the tile (40 -> 8, not
    # 10; 56 stays 14).
    cap = lanes * min(regs_per_row, w_registers)
    fits = [r for r in range(1, cap + 1)
            if ow % r == 0 and (r <= lanes or r % lanes == 0 or r % lanes >= min_tail)]
    best = max(fits)
    whole = [r for r in range(lanes, cap + 1, lanes) if ow % r == 0]
    r_w = max(whole) if whole and max(whole) >= 0.75 * best else best
    used = gm * -(-r_w // lanes)
    r_h = largest_divisor(oh, max(1, max_registers // used))
    return r_w, r_h


def depth_rows(od: int, rows_left: int) -> int:
    """Rows along D that join the register tile when the H tile leaves registers unused: the
    largest divisor of ``od`` within ``rows_left`` (7x7 maps give ``R = 7, Rh = 1``, a third of
    the budget; C3D's conv5 and R(2+1)D's layer4 then take 2 depth rows)."""
    return largest_divisor(od, max(1, rows_left))


def untuned_tile(ow: int, oh: int, od: int, gm: int, lanes: int, max_registers: int,
                 vector_axis: str, min_tail: int = 1,
                 w_registers: int = MAX_W_REGISTERS) -> tuple[int, int, int]:
    """The untuned ``(R, Rh, Rd)``: :func:`register_tile`, then rows along D in the registers
    it leaves (:func:`depth_rows`)."""
    r_w, r_h = register_tile(ow, oh, gm, lanes, max_registers, vector_axis, min_tail,
                             w_registers)
    per_row = accumulators((r_w, 1, 1), gm, lanes, vector_axis)
    return r_w, r_h, depth_rows(od, max_registers // (per_row * r_h))


def accumulators(tile: Sequence[int], gm: int, lanes: int, vector_axis: str) -> int:
    """Vector registers an ``(R, Rh, Rd)`` accumulator tile of ``gm`` channels takes."""
    r_w, r_h, r_d = tile
    per_row = r_w * -(-gm // lanes) if vector_axis == "m" else gm * -(-r_w // lanes)
    return per_row * r_h * r_d


def schedule_kgs_conv3d_cpu(
    sch: s_tir.Schedule,
    fixed: bool = True,
    lanes: int = 8,
    max_registers: int = 12,
    rows_outer: bool | None = None,
    vector_axis: str | None = None,
    min_tail: int = 1,
    block_columns: int = 0,
    channel_tile: int = 0,
) -> s_tir.Schedule:
    """Schedule one KGS conv3d PrimFunc (in place) for a CPU.

    Parameters
    ----------
    sch : s_tir.Schedule
        Schedule of a PrimFunc from :func:`rt3d_passes.op.kgs_conv3d_te`.
    fixed : bool
        True: heuristic decisions (the untuned default). False: knobs left to sampling, so the
        same function is a MetaSchedule design space.
    lanes : int
        fp32 lanes of the vector registers the code uses (8 for AVX2, and for AVX-512 where
        LLVM prefers 256-bit vectors; 16 for AVX-512 with 512-bit vectors; 4 for NEON).
    max_registers : int
        Vector registers the accumulator tile may take (leave a few of the register file for
        the weight/input vectors and addresses).
    rows_outer : bool, optional
        Loop order, a structural choice: output rows outside the groups, so each input row is
        read once for all groups (good when the compacted weights fit in cache), or groups
        outside rows, so each group's weights stay in cache while it sweeps the input.
        ``None``: :func:`rows_outer_default`.
    vector_axis : {"w", "m"}, optional
        Vectorize along W or along the group's channels (see the module docstring).
        ``None``: :func:`vector_axis_default`.
    min_tail : int
        :attr:`CPUConfig.min_tail` of the target (for the untuned register tile).
    block_columns : int
        :attr:`CPUConfig.column_block` of the target: groups whose column count is a
        multiple of it run their column loop in blocks of this many (:func:`column_block`;
        along ``"w"``, not channel-wise); 0: one loop.
    channel_tile : int
        :attr:`CPUConfig.channel_tile` of the target: along ``"w"``, the accumulator tile
        holds this many of a group's channels (:func:`tile_channels`); 0: all of them.

    Returns
    -------
    sch : s_tir.Schedule
    """
    if is_channel_blocked(sch):
        return schedule_channelwise_conv3d_cpu(sch, fixed, max_registers)
    if vector_axis is None:
        vector_axis = vector_axis_default(sch, lanes)
    if vector_axis not in ("w", "m"):
        raise ValueError(f"vector_axis must be 'w' or 'm', got {vector_axis!r}")
    blk = sch.get_sblock(KGS_CONV3D_BLOCK)
    gm = int(func_attr(sch.mod, KGS_CONV3D_ATTR))
    n, m, d, h, w, t = sch.get_loops(blk)
    g, mi = sch.split(m, [None, gm])
    if not tiles_channels(_kernel(sch), _extent(sch, d, h, w)):
        channel_tile = block_columns = 0
    gm_tile = tile_channels(gm, channel_tile) if vector_axis == "w" else gm
    mo = None
    if gm_tile < gm:
        # tiles of the group's channels, each running the whole column loop
        mo, mi = sch.split(mi, [None, gm_tile])
    ow, oh, od = (int(sch.get(loop).extent) for loop in (w, h, d))
    w_registers = 1 if mo is not None else MAX_W_REGISTERS
    fixed_tile = untuned_tile(ow, oh, od, gm_tile, lanes, max_registers, vector_axis,
                              min_tail, w_registers)
    if mo is not None and 2 * accumulators(fixed_tile, gm_tile, lanes, vector_axis) <= \
            max_registers:
        # rows leave most accumulators unused (an odd number of rows and one depth row:
        # 4 of 12): a longer W tile instead
        w_registers = MAX_W_REGISTERS
        fixed_tile = untuned_tile(ow, oh, od, gm_tile, lanes, max_registers, vector_axis,
                                  min_tail, w_registers)
    max_w = max_registers if vector_axis == "m" else lanes * max(
        1, min(max_registers // gm_tile, w_registers))
    if rows_outer is None:
        rows_outer = rows_outer_default(sch, int(sch.get(n).extent) * -(-od // fixed_tile[2])
                                        * -(-oh // fixed_tile[1]))
    r_w = tile(sch, w, max_w, fixed_tile[0] if fixed else None)
    r_h = tile(sch, h, max(1, max_registers // 4), fixed_tile[1] if fixed else None)
    r_d = tile(sch, d, max(1, max_registers // 4), fixed_tile[2] if fixed else None)
    wo, wi = sch.split(w, r_w)
    ho, hi = sch.split(h, r_h)
    do, di = sch.split(d, r_d)
    inner = (di, hi, wi, mi) if vector_axis == "m" else (mi, di, hi, wi)
    per_channel_pad = (not rows_outer and _channel_multiplier(sch) > 0
                       and int(sch.get(n).extent) * int(sch.get(g).extent) >= CHANNEL_TASKS_MIN)
    block = 0 if vector_axis == "m" or _channel_multiplier(sch) > 0 else column_block(
        int(sch.get(t).extent), block_columns, _kernel(sch))
    row = (n, do, ho, g) if rows_outer else (n, g, do, ho)
    channel_tiles = [] if mo is None else [mo]
    if block:
        # blocks of columns outside the W tiles: the accumulators of the group's whole row
        # live in a local buffer, loaded and stored once per block and W tile
        to, ti = sch.split(t, [None, block])
        sch.reorder(*row, to, wo, *channel_tiles, ti, *inner)
        reduction, write_at = to, row[-1]
    else:
        sch.reorder(*row, wo, *channel_tiles, t, *inner)
        reduction, write_at = t, (channel_tiles or [wo])[-1]
    acc = sch.cache_write(blk, 0, "local")
    if vector_axis == "m":
        # the accumulators' own layout with the vector axis innermost: in the output's
        # layout (m outermost) each vector's lanes are strided in the local buffer, and LLVM
        # keeps such a tile in registers only while it is tiny (8 accumulators); at 16 it
        # spilled to memory, 5-10x slower (stems, pointwise and strided convs)
        sch.transform_layout(blk, ("write", 0), lambda n, m, d, h, w: (n, d, h, w, m))
    # a partial last group: the write-back of the register tile drops its extra rows (X3D-S's
    # 54-channel pointwise conv: 0.80 -> 0.31 ms); a fused bias / residual / ReLU epilogue is
    # applied by the write-back too
    acc = place_write_back(sch, acc, write_at)
    if rows_outer and _extent(sch, n, do, ho) < ROW_TASKS_MIN:
        # too few row tiles to share among the threads (a pointwise conv on 8x4x4 maps is
        # one row of 128 positions): the groups join the parallel loop
        outer = sch.fuse(n, do, ho, g)
    elif rows_outer:
        outer = sch.fuse(n, do, ho)
    elif per_channel_pad:
        # one task per channel: its padded copy (Dp x Hp x Wp, in L1/L2) is written inside the
        # task, right before the task reads it
        outer = sch.fuse(n, g)
    else:
        outer = sch.fuse(n, g, do, ho)
    sch.parallel(outer)
    # vectorize/unroll before decompose_reduction (it needs a complete block)
    sch.vectorize(inner[3])
    for loop in inner[:3]:
        sch.unroll(loop)
    sch.decompose_reduction(blk, reduction)
    unroll_knob(sch, outer, fixed)
    # write-back of the accumulator tile: its loops run in the output's order (m, d, h, w),
    # W innermost, a plain vector store when the tile is vectorized along W
    if vector_axis == "w":
        sch.vectorize(sch.get_loops(acc)[-1])
    padded = tuple(int(v) for v in func_attr(sch.mod, KGS_PADDED_ATTR))
    layout = str(func_attr(sch.mod, KGS_COPY_LAYOUT_ATTR))
    for pad in producers_named(sch, blk, KGS_PAD_BLOCK):
        if per_channel_pad:
            sch.compute_at(pad, outer, preserve_unit_loops=True)
        schedule_flat_pad(sch, pad, padded, _w_phases(sch), parallel=not per_channel_pad,
                          copy_layout=layout)
    return sch


def _extent(sch: s_tir.Schedule, *loops) -> int:
    return math.prod(int(sch.get(loop).extent) for loop in loops)


def schedule_cpu(sch: s_tir.Schedule, fixed: bool = True, target: Target | None = None,
                 rows_outer: bool | None = None, vector_axis: str | None = None
                 ) -> s_tir.Schedule:
    """:func:`schedule_kgs_conv3d_cpu` with the register tile sized for ``target`` (the
    current target when None): ``g_m`` channels x ``Rh`` rows x ``R`` positions."""
    config = cpu_config(target)
    return schedule_kgs_conv3d_cpu(sch, fixed=fixed, lanes=config.lanes,
                                   max_registers=config.max_registers,
                                   min_tail=config.min_tail,
                                   block_columns=config.column_block,
                                   channel_tile=config.channel_tile,
                                   rows_outer=rows_outer, vector_axis=vector_axis)


class KGSConv3DCPU(CPUScheduleRule):
    """dlight rule: the untuned CPU schedule of the KGS conv3d (x86 or aarch64, by the
    target's :class:`CPUConfig`); None for anything else."""

    def apply(self, func: tirx.PrimFunc, target: Target, tunable: bool):
        if not self.is_target_available(target) or not is_kgs_conv3d(func):
            return None
        return schedule_cpu(s_tir.Schedule(func), fixed=not tunable, target=target)
