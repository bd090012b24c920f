"""RT3D's side of the benchmark: compile sparse and dense, run the VM, profile it per op."""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tvm
from tvm import relax

from schedules.cpu_kgs_conv3d import is_temporal


@dataclasses.dataclass
class Rt3dBuild:
    """One compiled RT3D variant (``sparse``: pruned model; ``dense``: every column kept)."""

    name: str
    executable: Any
    vm: relax.VirtualMachine
    weight_bytes: int
    compile_s: float
    reports: list = dataclasses.field(default_factory=list)
    layer_names: list[str] = dataclasses.field(default_factory=list)
    """Torch names of the conv3d layers in execution order (``rt3d.conv3d_names``)."""
    conv_weight_bytes: list[int] = dataclasses.field(default_factory=list)
    """Per conv3d layer (execution order): bytes of its compacted values + offsets."""

    def runner(self) -> Callable[[np.ndarray], np.ndarray]:
        """The VM as a peer-like callable: NumPy in (copied to a TVM tensor), NumPy out."""
        main = self.vm["main"]
        dev = tvm.cpu()

        def run(x: np.ndarray) -> np.ndarray:
            return main(tvm.runtime.tensor(x, dev)).numpy()

        return run


def open_tuning_db(path: str | None, target: tvm.target.Target):
    """The tuning database of ``path`` for ``target`` (``None``: untuned default schedules)."""
    if not path:
        return None
    from rt3d_passes.tuning import open_database

    return open_database(path, target)


def _tensor_bytes(expr: relax.Expr) -> int:
    """Bytes of a tensor constant (0 for anything else, e.g. shape integers)."""
    data = getattr(expr, "value", None) if isinstance(expr, tvm.ir.expr.Constant) else None
    if isinstance(data, tvm.runtime.Tensor):
        return int(np.prod(data.shape)) * np.dtype(str(data.dtype)).itemsize
    return 0


def constant_bytes(mod: tvm.IRModule, target: tvm.target.Target) -> tuple[int, list[int]]:
    """Bytes of the constants (weights) of ``mod`` after RT3D's rewrite, and per conv3d layer
    (execution order) the bytes of its RT3D operator's constants: compacted KGS values plus
    column offsets (every conv3d is rewritten: ``include_dense=True``)."""
    from rt3d_passes.transform import rt3d_rewrite

    with target:
        rewritten = rt3d_rewrite()(mod)
    seen: dict[int, int] = {}
    conv: list[int] = []

    def visit(expr: relax.Expr) -> None:
        if _tensor_bytes(expr):
            seen[hash(expr)] = _tensor_bytes(expr)
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.call_tir" \
                and expr.args[0].name_hint.startswith(RT3D_CONV_SYMBOLS):
            conv.append(sum(_tensor_bytes(f) for f in expr.args[1].fields[1:]))

    for func in rewritten.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return sum(seen.values()), conv


def compile_rt3d(name: str, model, x, target, database=None,
                 winograd: bool = True) -> Rt3dBuild:
    """Import ``model`` with ``from_torch`` and compile it with the ``rt3d`` pipeline
    (``winograd=False``: every layer on the direct kernel)."""
    import rt3d_passes

    mod = rt3d_passes.from_torch(model, (x,))
    start = time.perf_counter()
    ex = tvm.compile(mod, target, relax_pipeline=relax.get_pipeline(
        "rt3d", target=target, include_dense=True, winograd=winograd, database=database))
    seconds = time.perf_counter() - start
    reports = rt3d_passes.inspect(mod, winograd=winograd)
    from rt3d_passes.transform.analysis import LAYER_NAMES_ATTR

    names = [str(n) for n in (mod["main"].attrs or {}).get(LAYER_NAMES_ATTR, [])]
    total, conv = constant_bytes(mod, target)
    return Rt3dBuild(name, ex, relax.VirtualMachine(ex, tvm.cpu()), total, seconds, reports,
                     names, conv)


