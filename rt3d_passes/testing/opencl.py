"""Run the OpenCL kernels TVM generates for a GPU target on a local OpenCL platform (PoCL).

This machine has no Adreno GPU, and this TVM build has no OpenCL runtime (``USE_OPENCL=OFF``),
but TVM still generates the OpenCL source. This module runs that exact source with pyopencl,
launching every kernel in the order the host code calls it, with the work-group sizes TVM
chose, so the numerics of a schedule can be checked against PyTorch. It says nothing about
speed on a phone.

How: the PrimFunc is lowered with TVM's own TIR pipeline (the steps of ``tvm.tirx.build``).
The host function then holds one ``call_ffi_kernel`` per launch: kernel name, the buffers it
takes (function parameters or intermediates the host allocates) and its launch extents. The
source comes from ``tvm.compile`` (``ex.mod.imports[0].inspect_source()``).

Set up PoCL and pyopencl with ``scripts/install_pocl.sh``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tvm
from tvm import tirx
from tvm.target import Target

__all__ = ["KernelLaunch", "OpenCLProgram", "opencl_available", "opencl_program"]

#: OpenCL NDRange dimension of each TVM thread tag.
_DIM = {"x": 0, "y": 1, "z": 2}


@dataclasses.dataclass(frozen=True)
class KernelLaunch:
    """One kernel launch of the host code.

    Attributes
    ----------
    name : str
        Kernel name in the OpenCL source.
    args : tuple of str
        Buffer names passed, in the kernel's parameter order.
    global_size, local_size : tuple of int
        NDRange: ``blockIdx`` extent times ``threadIdx`` extent, and ``threadIdx`` extent,
        per dimension (x, y, z).
    """

    name: str
    args: tuple[str, ...]
    global_size: tuple[int, ...]
    local_size: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class OpenCLProgram:
    """OpenCL source of one PrimFunc and how its host code launches it.

    Attributes
    ----------
    source : str
        The generated OpenCL C source (all kernels).
    launches : tuple of KernelLaunch
        Kernels in the order the host calls them.
    params : tuple of str
        The PrimFunc's buffer parameters, in order (inputs then outputs).
    buffers : dict
        ``name -> (elements, dtype)`` of every buffer a kernel takes (flattened).
    """

    source: str
    launches: tuple[KernelLaunch, ...]
    params: tuple[str, ...]
    buffers: dict[str, tuple[int, str]]

    def run(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Run on the first OpenCL device (PoCL here).

        Parameters
        ----------
        *arrays : np.ndarray
            One array per parameter, in order, as for the compiled function (outputs too:
            their contents are ignored, only shape and dtype are used).

        Returns
        -------
        arrays : list of np.ndarray
            Every parameter after the run (the outputs hold the results).
        """
        import pyopencl as cl

        if len(arrays) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arrays {self.params}, "
                             f"got {len(arrays)}")
        ctx = cl.Context([_first_device(cl)])
        queue = cl.CommandQueue(ctx)
        prog = cl.Program(ctx, self.source).build()
        flags = cl.mem_flags
        host = {name: np.ascontiguousarray(a) for name, a in zip(self.params, arrays)}
        dev = {}
        for name, (size, dtype) in self.buffers.items():
            if name in host:
                if host[name].size != size or host[name].dtype != np.dtype(dtype):
                    raise ValueError(f"{name}: expected {size} x {dtype}, got "
                                     f"{host[name].shape} {host[name].dtype}")
                dev[name] = cl.Buffer(ctx, flags.READ_WRITE | flags.COPY_HOST_PTR,
                                      hostbuf=host[name])
            else:  # an intermediate the host code allocates (workspace)
                dev[name] = cl.Buffer(ctx, flags.READ_WRITE, size * np.dtype(dtype).itemsize)
        for launch in self.launches:
            kernel = getattr(prog, launch.name)
            kernel(queue, launch.global_size, launch.local_size,
                   *(dev[a] for a in launch.args))
        out = []
        for name in self.params:
            result = np.array(host[name])
            if name in dev:
                cl.enqueue_copy(queue, result, dev[name])
            out.append(result)
        queue.finish()
        return out


def _first_device(cl):
    for platform in cl.get_platforms():
        devices = platform.get_devices()
        if devices:
            return devices[0]
    raise RuntimeError("no OpenCL device found (install PoCL: scripts/install_pocl.sh)")


