"""RT3D's TVM plugin: Relax passes that compile structurally pruned conv3d layers into sparse
kernel-group-structured (KGS) operators, and the ``rt3d`` pipeline.

Quick start::

    import rt3d_passes, tvm
    mod = rt3d_passes.from_torch(model, (x,))            # weights as constants
    print(rt3d_passes.format_reports(rt3d_passes.inspect(mod)))
    ex = tvm.compile(mod, target, relax_pipeline=tvm.relax.get_pipeline("rt3d", target=target))
"""

from . import sparsity
from .conv3d_analysis import Conv3DReport, format_reports
from .fold_batch_norm_to_conv3d import FoldBatchNormToConv3D
from .frontend import from_torch
from .fuse_kgs_conv3d_epilogue import FuseKGSConv3DEpilogue
from .inspect_conv3d import inspect
from .kgs_conv3d import kgs_conv3d_primfunc, kgs_conv3d_te
from .pipeline import rt3d_pipeline
from .rewrite_kgs_conv3d import RewriteKGSConv3D
from .target import get_target, host_target, kryo_target

__all__ = [
    "Conv3DReport",
    "FoldBatchNormToConv3D",
    "FuseKGSConv3DEpilogue",
    "RewriteKGSConv3D",
    "format_reports",
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
