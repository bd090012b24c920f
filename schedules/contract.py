"""The names RT3D's operators and their schedules agree on, defined once.

``rt3d_passes.op`` builds PrimFuncs that carry these attributes, block names and
``schedule_rule`` annotations; every rule in :mod:`schedules` finds its operator by them. This
module imports only tvm, so both packages can import it and imports run one way:
``rt3d_passes`` → ``schedules`` → ``tvm``.
"""

from __future__ import annotations

from tvm import tirx

__all__ = [
    "KGS_CONV3D_ATTR",
    "KGS_CONV3D_BLOCK",
    "KGS_CROP_BLOCK",
    "KGS_EPILOGUE_BLOCK",
    "KGS_GEOMETRY_ATTR",
    "KGS_PADDED_ATTR",
    "KGS_PAD_BLOCK",
    "KGS_SCHEDULE_RULE",
    "KGS_STRIDES_ATTR",
    "NO_SCHEDULE_RULE",
    "func_attr",
    "is_kgs_conv3d",
]

#: PrimFunc attribute marking the KGS conv3d operator; its value is the group size g_m.
KGS_CONV3D_ATTR = "rt3d.kgs_conv3d"
#: PrimFunc attribute: (Dp, Hp, Wp) of the flat padded input.
KGS_PADDED_ATTR = "rt3d.padded_spatial"
#: PrimFunc attribute: (s_d, s_h, s_w) (vectorizing along W needs s_w = 1).
KGS_STRIDES_ATTR = "rt3d.strides"
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
#: The fused elementwise epilogue (bias, residual add, ReLU).
KGS_EPILOGUE_BLOCK = "kgs_epilogue"

#: The convolution block's ``schedule_rule`` annotation: MetaSchedule's ApplyCustomRule looks
#: up the global function ``s_tir.meta_schedule.<target key>.rt3d.kgs_conv3d``.
KGS_SCHEDULE_RULE = "rt3d.kgs_conv3d"
#: ``schedule_rule`` of the operator's helper blocks: MetaSchedule's default rules leave them
#: to the operator's own rule.
NO_SCHEDULE_RULE = "None"


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