def profile_ops(build: Rt3dBuild, x: np.ndarray, runs: int = 3) -> list[dict[str, Any]]:
    """Per-layer wall time of the VM (TVM 0.27's VM has no ``profile=True``: a VM instrument
    times every ``Call`` instruction). Median over ``runs`` calls after one warm-up.

    The i-th ``kgs_conv3d*`` / ``winograd_conv3d*`` call is the i-th conv3d layer (every
    conv3d goes through RT3D's operators, ``include_dense=True``), so conv rows carry the
    torch layer name; other ops are summed per PrimFunc. Sorted by time, with each row's
    share of the summed op time.
    """
    vm = relax.VirtualMachine(build.executable, tvm.cpu())
    per_run: list[list[tuple[str, float]]] = []
    starts: dict[str, float] = {}

    def instrument(_func, symbol, before_run, _ret, *_args) -> int:
        if before_run:
            starts[symbol] = time.perf_counter()
        else:
            per_run[-1].append((symbol, (time.perf_counter() - starts.pop(symbol)) * 1e3))
        return 0

    data = tvm.runtime.tensor(x)
    vm["main"](data)
    vm.set_instrument(tvm.runtime.convert(instrument))
    for _ in range(runs):
        per_run.append([])
        vm["main"](data)
    classes = {r.layer: conv_class(r.input_shape[1], r.weight_shape) for r in build.reports
               if r.input_shape and r.weight_shape}
    return _summarize_calls(per_run, build.layer_names, classes)


