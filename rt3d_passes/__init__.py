"""RT3D's TVM plugin: Relax passes that compile structurally pruned conv3d layers into sparse
kernel-group-structured (KGS) operators, and the ``rt3d`` pipeline.

Quick start::

    import rt3d_passes, tvm
    mod = rt3d_passes.from_torch(model, (x,))            # weights as constants
    print(rt3d_passes.format_reports(rt3d_passes.inspect(mod)))
    ex = tvm.compile(mod, target, relax_pipeline=tvm.relax.get_pipeline("rt3d", target=target))

Rooms: :mod:`.op` (operators' computes), :mod:`.transform` (passes and their analysis),
:mod:`.tuning`, :mod:`.rpc`, :mod:`.cli`, :mod:`.testing`; :mod:`.sparsity` is the numpy
contract with ``rt3d_prune``.
"""

from . import sparsity
from .frontend import from_exported, from_torch
from .op import kgs_conv3d_primfunc, kgs_conv3d_te
from .pipeline import rt3d_pipeline
from .target import get_target, host_target, kryo_target
from .transform import (
    Conv3DReport,
    FoldBatchNormToConv3D,
    FuseKGSConv3DEpilogue,
    RewriteKGSConv3D,
    RewriteOptions,
    format_reports,
    inspect,
)

__all__ = [
    "Conv3DReport",
    "FoldBatchNormToConv3D",
    "FuseKGSConv3DEpilogue",
    "RewriteKGSConv3D",
    "RewriteOptions",
    "format_reports",
    "from_exported",
    "from_torch",
    "get_target",
    "host_target",
    "inspect",
    "kgs_conv3d_primfunc",
    "kgs_conv3d_te",
    "kryo_target",
    "rt3d_pipeline",
    "sparsity",
]
