"""Per-layer analysis of ``R.nn.conv3d``: what sparsity a layer has and whether RT3D rewrites it.

The rewrite pass and :func:`inspect` share :func:`analyze_conv3d` and
:class:`~rt3d_passes.transform.options.RewriteOptions`, so the report a user reads is exactly
the decision the pass takes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tvm
from tvm import IRModule, relax

from ..op.kgs_conv3d import Conv3DGeometry
from ..sparsity import SparsityFormatError, SparsityInfo, classify
from ..target import host_target
from .algorithm import choose_algorithm
from .options import RewriteOptions

__all__ = [
    "CONV3D_OP",
    "LAYER_NAMES_ATTR",
    "Conv3DCallRewriter",
    "Conv3DReport",
    "analyze_conv3d",
    "analyze_function",
    "check_forced_layers",
    "conv3d_weight",
    "format_reports",
    "grouped_unit",
    "inspect",
    "static_shape",
    "ungroup",
]

CONV3D_OP = tvm.ir.Op.get("relax.nn.conv3d")
#: Function attribute (list of str) naming the conv3d calls of a function in binding order;
#: written by :func:`rt3d_passes.from_torch` from the torch module names.
LAYER_NAMES_ATTR = "rt3d.conv3d_names"


@dataclasses.dataclass(frozen=True)
class Conv3DReport:
    """What RT3D found in one ``R.nn.conv3d`` call and what it does with it."""

    function: str
    layer: str
    """Torch module name when known (``from_torch``), else the Relax variable name."""
    input_shape: tuple[int, ...] | None
    weight_shape: tuple[int, ...] | None
    strides: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    sparsity: SparsityInfo | None
    """``None`` when the weight could not be read (not a constant, bad dtype...)."""
    rewrite: bool
    reason: str
    """Why the layer is rewritten or left dense, in words."""
    dense_macs: int = 0
    """Layer MACs of the dense conv (all batch elements and output voxels)."""
    kept_macs: int = 0
    computed_macs: int = 0
    """Layer MACs the KGS operator executes (kept + padding of shorter groups)."""
    sparse: bool = False
    """Rewritten as a structured sparse layer (its pruned columns skipped)."""
    groups: int = 1
    """The conv's groups (> 1: grouped or depthwise; the sparsity is of its block diagonal)."""
    algorithm: str = "direct"
    """``"direct"`` (the KGS operator, sparse or dense) or ``"winograd"``, for rewritten
    layers (see :mod:`rt3d_passes.transform.algorithm`)."""
    winograd_tile: int = 0
    """``m`` of ``F(m x m, 3 x 3)`` when the algorithm is Winograd."""
    winograd_group_m: int = 0
    """Output channels per group of the Winograd operator's transformed weights."""
    algorithm_reason: str = ""
    """Why the cost model (or the user) chose the algorithm."""

    @property
    def scheme(self) -> str:
        if self.groups > 1 and not self.sparse and self.sparsity:
            return "grouped"  # its block diagonal reads as vanilla; the layer is not pruned
        return self.sparsity.scheme if self.sparsity else "-"

    @property
    def group(self) -> tuple[int, int] | None:
        return self.sparsity.group if self.sparsity else None

    @property
    def kernel(self) -> str:
        """The kernel the layer gets: RT3D's sparse or dense operator, or TVM's default."""
        if not self.rewrite:
            return "tvm conv3d"
        if self.algorithm == "winograd":
            kind = "sparse " if self.sparse else ""
            return f"rt3d {kind}winograd F({self.winograd_tile}x{self.winograd_tile})"
        return "rt3d sparse" if self.sparse else "rt3d dense"

    @property
    def mac_reduction(self) -> float:
        if not self.kept_macs:
            return float("inf") if self.dense_macs else 1.0
        return self.dense_macs / self.kept_macs


def static_shape(expr: relax.Expr) -> tuple[int, ...] | None:
    """The static shape of a tensor expression, or None (not a tensor, unknown rank, or a
    symbolic dimension)."""
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return tuple(int(v) for v in ty.shape.values)
    except (TypeError, AttributeError):
        return None  # symbolic dimension


