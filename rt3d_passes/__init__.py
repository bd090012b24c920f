"""RT3D's TVM plugin: Relax passes that compile structurally pruned conv3d layers into sparse
kernel-group-structured (KGS) operators, and the ``rt3d`` pipeline.

Quick start::

    import rt3d_passes, tvm
    mod = rt3d_passes.from_torch(model, (x,))            # weights as constants
    print(rt3d_passes.format_reports(rt3d_passes.inspect(mod)))
    ex = tvm.compile(mod, target, relax_pipeline=tvm.relax.get_pipeline("rt3d", target=target))

Rooms: :mod:`.op` (operators' computes), :mod:`.transform` (passes and their analysis),
:mod:`.tuning`, :mod:`.rpc`, :mod:`.cli`, :mod:`.testing`; :mod:`.sparsity` is the numpy
contract with ``rt3d_prune``. The names below are the public API (re-exported as ``X as X``).
"""

from . import sparsity as sparsity
from .frontend import from_exported as from_exported
from .frontend import from_torch as from_torch
from .op import kgs_conv3d_primfunc as kgs_conv3d_primfunc
from .op import kgs_conv3d_te as kgs_conv3d_te
from .op import winograd_conv3d_primfunc as winograd_conv3d_primfunc
from .op import winograd_conv3d_te as winograd_conv3d_te
from .pipeline import rt3d_pipeline as rt3d_pipeline
from .target import get_target as get_target
from .target import host_target as host_target
from .target import kryo_target as kryo_target
from .transform import Conv3DReport as Conv3DReport
from .transform import FoldBatchNormToConv3D as FoldBatchNormToConv3D
from .transform import FuseKGSConv3DEpilogue as FuseKGSConv3DEpilogue
from .transform import RewriteKGSConv3D as RewriteKGSConv3D
from .transform import RewriteOptions as RewriteOptions
from .transform import RewriteWinogradConv3D as RewriteWinogradConv3D
from .transform import SelectConv3DAlgorithm as SelectConv3DAlgorithm
from .transform import VectorizeSigmoid as VectorizeSigmoid
from .transform import format_reports as format_reports
from .transform import inspect as inspect
