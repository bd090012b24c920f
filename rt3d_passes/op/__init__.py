"""RT3D's operators as TE computes; the Relax passes emit them with ``BlockBuilder.call_te``.

* :mod:`.kgs_conv3d` -- the sparse kernel-group-structured conv3d and its geometry;
* :mod:`.epilogue` -- the same operator with bias, residual add and ReLU fused;
* :mod:`.sigmoid` -- sigmoid and SiLU with a vectorizable ``exp``;
* :mod:`.winograd_conv3d` -- depth-sliced Winograd F(m x m, 3 x 3) conv3d, epilogue included.

The names their PrimFuncs carry (attributes, blocks, schedule rules) are in
:mod:`schedules.contract`. Re-exported here (``X as X``): the public names of both modules.
"""

from .epilogue import kgs_conv3d_epilogue_te as kgs_conv3d_epilogue_te
from .kgs_conv3d import COPY_LAYOUTS as COPY_LAYOUTS
from .kgs_conv3d import PAD_OFFSET as PAD_OFFSET
from .kgs_conv3d import Conv3DGeometry as Conv3DGeometry
from .kgs_conv3d import channel_multiplier as channel_multiplier
from .kgs_conv3d import column_offsets as column_offsets
from .kgs_conv3d import geometry_kwargs as geometry_kwargs
from .kgs_conv3d import kgs_conv3d_attrs as kgs_conv3d_attrs
from .kgs_conv3d import kgs_conv3d_primfunc as kgs_conv3d_primfunc
from .kgs_conv3d import kgs_conv3d_te as kgs_conv3d_te
from .kgs_conv3d import pad_columns as pad_columns
from .kgs_conv3d import pointwise_rows as pointwise_rows
from .kgs_conv3d import reads_flat_input as reads_flat_input
from .kgs_conv3d import shares_taps as shares_taps
from .kgs_conv3d import whole_vector_rows as whole_vector_rows
from .sigmoid import sigmoid_te as sigmoid_te
from .sigmoid import silu_expr as silu_expr
from .sigmoid import silu_te as silu_te
from .sigmoid import vector_exp as vector_exp
from .winograd_conv3d import WINOGRAD_RTOL as WINOGRAD_RTOL
from .winograd_conv3d import WINOGRAD_TILES as WINOGRAD_TILES
from .winograd_conv3d import WinogradGeometry as WinogradGeometry
from .winograd_conv3d import winograd_columns as winograd_columns
from .winograd_conv3d import winograd_conv3d_attrs as winograd_conv3d_attrs
from .winograd_conv3d import winograd_conv3d_primfunc as winograd_conv3d_primfunc
from .winograd_conv3d import winograd_conv3d_te as winograd_conv3d_te
from .winograd_conv3d import winograd_ineligible as winograd_ineligible
from .winograd_conv3d import winograd_matrices as winograd_matrices
from .winograd_conv3d import winograd_offsets as winograd_offsets
from .winograd_conv3d import winograd_pack_weights as winograd_pack_weights