def ungroup(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv3d weight ``[M, N/groups, K...]`` as the equivalent dense weight
    ``[M, N, K...]``: block diagonal, zero where an output channel does not read an input
    channel. Those zeros are whole units of any :func:`grouped_unit`, so RT3D's operator
    computes exactly the grouped conv's MACs."""
    m, ng = weight.shape[:2]
    mg = m // groups
    dense = np.zeros((m, ng * groups, *weight.shape[2:]), dtype=weight.dtype)
    for g in range(groups):
        dense[g * mg:(g + 1) * mg, g * ng:(g + 1) * ng] = weight[g * mg:(g + 1) * mg]
    return dense


def grouped_unit(out_per_group: int, in_per_group: int) -> tuple[int, int]:
    """The kernel-group shape for a grouped conv3d: the largest ``g_m <= 8`` dividing the
    output channels of a channel group (a vector of output channels shares each column) and
    ``g_n <= 4`` dividing its input channels, so no unit straddles two channel groups."""
    gm = max(d for d in range(1, min(out_per_group, 8) + 1) if out_per_group % d == 0)
    gn = max(d for d in range(1, min(in_per_group, 4) + 1) if in_per_group % d == 0)
    return gm, gn


def conv3d_weight(call: relax.Call) -> np.ndarray:
    """The constant weight of a conv3d call as the dense ``[M, N, K...]`` weight RT3D's
    operator reads (grouped convs :func:`ungroup`-ed)."""
    weight = call.args[1].value.numpy()
    groups = int(call.attrs.groups)
    return ungroup(weight, groups) if groups > 1 else weight


def analyze_conv3d(
    call: relax.Call,
    *,
    function: str,
    layer: str,
    options: RewriteOptions | None = None,
) -> Conv3DReport:
    """Analyze one ``R.nn.conv3d`` call.

    Parameters
    ----------
    call : relax.Call
        A call of ``relax.nn.conv3d``.
    function, layer : str
        Names used in the report and in error messages.
    options : RewriteOptions, optional
        What is rewritten (default: :class:`RewriteOptions`'s defaults).
    """
    opts = options or RewriteOptions()
    group, include_dense = opts.group, opts.include_dense
    min_mac_reduction, stray_tolerance = opts.min_mac_reduction, opts.stray_tolerance
    a = call.attrs
    data, weight = call.args[0], call.args[1]
    in_shape, w_shape = static_shape(data), static_shape(weight)
    common = dict(
        function=function,
        layer=layer,
        input_shape=in_shape,
        weight_shape=w_shape,
        strides=tuple(int(v) for v in a.strides),
        padding=tuple(int(v) for v in a.padding),
        dilation=tuple(int(v) for v in a.dilation),
        groups=int(a.groups),
    )

    def dense(reason: str, info: SparsityInfo | None = None, macs=(0, 0, 0)) -> Conv3DReport:
        return Conv3DReport(**common, sparsity=info, rewrite=False, reason=reason,
                            dense_macs=macs[0], kept_macs=macs[1], computed_macs=macs[2])

    if a.data_layout != "NCDHW" or a.kernel_layout != "OIDHW" or a.out_layout != "NCDHW":
        return dense(f"layout {a.data_layout}/{a.kernel_layout}/{a.out_layout} "
                     "(only NCDHW/OIDHW/NCDHW)")
    groups = int(a.groups)
    if not isinstance(weight, tvm.ir.GenericConst):
        return dense("weight is not a constant (bind it: relax.transform.BindParams "
                     "or rt3d_passes.from_torch)")
    if in_shape is None or w_shape is None:
        return dense("dynamic shape")
    dtypes = {str(data.ty.dtype), str(weight.ty.dtype), str(a.out_dtype or data.ty.dtype)}
    dtypes.discard("")
    if dtypes != {"float32"}:
        return dense(f"dtype {sorted(dtypes)} (only float32)")
    if in_shape[1] != w_shape[1] * groups or w_shape[0] % groups:
        # Relax's type inference rejects this too; guard anyway so a bad module never reaches
        # the kernel with mismatched channels
        raise ValueError(
            f"{function}/{layer}: input {in_shape} has {in_shape[1]} channels but weight "
            f"{w_shape} with groups={groups} expects {w_shape[1] * groups}"
        )
    geo = Conv3DGeometry(in_shape, w_shape[2:], common["strides"], common["padding"],
                         common["dilation"])
    voxels = in_shape[0] * int(np.prod(geo.output_spatial))
    w_np = conv3d_weight(call)
    grouped = f"grouped conv3d (groups={groups}): " if groups > 1 else ""
    if groups > 1:
        # a channel group's block is read as whole units: the kernel skips the rest exactly
        group = grouped_unit(w_shape[0] // groups, w_shape[1])
    try:
        info = classify(w_np, group, stray_tolerance=stray_tolerance, name=f"{function}/{layer}")
    except SparsityFormatError as err:
        if not include_dense:
            return dense(f"group does not fit: {err}")
        # computed dense anyway: any group shape that fits will do
        info = classify(w_np, None, stray_tolerance=stray_tolerance, name=f"{function}/{layer}")
    # a grouped conv's own MACs are its dense MACs (the block diagonal is not pruning)
    layer_macs = int(np.prod(w_shape))
    macs = (layer_macs * voxels, info.kept_macs * voxels, info.computed_macs * voxels)
    if info.nonfinite:
        return dense(f"{info.nonfinite} NaN/Inf weights", info, macs)
    reduction = layer_macs / max(info.kept_macs, 1)

    def rewritten(reason: str, sparse: bool) -> Conv3DReport:
        choice = choose_algorithm(layer=layer, geometry=geo, weight=w_np,
                                  computed_macs=macs[2], groups=groups,
                                  group_m=info.group[0] if sparse else None, options=opts)
        if not sparse and choice.algorithm == "direct":
            reason += "; computed dense by RT3D's kernel"
        return Conv3DReport(**common, sparsity=info, rewrite=True, reason=reason,
                            dense_macs=macs[0], kept_macs=macs[1], computed_macs=macs[2],
                            sparse=sparse, algorithm=choice.algorithm,
                            winograd_tile=choice.tile, winograd_group_m=choice.group_m,
                            algorithm_reason=choice.reason)

    if info.is_structured and reduction >= min_mac_reduction:
        return rewritten(f"{grouped}{info.scheme} {info.group[0]}x{info.group[1]}, "
                         f"{reduction:.2f}x fewer MACs", True)
    if groups > 1:
        why = grouped + ("unpruned" if info.kept_macs == layer_macs else
                         f"below threshold: {reduction:.2f}x < min_mac_reduction "
                         f"{min_mac_reduction:g}")
    elif info.scheme == "unstructured":
        why = (f"unstructured: {info.stray_zero_fraction:.1%} of weights are zero outside "
               "whole kernel-group units")
    elif info.scheme == "dense":
        why = "dense"
    else:
        why = (f"below threshold: {info.mac_reduction:.2f}x < min_mac_reduction "
               f"{min_mac_reduction:g}")
    if include_dense:
        return rewritten(why, False)
    return dense(why, info, macs)


@relax.expr_functor.mutator
class Conv3DCallRewriter(relax.PyExprMutator):
    """Replaces the conv3d calls of a function whose report ``takes`` accepts with
    ``emit(builder, call, report)``; the rewrite passes' shared mutator.

    Set ``reports`` to :func:`analyze_function`'s list for the function before visiting it:
    the post-order visit meets the conv3d bindings in the order that list has them.
    """

    def __init__(self, mod: IRModule, takes: Callable[[Conv3DReport], bool],
                 emit: Callable[[relax.BlockBuilder, relax.Call, Conv3DReport], relax.Expr]):
        super().__init__(mod)
        self.takes, self.emit = takes, emit
        self.reports: list[Conv3DReport] = []

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = self.visit_expr_post_order(call)
        if not call.op.same_as(CONV3D_OP):
            return call
        report = self.reports.pop(0)
        return self.emit(self.builder_, call, report) if self.takes(report) else call


@relax.expr_functor.visitor
class _Conv3DCollector(relax.PyExprVisitor):
    """Conv3d bindings of a function, in binding order: [(variable name, call)]."""

    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, relax.Call]] = []

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        value = binding.value
        if isinstance(value, relax.Call) and value.op.same_as(CONV3D_OP):
            self.found.append((binding.var.name, value))
        super().visit_var_binding_(binding)


