"""RT3D's Relax passes, one per file, and the per-layer analysis they share.

* :class:`FoldBatchNormToConv3D` -- inference batch norm into the conv3d weights;
* :class:`RewriteKGSConv3D` -- pruned (and, by default, dense) conv3d to RT3D's operator;
* :class:`RewriteWinogradConv3D` -- the layers the cost model gives to Winograd;
* :class:`SelectConv3DAlgorithm` -- both rewrites: Winograd where chosen, direct elsewhere;
* :class:`FuseKGSConv3DEpilogue` -- bias, residual add and ReLU into either operator;
* :class:`VectorizeSigmoid` -- sigmoid and SiLU with an ``exp`` LLVM vectorizes;
* :func:`rt3d_rewrite` -- fold, select and fuse in the ``rt3d`` pipeline's order;
* :func:`inspect` / :func:`format_reports` -- what the rewrite does to each layer, and why.
"""

from .analysis import Conv3DReport, format_reports, inspect
from .fold_batch_norm_to_conv3d import FoldBatchNormToConv3D
from .fuse_kgs_conv3d_epilogue import FuseKGSConv3DEpilogue
from .options import RewriteOptions
from .rewrite import rt3d_rewrite
from .rewrite_kgs_conv3d import RewriteKGSConv3D
from .rewrite_winograd_conv3d import RewriteWinogradConv3D
from .select_conv3d_algorithm import SelectConv3DAlgorithm
from .vectorize_sigmoid import VectorizeSigmoid

__all__ = [
    "Conv3DReport",
    "FoldBatchNormToConv3D",
    "FuseKGSConv3DEpilogue",
    "RewriteKGSConv3D",
    "RewriteOptions",
    "RewriteWinogradConv3D",
    "SelectConv3DAlgorithm",
    "VectorizeSigmoid",
    "format_reports",
    "inspect",
    "rt3d_rewrite",
]
