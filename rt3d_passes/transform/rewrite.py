"""``rt3d_rewrite``: RT3D's graph rewrite as one pass (the ``rt3d`` pipeline's first phase).

Tuning extracts its tasks through the same function, so a database tuned with some options
applies to a compile with the same options.
"""

from __future__ import annotations

import tvm

from .fold_batch_norm_to_conv3d import FoldBatchNormToConv3D
from .fuse_kgs_conv3d_epilogue import FuseKGSConv3DEpilogue
from .options import RewriteOptions
from .select_conv3d_algorithm import SelectConv3DAlgorithm

__all__ = ["rt3d_rewrite"]


def rt3d_rewrite(options: RewriteOptions | None = None,
                 fuse_epilogue: bool = True) -> tvm.transform.Pass:
    """Batch norm folded into conv3d weights, conv3d layers to RT3D's operators (Winograd or
    direct, as ``options`` and the cost model say), and the bias / residual add / ReLU that
    follow fused into them.

    Notes
    -----
    Run it before ``LegalizeOps`` (it matches ``R.nn.conv3d``).
    """
    return tvm.transform.Sequential([
        FoldBatchNormToConv3D(),
        SelectConv3DAlgorithm(options),
        FuseKGSConv3DEpilogue() if fuse_epilogue else tvm.transform.Sequential([]),
    ], name="RT3DRewrite")
