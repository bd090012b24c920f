"""The Winograd conv3d operator: depth-sliced F(m x m, 3 x 3) over the H x W planes.

A stride-1, undilated conv3d with a ``Kd x 3 x 3`` kernel is, for every depth tap ``kd``, a
2-D 3x3 convolution of the input's depth slice ``d + kd``. Winograd's minimal filtering
``F(m x m, 3 x 3)`` computes an ``m x m`` output tile of such a 2-D convolution from an
``alpha x alpha`` input tile (``alpha = m + 2``) with ``alpha^2`` multiplications per (input,
output) channel pair instead of ``9 m^2``: 2.25x fewer for ``m = 2``, 4x for ``m = 4``. The
depth taps and input channels are summed in the transformed domain, so every input slice is
transformed once and every output tile inverse-transformed once (the "without depth
transform" scheme of TVM's former CUDA ``conv3d_winograd``):

1. ``pad``: the input, zero padded so that whole tiles fit (flat per batch element), each
   row stored split into its ``m`` phases along W (:attr:`WinogradGeometry.stored_row`);
2. ``pack`` (input transform) ``V[n, e, (c, dp, p)] = (B^T d B)[e]`` for every input channel
   ``c``, padded depth slice ``dp`` and tile ``p`` of the ``nH x nW`` tiles of a slice;
3. ``bgemm``: for each of the ``alpha^2`` points ``e``, a GEMM over the kept columns
   ``(c, kd)`` of every output group, ``Mo[n, e, m, q] = sum_t U[e, g, t, m % g_m] *
   V[n, e, offsets[g, t] + q]`` with ``q = od * P + p`` and ``offsets = (c * Dp + kd) * P``:
   the depth tap is a shift of ``kd * P`` in the flat layout, exactly as a KGS column is an
   offset in the direct operator. A group whose pruned planes drop whole ``(c, kd)`` columns
   skips them (sparse Winograd, see :func:`winograd_columns`);
4. ``inverse`` (output transform) ``y = A^T Mo A`` per tile, cropped to the output, followed
   by the fused epilogue (bias, residual add, ReLU).

``U = G g G^T`` is computed at compile time (:func:`winograd_pack_weights`). The transform
matrices are TVM's Cook-Toom matrices (``topi.nn.winograd_util``), with its well-conditioned
interpolation points. Error bounds: see :data:`WINOGRAD_RTOL`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from tvm import te, tirx

from schedules.contract import (
    KGS_GEOMETRY_ATTR,
    NO_SCHEDULE_RULE,
    WINOGRAD_BGEMM_BLOCK,
    WINOGRAD_CONV3D_ATTR,
    WINOGRAD_EPILOGUE_BLOCK,
    WINOGRAD_GROUP_ATTR,
    WINOGRAD_INVERSE_BLOCK,
    WINOGRAD_PACK_BLOCK,
    WINOGRAD_PAD_BLOCK,
    WINOGRAD_SCHEDULE_RULE,
    WINOGRAD_SHAPE_ATTR,
)

from .epilogue import epilogue_te
from .kgs_conv3d import PAD_OFFSET, Conv3DGeometry, flat_padded_input

__all__ = [
    "POSITION_ALIGN",
    "WINOGRAD_RTOL",
    "WINOGRAD_TILES",
    "WinogradGeometry",
    "winograd_columns",
    "winograd_conv3d_attrs",
    "winograd_conv3d_primfunc",
    "winograd_conv3d_te",
    "winograd_ineligible",
    "winograd_matrices",
    "winograd_offsets",
    "winograd_pack_weights",
]

#: The transformed-domain GEMM's positions (output depth x tiles) are padded to a multiple
#: of this (whole vectors in its register tile).
POSITION_ALIGN = 16

#: Output tile sizes ``m`` of ``F(m x m, 3 x 3)`` the operator supports.
WINOGRAD_TILES: tuple[int, ...] = (2, 4)

#: Error bound per tile size: largest ``|y - y_ref|`` relative to the reference output's
#: largest magnitude (fp32, the measure of the equivalence tests). Measured on C3D-sized
#: reductions (27 x 256 terms, ``tests/rt3d_passes/test_winograd_conv3d.py``): F(2x2) about
#: 1e-6, like the direct kernel; F(4x4) about 7e-6, its larger transform constants (up to 8)
#: amplify rounding. Layers whose accuracy matters more than speed:
#: ``RewriteOptions(winograd=False)`` or ``algorithms={layer: "direct"}``.
WINOGRAD_RTOL: dict[int, float] = {2: 1e-5, 4: 5e-5}


@functools.cache
def winograd_matrices(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, B, G)`` of ``F(m, r)``: ``A`` ``[alpha, m]``, ``B`` ``[alpha, alpha]``, ``G``
    ``[alpha, r]`` (float64), with ``Y = A^T [(G g G^T) * (B^T d B)] A``."""
    if m not in WINOGRAD_TILES or r != 3:
        raise ValueError(f"Winograd F({m}x{m}, {r}x{r}) is not supported: tile m must be one "
                         f"of {WINOGRAD_TILES} with a 3x3 kernel")
    # TVM's own construction and interpolation points (public only as TE constants)
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

    a, b, g = _cook_toom_convolution(_interpolation_points(m + r - 1), m, r)
    return (np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(g, np.float64))