def _summarize_calls(per_run: list[list[tuple[str, float]]], layer_names: list[str],
                     classes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Rows per label (conv layers: ``symbol [layer]``, their kind the layer's
    :func:`conv_class` from ``classes`` when known)."""
    calls = per_run[0]
    convs = [i for i, (sym, _) in enumerate(calls) if sym.startswith(RT3D_CONV_SYMBOLS)]
    label_of = {i: calls[i][0] for i in range(len(calls))}
    kind_of = {i: op_kind(calls[i][0]) for i in range(len(calls))}
    if len(convs) == len(layer_names):
        label_of.update({i: f"{calls[i][0]} [{layer_names[k]}]" for k, i in enumerate(convs)})
        kind_of.update({i: (classes or {}).get(layer_names[k], kind_of[i])
                        for k, i in enumerate(convs)})
    rows: dict[str, dict[str, Any]] = {}
    for i in range(len(calls)):
        ms = float(np.median([run[i][1] for run in per_run if len(run) == len(calls)]))
        row = rows.setdefault(label_of[i], {"op": label_of[i], "calls": 0, "ms": 0.0,
                                            "kind": kind_of[i]})
        row["calls"] += 1
        row["ms"] += ms
    total = sum(r["ms"] for r in rows.values()) or 1.0
    for r in rows.values():
        r["share"] = r["ms"] / total
    return sorted(rows.values(), key=lambda r: -r["ms"])


#: Symbols of RT3D's conv3d operators' PrimFuncs (direct KGS and Winograd).
RT3D_CONV_SYMBOLS = ("kgs_conv3d", "winograd_conv3d")

#: (substring, kind) of a VM call or a torch op, first match wins: the kinds both profiles use.
OP_KINDS = (
    ("kgs_conv3d", "conv3d"), ("conv", "conv3d"), ("batch_norm", "batch norm"),
    ("matmul", "matmul (FC)"), ("linear", "matmul (FC)"), ("addmm", "matmul (FC)"),
    ("pool", "pooling"), ("mean", "pooling"), ("softmax", "softmax"), ("concat", "concat"),
    ("aten::cat", "concat"), ("vm.", "VM builtins"),
)


def op_kind(symbol: str) -> str:
    """Coarse kind of a VM call or torch op, for the "where the time goes" summary."""
    for key, kind in OP_KINDS:
        if key in symbol:
            return kind
    return "elementwise/other"


#: Input channels up to which a (not channel-wise) conv3d counts as a stem (RGB, RGB-D).
STEM_CHANNELS = 4


def conv_class(in_channels: int, weight_shape) -> str:
    """The kind of a conv3d layer with ``in_channels`` input channels and a
    ``[M, N / groups, Kd, Kh, Kw]`` weight (temporal as the schedules define it,
    ``schedules.cpu_kgs_conv3d.is_temporal``), the same in every profile: ``"conv3d depthwise"``
    (one input channel per group), ``"conv3d grouped"``, ``"conv3d stem"`` (at most
    :data:`STEM_CHANNELS` input channels), ``"conv3d pointwise"`` (1x1x1), ``"conv3d
    temporal"`` (``Kd x 1 x 1``) or ``"conv3d spatial"`` (any other kernel)."""
    per_group = int(weight_shape[1])
    kernel = tuple(int(k) for k in weight_shape[2:])
    if per_group == 1 and in_channels > 1:
        return "conv3d depthwise"
    if per_group < in_channels:
        return "conv3d grouped"
    if in_channels <= STEM_CHANNELS:
        return "conv3d stem"
    if kernel == (1, 1, 1):
        return "conv3d pointwise"
    return "conv3d temporal" if is_temporal(kernel) else "conv3d spatial"


#: OpenVINO node types (``PERF_COUNT``) -> kind; convolutions take their :func:`conv_class`,
#: anything else (fused ``Subgraph`` elementwise, ``Eltwise``...) is "elementwise/other".
OPENVINO_KINDS = {
    "Convolution": "conv3d", "GroupConvolution": "conv3d", "ReduceMean": "pooling",
    "ReduceMax": "pooling", "Pooling": "pooling", "MaxPool": "pooling", "AvgPool": "pooling",
    "FullyConnected": "matmul (FC)", "MatMul": "matmul (FC)", "Softmax": "softmax",
    "Concat": "concat", "Reorder": "layout reorder",
}


def openvino_kinds(nodes: list[dict[str, Any]]) -> dict[str, float]:
    """OpenVINO's time per kind (ms) from its per-node profile
    (``benchmarks.peers.openvino_cpu.profile_nodes``). Its ``Reorder`` nodes (layout
    conversions to and from its channel-blocked formats) are a kind of their own."""
    kinds: dict[str, float] = defaultdict(float)
    for node in nodes:
        kind = OPENVINO_KINDS.get(node["type"], "elementwise/other")
        if kind == "conv3d" and node.get("conv"):
            kind = conv_class(node["conv"]["in_channels"], node["conv"]["weight_shape"])
        kinds[kind] += node["ms"]
    return dict(kinds)


def torch_profile_kinds(model, x, runs: int = 3) -> dict[str, float]:
    """PyTorch eager's time per op kind (ms, median over ``runs``), to compare with RT3D's
    :func:`profile_ops` kind by kind: the inclusive ``torch.profiler`` CPU time of every
    top-level aten op (one called by no other aten op), charged to that op's kind. Self
    times would charge a child to its own name: ``aten::mean`` runs in ``aten::sum``, so a
    global mean read as 7 us of "pooling" and 480 us of "elementwise/other"."""
    import torch

    per_run = []
    with torch.no_grad():
        model(x)
        for _ in range(runs):
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                        record_shapes=True) as prof:
                model(x)
            kinds: dict[str, float] = defaultdict(float)
            for evt in prof.events():
                if evt.name.startswith("aten::") and not _has_aten_caller(evt):
                    kinds[_torch_kind(evt)] += evt.cpu_time_total / 1e3
            per_run.append(kinds)
    names = {k for run in per_run for k in run}
    return {k: float(np.median([run.get(k, 0.0) for run in per_run])) for k in names}


def _torch_kind(evt) -> str:
    """:func:`op_kind` of a top-level aten op; a convolution's :func:`conv_class` from its
    recorded input and weight shapes."""
    kind = op_kind(evt.name)
    shapes = getattr(evt, "input_shapes", None) or []
    if kind == "conv3d" and len(shapes) > 1 and len(shapes[0]) == 5 and len(shapes[1]) == 5:
        return conv_class(shapes[0][1], shapes[1])
    return kind


