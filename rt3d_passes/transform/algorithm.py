"""The per-layer choice between RT3D's direct conv3d kernel and Winograd: a cost model.

Each eligible layer (``k x 3 x 3``, stride 1, undilated, groups 1, see
:func:`rt3d_passes.op.winograd_ineligible`) is costed three ways, in MAC-equivalents of the
CPU's vector FMA peak:

* **direct**: the MACs the direct operator executes (kept columns, sparse or dense) over its
  efficiency :data:`DIRECT_EFFICIENCY`, plus its weights' bytes at :data:`WEIGHT_BYTE_COST`;
* **Winograd F(2x2, 3x3) and F(4x4, 3x3)**: the transformed-domain GEMMs' MACs (``alpha^2``
  per tile, over the ``(c, kd)`` columns any kernel of an output group keeps: a plane-pruned
  layer computes only its kept planes, a KGS layer with holes inside planes computes them all)
  over :data:`BGEMM_EFFICIENCY`; the transformed weights' bytes (``alpha^2 / 9`` times the
  kernel's: 1.8x for F(2x2), 4x for F(4x4) -- on small maps with many channels, C3D's
  conv5 and R(2+1)D's layer4, streaming them costs more than the multiplications saved); and
  the input and output transforms: their terms per tile, computed separably
  (``B^T d B``: 64 for F(2x2), 312 for F(4x4); ``A^T M A``: 36 and 180) at
  :data:`SCALAR_TERM_COST` each, over the tiles one vector holds
  (``schedules.cpu_winograd_conv3d.transform_lanes``: the schedule runs both transforms'
  vectors over the tiles of a tile row; the output transform only when W is a multiple of
  the tile); and the transformed tensors' bytes: the operator writes
  the transformed input and the GEMMs' output (``alpha^2`` values per tile of each) to memory
  and reads them back once, at the current target's cost per byte
  (``schedules.cpu_kgs_conv3d.winograd_transform_byte_cost``: on Zen 3 that traffic made
  F(4x4) a loser on R(2+1)D-18's layer1; 0 on targets where it was not measured to matter).

Winograd is chosen when its best tile is cheaper than direct by :data:`WINOGRAD_MARGIN`, so a
close call stays direct (the pass must not pick a loser). The constants were fitted to
``benchmarks/schedule_bench.py --winograd`` on C3D's and R(2+1)D's layers (AVX-512, 2 threads)
when the transforms ran scalar; with vectorized transforms (session 12, Zen 3) the same
constants pick the fastest variant on all 12 layers of ``benchmarks/winograd_bench.py``,
predicting less gain than measured on 11 of them (R(2+1)D's layer1 F(4x4): 1.91x predicted,
1.75x measured);
what a user forces per layer (``RewriteOptions.algorithms``) overrides the model, and so do
measured times (``RewriteOptions.measured``, from a tuning database that holds the layer's
candidates: :func:`rt3d_passes.tuning.measured_choices`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tvm.target import Target

from schedules.cpu_kgs_conv3d import winograd_cost_config, winograd_transform_byte_cost
from schedules.cpu_winograd_conv3d import output_transform_lanes, transform_lanes

from ..op.kgs_conv3d import Conv3DGeometry
from ..op.winograd_conv3d import (
    WINOGRAD_TILES,
    WinogradGeometry,
    winograd_columns,
    winograd_ineligible,
)
from .options import RewriteOptions

__all__ = [
    "BGEMM_EFFICIENCY",
    "DIRECT_EFFICIENCY",
    "SCALAR_TERM_COST",
    "WEIGHT_BYTE_COST",
    "WINOGRAD_GROUP_M",
    "WINOGRAD_MARGIN",
    "AlgorithmChoice",
    "choose_algorithm",
]

#: Fraction of the FMA peak the direct operator reaches on the layers Winograd competes for.
DIRECT_EFFICIENCY = 0.8
#: Fraction of the FMA peak of the Winograd operator's transformed-domain GEMMs.
BGEMM_EFFICIENCY = 0.75
#: Cost of one term of a transform, in vector-MAC equivalents (a multiply-add against one
#: lane of a 16-lane FMA, both at two per cycle, plus its load); a vector of tiles shares it.
SCALAR_TERM_COST = 15.0
#: Cost of streaming one byte of weights, in vector-MAC equivalents (the FMA peak over the
#: memory bandwidth of the cores, about 110 G MAC/s against 20-30 GB/s on 2 cores here).
WEIGHT_BYTE_COST = 5.5
#: Winograd must be estimated this much faster than direct to be chosen.
WINOGRAD_MARGIN = 1.25
#: Output channels per group of a dense layer's transformed weights (the GEMM's register
#: tile: 8 channels x up to 3 vectors of positions).
WINOGRAD_GROUP_M = 8
#: Scalar terms per tile of the input / output transforms, by tile size: the nonzero
#: coefficients of the separable transform (``rt3d_passes.op.winograd_conv3d._transform``).
_PACK_TERMS = {2: 64, 4: 312}
_INVERSE_TERMS = {2: 36, 4: 180}


@dataclasses.dataclass(frozen=True)
class AlgorithmChoice:
    """The algorithm a layer gets, its Winograd tile (0 for direct) and why."""

    algorithm: str
    """``"direct"`` or ``"winograd"``."""
    tile: int
    reason: str
    group_m: int = WINOGRAD_GROUP_M
    """Output channels per group of the transformed weights (Winograd only)."""


def _winograd_cost(geo: WinogradGeometry, out_channels: int, columns: int,
                   byte_cost: float, lanes: int = 1) -> float:
    pack_tiles, inverse_tiles = geo.transform_elements(out_channels)
    # the transforms run vectors over the tiles of a tile row (the output transform only
    # when W is a multiple of the tile): one term per vector of tiles
    pack_lanes = transform_lanes(geo.n_w, lanes)
    inverse_lanes = output_transform_lanes(geo.n_w, geo.output_spatial[2], geo.tile, lanes)
    weight_bytes = 4 * geo.alpha**2 * out_channels * columns
    # the transformed input and the GEMMs' output: written, then read back once each
    transformed_bytes = 2 * 4 * geo.alpha**2 * (pack_tiles + inverse_tiles)
    # streaming the weights overlaps the multiplications: the slower of the two counts
    return (max(geo.bgemm_macs(out_channels, columns) / BGEMM_EFFICIENCY,
                WEIGHT_BYTE_COST * weight_bytes)
            + SCALAR_TERM_COST * (pack_tiles * _PACK_TERMS[geo.tile] / pack_lanes
                                  + inverse_tiles * _INVERSE_TERMS[geo.tile] / inverse_lanes)
            + byte_cost * transformed_bytes)


def choose_algorithm(
    *,
    layer: str,
    geometry: Conv3DGeometry,
    weight: np.ndarray,
    computed_macs: int,
    groups: int,
    group_m: int | None,
    options: RewriteOptions,
) -> AlgorithmChoice:
    """Direct or Winograd for one layer that RT3D rewrites.

    Parameters
    ----------
    layer : str
        The layer's name (for forced algorithms and error messages).
    geometry : Conv3DGeometry
        The conv's geometry.
    weight : np.ndarray
        The dense ``[M, N, Kd, Kh, Kw]`` weight (zeros of pruned units included).
    computed_macs : int
        MACs the direct operator executes for the whole layer.
    groups : int
        The conv's groups.
    group_m : int, optional
        The detected kernel group's ``g_m`` (sparse layers keep it, so whole groups of
        columns drop); ``None`` for dense layers.
    options : RewriteOptions

    Raises
    ------
    ValueError
        A Winograd algorithm forced on a layer that cannot run it.
    """
    forced = options.forced_algorithm(layer)
    why_not = winograd_ineligible(geometry.kernel, geometry.strides, geometry.dilation, groups)
    if forced == "direct":
        return AlgorithmChoice("direct", 0, "direct (forced)")
    if forced and why_not:
        raise ValueError(f"layer {layer}: algorithm {forced!r} forced, but it cannot run as "
                         f"Winograd: {why_not}")
    if why_not:
        return AlgorithmChoice("direct", 0, f"direct: no Winograd, {why_not}")
    if not options.winograd and not forced:
        return AlgorithmChoice("direct", 0, "direct: winograd=False")
    measured = None if forced else options.measured_algorithm(layer)
    if measured:
        algorithm, why = measured
        gm = int(group_m or WINOGRAD_GROUP_M)
        if algorithm == "direct":
            return AlgorithmChoice("direct", 0, f"direct: {why}")
        tile = int(algorithm[-1])
        return AlgorithmChoice("winograd", tile, f"Winograd F({tile}x{tile}): {why}", gm)
    gm = int(group_m or WINOGRAD_GROUP_M)
    columns, counts = winograd_columns(weight, gm)
    del columns
    m_out = weight.shape[0]
    voxels = geometry.input_shape[0] * int(np.prod(geometry.output_spatial))
    direct = max(computed_macs / DIRECT_EFFICIENCY,
                 WEIGHT_BYTE_COST * 4 * computed_macs / max(voxels, 1))
    target = Target.current(allow_none=True)
    config = winograd_cost_config(target)
    byte_cost = winograd_transform_byte_cost(target)
    lanes = 1 if config is None else config.lanes
    tiles = WINOGRAD_TILES
    if forced in ("winograd2", "winograd4"):
        tiles = (int(forced[-1]),)
    costs = {}
    for tile in tiles:
        geo = WinogradGeometry(geometry.input_shape, geometry.kernel, geometry.padding, tile)
        # every output group padded to the longest group's columns, as the operator runs
        costs[tile] = _winograd_cost(geo, -(-m_out // gm) * gm, int(counts.max()),
                                     byte_cost, lanes)
    tile = min(costs, key=costs.get)
    gain = direct / max(costs[tile], 1.0)
    kept = f"{int(counts.max())}/{weight.shape[1] * weight.shape[2]} (c, kd) planes"
    if forced:
        return AlgorithmChoice("winograd", tile, f"Winograd F({tile}x{tile}) (forced; model: "
                               f"{gain:.2f}x vs direct, {kept})", gm)
    if gain >= WINOGRAD_MARGIN:
        return AlgorithmChoice("winograd", tile, f"Winograd F({tile}x{tile}): model "
                               f"{gain:.2f}x faster than direct, {kept}", gm)
    return AlgorithmChoice("direct", 0, f"direct: Winograd F({tile}x{tile}) would be "
                           f"{gain:.2f}x (< {WINOGRAD_MARGIN:g}x), {kept}")
