"""The ``rt3d`` command line: :func:`main` (the console script), one module per command
that needs more than a few lines (:mod:`.demo`), and :mod:`.model_spec` (zoo names and saved
files; every ``rt3d_prune`` import of ``rt3d_passes``)."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
