"""The names RT3D's operators and their schedules agree on, defined once.

``rt3d_passes.op`` builds PrimFuncs that carry these attributes, block names and
``schedule_rule`` annotations; every rule in :mod:`schedules` finds its operator by them. This
module imports only tvm, so both packages can import it and imports run one way:
``rt3d_passes`` → ``schedules`` → ``tvm``.
"""

from __future__ import annotations

from tvm import tirx

__all__ = [
    "KGS_CHANNELWISE_ATTR",
    "KGS_CONV3D_ATTR",
    "KGS_CONV3D_BLOCK",
    "KGS_COPY_LAYOUT_ATTR",
    "KGS_CROP_BLOCK",
    "KGS_EPILOGUE_BLOCK",
    "KGS_GEOMETRY_ATTR",
    "KGS_PADDED_ATTR",
    "KGS_PAD_BLOCK",
    "KGS_ROW_EXTENT_ATTR",
    "KGS_SCHEDULE_RULE",
    "KGS_STRIDES_ATTR",
    "KGS_VALUES_BLOCK",
    "KGS_W_PHASES_ATTR",
    "NO_SCHEDULE_RULE",
    "WINOGRAD_BGEMM_BLOCK",
    "WINOGRAD_CONV3D_ATTR",
    "WINOGRAD_EPILOGUE_BLOCK",
    "WINOGRAD_GROUP_ATTR",
    "WINOGRAD_INVERSE_BLOCK",
    "WINOGRAD_PACK_BLOCK",
    "WINOGRAD_PAD_BLOCK",
    "WINOGRAD_SCHEDULE_RULE",
    "WINOGRAD_SHAPE_ATTR",
    "channel_block",
    "func_attr",
    "is_kgs_conv3d",
    "is_rt3d_conv3d",
    "is_winograd_conv3d",
]

#: PrimFunc attribute marking the KGS conv3d operator; its value is the group size g_m.
KGS_CONV3D_ATTR = "rt3d.kgs_conv3d"
#: PrimFunc attribute: (Dp, Hp, Wp) of the flat padded input.
KGS_PADDED_ATTR = "rt3d.padded_spatial"
#: PrimFunc attribute: (s_d, s_h, s_w) (vectorizing along W needs s_w = 1, or W phases).
KGS_STRIDES_ATTR = "rt3d.strides"
#: PrimFunc attribute: how many phases the padded copy splits each row along W into (s_w for
#: a W-strided conv with a padded copy: output positions then read consecutive elements).
KGS_W_PHASES_ATTR = "rt3d.w_phases"
#: PrimFunc attribute: the channel multiplier ``k`` of a channel-wise (depthwise) operator, 0
#: for any other. Channel-wise: one output channel per group, group ``g`` reading only input
#: channel ``g // k``; its padded copy is then ``[N, C, Dp*Hp*Wp]`` and its offsets are
#: relative to the channel, so a schedule can pad each channel where it is consumed.
KGS_CHANNELWISE_ATTR = "rt3d.channel_multiplier"
#: PrimFunc attribute: the output row length the operator computes, 0 when it is the output's
#: W. Longer rows (whole vectors along W on CPUs) are cropped by the crop block; their padded
#: copy then holds one extra zero channel, so the reads past a row stay in bounds.
KGS_ROW_EXTENT_ATTR = "rt3d.row_extent"
#: PrimFunc attribute: the layout of the padded copy, ``"CDHW"`` (each channel's padded
#: volume in turn), ``"DHCW"`` (for each padded depth plane and row, every channel's row in
#: turn, so the rows one output row reads for all its columns lie together) or
#: ``"CDHW8c"`` / ``"CDHW4c"`` (channel-wise operators: blocks of channels, each block's
#: volume with its channels innermost; ``op.kgs_conv3d.Conv3DGeometry``).
KGS_COPY_LAYOUT_ATTR = "rt3d.copy_layout"
#: PrimFunc attribute: the conv geometry ``[kernel(3), strides(3), padding(6), dilation(3),
#: input shape(5)]``, for passes that rebuild the operator (the epilogue fusion).
KGS_GEOMETRY_ATTR = "rt3d.geometry"