def winograd_ineligible(kernel: Sequence[int], strides: Sequence[int],
                        dilation: Sequence[int], groups: int = 1) -> str | None:
    """Why a conv3d cannot run as Winograd, or None when it can (kernel ``Kd x 3 x 3``,
    stride 1 and no dilation along H and W, stride 1 and no dilation along D, groups 1)."""
    if tuple(kernel[1:]) != (3, 3):
        return f"kernel {tuple(kernel)} is not k x 3 x 3"
    if tuple(strides) != (1, 1, 1):
        return f"strided ({tuple(strides)})"
    if tuple(dilation) != (1, 1, 1):
        return f"dilated ({tuple(dilation)})"
    if groups != 1:
        return f"grouped (groups={groups})"
    return None


class WinogradGeometry(Conv3DGeometry):
    """:class:`Conv3DGeometry` of a Winograd-eligible conv3d plus its tiling by ``m``.

    The padded input is extended at the bottom and right so that the ``nH x nW`` tiles of
    ``alpha x alpha`` fit: ``Hp = nH * m + 2``, ``Wp = nW * m + 2``.
    """

    def __init__(self, input_shape, kernel, padding=(0, 0, 0), tile: int = 4):
        super().__init__(input_shape, kernel, (1, 1, 1), padding, (1, 1, 1))
        why = winograd_ineligible(self.kernel, self.strides, self.dilation)
        if why:
            raise ValueError(f"not a Winograd conv3d: {why}")
        if tile not in WINOGRAD_TILES:
            raise ValueError(f"Winograd tile must be one of {WINOGRAD_TILES}, got {tile}")
        self.tile = int(tile)
        self.alpha = self.tile + 2
        _, oh, ow = self.output_spatial
        self.n_h = -(-oh // self.tile)
        self.n_w = -(-ow // self.tile)

    @property
    def phase_len(self) -> int:
        """Stored length of each of the ``m`` W phases of a padded row (see
        :attr:`stored_row`)."""
        return self.n_w + 1

    @property
    def stored_row(self) -> int:
        """Stored length of a padded row: split into its ``m`` phases along W (column ``w``
        at ``(w % m) * phase_len + w // m``), so the element ``(r1, r2)`` of the tiles of a
        tile row is one contiguous run over the tiles (phase ``r2 % m``, from ``r2 // m``):
        the input transform loads whole vectors, where the plain row gave strided reads
        (the transform ran scalar)."""
        return self.tile * self.phase_len

    @property
    def tiles(self) -> int:
        """Tiles ``P`` of one depth slice."""
        return self.n_h * self.n_w

    @property
    def tiled_spatial(self) -> tuple[int, int, int]:
        """``(Dp, Hp, Wp)`` of the padded input the tiles read."""
        dp = self.padded_spatial[0]
        return dp, self.n_h * self.tile + 2, self.n_w * self.tile + 2

    @property
    def positions(self) -> int:
        """Positions ``q = (od, tile)`` of the transformed-domain GEMM, ``OD * P`` padded to a
        multiple of :data:`POSITION_ALIGN` so its register tile takes whole vectors (C3D's
        conv3a with F(4x4): 392 positions, of which only 8 divides; with 400, 16 per tile)."""
        return -(-self.output_spatial[0] * self.tiles // POSITION_ALIGN) * POSITION_ALIGN

    def bgemm_macs(self, out_channels: int, columns: int) -> int:
        """MACs of the transformed-domain GEMMs for ``columns`` kept ``(c, kd)`` per output
        channel (all batch elements, padded positions included)."""
        return self.input_shape[0] * self.alpha**2 * out_channels * columns * self.positions

    def transform_elements(self, out_channels: int) -> tuple[int, int]:
        """Tiles the input transform and the output transform process (all batch elements)."""
        n, c = self.input_shape[:2]
        dp = self.tiled_spatial[0]
        return n * c * dp * self.tiles, n * out_channels * self.output_spatial[0] * self.tiles


def winograd_columns(weight: np.ndarray, group_m: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(c, kd)`` columns each output group must compute: those where any of its kernels
    has a nonzero 3x3 plane (the weight transform fills the holes of a partly kept plane).

    Returns
    -------
    columns : np.ndarray
        ``[G, T, 2]`` int32, ``(c, kd)`` per kept column, padded with ``(0, 0)``.
    counts : np.ndarray
        ``[G]`` kept columns per group.
    """
    m, n, kd = weight.shape[:3]
    groups = -(-m // group_m)
    live = np.zeros((groups * group_m, n, kd), dtype=bool)
    live[:m] = np.any(weight != 0, axis=(3, 4))
    live = live.reshape(groups, group_m, n, kd).any(axis=1)  # [G, N, Kd]
    counts = live.reshape(groups, -1).sum(axis=1)
    t_len = max(1, int(counts.max()))
    columns = np.zeros((groups, t_len, 2), dtype=np.int32)
    for g in range(groups):
        c, k = np.nonzero(live[g])
        columns[g, : len(c), 0], columns[g, : len(c), 1] = c, k
    return columns, counts.astype(np.int64)


def winograd_pack_weights(weight: np.ndarray, tile: int, group_m: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transformed weights ``U[e, g, t, i] = (G w G^T)[e]`` of output channel ``g * g_m + i``
    and kept column ``t`` (float32, ``[alpha^2, G, T, g_m]``), with the columns and counts
    of :func:`winograd_columns`. Padding slots and rows past ``M`` are zero."""
    if weight.ndim != 5 or tuple(weight.shape[3:]) != (3, 3):
        raise ValueError(f"a Winograd conv3d weight is [M, N, Kd, 3, 3], got {weight.shape}")
    *_, g_mat = winograd_matrices(tile)
    m = weight.shape[0]
    columns, counts = winograd_columns(weight, group_m)
    groups, t_len = columns.shape[:2]
    w64 = np.zeros((groups * group_m, *weight.shape[1:]), dtype=np.float64)
    w64[:m] = weight
    # G w G^T for every kernel plane: [Mpad, N, Kd, alpha, alpha]
    u_full = np.einsum("ar,mnkrs,bs->mnkab", g_mat, w64, g_mat)
    alpha = g_mat.shape[0]
    u = np.zeros((alpha * alpha, groups, t_len, group_m), dtype=np.float64)
    for g in range(groups):
        cnt = int(counts[g])
        c, k = columns[g, :cnt, 0], columns[g, :cnt, 1]
        rows = u_full[g * group_m:(g + 1) * group_m][:, c, k]  # [g_m, cnt, alpha, alpha]
        u[:, g, :cnt, :] = rows.reshape(group_m, cnt, alpha * alpha).transpose(2, 1, 0)
    return u.astype(np.float32), columns, counts


def winograd_offsets(columns: np.ndarray, counts: np.ndarray,
                     geometry: WinogradGeometry) -> np.ndarray:
    """Offsets ``[G, T]`` int32 of the kept columns in one transformed point's packed input:
    ``(c * Dp + kd) * P``; padding slots hold :data:`PAD_OFFSET` (their weights are zero)."""
    dp = geometry.tiled_spatial[0]
    off = (columns[..., 0].astype(np.int64) * dp + columns[..., 1]) * geometry.tiles
    off[np.arange(off.shape[1])[None, :] >= counts[:, None]] = PAD_OFFSET
    if geometry.input_shape[1] * dp * geometry.tiles + geometry.positions >= 2**31:
        raise ValueError("the packed input is too large for 32-bit offsets")
    return off.astype(np.int32)


def _transform(mat: np.ndarray, load, dtype: str) -> dict:
    """``{(i, j): sum_{r1, r2} L[r1, i] L[r2, j] x[r1, r2]}`` as TIR expressions, with
    ``L = mat`` and ``x[r1, r2] = load(r1, r2)``, written separably: the row sums
    ``s[r1, j] = sum_{r2} L[r2, j] x[r1, r2]`` are the same expression in every output of
    column ``j``, so the compiler computes each once when the outputs are unrolled (676
    terms per F(4x4) input tile become 2 x 6 x 26), and zero / unit coefficients never reach
    the code."""
    rows, cols = mat.shape
    inner = {(r1, j): _weighted_sum([(float(mat[r2, j]), r2) for r2 in range(rows)],
                                    lambda r2, r1=r1: load(r1, r2), dtype)
             for r1 in range(rows) for j in range(cols)}
    return {(i, j): _weighted_sum([(float(mat[r1, i]), r1) for r1 in range(rows)],
                                  lambda r1, j=j: inner[r1, j], dtype)
            for i in range(cols) for j in range(cols)}


def _weighted_sum(terms, value, dtype: str):
    """``sum coef * value(k)`` over the nonzero ``(coef, k)`` terms."""
    total = None
    for coef, k in terms:
        if coef == 0:
            continue
        v = value(k)
        if coef == -1.0:
            v = -v
        elif coef != 1.0:
            v = tirx.const(coef, dtype) * v
        total = v if total is None else total + v
    return total if total is not None else tirx.const(0, dtype)


def _select(index_i, index_j, exprs: dict):
    """``exprs[i, j]`` for the (symbolic) indices: a select chain that the simplifier
    resolves once the schedule unrolls the indices."""
    keys = list(exprs)
    value = exprs[keys[-1]]
    for i, j in reversed(keys[:-1]):
        value = tirx.Select(tirx.all(index_i == i, index_j == j), exprs[i, j], value)
    return value


def winograd_conv3d_te(
    x: te.Tensor,
    values: te.Tensor,
    offsets: te.Tensor,
    *extra: te.Tensor,
    out_channels: int,
    kernel: Sequence[int],
    padding: Sequence[int],
    tile: int,
    bias: bool = False,
    residual: bool = False,
    relu: bool = False,
    silu: bool = False,
    input_shape: Sequence[int] | None = None,
    strides: Sequence[int] = (1, 1, 1),
    dilation: Sequence[int] = (1, 1, 1),
) -> te.Tensor:
    """TE compute of the Winograd conv3d and its epilogue (see the module docstring).

    Parameters
    ----------
    x : te.Tensor
        Input ``[N, C, D, H, W]``, float32.
    values : te.Tensor
        Transformed weights ``[alpha^2, G, T, g_m]`` from :func:`winograd_pack_weights`.
    offsets : te.Tensor
        ``[G, T]`` int32 from :func:`winograd_offsets` with the same geometry.
    *extra : te.Tensor
        The bias ``[M]`` when ``bias``, then the residual ``[N, M, OD, OH, OW]`` when
        ``residual``.
    out_channels, kernel, padding, tile :
        ``M``, ``(Kd, 3, 3)``, the 6 (or 3) paddings, and ``m`` of ``F(m x m, 3 x 3)``.
    bias, residual, relu, silu : bool
        The fused epilogue (applied in this order; ReLU or SiLU).
    input_shape, strides, dilation :
        Accepted for symmetry with the direct operator's geometry keywords; ``input_shape``
        must match ``x`` and strides / dilation must be 1.

    Returns
    -------
    y : te.Tensor
        ``[N, M, OD, OH, OW]``.
    """
    shape = tuple(int(s) for s in x.shape)
    if input_shape is not None and tuple(int(s) for s in input_shape) != shape:
        raise ValueError(f"input_shape {tuple(input_shape)} does not match x {shape}")
    if tuple(strides) != (1, 1, 1) or tuple(dilation) != (1, 1, 1):
        raise ValueError(f"Winograd conv3d needs unit strides and dilation, got {strides}, "
                         f"{dilation}")
    geo = WinogradGeometry(shape, kernel, padding, tile)
    if len(extra) != int(bias) + int(residual):
        raise ValueError(f"expected {int(bias) + int(residual)} extra tensors (bias={bias}, "
                         f"residual={residual}), got {len(extra)}")
    dtype = x.dtype
    n_batch, chans = shape[:2]
    dp, hp, _ = geo.tiled_spatial
    od, oh, ow = geo.output_spatial
    alpha, m, n_w, tiles = geo.alpha, geo.tile, geo.n_w, geo.tiles
    e_count, g_count, t_len, gm = (int(s) for s in values.shape)
    if e_count != alpha * alpha:
        raise ValueError(f"values {tuple(values.shape)} are not transformed for F({m}x{m}, 3x3)"
                         f" ({alpha * alpha} points)")
    if tuple(int(s) for s in offsets.shape) != (g_count, t_len):
        raise ValueError(f"offsets shape {tuple(offsets.shape)} does not match values "
                         f"{tuple(values.shape)}")
    if not (g_count - 1) * gm < out_channels <= g_count * gm:
        raise ValueError(f"{out_channels} output channels do not fit {g_count} groups of {gm}")
    a_mat, b_mat, _ = winograd_matrices(m)

    row, phase_len = geo.stored_row, geo.phase_len
    xpad = flat_padded_input(x, (dp, hp, row), geo.padding[:3], WINOGRAD_PAD_BLOCK,
                             w_phases=m)

    def _pack(n, e, f):
        # f enumerates (c, dp, th, tw); schedules split it into these loops. Element (r1, r2)
        # of tile (th, tw) is column tw * m + r2 of row th * m + r1: phase r2 % m, stored
        # at tw + r2 // m (contiguous over tw)
        c = f // (dp * tiles)
        d = f // tiles % dp
        th = f % tiles // n_w
        tw = f % n_w
        base = ((c * dp + d) * hp + th * m) * row + tw
        exprs = _transform(b_mat, lambda r1, r2: xpad[
            n, base + r1 * row + r2 % m * phase_len + r2 // m], dtype)
        value = _select(e // alpha, e % alpha, exprs)
        # zero channels after the last: the padded positions of the GEMM read them
        return tirx.if_then_else(c < chans, value, tirx.const(0, dtype)) if extra_c else value

    # the padded positions of the GEMM read zero channels after the last, and are dropped
    q_pad = geo.positions
    extra_c = -(-(q_pad - od * tiles) // (dp * tiles))
    packed = te.compute((n_batch, alpha * alpha, (chans + extra_c) * dp * tiles), _pack,
                        name=WINOGRAD_PACK_BLOCK, attrs={"schedule_rule": NO_SCHEDULE_RULE})
    t = te.reduce_axis((0, t_len), name="t")

    def _bgemm(n, e, mo, q):
        return te.sum(values[e, mo // gm, t, mo % gm] * packed[n, e, offsets[mo // gm, t] + q],
                      axis=t)

    bgemm = te.compute((n_batch, alpha * alpha, g_count * gm, q_pad), _bgemm,
                       name=WINOGRAD_BGEMM_BLOCK,
                       attrs={"schedule_rule": WINOGRAD_SCHEDULE_RULE})

    def _inverse(n, mo, d, h, w):
        q = d * tiles + h // m * n_w + w // m
        exprs = _transform(a_mat, lambda r1, r2: bgemm[n, r1 * alpha + r2, mo, q], dtype)
        return _select(h % m, w % m, exprs)

    out_shape = (n_batch, int(out_channels), od, oh, ow)
    inverse = te.compute(out_shape, _inverse, name=WINOGRAD_INVERSE_BLOCK,
                         attrs={"schedule_rule": NO_SCHEDULE_RULE})
    if not (bias or residual or relu or silu):
        return inverse
    # applied by the output transform's write-back (the schedule inlines it)
    return epilogue_te(inverse, extra[0] if bias else None, extra[-1] if residual else None,
                       relu, WINOGRAD_EPILOGUE_BLOCK, silu=silu)


def winograd_conv3d_attrs(geometry: WinogradGeometry, group_m: int) -> dict:
    """The PrimFunc attributes that mark the operator and give schedules its geometry."""
    dp, hp, _ = geometry.tiled_spatial
    return {
        WINOGRAD_CONV3D_ATTR: int(geometry.tile),
        WINOGRAD_GROUP_ATTR: int(group_m),
        WINOGRAD_SHAPE_ATTR: [int(v) for v in (dp, hp, geometry.stored_row, geometry.n_h,
                                               geometry.n_w)],
        KGS_GEOMETRY_ATTR: [int(v) for v in (*geometry.kernel, *geometry.strides,
                                             *geometry.padding, *geometry.dilation,
                                             *geometry.input_shape)],
        "op_pattern": 8,  # kOpaque, as the direct operator
    }


def winograd_conv3d_primfunc(
    input_shape: Sequence[int],
    weight: np.ndarray,
    padding: Sequence[int] = (1, 1, 1),
    tile: int = 4,
    group_m: int = 16,
    dtype: str = "float32",
) -> tuple[tirx.PrimFunc, np.ndarray, np.ndarray]:
    """A standalone PrimFunc ``main(x, values, offsets, y)`` for one layer, with its
    transformed weights and offsets (tests, benchmarks, tuning)."""
    geo = WinogradGeometry(input_shape, weight.shape[2:], padding, tile)
    values, columns, counts = winograd_pack_weights(np.asarray(weight), tile, group_m)
    offsets = winograd_offsets(columns, counts, geo)
    x = te.placeholder(geo.input_shape, dtype, name="x")
    v = te.placeholder(values.shape, dtype, name="values")
    o = te.placeholder(offsets.shape, "int32", name="offsets")
    y = winograd_conv3d_te(x, v, o, out_channels=weight.shape[0], kernel=geo.kernel,
                           padding=geo.padding, tile=tile)
    func = te.create_prim_func([x, v, o, y])
    func = func.with_attrs({"global_symbol": "main", **winograd_conv3d_attrs(geo, group_m)})
    return func, values, offsets