def analyze_function(func: relax.Function, function: str,
                     options: RewriteOptions | None = None) -> list[Conv3DReport]:
    """:func:`analyze_conv3d` for every conv3d of ``func``, in binding order.

    Layers are named from the function's ``rt3d.conv3d_names`` attribute when it is present
    and has one name per conv3d, else by their Relax variable.
    """
    collector = _Conv3DCollector()
    collector.visit_expr(func)
    names = [name for name, _ in collector.found]
    if func.attrs and LAYER_NAMES_ATTR in func.attrs:
        given = [str(v) for v in func.attrs[LAYER_NAMES_ATTR]]
        if len(given) == len(names):
            names = given
    return [
        analyze_conv3d(call, function=function, layer=name, options=options)
        for name, (_, call) in zip(names, collector.found)
    ]


def inspect(
    mod: IRModule,
    options: RewriteOptions | None = None,
    *,
    min_mac_reduction: float | None = None,
    group: Sequence[int] | None = None,
    include_dense: bool | None = None,
    stray_tolerance: float | None = None,
    winograd: bool | None = None,
    algorithms=None,
    target: tvm.target.Target | None = None,
) -> list[Conv3DReport]:
    """Report every ``R.nn.conv3d`` of ``mod``: scheme, group, MACs, and what
    :class:`~rt3d_passes.SelectConv3DAlgorithm` with the same options would do (which kernel,
    direct or Winograd), and why.

    ``options`` (default :class:`RewriteOptions`'s defaults, which the ``rt3d`` pipeline
    uses), with any keyword given replacing its field. Print the result with
    :func:`format_reports`. ``target``: the target whose cost model decides the algorithms
    (default: the current target, else the host's), as a compile for it would.
    """
    target = target or tvm.target.Target.current(allow_none=True) or host_target()
    opts = RewriteOptions.of(options, min_mac_reduction=min_mac_reduction, group=group,
                             include_dense=include_dense, stray_tolerance=stray_tolerance,
                             winograd=winograd, algorithms=algorithms)
    reports: list[Conv3DReport] = []
    with target:
        for g_var, func in mod.functions_items():
            if isinstance(func, relax.Function):
                reports.extend(analyze_function(func, g_var.name_hint, opts))
    check_forced_layers(reports, opts)
    return reports