#: The convolution's compute block.
KGS_CONV3D_BLOCK = "kgs_conv3d"
#: The zero-padded flat copy of the input, read by the convolution's gathers (absent when the
#: conv has no padding: the operator then reads a flat view of the input).
KGS_PAD_BLOCK = "kgs_pad"
#: Drops the extra rows of a partial last output group.
KGS_CROP_BLOCK = "kgs_crop"
#: A channel-blocked operator's weights regrouped per block of channels (``[blocks, T,
#: block]``, zero past the last channel; :func:`channel_block`).
KGS_VALUES_BLOCK = "kgs_values_blocked"
#: The fused elementwise epilogue (bias, residual add, ReLU).
KGS_EPILOGUE_BLOCK = "kgs_epilogue"

#: The convolution block's ``schedule_rule`` annotation: MetaSchedule's ApplyCustomRule looks
#: up the global function ``s_tir.meta_schedule.<target key>.rt3d.kgs_conv3d``.
KGS_SCHEDULE_RULE = "rt3d.kgs_conv3d"
#: ``schedule_rule`` of the operator's helper blocks: MetaSchedule's default rules leave them
#: to the operator's own rule.
NO_SCHEDULE_RULE = "None"

#: PrimFunc attribute marking the Winograd conv3d operator; its value is the tile size m of
#: F(m x m, 3 x 3).
WINOGRAD_CONV3D_ATTR = "rt3d.winograd_conv3d"
#: PrimFunc attribute: output channels per group of the transformed weights (g_m).
WINOGRAD_GROUP_ATTR = "rt3d.winograd_group"
#: PrimFunc attribute: ``(Dp, Hp, Wp, nH, nW)``, the tiled padded input (``Wp``: its stored
#: row, split into ``m`` W phases) and the tile grid.
WINOGRAD_SHAPE_ATTR = "rt3d.winograd_shape"
#: Blocks of the Winograd operator: padded input, input transform, transformed-domain GEMM,
#: output transform, fused epilogue.
WINOGRAD_PAD_BLOCK = "winograd_pad"
WINOGRAD_PACK_BLOCK = "winograd_pack"
WINOGRAD_BGEMM_BLOCK = "winograd_bgemm"
WINOGRAD_INVERSE_BLOCK = "winograd_inverse"
WINOGRAD_EPILOGUE_BLOCK = "winograd_epilogue"
#: The GEMM block's ``schedule_rule`` (MetaSchedule custom rule of the whole operator).
WINOGRAD_SCHEDULE_RULE = "rt3d.winograd_conv3d"


def channel_block(copy_layout: str) -> int:
    """Channels per block of a channel-blocked copy layout (``"CDHW8c"``: 8; see
    :data:`KGS_COPY_LAYOUT_ATTR`), 0 for the others."""
    layout = str(copy_layout)
    digits = layout[4:-1]
    return int(digits) if layout.startswith("CDHW") and layout.endswith("c") and \
        digits.isdigit() else 0


def is_kgs_conv3d(func: object) -> bool:
    """True for a PrimFunc made by RT3D's KGS conv3d operator (with or without epilogue)."""
    return isinstance(func, tirx.PrimFunc) and bool(func.attrs) and KGS_CONV3D_ATTR in func.attrs


def func_attr(mod_or_func, key: str):
    """Attribute ``key`` of the PrimFunc being scheduled: the function itself, the only
    PrimFunc of a module (MetaSchedule tasks keep their own name), or a module's ``main``
    (dlight names it so)."""
    if isinstance(mod_or_func, tirx.PrimFunc):
        return mod_or_func.attrs[key]
    funcs = [f for f in mod_or_func.functions.values() if isinstance(f, tirx.PrimFunc)]
    return funcs[0].attrs[key] if len(funcs) == 1 else mod_or_func["main"].attrs[key]


def is_winograd_conv3d(func: object) -> bool:
    """True for a PrimFunc made by RT3D's Winograd conv3d operator."""
    return (isinstance(func, tirx.PrimFunc) and bool(func.attrs)
            and WINOGRAD_CONV3D_ATTR in func.attrs)


def is_rt3d_conv3d(func: object) -> bool:
    """True for either of RT3D's conv3d operators (direct KGS or Winograd)."""
    return is_kgs_conv3d(func) or is_winograd_conv3d(func)
