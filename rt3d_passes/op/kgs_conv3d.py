"""The sparse KGS conv3d operator: a TE compute over compacted weights.

The operator reads three tensors:

* ``x`` -- the NCDHW input ``[N, C, D, H, W]``;
* ``values`` -- the compacted weights ``[G, T, g_m]`` of :class:`~rt3d_passes.sparsity.KGSCompact`;
* ``offsets`` -- ``[G, T]`` int32: for every kept column ``(c, kd, kh, kw)`` of output group
  ``i``, its flat offset in the zero-padded input of one batch element,
  ``((c * Dp + kd * dil_d) * Hp + kh * dil_h) * Wp + kw * dil_w``.

and computes, for output channel ``m`` of group ``i = m // g_m``::

    y[n, m, d, h, w] = sum_t values[i, t, m % g_m]
                       * xpad[n, offsets[i, t] + d*s_d*Hp*Wp + h*s_h*Wp + w*s_w]

so its work is ``G * T * g_m`` MACs per output voxel, ``T`` the longest group's kept columns:
proportional to the kept columns (up to the groups' imbalance, see
:attr:`~rt3d_passes.sparsity.KGSCompact.computed_macs`), and
each group's inner product is a dense ``g_m``-wide vector update (the point of KGS). One
index load per column, shared by all ``g_m`` output channels and all output positions of a
tile, is the whole cost of the sparsity.

Padding is materialized once into a flat buffer (``xpad``) so that every gather is in
bounds and branch-free; a conv without padding reads a flat view of its input instead
(``x`` given as ``[N, C*D*H*W]``, see :func:`reads_flat_input`). The padding slots of short
groups read offset 0 with weight 0.

A W-strided conv with a padded copy stores each padded row split into its ``s_w`` phases
(columns ``0, s, 2s, ...``, then ``1, 1+s, ...``, each phase ``L = ceil(Wp / s_w)`` long, so a
stored row has ``s_w * L`` elements; :attr:`Conv3DGeometry.w_phases`): column ``kw * dil_w``
of output ``w`` is then element ``w + (kw * dil_w) // s_w`` of phase ``(kw * dil_w) % s_w``,
so the operator reads consecutive elements along W (``+ w`` instead of ``+ w * s_w``; the
offsets hold the phase) and vectorizes along W like a unit-stride conv. Depthwise convs with
stride 2 (X3D, CSN), whose other vector axis -- a group's channels -- is a single channel, ran
scalar before (interleaved A/B: X3D-S's 54-channel stride-2 layer 3.0 -> 2.4 ms, its
216-channel one 0.72 -> 0.33 ms).

A channel-wise (depthwise) layer -- one output channel per group, each reading one input
channel (:func:`channel_multiplier`) -- keeps its padded copy per channel (``[N, C,
Dp*Hp*Wp]``) with offsets relative to the channel, so the CPU schedule pads each channel in
the task that convolves it. A pointwise conv on maps whose W is no multiple of 8 is built on
rows of whole vectors over its flattened positions (:func:`pointwise_rows`; the rewrite views
the result back). Other layers whose W is no multiple of the vector can compute longer rows
of whole vectors and crop them (:func:`whole_vector_rows`; the padded copy then ends with one
zero channel, so the reads past a row stay in bounds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tvm import te, tirx

from schedules.contract import (
    KGS_CHANNELWISE_ATTR,
    KGS_CONV3D_ATTR,
    KGS_CONV3D_BLOCK,
    KGS_COPY_LAYOUT_ATTR,
    KGS_CROP_BLOCK,
    KGS_GEOMETRY_ATTR,
    KGS_PAD_BLOCK,
    KGS_PADDED_ATTR,
    KGS_ROW_EXTENT_ATTR,
    KGS_SCHEDULE_RULE,
    KGS_STRIDES_ATTR,
    KGS_VALUES_BLOCK,
    KGS_W_PHASES_ATTR,
    NO_SCHEDULE_RULE,
    channel_block,
)

from ..sparsity import KGSCompact

__all__ = [
    "COPY_LAYOUTS",
    "PAD_OFFSET",
    "ROW_EXTENT_MAX_WASTE",
    "Conv3DGeometry",
    "channel_multiplier",
    "column_offsets",
    "flat_padded_input",
    "geometry_kwargs",
    "kgs_conv3d_attrs",
    "kgs_conv3d_primfunc",
    "kgs_conv3d_te",
    "pad_columns",
    "pointwise_rows",
    "reads_flat_input",
    "shares_taps",
    "whole_vector_rows",
]

#: Offset of a padding slot (groups shorter than the longest are padded, with zero weights).
#: A valid address keeps the inner loop branch-free: a per-slot guard (TE's ``if_then_else``)
#: is vectorized lane by lane, splits every FMA into mul/select/add and spills registers,
#: costing far more than the padded MACs (and ``te.sum(where=...)`` is dropped by
#: ``create_prim_func`` in TVM 0.27).
PAD_OFFSET = 0

#: Layouts of the flat padded copy (:class:`Conv3DGeometry`): ``"CDHW"``, each channel's
#: padded volume in turn (the input's own order); ``"DHCW"``, for each padded depth plane and
#: row the rows of every channel in turn. An output row reads, per kept column, a row or two
#: of one channel and plane; in CDHW those are hundreds of short lines scattered over the
#: copy (a 3x1x1 conv over 144 channels: 432 rows of 224 bytes, 12.5 KB apart), in DHCW the
#: few planes' rows of all channels lie together. ``"CDHW16c"`` / ``"CDHW8c"`` / ``"CDHW4c"``
#: (channel-wise layers only): blocks of 16 / 8 / 4 channels (a vector of the target), each
#: block's padded volume with the block's channels innermost, so a vector of a block's
#: channels is one load (``schedules.contract.channel_block``). Chosen per layer by the target
#: (``schedules.cpu_kgs_conv3d.copy_layout``).
COPY_LAYOUTS = ("CDHW", "DHCW", "CDHW4c", "CDHW8c", "CDHW16c")


class Conv3DGeometry:
    """Shapes of one NCDHW conv3d: input, kernel, strides, padding (6), dilation, output.

    Parameters
    ----------
    input_shape : (N, C, D, H, W)
    kernel : (Kd, Kh, Kw)
    strides : (s_d, s_h, s_w)
    padding : (front, top, left, back, bottom, right), Relax's order; 3 values mean symmetric.
    dilation : (dil_d, dil_h, dil_w)
    copy_layout : {"CDHW", "DHCW", "CDHW4c", "CDHW8c", "CDHW16c"}
        Layout of the flat padded copy (:data:`COPY_LAYOUTS`). Any but ``"CDHW"`` needs
        padding (a conv without it reads its input in place).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        kernel: Sequence[int],
        strides: Sequence[int] = (1, 1, 1),
        padding: Sequence[int] = (0, 0, 0),
        dilation: Sequence[int] = (1, 1, 1),
        copy_layout: str = "CDHW",
    ):
        self.input_shape = tuple(int(v) for v in input_shape)
        self.kernel = tuple(int(v) for v in kernel)
        self.strides = tuple(int(v) for v in strides)
        pad = tuple(int(v) for v in padding)
        self.padding = pad * 2 if len(pad) == 3 else pad
        self.dilation = tuple(int(v) for v in dilation)
        if len(self.input_shape) != 5:
            raise ValueError(f"input must be NCDHW (5-D), got shape {self.input_shape}")
        if len(self.kernel) != 3 or len(self.strides) != 3 or len(self.dilation) != 3:
            raise ValueError(
                f"kernel, strides and dilation need 3 values each, got {self.kernel}, "
                f"{self.strides}, {self.dilation}"
            )
        if len(self.padding) != 6:
            raise ValueError(f"padding needs 3 or 6 values, got {pad}")
        if min(self.strides + self.dilation + self.kernel) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"invalid conv3d geometry: kernel {self.kernel}, strides {self.strides}, "
                f"dilation {self.dilation}, padding {self.padding}"
            )
        if copy_layout not in COPY_LAYOUTS:
            raise ValueError(f"copy_layout must be one of {COPY_LAYOUTS}, got {copy_layout!r}")
        if copy_layout != "CDHW" and not any(self.padding):
            raise ValueError(f"copy layout {copy_layout} needs a padded copy; a conv without "
                             "padding reads its input in place (CDHW)")
        self.copy_layout = copy_layout
        if min(self.output_spatial) < 1:
            raise ValueError(
                f"kernel {self.kernel} (dilation {self.dilation}) does not fit the padded input "
                f"{self.padded_spatial} (input {self.input_shape}, padding {self.padding})"
            )

    @property
    def padded_spatial(self) -> tuple[int, int, int]:
        _, _, d, h, w = self.input_shape
        p = self.padding
        return (d + p[0] + p[3], h + p[1] + p[4], w + p[2] + p[5])

    @property
    def output_spatial(self) -> tuple[int, int, int]:
        return tuple(
            (size - dil * (k - 1) - 1) // s + 1
            for size, k, s, dil in zip(self.padded_spatial, self.kernel, self.strides,
                                       self.dilation)
        )

    @property
    def stored_spatial(self) -> tuple[int, int, int]:
        """(Dp, Hp, row length) of the flat padded copy: ``padded_spatial``, with rows
        ``w_phases * ceil(Wp / w_phases)`` long when they are split into W phases."""
        dp, hp, wp = self.padded_spatial
        s = self.w_phases
        return (dp, hp, s * -(-wp // s))

    @property
    def padded_size(self) -> int:
        """Elements of one batch element's padded input (as stored; a ``"DHCW"`` copy ends
        with one spare set of zero rows, a channel-blocked one with the zero channels that
        complete its last block, see :func:`flat_padded_input`)."""
        dp, hp, wp = self.stored_spatial
        chans = self.input_shape[1]
        if self.channel_block:
            chans = -(-chans // self.channel_block) * self.channel_block
        return chans * (dp * hp + (self.copy_layout == "DHCW")) * wp

    @property
    def copy_strides(self) -> tuple[int, int, int]:
        """Elements between consecutive channels, depth planes and rows of the padded copy
        (of one channel's volume in a channel-blocked copy: the operator scales them by the
        block)."""
        dp, hp, wp = self.stored_spatial
        if self.copy_layout == "DHCW":
            chans = self.input_shape[1]
            return (wp, hp * chans * wp, chans * wp)
        return (dp * hp * wp, hp * wp, wp)

    @property
    def w_phases(self) -> int:
        """Phases the padded copy splits each row along W into: ``s_w`` for a W-strided conv
        that has a padded copy, else 1 (a conv without padding reads a flat view of its
        input, which stays in its own layout; a channel-blocked copy reads whole vectors of
        channels at any stride)."""
        return self.strides[2] if any(self.padding) and not self.channel_block else 1

    @property
    def channel_block(self) -> int:
        """Channels per block of a channel-blocked copy layout (0: not channel-blocked)."""
        return channel_block(self.copy_layout)

    def stored_column(self, col):
        """Where column ``col`` (ints or numpy ints) of a padded row is stored in its row."""
        s = self.w_phases
        return col % s * (self.stored_spatial[2] // s) + col // s

    def output_shape(self, out_channels: int) -> tuple[int, int, int, int, int]:
        return (self.input_shape[0], int(out_channels), *self.output_spatial)


def channel_multiplier(packed: KGSCompact, geometry: Conv3DGeometry) -> int:
    """``k`` when the layer is channel-wise (depthwise, ``groups = C``, ``M = k * C``): one
    output channel per group (``g_m = 1``) and group ``g`` keeping columns of input channel
    ``g // k`` only; 0 for any other layer, and for a layer without padding (it reads its
    input in place, with no padded copy to split per channel).

    The operator then keeps the padded copy per channel (``[N, C, Dp*Hp*Wp]``) with offsets
    relative to the channel, so a schedule can pad each channel in the task that reads it.
    """
    m, c = packed.weight_shape[:2]
    if packed.group[0] != 1 or m % c or not any(geometry.padding):
        return 0
    k = m // c
    kept = np.arange(packed.columns.shape[1])[None, :] < packed.counts[:, None]
    owner = np.broadcast_to((np.arange(packed.columns.shape[0]) // k)[:, None], kept.shape)
    return k if np.array_equal(packed.columns[..., 0][kept], owner[kept]) else 0


def shares_taps(packed: KGSCompact) -> bool:
    """Whether every group keeps the same kernel taps ``(kd, kh, kw)`` in the same order (a
    dense or uniformly pruned channel-wise layer): the groups' offsets relative to their
    channels are then one row, and a channel-blocked copy
    (:attr:`Conv3DGeometry.channel_block`) serves a vector of consecutive channels with one
    load per tap."""
    counts = np.asarray(packed.counts)
    taps = packed.columns[..., 1:]
    return bool((counts == counts[0]).all() and (taps == taps[:1]).all())


def pad_columns(packed: KGSCompact, multiple: int) -> KGSCompact:
    """``packed`` with every group padded to a multiple of ``multiple`` columns, the way the
    format pads short groups (column ``(0, 0, 0, 0)``, zero weights, ``counts`` unchanged), so
    a schedule can split the column loop into equal blocks
    (``schedules.cpu_kgs_conv3d.column_multiple``); ``packed`` itself when it already is."""
    columns = packed.max_columns
    extra = -columns % max(1, int(multiple))
    if not extra:
        return packed

    def _pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros((a.shape[0], extra, a.shape[2]), a.dtype)], axis=1)

    return dataclasses.replace(packed, values=_pad(packed.values), columns=_pad(packed.columns))


def column_offsets(packed: KGSCompact, geometry: Conv3DGeometry) -> np.ndarray:
    """Flat offsets ``[G, T]`` (int32) of every kept column in the padded input: relative to
    the column's channel for a channel-wise layer (:func:`channel_multiplier`).

    Padding slots (``t >= counts[g]``) hold :data:`PAD_OFFSET` (their weights are zero).

    Raises
    ------
    ValueError
        When the weight's input channels or kernel do not match the geometry, the padded
        input is too large for 32-bit offsets, a channel-wise layer's copy is DHCW, or
        a channel-blocked copy's layer is not channel-wise with shared taps.
    """
    _, n, kd, kh, kw = packed.weight_shape
    if n != geometry.input_shape[1] or (kd, kh, kw) != geometry.kernel:
        raise ValueError(
            f"weight {packed.weight_shape} does not match input {geometry.input_shape} with "
            f"kernel {geometry.kernel}: input channels or kernel differ"
        )
    if geometry.padded_size >= 2**31:
        raise ValueError(
            f"padded input of {geometry.padded_size} elements per batch item does not fit "
            "32-bit offsets"
        )
    dd, dh, dw = geometry.dilation
    c, a, b, e = (packed.columns[..., k].astype(np.int64) for k in range(4))
    multiplier = channel_multiplier(packed, geometry)
    if multiplier:
        if geometry.copy_layout == "DHCW":
            raise ValueError("a channel-wise layer keeps its padded copy per channel (CDHW "
                             f"or channel-blocked), got copy layout {geometry.copy_layout}")
        c = np.zeros_like(c)
    if geometry.channel_block and (multiplier != 1 or not shares_taps(packed)):
        raise ValueError(f"copy layout {geometry.copy_layout} needs a channel-wise layer with "
                         f"multiplier 1 whose groups keep the same taps (multiplier "
                         f"{multiplier}, shared taps {shares_taps(packed)})")
    channel, plane, row = geometry.copy_strides
    off = c * channel + a * dd * plane + b * dh * row + geometry.stored_column(e * dw)
    # padding slots of short groups: a valid address (their weights are zero)
    off[np.arange(off.shape[1])[None, :] >= packed.counts[:, None]] = PAD_OFFSET
    return off.astype(np.int32)


def kgs_conv3d_te(
    x: te.Tensor,
    values: te.Tensor,
    offsets: te.Tensor,
    out_channels: int,
    kernel: Sequence[int],
    strides: Sequence[int] = (1, 1, 1),
    padding: Sequence[int] = (0, 0, 0),
    dilation: Sequence[int] = (1, 1, 1),
    input_shape: Sequence[int] | None = None,
    channel_multiplier: int = 0,
    row_extent: int = 0,
    copy_layout: str = "CDHW",
) -> te.Tensor:
    """TE compute of the KGS sparse conv3d (see the module docstring).

    Parameters
    ----------
    x : te.Tensor
        Input ``[N, C, D, H, W]``, float32.
    values : te.Tensor
        Compacted weights ``[G, T, g_m]``.
    offsets : te.Tensor
        Column offsets ``[G, T]`` int32, from :func:`column_offsets` with the same geometry.
    out_channels : int
        ``M``; the last group may be partial (``M <= G * g_m``).
    kernel, strides, padding, dilation :
        As in :class:`Conv3DGeometry`.
    input_shape : (N, C, D, H, W), optional
        Needed when ``x`` is the flat view ``[N, C*D*H*W]`` of an input that needs no
        padding (:func:`reads_flat_input`): the operator then gathers straight from it, with
        no padded copy (for a pointwise conv the copy costs about as much as the MACs).
    channel_multiplier : int
        ``k`` of a channel-wise layer (:func:`channel_multiplier`; its offsets relative to
        the channel), 0 for any other.
    copy_layout : {"CDHW", "DHCW"}
        Layout of the padded copy (:class:`Conv3DGeometry`); the offsets must be computed
        with the same one.
    row_extent : int
        Output rows computed this long (:func:`whole_vector_rows`, > ``OW``: whole vectors
        along W) and cropped to ``OW``; the padded copy then gets one extra zero channel, so
        the reads past a row's end stay in bounds. 0: rows of ``OW``.

    Returns
    -------
    y : te.Tensor
        Output ``[N, M, OD, OH, OW]``.
    """
    flat = len(x.shape) == 2
    shape = [int(s) for s in (input_shape if flat else x.shape)]
    geo = Conv3DGeometry(shape, kernel, strides, padding, dilation, copy_layout)
    if flat and (any(geo.padding) or int(x.shape[1]) != geo.padded_size):
        raise ValueError(f"a flat input {tuple(x.shape)} needs zero padding and "
                         f"{geo.padded_size} elements per batch item (input {shape}, padding "
                         f"{geo.padding})")
    n_batch = geo.input_shape[0]
    dp, hp, wp = geo.stored_spatial
    sd, sh, sw = geo.strides
    od, oh, ow = geo.output_spatial
    g_count, t_len, gm = (int(s) for s in values.shape)
    if tuple(int(s) for s in offsets.shape) != (g_count, t_len):
        raise ValueError(
            f"offsets shape {tuple(offsets.shape)} does not match values {tuple(values.shape)}"
        )
    if not (g_count - 1) * gm < out_channels <= g_count * gm:
        raise ValueError(
            f"{out_channels} output channels do not fit {g_count} groups of {gm}"
        )

    block = geo.channel_block
    if channel_multiplier and copy_layout == "DHCW":
        raise ValueError("a channel-wise operator keeps its padded copy per channel (CDHW or "
                         f"channel-blocked), got copy layout {copy_layout}")
    if block and channel_multiplier != 1:
        raise ValueError(f"copy layout {copy_layout} needs a channel-wise operator with "
                         f"multiplier 1, got multiplier {channel_multiplier}")
    if channel_multiplier and (flat or gm != 1
                               or g_count != channel_multiplier * geo.input_shape[1]):
        raise ValueError(
            f"a channel-wise operator (multiplier {channel_multiplier}) needs a padded input "
            f"and one output channel per group for each of the {geo.input_shape[1]} input "
            f"channels; got {g_count} groups of {gm}" + (" reading a flat input" if flat else ""))
    row_len = max(ow, int(row_extent))
    if row_len > ow and (flat or channel_multiplier):
        raise ValueError(
            f"rows of {row_extent} (output W {ow}) need a padded copy read by a "
            f"non-channel-wise operator; got "
            + ("a flat input" if flat else f"channel multiplier {channel_multiplier}"))
    xpad = x if flat else flat_padded_input(x, (dp, hp, wp), geo.padding[:3], KGS_PAD_BLOCK,
                                            w_phases=geo.w_phases,
                                            per_channel=bool(channel_multiplier),
                                            extra_channels=int(row_len > ow),
                                            copy_layout=copy_layout)
    t = te.reduce_axis((0, t_len), name="t")
    _, plane, row = geo.copy_strides
    if block:
        # channel blocks: the group's weights as [block, T, channel] (zero past the last
        # channel), so a vector of a block's channels reads one weight vector per tap
        blocks = -(-g_count // block)
        values = te.compute(
            (blocks, t_len, block),
            lambda b, tt, c: tirx.if_then_else(b * block + c < g_count,
                                               values[tirx.min(b * block + c, g_count - 1),
                                                      tt, 0],
                                               tirx.const(0, values.dtype)),
            name=KGS_VALUES_BLOCK, attrs={"schedule_rule": NO_SCHEDULE_RULE})
    # a channel-wise operator's offsets lie in [0, last_tap]; the clamp below reaches the
    # channel's last element from the last output voxel, so the read region is the whole
    # channel (a shorter one leaves a predicate on every element of the copy)
    last_tap = dp * hp * wp - 1 - ((od - 1) * sd * hp * wp + (oh - 1) * sh * wp
                                   + (ow - 1) * (sw // geo.w_phases))
    step_w = sw // geo.w_phases  # 1 with phases: the offsets hold the phase

    def _conv(n, m, d, h, w):
        g = m // gm
        base = d * (sd * plane) + h * (sh * row) + w * step_w
        if block:
            # every group shares the taps of group 0 (:func:`shares_taps`); the channel's
            # flat position times the block, plus its lane
            rel = tirx.max(tirx.min(offsets[0, t], last_tap), 0)
            return te.sum(values[m // block, t, m % block]
                          * xpad[n, m // block, (rel + base) * block + m % block], axis=t)
        if channel_multiplier:
            # clamped to the offsets' range (a no-op on valid offsets, two scalar ops per
            # column): a bounded read region lets a schedule compute the channel's padded
            # copy at the loop that reads it (an unbounded data-dependent index cannot)
            rel = tirx.max(tirx.min(offsets[g, t], last_tap), 0)
            return te.sum(values[g, t, 0] * xpad[n, g // channel_multiplier, rel + base],
                          axis=t)
        return te.sum(values[g, t, m % gm] * xpad[n, offsets[g, t] + base], axis=t)

    computed = -(-g_count // block) * block if block else g_count * gm
    y = te.compute(
        (n_batch, computed, od, oh, row_len),
        _conv,
        name=KGS_CONV3D_BLOCK,
        attrs={"schedule_rule": KGS_SCHEDULE_RULE},
    )
    if computed != out_channels or row_len != ow:
        # edge output group, longer rows: compute whole groups and whole vectors, then drop
        # the extra channels and positions
        y = te.compute(
            (n_batch, out_channels, od, oh, ow),
            lambda n, m, d, h, w: y[n, m, d, h, w],
            name=KGS_CROP_BLOCK,
            attrs={"schedule_rule": NO_SCHEDULE_RULE},
        )
    return y


def flat_padded_input(x: te.Tensor, padded: Sequence[int], before: Sequence[int],
                      name: str, w_phases: int = 1, per_channel: bool = False,
                      extra_channels: int = 0, copy_layout: str = "CDHW") -> te.Tensor:
    """``x`` ``[N, C, D, H, W]`` zero-padded to ``padded`` ``(Dp, Hp, Wp)`` (``before``
    elements in front along D, H, W; the rest behind) and flattened per batch element:
    ``[N, C * Dp * Hp * Wp]``, so that every gather of an operator is in bounds and
    branch-free. Marked for the operator's own schedule rule (both RT3D operators use it).
    ``w_phases > 1``: each row stored split into its phases along W (see the module
    docstring and :meth:`Conv3DGeometry.stored_column`; ``padded[2]`` is then the stored row
    length, a multiple of ``w_phases``, and the columns past the padded row are zeros).
    ``per_channel``: ``[N, C, Dp * Hp * Wp]`` instead (channel-wise operators).
    ``extra_channels``: that many zero channels after the input's (reads past the last row).
    ``copy_layout="DHCW"``: ``[N, (Dp * Hp + 1) * C * Wp]``, for each padded depth plane and
    row every channel's row in turn (:class:`Conv3DGeometry`), then one spare set of zero
    rows that keeps the reads past the last row in bounds (``extra_channels`` is then
    ignored). A channel-blocked layout (``"CDHW8c"``, :func:`channel_block` ``b``):
    ``[N, ceil(C / b), Dp * Hp * Wp * b]``, each block's padded volume with its ``b``
    channels innermost (``per_channel`` and ``extra_channels`` ignored)."""
    n_batch, chans, d_in, h_in, w_in = (int(v) for v in x.shape)
    dp, hp, wp = (int(v) for v in padded)
    p_front, p_top, p_left = (int(v) for v in before)
    phase_len = wp // w_phases  # rows of a phase-split copy hold w_phases equal phases

    def _read(n, c, dd, hh, q, *conditions):
        # element q of padded row (dd, hh) of channel c (q in stored order: W phases map it
        # back to its column); zero outside the input and where ``conditions`` fail
        ww = (q % phase_len * w_phases + q // phase_len if w_phases > 1 else q) - p_left
        inside = tirx.all(dd >= 0, dd < d_in, hh >= 0, hh < h_in, ww >= 0, ww < w_in,
                          *conditions)
        return tirx.if_then_else(inside, x[n, c, dd, hh, ww], tirx.const(0, x.dtype))

    def _pad(n, f):
        # f enumerates (c, dd, hh, ww) of the padded input; schedules split f into these four
        # loops so the divisions below simplify away.
        c = f // (dp * hp * wp)
        return _read(n, c, f // (hp * wp) % dp - p_front, f // wp % hp - p_top, f % wp,
                     *([c < chans] if extra_channels else []))

    block = channel_block(copy_layout)
    if block:
        # [N, blocks, Dp*Hp*Wp*block]: f enumerates (dd, hh, ww, lane); zero channels complete
        # the last block
        def _pad_blocked(n, b, f):
            c, p = b * block + f % block, f // block
            return _read(n, tirx.min(c, chans - 1), p // (hp * wp) - p_front,
                         p // wp % hp - p_top, p % wp, c < chans)

        return te.compute((n_batch, -(-chans // block), dp * hp * wp * block), _pad_blocked,
                          name=name, attrs={"schedule_rule": NO_SCHEDULE_RULE})
    if copy_layout == "DHCW":
        if per_channel:
            raise ValueError("a per-channel padded copy is CDHW")

        def _pad_rows(n, f):
            # f enumerates (dd * Hp + hh, c, ww); schedules split f into these three loops
            p = f // (chans * wp)
            return _read(n, f // wp % chans, p // hp - p_front, p % hp - p_top, f % wp,
                         p < dp * hp)

        return te.compute((n_batch, (dp * hp + 1) * chans * wp), _pad_rows, name=name,
                          attrs={"schedule_rule": NO_SCHEDULE_RULE})
    if per_channel:
        return te.compute((n_batch, chans, dp * hp * wp),
                          lambda n, c, f: _pad(n, c * (dp * hp * wp) + f), name=name,
                          attrs={"schedule_rule": NO_SCHEDULE_RULE})
    return te.compute((n_batch, (chans + extra_channels) * dp * hp * wp), _pad, name=name,
                      attrs={"schedule_rule": NO_SCHEDULE_RULE})


def pointwise_rows(geometry: Conv3DGeometry) -> tuple[int, ...] | None:
    """The input shape ``(N, C, 1, P // L, L)`` a pointwise conv is better computed on, or None.

    A 1x1x1 conv with unit strides and no padding reads and writes each channel's
    ``P = D * H * W`` positions contiguously, so any split of them into rows computes the same
    thing. Maps whose W is no multiple of 8 (X3D's 20x20 and 10x10, SlowFast's 14x14) give
    part-filled vectors along W (a 20-wide row is 8 + 2 lanes, twice); rows of ``L`` positions,
    ``L`` a multiple of 16 (two whole vectors) dividing ``P``, at most 128, fill every lane
    and leave ``P // L`` rows for the threads. X3D-S's 48 -> 108 conv on 13x20x20 maps: 0.38 ->
    0.12 ms, interleaved. None when W already is a multiple of 8 or 16 does not divide ``P``.
    """
    n, c, d, h, w = geometry.input_shape
    positions = d * h * w
    if (geometry.kernel != (1, 1, 1) or geometry.strides != (1, 1, 1) or any(geometry.padding)
            or w % 8 == 0 or positions % 16):
        return None
    row = 16 * max(k for k in range(1, 9) if positions // 16 % k == 0)
    return (n, c, 1, positions // row, row)


#: Longest over-computation :func:`whole_vector_rows` accepts, as a fraction ``(num, den)``:
#: a row of ``OW`` positions computed as whole vectors wastes no more lanes than a part-filled
#: vector does (28 -> 32, 14 -> 16).
ROW_EXTENT_MAX_WASTE = (8, 7)


def whole_vector_rows(geometry: Conv3DGeometry, lanes: int) -> int:
    """The output row length to compute so that rows are whole vectors of ``lanes``, or 0.

    A row of ``OW`` positions, no multiple of ``lanes``, is computed ``ceil(OW / lanes)``
    vectors long and cropped: a part-filled vector is assembled from several loads and
    shuffles and stored lane by lane (C3D's 28- and 14-wide maps give 7-lane vectors on AVX2).
    Only for rows at most :data:`ROW_EXTENT_MAX_WASTE` longer, of a padded copy (not
    channel-wise; the rewrite checks that). A copy split into W phases (a W-strided conv) reads
    a phase's elements with unit stride too, and its reads past a phase's end stay in the copy
    (its spare zero channel or rows): R(2+1)D-18's stride-2 1x3x3 convs on 28- and 14-wide
    outputs ran 1.42-1.49x faster with rows of 32 and 16 (dense, Zen 3, session 11).
    AVX2, interleaved, 2 threads: C3D conv3a at 80% KGS
    31.9 -> 24.1 ms, conv3b at 85% 54.4 -> 43.2, conv4b at 80% 38.7 -> 35.7. Rows of 7 (C3D's
    conv5, R(2+1)D's layer4) became faster as rows of 8 with the 4-channel tile
    (``schedules.cpu_kgs_conv3d.AVX2``): conv5a dense 42 -> 59 G MAC/s, at 80% 38 -> 48
    (with the 8-channel tile they had run 3.73 -> 3.95 ms, slower).
    """
    ow = geometry.output_spatial[2]
    if lanes <= 0 or reads_flat_input(geometry):
        return 0
    extent = -(-ow // lanes) * lanes
    num, den = ROW_EXTENT_MAX_WASTE
    return 0 if extent == ow or extent * den > num * ow else extent


def reads_flat_input(geometry: Conv3DGeometry) -> bool:
    """Whether the operator reads the input as a flat view (no padding, so no padded copy)."""
    return not any(geometry.padding)


def geometry_kwargs(attrs) -> dict:
    """``kgs_conv3d_te``'s geometry keywords back from a PrimFunc's attributes (for passes
    that rebuild the operator)."""
    geo = [int(v) for v in attrs[KGS_GEOMETRY_ATTR]]
    kwargs = dict(kernel=geo[0:3], strides=geo[3:6], padding=geo[6:12], dilation=geo[12:15],
                  input_shape=geo[15:20])
    if KGS_CHANNELWISE_ATTR in attrs:  # a KGS operator (the Winograd one has no such form)
        kwargs["channel_multiplier"] = int(attrs[KGS_CHANNELWISE_ATTR])
        kwargs["row_extent"] = int(attrs[KGS_ROW_EXTENT_ATTR])
        kwargs["copy_layout"] = str(attrs[KGS_COPY_LAYOUT_ATTR])
    return kwargs


def kgs_conv3d_attrs(geometry: Conv3DGeometry, group_m: int, multiplier: int = 0,
                     row_extent: int = 0) -> dict:
    """The PrimFunc attributes that mark the operator and give schedules its geometry
    (``multiplier``: :func:`channel_multiplier`; ``row_extent``: :func:`whole_vector_rows`)."""
    return {
        KGS_CONV3D_ATTR: int(group_m),
        KGS_CHANNELWISE_ATTR: int(multiplier),
        KGS_ROW_EXTENT_ATTR: int(row_extent),
        KGS_PADDED_ATTR: [int(v) for v in geometry.stored_spatial],
        KGS_COPY_LAYOUT_ATTR: geometry.copy_layout,
        KGS_STRIDES_ATTR: [int(v) for v in geometry.strides],
        KGS_W_PHASES_ATTR: int(geometry.w_phases),
        KGS_GEOMETRY_ATTR: [int(v) for v in (*geometry.kernel, *geometry.strides,
                                             *geometry.padding, *geometry.dilation,
                                             *geometry.input_shape)],
        # kOpaque: FuseOps must not fuse neighbours into the hand-scheduled operator
        "op_pattern": 8,
    }


def kgs_conv3d_primfunc(
    input_shape: Sequence[int],
    packed: KGSCompact,
    strides: Sequence[int] = (1, 1, 1),
    padding: Sequence[int] = (0, 0, 0),
    dilation: Sequence[int] = (1, 1, 1),
    dtype: str = "float32",
    row_extent: int = 0,
    copy_layout: str = "CDHW",
) -> tirx.PrimFunc:
    """A standalone PrimFunc ``main(x, values, offsets, y)`` for one layer.

    Used by tests, benchmarks and tuning; the Relax pass builds the same function through
    ``BlockBuilder.call_te`` (``row_extent``, ``copy_layout``: see :func:`kgs_conv3d_te`).
    """
    geo = Conv3DGeometry(input_shape, packed.weight_shape[2:], strides, padding, dilation,
                         copy_layout)
    x = te.placeholder(geo.input_shape, dtype, name="x")
    values = te.placeholder(packed.values.shape, dtype, name="values")
    offsets = te.placeholder(packed.values.shape[:2], "int32", name="offsets")
    multiplier = channel_multiplier(packed, geo)
    y = kgs_conv3d_te(x, values, offsets, packed.weight_shape[0], geo.kernel, geo.strides,
                      geo.padding, geo.dilation, channel_multiplier=multiplier,
                      row_extent=row_extent, copy_layout=copy_layout)
    func = te.create_prim_func([x, values, offsets, y])
    return func.with_attrs({"global_symbol": "main",
                            **kgs_conv3d_attrs(geo, packed.group[0], multiplier, row_extent)})