def opencl_available() -> tuple[bool, str]:
    """Whether pyopencl and an OpenCL device are usable; the reason when not."""
    try:
        import pyopencl as cl
    except ImportError as err:
        return False, f"pyopencl is not installed ({err}); run scripts/install_pocl.sh"
    try:
        _first_device(cl)
    except Exception as err:  # pyopencl raises its own LogicError/RuntimeError types
        return False, f"no OpenCL device: {err}"
    return True, ""


def _lower(mod: tvm.IRModule, target: Target) -> tvm.IRModule:
    """The TIR pipeline of ``tvm.tirx.build`` up to the host/device split."""
    mod = tirx.transform.BindTarget(target.with_host(target.host))(mod)
    pipeline, _, _ = tirx.get_tir_pipeline("default")
    return pipeline(mod)


def _walk(stmt, visit) -> None:
    """Pre-order walk over statements (TVM 0.27 has no Python TIR visitor)."""
    visit(stmt)
    for field in ("seq", "body", "then_case", "else_case"):
        child = getattr(stmt, field, None)
        if child is None:
            continue
        for c in child if field == "seq" else [child]:
            _walk(c, visit)


def _launch(call, host_buffers: dict) -> KernelLaunch:
    """A ``call_ffi_kernel(name, buffers..., extents..., launch_params=tags)`` as a launch."""
    tags = list(call.attrs.launch_params)
    n_args = len(call.args) - 1 - len(tags)
    args = []
    for arg in call.args[1:1 + n_args]:
        if not (isinstance(arg, tvm.ir.Call) and arg.op.name == "tirx.buffer_data"):
            raise NotImplementedError(f"kernel argument {arg} is not a buffer")
        args.append(arg.args[0].name)
    grid, block = [1, 1, 1], [1, 1, 1]
    for tag, extent in zip(tags, call.args[1 + n_args:]):
        if not isinstance(extent, tvm.tirx.IntImm):
            raise NotImplementedError(f"dynamic launch extent {tag} = {extent}")
        kind, axis = tag.split(".")
        (grid if kind == "blockIdx" else block)[_DIM[axis]] = int(extent)
    dims = max([1] + [_DIM[t.split(".")[1]] + 1 for t in tags])
    missing = [a for a in args if a not in host_buffers]
    if missing:
        raise NotImplementedError(f"kernel {call.args[0].value} takes unknown buffers {missing}")
    return KernelLaunch(
        name=str(call.args[0].value),
        args=tuple(args),
        global_size=tuple(g * b for g, b in zip(grid[:dims], block[:dims])),
        local_size=tuple(block[:dims]),
    )


def opencl_program(func: tirx.PrimFunc | tvm.IRModule, target: Target) -> OpenCLProgram:
    """Compile a scheduled PrimFunc for an OpenCL target and read its launch plan.

    Parameters
    ----------
    func : PrimFunc or IRModule
        The scheduled function (e.g. ``sch.mod``), with one PrimFunc.
    target : Target
        An OpenCL target with a host, e.g. ``Target("qcom/adreno-opencl", host=...)``.

    Returns
    -------
    program : OpenCLProgram
    """
    mod = func if isinstance(func, tvm.IRModule) else tvm.IRModule({"main": func})
    (prim,) = [f for f in mod.functions.values() if isinstance(f, tirx.PrimFunc)]
    params = tuple(p.name for p in prim.params if isinstance(p.ty, tirx.BufferType))
    source = tvm.compile(mod, target).mod.imports[0].inspect_source()
    lowered = _lower(mod, target)
    host_funcs = [f for f in lowered.functions.values()
                  if f.attrs.get("target") is not None and f.attrs["target"].kind.name != "opencl"]
    buffers: dict[str, tuple[int, str]] = {}
    calls = []

    def visit(stmt):
        if isinstance(stmt, tirx.AllocBuffer | tirx.DeclBuffer):
            b = stmt.buffer
            buffers[b.name] = (int(np.prod([int(s) for s in b.shape])), str(b.dtype))
        if (isinstance(stmt, tirx.Evaluate) and isinstance(stmt.value, tvm.ir.Call)
                and stmt.value.op.name == "tirx.call_ffi_kernel"):
            calls.append(stmt.value)

    for f in host_funcs:
        _walk(f.body, visit)
    launches = tuple(_launch(c, buffers) for c in calls)
    for launch in launches:
        if f"__kernel void {launch.name}(" not in source:
            raise RuntimeError(f"kernel {launch.name} is launched but not in the source")
    used = {a for launch in launches for a in launch.args}
    return OpenCLProgram(source=source, launches=launches, params=params,
                         buffers={k: v for k, v in buffers.items() if k in used})