def _has_aten_caller(evt) -> bool:
    """Whether a ``torch.profiler`` event runs inside another aten op."""
    parent = evt.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def compare_kinds(rt3d_rows: list[dict[str, Any]], torch_kinds: dict[str, float],
                  limit: float = 1.5, openvino: dict[str, float] | None = None
                  ) -> list[dict[str, Any]]:
    """Per op kind: RT3D ms, PyTorch ms, their ratio and whether RT3D is within ``limit`` x
    PyTorch (batch norm is folded into RT3D's convolutions, so it has no RT3D time), and
    with ``openvino`` (:func:`openvino_kinds`) OpenVINO's ms and RT3D's ratio to it. A
    profile without conv classes (one "conv3d" kind) is compared on the sum of the classes."""
    rt3d: dict[str, float] = defaultdict(float)
    for r in rt3d_rows:
        rt3d[r["kind"]] += r["ms"]
    torch_kinds = dict(torch_kinds)
    openvino = None if openvino is None else dict(openvino)
    peers = [torch_kinds] + ([openvino] if openvino is not None else [])
    if any("conv3d" in p for p in [rt3d, *peers]):
        for p in [rt3d, *peers]:  # one of them has no classes: compare the sums
            total = sum(v for k, v in p.items() if k.startswith("conv3d"))
            for k in [k for k in p if k.startswith("conv3d")]:
                del p[k]
            if total:
                p["conv3d"] = total
    kinds = set(rt3d).union(*peers)
    out = []
    for kind in sorted(kinds, key=lambda k: -max(p.get(k, 0.0) for p in [rt3d, *peers])):
        ours, theirs = rt3d.get(kind, 0.0), torch_kinds.get(kind, 0.0)
        ratio = ours / theirs if theirs else None
        row = {"kind": kind, "rt3d_ms": ours, "torch_ms": theirs, "ratio": ratio,
               "within_limit": ratio is None or ratio <= limit}
        if openvino is not None:
            ov = openvino.get(kind, 0.0)
            row.update(openvino_ms=ov, openvino_ratio=ours / ov if ov else None)
        out.append(row)
    return out


def format_kinds(rows: list[dict[str, Any]], limit: float = 1.5) -> str:
    with_ov = any("openvino_ms" in r for r in rows)
    head = f"{'op kind':<20} {'RT3D ms':>9} {'PyTorch ms':>11} {'ratio':>7}"
    if with_ov:
        head += f" {'OpenVINO ms':>12} {'ratio':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        line = f"{r['kind']:<20} {r['rt3d_ms']:>9.2f} {r['torch_ms']:>11.2f} {ratio:>7}"
        if with_ov:
            ov = r.get("openvino_ratio")
            line += f" {r.get('openvino_ms', 0.0):>12.2f} {f'{ov:.2f}x' if ov else '-':>7}"
        flag = "" if r["within_limit"] else f"  > {limit}x PyTorch"
        lines.append(line + flag)
    return "\n".join(lines)


def format_profile(rows: list[dict[str, Any]], top: int = 15) -> str:
    """The ``top`` ops by time as a table, plus the total."""
    total = sum(r["ms"] for r in rows)
    # whole names (X3D's layers differ only past "blocks.1.res_blocks.0.branch2.")
    width = max([48] + [len(r["op"]) for r in rows[:top]])
    lines = [f"{'op (VM call) [conv layer]':<{width}} {'calls':>5} {'ms':>9} {'share':>6}",
             "-" * (width + 23)]
    for r in rows[:top]:
        lines.append(f"{r['op']:<{width}} {r['calls']:>5} {r['ms']:>9.2f} {r['share']:>6.1%}")
    rest = rows[top:]
    if rest:
        lines.append(f"{f'({len(rest)} more ops)':<{width}} {'':>5} "
                     f"{sum(r['ms'] for r in rest):>9.2f}")
    lines.append(f"{'total of VM calls':<{width}} {'':>5} {total:>9.2f}")
    kinds: dict[str, float] = defaultdict(float)
    for r in rows:
        kinds[r["kind"]] += r["ms"]
    lines.append("by kind: " + ", ".join(f"{k} {v:.1f} ms ({v / (total or 1):.0%})" for k, v in
                                         sorted(kinds.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def export(build: Rt3dBuild, out_dir: Path) -> Path:
    """Export the executable as a shared library (code + constants) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"rt3d_{build.name}.so"
    from benchmarks.peers.base import redirect_native_output

    # TVM warns once per constant ("Scope Saving") while serializing: keep that out of the table
    with redirect_native_output(out_dir / "export.log"):
        build.executable.export_library(str(path))
    return path
