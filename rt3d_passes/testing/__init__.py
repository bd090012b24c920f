"""Helpers for tests and benchmarks (not needed to compile): structured weights with exact
zero patterns, and the PoCL runner that executes generated OpenCL source."""

from .opencl import opencl_available, opencl_program
from .weights import structured_weight

__all__ = ["opencl_available", "opencl_program", "structured_weight"]
