"""RT3D's operators as TE computes; the Relax passes emit them with ``BlockBuilder.call_te``.

* :mod:`.kgs_conv3d` -- the sparse kernel-group-structured conv3d and its geometry;
* :mod:`.epilogue` -- the same operator with bias, residual add and ReLU fused.

The names their PrimFuncs carry (attributes, blocks, schedule rules) are in
:mod:`schedules.contract`.
"""

from .epilogue import kgs_conv3d_epilogue_te
from .kgs_conv3d import (
    PAD_OFFSET,
    Conv3DGeometry,
    column_offsets,
    geometry_kwargs,
    kgs_conv3d_attrs,
    kgs_conv3d_primfunc,
    kgs_conv3d_te,
    reads_flat_input,
)

__all__ = [
    "PAD_OFFSET",
    "Conv3DGeometry",
    "column_offsets",
    "geometry_kwargs",
    "kgs_conv3d_attrs",
    "kgs_conv3d_epilogue_te",
    "kgs_conv3d_primfunc",
    "kgs_conv3d_te",
    "reads_flat_input",
]
