"""Registry of the peer runners, keyed by ``PeerRunner.name`` (table order)."""

from __future__ import annotations

from .base import PeerRunner
from .executorch_xnnpack import ExecuTorchXnnpackRunner
from .mnn_cpu import MnnRunner
from .onnxruntime_cpu import OnnxRuntimeRunner
from .openvino_cpu import OpenVinoRunner
from .torch_eager import TorchEagerRunner
from .torch_mobile import TorchMobileRunner

PEERS: dict[str, type[PeerRunner]] = {
    cls.name: cls
    for cls in (
        TorchEagerRunner,
        TorchMobileRunner,
        ExecuTorchXnnpackRunner,
        OnnxRuntimeRunner,
        OpenVinoRunner,
        MnnRunner,
    )
}


def get_peer(name: str) -> type[PeerRunner]:
    """The runner class registered as ``name``; ``KeyError`` lists the known names."""
    try:
        return PEERS[name]
    except KeyError:
        raise KeyError(f"unknown peer {name!r}; known: {', '.join(PEERS)}") from None