def check_forced_layers(reports: Sequence[Conv3DReport], options: RewriteOptions) -> None:
    """Raise ``ValueError`` when ``options.algorithms`` names a layer that none of the
    reports has (a typo would otherwise silently force nothing)."""
    names = {r.layer for r in reports}
    unknown = sorted(k for k, _ in options.algorithms if k not in names)
    if unknown:
        raise ValueError(f"algorithms forced for unknown layer(s) {', '.join(unknown)}; the "
                         f"conv3d layers are: {', '.join(sorted(names)) or '(none)'}")


def format_reports(reports: Sequence[Conv3DReport]) -> str:
    """A table of conv3d reports, with a total line. Layer names are printed whole; ``pad`` is
    the extra work of rewritten layers over their kept MACs (shorter groups padded to the
    longest); the action names the kernel each layer gets and why."""
    width = max([18, len("total conv3d"), *(len(r.layer) for r in reports)])
    head = (f"{'layer':<{width}} {'weight':<20} {'scheme':<12} {'group':<6} {'GMACs':>8} "
            f"{'kept':>8} {'red.':>6} {'pad':>5}  action")
    lines = [head, "-" * len(head)]
    tot_dense = tot_kept = 0
    for r in reports:
        w = "x".join(str(v) for v in r.weight_shape) if r.weight_shape else "?"
        g = f"{r.group[0]}x{r.group[1]}" if r.group else "-"
        kept = r.kept_macs if r.rewrite else r.dense_macs
        tot_dense += r.dense_macs
        tot_kept += kept
        act = f"{r.kernel}: {r.reason}"
        if r.rewrite and r.algorithm_reason:
            act += f" [{r.algorithm_reason}]"
        pad = f"{r.computed_macs / r.kept_macs - 1:>4.0%}" if r.rewrite and r.kept_macs else "-"
        lines.append(
            f"{r.layer:<{width}} {w:<20} {r.scheme:<12} {g:<6} {r.dense_macs / 1e9:>8.3f} "
            f"{kept / 1e9:>8.3f} {r.dense_macs / max(kept, 1):>5.2f}x {pad:>5}  {act}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'total conv3d':<{width}} {'':<20} {'':<12} {'':<6} {tot_dense / 1e9:>8.3f} "
        f"{tot_kept / 1e9:>8.3f} {tot_dense / max(tot_kept, 1):>5.2f}x"
    )
    return "\n".join(lines)
