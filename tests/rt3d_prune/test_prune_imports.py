"""rt3d_prune never imports tvm, and building the CLI parser does not import torch."""

from __future__ import annotations

import subprocess
import sys

_ALL = ("admm", "checkpoint", "cli", "config", "data", "distributed", "engine", "macs", "models",
        "oneshot", "pipeline", "presets", "pretrained", "regularizer", "schemes", "sparsifier",
        "train")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(*sys.modules)"],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_no_tvm_anywhere():
    code = "\n".join(f"import rt3d_prune.{m}" for m in _ALL)
    loaded = _modules_after(code)
    assert "rt3d_prune.sparsifier" in loaded
    assert not {m for m in loaded if m == "tvm" or m.startswith(("tvm.", "rt3d_passes"))}


def test_cli_parser_is_cheap():
    code = ("import argparse\nfrom rt3d_prune.cli import register\n"
            "p = argparse.ArgumentParser(); register(p.add_subparsers())")
    loaded = _modules_after(code)
    assert "torch" not in loaded and "numpy" not in loaded
