"""NNGP and NTK of fully connected networks, and arc-cosine kernels (DESIGN 4).

Numeric core: NumPy and Numba only, inputs already validated by the caller.

A Gram matrix is computed in two steps, both in place in the output array:

1. ``X @ Y.T`` through BLAS, written straight into the output, row chunk by row
   chunk (for ``Y=None`` only the lower triangle's chunks).
2. One fused, Numba-parallel elementwise pass that runs every layer of the
   recursion on each entry.  All it needs besides the entry is a handful of
   per-row numbers per layer, derived from the diagonal of the recursion
   (``Sigma^l(x, x)``, O(n * depth)), so no N x N temporary is ever made.

The pass evaluates ``arccos`` / ``arcsin`` with Cephes' rational (float64) or
polynomial (float32) approximation after a half-angle reduction, written
without branches or calls into libm so that the loops vectorise, and forms no
transcendental that the closed forms do not need: for ReLU,
``sin(theta) = sqrt((1 - c)(1 + c))``.  float32 input is computed in float32,
float64 in float64.  Entries are independent of each other, so the result does
not depend on the number of threads.

:func:`kernel_matrix_with_gradient` runs the same pass with the recursion
differentiated alongside, entry by entry, with respect to the log of each
variance (forward mode: the per-row tables gain the derivatives of the
diagonal recursion, each entry carries the derivatives of ``Sigma^l`` and
``Theta^l`` through the layers), writing one more symmetric matrix per
variance.

Rows are accepted down to the smallest subnormal; a row whose squared norm
overflows (``|x|`` beyond about 1e154 in float64, 1e19 in float32) overflows
the product itself and is not supported.
"""

import math
import threading

import numba
import numpy as np
from numba import njit, prange
from numba.core import types
from numba.extending import overload
from threadpoolctl import ThreadpoolController

from ._jit import CACHE

KERNELS = ("nngp", "ntk")
ACTIVATIONS = ("relu", "erf")
ARCCOS_DEGREES = (0, 1, 2)

# Small integer codes keep the number of compiled specialisations small.
_RELU, _ERF, _ARCCOS = 0, 1, 2

# BLAS does not promise the same bits for an entry when the rows are split
# differently, so the product is always taken on this fixed grid of row chunks,
# whatever ``block_rows`` is; blocks are rounded to whole chunks.
_PRODUCT_ROWS = 256
# Tiles of the symmetric pass (the product grid is a multiple of their
# height), and the stretch of one row of the rectangular pass.
_TILE_ROWS = 64
_TILE_COLS = 256
_SEGMENT = 512
# Below this many multiply-adds the product stays on the calling thread:
# starting threads would cost more than they save.
_PARALLEL_PRODUCT_MIN = 2**24

_PI = math.pi
_HALF_PI = 0.5 * math.pi

# Cephes asin.c: asin(z) = z + z * zz * P(zz) / Q(zz), zz = z^2, for |z| <= 0.625.
_P0 = 4.253011369004428248960e-3
_P1 = -6.019598008014123785661e-1
_P2 = 5.444622390564711410273e0
_P3 = -1.626247967210700244449e1
_P4 = 1.956261983317594739197e1
_P5 = -8.198089802484824371615e0
_Q1 = -1.474091372988853791896e1
_Q2 = 7.049610280856842141659e1
_Q3 = -1.471791292232726029859e2
_Q4 = 1.395105614657485689735e2
_Q5 = -4.918853881490881290097e1
# Cephes asinf.c: asin(z) = z + z * zz * F(zz) for |z| <= 1/2, single precision.
_F0 = np.float32(4.2163199048e-2)
_F1 = np.float32(2.4181311049e-2)
_F2 = np.float32(4.5470025998e-2)
_F3 = np.float32(7.4953002686e-2)
_F4 = np.float32(1.6666752422e-1)

# Per-row table rows (second axis of the tables built by _row_tables).
_N_TABLE = 5

# The hyper-parameters the gradient is taken for, in the order of the
# derivative tables (scikit-learn's order: by name), and their indices.
HYPERPARAMETERS = ("bias_variance", "weight_variance")
_D_BIAS, _D_WEIGHT = 0, 1
_N_DERIVATIVES = len(HYPERPARAMETERS)

# The fused pass is compiled with floating-point contraction only: fused
# multiply-adds are more accurate than the separate operations and take
# 10-20 % off the pass; nothing is reassociated and NaN/inf semantics are
# kept.  error_model="numpy" drops Python's division checks, which would
# stop the loops from vectorising.
_FUSED = dict(cache=CACHE, error_model="numpy", fastmath={"contract"})
_INLINE = dict(_FUSED, inline="always")


def _typed(like, value):
    """``value`` in the precision of ``like``, so float32 code stays float32."""
    return type(like)(value)


@overload(_typed, inline="always")
def _typed_numba(like, value):
    if like == types.float32:
        return lambda like, value: np.float32(value)
    return lambda like, value: np.float64(value)


def _asin_reduced(z):
    """``arcsin(z)`` for ``0 <= z <= 1/2``, to the precision of ``z``."""
    return math.asin(z)


@overload(_asin_reduced, inline="always")
def _asin_reduced_numba(z):
    if z == types.float32:
        def asin_single(z):
            zz = z * z
            return z + z * zz * ((((_F0 * zz + _F1) * zz + _F2) * zz + _F3) * zz + _F4)
        return asin_single

    def asin_double(z):
        zz = z * z
        p = ((((_P0 * zz + _P1) * zz + _P2) * zz + _P3) * zz + _P4) * zz + _P5
        q = ((((zz + _Q1) * zz + _Q2) * zz + _Q3) * zz + _Q4) * zz + _Q5
        return z + z * (zz * p / q)
    return asin_double


@njit(**_INLINE)
def _half_angle_asin(a):
    """For ``a`` in [0, 1]: ``(big, w)`` with ``w = asin(z)``, ``z <= 1/2``.

    ``big`` is ``a > 1/2``; then ``z = sqrt((1 - a) / 2)`` (so ``acos(a) = 2 w``),
    else ``z = a``.  The reduction keeps the polynomial in its accurate range
    and gives ``acos`` near 1 and ``asin`` near 0 to full relative precision;
    written with selects, not branches, so that the loops vectorise.
    """
    half = _typed(a, 0.5)
    big = a > half
    z = math.sqrt(half - half * a) if big else a
    return big, _asin_reduced(z)


@njit(**_INLINE)
def _arccos_pair(c):
    """``(theta, pi - theta)`` for ``theta = arccos(c)``, ``c`` in [-1, 1].

    Both without cancellation: ``pi - arccos(c) = arccos(-c)``.
    """
    big, w = _half_angle_asin(abs(c))
    t = _typed(c, 2.0) * w if big else _typed(c, _HALF_PI) - w
    pi = _typed(c, _PI)
    if c >= _typed(c, 0.0):
        return t, pi - t
    return pi - t, t


@njit(**_INLINE)
def _arcsin(x):
    """``arcsin(x)`` for ``x`` in [-1, 1], full relative precision near 0."""
    big, w = _half_angle_asin(abs(x))
    r = _typed(x, _HALF_PI) - _typed(x, 2.0) * w if big else w
    return r if x >= _typed(x, 0.0) else -r


@njit(cache=CACHE, error_model="numpy")
def _row_sq_norms(X):
    """Squared row norms, accumulated in float64 in a fixed order."""
    n, d = X.shape
    sq = np.empty(n)
    for i in range(n):
        acc = 0.0
        for k in range(d):
            v = np.float64(X[i, k])
            acc += v * v
        sq[i] = acc
    return sq


@njit(cache=CACHE, error_model="numpy")
def _row_tables(sq, scale, sw2, sb2, depth, activation, degree):
    """Diagonal recursion per row: the per-layer numbers the fused pass needs.

    Returns ``(tables, sigma, theta, dtables, dsigma, dtheta)``:
    ``tables[l, :, i]`` holds what layer ``l`` needs of row ``i`` (see the
    fused layer functions); ``sigma`` and ``theta`` are the output NNGP and
    NTK diagonals, from the closed forms at ``theta = 0`` (so the diagonal is
    exact, not the rounded off-diagonal formula at ``c = 1``).

    The same recursion is differentiated alongside, in log-space: ``D_p q =
    p dq/dp`` for ``p`` each of :data:`HYPERPARAMETERS` (index ``_D_BIAS``,
    ``_D_WEIGHT``).  ``dsigma[p]`` and ``dtheta[p]`` are ``D_p`` of the
    diagonals; ``dtables[l, p, i]`` is what the gradient pass needs of row
    ``i`` at layer ``l``: ``D_p S / (2 S)`` for ReLU (0 at a zero norm, where
    ``D_p S`` is 0 too) and ``D_p S / (1 + 2 S)`` for erf, with ``S`` the
    layer's input ``Sigma^l(x, x)``.  The arc-cosine kernel has no
    derivatives (its ``dtables`` stay 0).
    """
    n = sq.shape[0]
    tables = np.zeros((depth, _N_TABLE, n))
    dtables = np.zeros((depth, _N_DERIVATIVES, n))
    sigma = np.empty(n)
    theta = np.empty(n)
    dsigma = np.empty((_N_DERIVATIVES, n))
    dtheta = np.empty((_N_DERIVATIVES, n))
    ds = np.empty(_N_DERIVATIVES)
    dt = np.empty(_N_DERIVATIVES)
    de_phi = np.empty(_N_DERIVATIVES)
    de_dphi = np.empty(_N_DERIVATIVES)
    for i in range(n):
        s = scale * sq[i] + sb2
        t = s
        # Sigma^1 = sw2 <x, x> / d + sb2: each variance's own term.
        ds[_D_BIAS] = sb2
        ds[_D_WEIGHT] = scale * sq[i]
        dt[:] = ds
        for layer in range(depth):
            if activation == _ERF:
                a = 1.0 + 2.0 * s
                tables[layer, 0, i] = math.sqrt(2.0 / a)
                tables[layer, 1, i] = math.sqrt(2.0 * s / a)
                tables[layer, 2, i] = 1.0 / a
                tables[layer, 3, i] = s / a
                tables[layer, 4, i] = math.sqrt(a)
                e_phi = (2.0 / _PI) * math.asin(2.0 * s / a)
                e_dphi = (4.0 / _PI) / math.sqrt(1.0 + 4.0 * s)
                for p in range(_N_DERIVATIVES):
                    dtables[layer, p, i] = ds[p] / a
                    de_phi[p] = e_dphi * ds[p] / a
                    de_dphi[p] = -2.0 * e_dphi * ds[p] / (1.0 + 4.0 * s)
            else:
                # ReLU layer and the arc-cosine kernel: both need the norm.
                r = math.sqrt(s)
                tables[layer, 0, i] = 1.0 / r if r > 0.0 else 0.0
                tables[layer, 1, i] = r
                # theta is undefined at a zero norm; the arc-cosine kernel
                # takes the theta = 0 limit by clipping c from below at 1.
                tables[layer, 2, i] = 1.0 if r == 0.0 else -1.0
                if activation == _ARCCOS:
                    tables[layer, 1, i] = r**degree
                e_phi = 0.5 * s
                e_dphi = 0.5
                for p in range(_N_DERIVATIVES):
                    if activation == _RELU and s > 0.0:
                        dtables[layer, p, i] = 0.5 * ds[p] / s
                    de_phi[p] = 0.5 * ds[p]
                    de_dphi[p] = 0.0
            s_dot = sw2 * e_dphi
            s_next = sw2 * e_phi + sb2
            # D_p of Sigma^{l+1} = sw2 E[phi phi] + sb2 and of
            # Theta^{l+1} = Sigma^{l+1} + sw2 E[phi' phi'] Theta^l.
            for p in range(_N_DERIVATIVES):
                ds_next = sw2 * de_phi[p]
                ds_dot = sw2 * de_dphi[p]
                if p == _D_BIAS:
                    ds_next += sb2
                else:
                    ds_next += sw2 * e_phi
                    ds_dot += s_dot
                dt[p] = ds_next + ds_dot * t + s_dot * dt[p]
                ds[p] = ds_next
            t = s_next + (sw2 * e_dphi) * t
            s = s_next
        if activation == _ARCCOS:
            s = sq[i] ** degree * (3.0 if degree == 2 else 1.0)
        sigma[i] = s
        theta[i] = t
        dsigma[:, i] = ds
        dtheta[:, i] = dt
    return tables, sigma, theta, dtables, dsigma, dtheta


@njit(**_INLINE)
def _relu_layer(s_buf, t_buf, m, tx, i, ty, j0, k, sb2):
    """One ReLU layer on the ``m`` entries of row ``i`` from column ``j0``.

    ``s_buf`` holds Sigma^l and becomes Sigma^{l+1}; ``t_buf`` likewise for
    Theta (updated for the NNGP too: it is branch-free and cheap).  ``k`` is
    ``sw2 / (2 pi)``.  Table rows: 1 / sqrt(S) (0 at a zero norm) and sqrt(S).
    A zero norm needs no special angle here: with ``sb2 = 0`` that row stays
    zero in every layer, whatever ``c`` is, which is the limit value.
    """
    one = _typed(k, 1.0)
    inv_ri = tx[0, i]
    kri = k * tx[1, i]
    inv_r = ty[0, j0:j0 + m]
    r = ty[1, j0:j0 + m]
    for jj in range(m):
        c = min(max((s_buf[jj] * inv_ri) * inv_r[jj], -one), one)
        rest = _arccos_pair(c)[1]
        sin = math.sqrt((one - c) * (one + c))
        s_next = (kri * r[jj]) * (sin + rest * c) + sb2
        t_buf[jj] = s_next + (k * rest) * t_buf[jj]
        s_buf[jj] = s_next


@njit(**_INLINE)
def _erf_layer(s_buf, t_buf, m, tx, i, ty, j0, e_scale, dot_scale, sb2):
    """One erf layer (Williams 1997) on ``m`` entries of row ``i``.

    ``e_scale = 2 sw2 / pi``, ``dot_scale = 4 sw2 / pi``.  With ``a = 1 + 2 S``
    the table rows are sqrt(2 / a), sqrt(2 S / a), 1 / a, S / a and sqrt(a).
    ``arg = 2 S12 / sqrt(a_i a_j)`` is clipped to what Cauchy-Schwarz allows,
    and ``a_i a_j - 4 S12^2`` is evaluated as ``a_i a_j q`` with ``q`` a sum of
    non-negative terms, so that neither huge norms (``a_i a_j`` overflowing)
    nor rounding (a negative difference) can give a NaN.
    """
    two = _typed(sb2, 2.0)
    h_i = tx[0, i]
    g_i = tx[1, i]
    ia_i = tx[2, i]
    u_i = tx[3, i]
    ra_i = tx[4, i]
    h = ty[0, j0:j0 + m]
    g = ty[1, j0:j0 + m]
    ia = ty[2, j0:j0 + m]
    u = ty[3, j0:j0 + m]
    ra = ty[4, j0:j0 + m]
    for jj in range(m):
        bound = g_i * g[jj]
        arg = (s_buf[jj] * h_i) * h[jj]
        arg = min(max(arg, -bound), bound)
        q = ia_i * ia[jj] + two * (u_i * ia[jj] + u[jj] * ia_i)
        q += (bound - arg) * (bound + arg)
        s_dot = dot_scale / ((ra_i * ra[jj]) * math.sqrt(q))
        s_next = e_scale * _arcsin(arg) + sb2
        t_buf[jj] = s_next + s_dot * t_buf[jj]
        s_buf[jj] = s_next


@njit(**_INLINE)
def _relu_layer_gradient(s_buf, t_buf, ds_buf, dt_buf, m, tx, dx, i, ty, dy, j0, k,
                         sb2):
    """:func:`_relu_layer` and its log-derivatives, on ``m`` entries of row ``i``.

    ``ds_buf[p]`` holds ``D_p Sigma^l`` (``D_p = p d/dp``, ``p`` each of
    :data:`HYPERPARAMETERS`) and becomes ``D_p Sigma^{l+1}``; ``dt_buf[p]``
    likewise for Theta.  ``dx`` / ``dy`` hold the rows' ``g_p = D_p S / (2 S)``
    (:func:`_row_tables`).  With ``R = sqrt(S_11 S_22)`` and
    ``E = R J_1(theta) / (2 pi)`` (Cho & Saul), the partial derivatives are
    ``dE/dS_12 = (pi - theta) / (2 pi)`` and
    ``dE/dS_11 = sin(theta) sqrt(S_22 / S_11) / (4 pi)``, so that

        sw2 D_p E     = Sdot D_p S_12 + k R sin(theta) (g_p1 + g_p2)
        sw2 D_p Edot  = k D_p c / sin(theta),
        D_p c         = (D_p S_12 - S_12 (g_p1 + g_p2)) / R.

    ``D_p c`` vanishes where ``sin(theta) = 0`` (parallel or opposite
    inputs keep ``c = +-1`` for every ``p``), so the quotient is taken as 0
    there; a zero norm (``sb2 = 0``) has ``1 / R`` and ``g`` set to 0 and
    keeps every derivative 0, its limit value.
    """
    one = _typed(k, 1.0)
    zero = _typed(k, 0.0)
    inv_ri = tx[0, i]
    kri = k * tx[1, i]
    gb_i = dx[_D_BIAS, i]
    gw_i = dx[_D_WEIGHT, i]
    inv_r = ty[0, j0:j0 + m]
    r = ty[1, j0:j0 + m]
    gb = dy[_D_BIAS, j0:j0 + m]
    gw = dy[_D_WEIGHT, j0:j0 + m]
    ds_b = ds_buf[_D_BIAS]
    ds_w = ds_buf[_D_WEIGHT]
    dt_b = dt_buf[_D_BIAS]
    dt_w = dt_buf[_D_WEIGHT]
    for jj in range(m):
        s = s_buf[jj]
        t = t_buf[jj]
        c = min(max((s * inv_ri) * inv_r[jj], -one), one)
        rest = _arccos_pair(c)[1]
        sin = math.sqrt((one - c) * (one + c))
        kr = kri * r[jj]
        e_phi = kr * (sin + rest * c)
        s_dot = k * rest
        s_next = e_phi + sb2
        t_buf[jj] = s_next + s_dot * t
        s_buf[jj] = s_next

        k_sin = kr * sin
        k_inv_sin = k / sin if sin > zero else zero
        g_b = gb_i + gb[jj]
        g_w = gw_i + gw[jj]
        dc_b = ((ds_b[jj] - s * g_b) * inv_ri) * inv_r[jj]
        dc_w = ((ds_w[jj] - s * g_w) * inv_ri) * inv_r[jj]
        ds_next_b = s_dot * ds_b[jj] + k_sin * g_b + sb2
        ds_next_w = s_dot * ds_w[jj] + k_sin * g_w + e_phi
        dt_b[jj] = ds_next_b + (k_inv_sin * dc_b) * t + s_dot * dt_b[jj]
        dt_w[jj] = ds_next_w + (k_inv_sin * dc_w + s_dot) * t + s_dot * dt_w[jj]
        ds_b[jj] = ds_next_b
        ds_w[jj] = ds_next_w


@njit(**_INLINE)
def _erf_layer_gradient(s_buf, t_buf, ds_buf, dt_buf, m, tx, dx, i, ty, dy, j0,
                        e_scale, dot_scale, sb2):
    """:func:`_erf_layer` and its log-derivatives, on ``m`` entries of row ``i``.

    Buffers as for :func:`_relu_layer_gradient`; ``dx`` / ``dy`` hold the
    rows' ``v_p = D_p S / a`` (``a = 1 + 2 S``).  With ``Q = a_1 a_2 - 4 S_12^2``
    (``q = Q / (a_1 a_2)`` in the pass), ``E = (2/pi) arcsin(2 S_12 / sqrt(a_1 a_2))``
    and ``Edot = (4/pi) / sqrt(Q)``:

        sw2 D_p E    = Sdot (D_p S_12 - S_12 (v_p1 + v_p2))
        sw2 D_p Edot = -Sdot (v_p1 + v_p2 - 4 S_12 D_p S_12 / (a_1 a_2)) / q

    ``q >= 1 / (a_1 a_2) > 0``, so nothing is singular; the products are
    grouped so that huge norms do not overflow.
    """
    two = _typed(sb2, 2.0)
    four = _typed(sb2, 4.0)
    h_i = tx[0, i]
    g_i = tx[1, i]
    ia_i = tx[2, i]
    u_i = tx[3, i]
    ra_i = tx[4, i]
    vb_i = dx[_D_BIAS, i]
    vw_i = dx[_D_WEIGHT, i]
    h = ty[0, j0:j0 + m]
    g = ty[1, j0:j0 + m]
    ia = ty[2, j0:j0 + m]
    u = ty[3, j0:j0 + m]
    ra = ty[4, j0:j0 + m]
    vb = dy[_D_BIAS, j0:j0 + m]
    vw = dy[_D_WEIGHT, j0:j0 + m]
    ds_b = ds_buf[_D_BIAS]
    ds_w = ds_buf[_D_WEIGHT]
    dt_b = dt_buf[_D_BIAS]
    dt_w = dt_buf[_D_WEIGHT]
    for jj in range(m):
        s = s_buf[jj]
        t = t_buf[jj]
        bound = g_i * g[jj]
        arg = (s * h_i) * h[jj]
        arg = min(max(arg, -bound), bound)
        q = ia_i * ia[jj] + two * (u_i * ia[jj] + u[jj] * ia_i)
        q += (bound - arg) * (bound + arg)
        s_dot = dot_scale / ((ra_i * ra[jj]) * math.sqrt(q))
        e_phi = e_scale * _arcsin(arg)
        s_next = e_phi + sb2
        t_buf[jj] = s_next + s_dot * t
        s_buf[jj] = s_next

        v_b = vb_i + vb[jj]
        v_w = vw_i + vw[jj]
        s_ia = four * (s * ia_i)
        dot_q = s_dot / q
        d_dot_b = dot_q * (s_ia * (ds_b[jj] * ia[jj]) - v_b)
        d_dot_w = dot_q * (s_ia * (ds_w[jj] * ia[jj]) - v_w)
        ds_next_b = s_dot * (ds_b[jj] - s * v_b) + sb2
        ds_next_w = s_dot * (ds_w[jj] - s * v_w) + e_phi
        dt_b[jj] = ds_next_b + d_dot_b * t + s_dot * dt_b[jj]
        dt_w[jj] = ds_next_w + (d_dot_w + s_dot) * t + s_dot * dt_w[jj]
        ds_b[jj] = ds_next_b
        ds_w[jj] = ds_next_w


def _arccos_j(degree, c, sin, rest, one, two, three):
    """Cho & Saul's ``J_n`` from ``cos``, ``sin`` and ``pi - theta`` (degree 0-2).

    Plain Python on scalars: compiled inline here and as a device function
    by the CUDA backend, so both backends state the polynomial once.
    """
    if degree == 0:
        return rest
    if degree == 1:
        return sin + rest * c
    return three * sin * c + rest * (one + two * c * c)


_arccos_j_cpu = njit(**_INLINE)(_arccos_j)


@njit(**_INLINE)
def _arccos_layer(s_buf, m, tx, i, ty, j0, degree, inv_pi):
    """Arc-cosine kernel of degree 0, 1 or 2 on ``m`` entries of row ``i``.

    ``s_buf`` holds ``<x, y>`` and becomes ``k_n(x, y)``.  Table rows as for
    ReLU, except the second is ``|x|^n``.
    """
    one = _typed(inv_pi, 1.0)
    two = _typed(inv_pi, 2.0)
    three = _typed(inv_pi, 3.0)
    inv_ri = tx[0, i]
    rn_i = tx[1, i] * inv_pi
    lo_i = tx[2, i]
    inv_r = ty[0, j0:j0 + m]
    rn = ty[1, j0:j0 + m]
    lo = ty[2, j0:j0 + m]
    for jj in range(m):
        c = (s_buf[jj] * inv_ri) * inv_r[jj]
        c = min(max(max(c, lo_i), lo[jj]), one)
        rest = _arccos_pair(c)[1]
        sin = math.sqrt((one - c) * (one + c))
        j_n = _arccos_j_cpu(degree, c, sin, rest, one, two, three)
        s_buf[jj] = (rn_i * rn[jj]) * j_n


@njit(**_FUSED)
def _segment(row, j0, m, s_buf, t_buf, tx, i, ty, coef, codes):
    """Every layer on ``row[j0:j0 + m]`` (raw products in, kernel values out).

    ``coef`` holds the float constants in the output's precision (see
    :func:`_coefficients`), ``codes`` the integers (depth, activation, degree,
    ntk).
    """
    scale, sb2, k, e_scale, dot_scale, inv_pi = coef
    depth, activation, degree, ntk = codes
    for jj in range(m):
        s = scale * row[j0 + jj] + sb2
        s_buf[jj] = s
        t_buf[jj] = s
    for layer in range(depth):
        if activation == _RELU:
            _relu_layer(s_buf, t_buf, m, tx[layer], i, ty[layer], j0, k, sb2)
        elif activation == _ERF:
            _erf_layer(s_buf, t_buf, m, tx[layer], i, ty[layer], j0, e_scale,
                       dot_scale, sb2)
        else:
            _arccos_layer(s_buf, m, tx[layer], i, ty[layer], j0, degree, inv_pi)
    result = t_buf if ntk else s_buf
    for jj in range(m):
        row[j0 + jj] = result[jj]


@njit(parallel=True, **_FUSED)
def _fused_rows(out, r0, r1, tx, ty, coef, codes):
    """Fused pass over rows ``r0:r1`` of a rectangular ``K(X, Y)``."""
    n_cols = out.shape[1]
    for i in prange(r0, r1):
        s_buf = np.empty(_SEGMENT, dtype=out.dtype)
        t_buf = np.empty(_SEGMENT, dtype=out.dtype)
        row = out[i]
        for j0 in range(0, n_cols, _SEGMENT):
            m = min(_SEGMENT, n_cols - j0)
            _segment(row, j0, m, s_buf, t_buf, tx, i, ty, coef, codes)


@njit(cache=CACHE)
def _lower_tiles(r0, r1):
    """Tiles of rows ``r0:r1`` of the lower triangle, as one flat list.

    ``(tile_rows, tile_cols)``: tile ``k`` covers rows ``tile_rows[k] *
    _TILE_ROWS`` onwards and columns ``tile_cols[k] * _TILE_COLS`` onwards,
    both cut at the diagonal and at ``r1``.
    """
    first = r0 // _TILE_ROWS
    last = (r1 + _TILE_ROWS - 1) // _TILE_ROWS
    n_tiles = 0
    for tile_i in range(first, last):
        n_tiles += (min(r1, (tile_i + 1) * _TILE_ROWS) + _TILE_COLS - 1) // _TILE_COLS
    tile_rows = np.empty(n_tiles, dtype=np.int64)
    tile_cols = np.empty(n_tiles, dtype=np.int64)
    k = 0
    for tile_i in range(first, last):
        row_end = min(r1, (tile_i + 1) * _TILE_ROWS)
        for tile_j in range((row_end + _TILE_COLS - 1) // _TILE_COLS):
            tile_rows[k] = tile_i
            tile_cols[k] = tile_j
            k += 1
    return tile_rows, tile_cols


@njit(parallel=True, **_FUSED)
def _fused_lower(out, r0, r1, tx, diag, coef, codes):
    """Fused pass over rows ``r0:r1`` of a symmetric ``K(X, X)``.

    Reads the lower triangle (the product was only taken there) and writes
    it and its mirror image, tile by tile so that the transposed writes hit
    lines still in cache.  Tiles are wide, so that each row's stretch is long
    enough for the hardware prefetcher.  The diagonal gets ``diag``, the
    exact theta = 0 value.  Tiles are dealt out as one flat list so that the
    threads get equal work.
    """
    tile_rows, tile_cols = _lower_tiles(r0, r1)
    for k in prange(tile_rows.shape[0]):
        s_buf = np.empty(_TILE_COLS, dtype=out.dtype)
        t_buf = np.empty(_TILE_COLS, dtype=out.dtype)
        i0 = tile_rows[k] * _TILE_ROWS
        i1 = min(i0 + _TILE_ROWS, r1)
        j0 = tile_cols[k] * _TILE_COLS
        j1 = min(j0 + _TILE_COLS, i1)
        for i in range(i0, i1):
            m = min(j1, i + 1) - j0
            if m > 0:
                _segment(out[i], j0, m, s_buf, t_buf, tx, i, tx, coef, codes)
            if j0 <= i < j1:
                out[i, i] = diag[i]
        for j in range(j0, j1):
            for i in range(max(i0, j + 1), i1):
                out[j, i] = out[i, j]


@njit(**_FUSED)
def _segment_gradient(out, grad, which, i, j0, m, buffers, tx, dx, coef, codes):
    """:func:`_segment` with derivatives, on ``out[i, j0:j0 + m]`` of ``K(X, X)``.

    Also writes ``grad[o, i, j0:j0 + m]``, the log-derivative with respect to
    hyper-parameter ``which[o]`` (an index into :data:`HYPERPARAMETERS`).
    Both derivatives are always computed, so that a column's bits do not
    depend on which others were asked for.
    """
    s_buf, t_buf, ds_buf, dt_buf = buffers
    scale, sb2, k, e_scale, dot_scale, _ = coef
    depth, activation, _, ntk = codes
    row = out[i]
    for jj in range(m):
        product = scale * row[j0 + jj]
        s = product + sb2
        s_buf[jj] = s
        t_buf[jj] = s
        # Sigma^1 = sw2 <x, x'> / d + sb2: D_sw2 is the product, D_sb2 is sb2.
        ds_buf[_D_BIAS, jj] = sb2
        ds_buf[_D_WEIGHT, jj] = product
        dt_buf[_D_BIAS, jj] = sb2
        dt_buf[_D_WEIGHT, jj] = product
    for layer in range(depth):
        if activation == _RELU:
            _relu_layer_gradient(s_buf, t_buf, ds_buf, dt_buf, m, tx[layer], dx[layer],
                                 i, tx[layer], dx[layer], j0, k, sb2)
        else:
            _erf_layer_gradient(s_buf, t_buf, ds_buf, dt_buf, m, tx[layer], dx[layer],
                                i, tx[layer], dx[layer], j0, e_scale, dot_scale, sb2)
    result = t_buf if ntk else s_buf
    d_result = dt_buf if ntk else ds_buf
    for jj in range(m):
        row[j0 + jj] = result[jj]
    for o in range(which.shape[0]):
        grad_row = grad[o, i]
        d_own = d_result[which[o]]
        for jj in range(m):
            grad_row[j0 + jj] = d_own[jj]


@njit(parallel=True, **_FUSED)
def _fused_lower_gradient(out, grad, which, r0, r1, tx, dx, diag, d_diag, coef,
                          codes):
    """:func:`_fused_lower` that also writes ``grad`` (see :func:`_segment_gradient`).

    ``grad[o]`` is a symmetric matrix like ``out``, mirrored in the same
    tiles; its diagonal is ``d_diag[which[o]]``, the exact derivative of the
    theta = 0 recursion.
    """
    tile_rows, tile_cols = _lower_tiles(r0, r1)
    n_out = which.shape[0]
    for k in prange(tile_rows.shape[0]):
        buffers = (np.empty(_TILE_COLS, dtype=out.dtype),
                   np.empty(_TILE_COLS, dtype=out.dtype),
                   np.empty((_N_DERIVATIVES, _TILE_COLS), dtype=out.dtype),
                   np.empty((_N_DERIVATIVES, _TILE_COLS), dtype=out.dtype))
        i0 = tile_rows[k] * _TILE_ROWS
        i1 = min(i0 + _TILE_ROWS, r1)
        j0 = tile_cols[k] * _TILE_COLS
        j1 = min(j0 + _TILE_COLS, i1)
        for i in range(i0, i1):
            m = min(j1, i + 1) - j0
            if m > 0:
                _segment_gradient(out, grad, which, i, j0, m, buffers, tx, dx, coef,
                                  codes)
            if j0 <= i < j1:
                out[i, i] = diag[i]
                for o in range(n_out):
                    grad[o, i, i] = d_diag[which[o], i]
        for j in range(j0, j1):
            for i in range(max(i0, j + 1), i1):
                out[j, i] = out[i, j]
        for o in range(n_out):
            matrix = grad[o]
            for j in range(j0, j1):
                for i in range(max(i0, j + 1), i1):
                    matrix[j, i] = matrix[i, j]


def _block_steps(n_rows, block_rows):
    """Row blocks ``(r0, r1)``, each a whole number of product chunks."""
    if block_rows is None:
        step = n_rows
    else:
        step = max(1, int(block_rows))
    step = -(-step // _PRODUCT_ROWS) * _PRODUCT_ROWS
    return [(r0, min(n_rows, r0 + step)) for r0 in range(0, max(n_rows, 1), step)]


class _SerialBlas:
    """Context in which BLAS runs on the calling thread only (re-entrant).

    OpenBLAS's own worker threads keep spinning for a while after each call
    and, on few cores, slow the fused pass that follows by a third or more.
    The product chunks are instead spread over our own threads, each calling
    single-threaded BLAS; this also makes the product's bits independent of
    the BLAS thread setting.  A counter restores the user's setting once, when
    the last concurrent user leaves (meanwhile BLAS calls from other threads
    of the process run single-threaded too).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._users = 0
        self._controller = None
        self._limit = None

    def __enter__(self):
        with self._lock:
            if self._users == 0:
                if self._controller is None:
                    self._controller = ThreadpoolController()
                self._limit = self._controller.limit(limits=1, user_api="blas")
            self._users += 1
        return self

    def __exit__(self, *exc_info):
        with self._lock:
            self._users -= 1
            if self._users == 0:
                self._limit.restore_original_limits()
                self._limit = None


_SERIAL_BLAS = _SerialBlas()


def _products(X, other, out, chunks, n_threads):
    """``out[c0:c1, :n_cols] = X[c0:c1] @ other[:n_cols].T`` for each chunk.

    Spread over ``n_threads`` threads, the calling one included, in groups of
    chunks balanced largest-first (the triangle's chunks grow with the row).
    """

    def run(group):
        for c0, c1, n_cols in group:
            np.matmul(X[c0:c1], other[:n_cols].T, out=out[c0:c1, :n_cols])

    work = [(c1 - c0) * n_cols for c0, c1, n_cols in chunks]
    n_groups = min(n_threads, len(chunks))
    if n_groups <= 1 or sum(work) * X.shape[1] < _PARALLEL_PRODUCT_MIN:
        run(chunks)
        return
    groups = [[] for _ in range(n_groups)]
    loads = [0] * n_groups
    for size, chunk in sorted(zip(work, chunks), reverse=True):
        lightest = loads.index(min(loads))
        groups[lightest].append(chunk)
        loads[lightest] += size
    errors = []

    def run_guarded(group):
        try:
            run(group)
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    threads = [threading.Thread(target=run_guarded, args=(group,))
               for group in groups[1:]]
    for thread in threads:
        thread.start()
    try:
        run(groups[0])
    finally:
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def _block_products(X, other, out, r0, r1, symmetric, n_threads):
    """Raw products of rows ``r0:r1`` into ``out``, on the fixed chunk grid.

    For a symmetric product only each chunk's part of the lower triangle.
    """
    chunks = []
    for c0 in range(r0, r1, _PRODUCT_ROWS):
        c1 = min(r1, c0 + _PRODUCT_ROWS)
        chunks.append((c0, c1, c1 if symmetric else out.shape[1]))
    _products(X, other, out, chunks, n_threads)


def _gram(X, Y, tx, ty, diag, coef, codes, block_rows):
    """Product on the fixed chunk grid, then the fused pass, block by block."""
    symmetric = Y is None
    n_x = X.shape[0]
    n_y = n_x if symmetric else Y.shape[0]
    out = np.empty((n_x, n_y), dtype=X.dtype)
    if n_x == 0 or n_y == 0:
        return out
    # A copy, so that NumPy sees two operands and keeps to gemm: its syrk
    # shortcut gives other bits than gemm and would make results depend on
    # where the blocks start.
    other = X.copy() if symmetric else Y
    n_threads = numba.get_num_threads()
    with _SERIAL_BLAS:
        for r0, r1 in _block_steps(n_x, block_rows):
            _block_products(X, other, out, r0, r1, symmetric, n_threads)
            if symmetric:
                _fused_lower(out, r0, r1, tx, diag, coef, codes)
            else:
                _fused_rows(out, r0, r1, tx, ty, coef, codes)
    return out


def _coefficients(dtype, scale, sw2, sb2):
    """Float constants of the fused pass, in the output's precision."""
    f = np.dtype(dtype).type
    return (f(scale), f(sb2), f(sw2 / (2.0 * _PI)), f(sw2 * (2.0 / _PI)),
            f(sw2 * (4.0 / _PI)), f(1.0 / _PI))


def _tables(X, scale, sw2, sb2, depth, activation, degree, derivatives=False):
    """Per-row tables in the precision of ``X``; float64 diagonals.

    ``(tables, sigma, theta)``, and with ``derivatives`` also the derivative
    tables (precision of ``X``) and diagonals (float64) of :func:`_row_tables`.
    """
    tables, sigma, theta, dtables, dsigma, dtheta = _row_tables(
        _row_sq_norms(X), scale, sw2, sb2, depth, activation, degree)
    if X.dtype == np.float32:
        # 1 / |x| of a subnormal float32 row is past float32's range; capped,
        # it still gives a finite c, where inf would give 0 * inf = NaN.
        limit = np.finfo(np.float32).max
        np.clip(tables, -limit, limit, out=tables)
    tables = tables.astype(X.dtype, copy=False)
    if not derivatives:
        return tables, sigma, theta
    return tables, sigma, theta, dtables.astype(X.dtype, copy=False), dsigma, dtheta


def _network_args(X, kernel, activation, weight_variance, bias_variance):
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}.")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS}, got {activation!r}."
        )
    sw2 = float(weight_variance)
    code = _RELU if activation == "relu" else _ERF
    return code, sw2 / X.shape[1], sw2, float(bias_variance)


def kernel_matrix(X, Y=None, *, kernel="ntk", activation="relu", depth=1,
                  weight_variance=2.0, bias_variance=0.0, block_rows=None):
    """NNGP or NTK Gram matrix of a fully connected network (DESIGN 4).

    Parameters
    ----------
    X : ndarray of shape (n_x, n_features), float32 or float64, C-contiguous
        Validated input: finite, 2-D.
    Y : ndarray of shape (n_y, n_features) or None, default=None
        Same dtype as ``X``.  ``None`` computes the symmetric ``K(X, X)``:
        one triangle is evaluated and mirrored, and the diagonal is exactly
        :func:`kernel_diag`.
    kernel : {"nngp", "ntk"}, default="ntk"
        ``Sigma^{depth+1}`` or ``Theta^{depth+1}``.
    activation : {"relu", "erf"}, default="relu"
    depth : int >= 1, default=1
        Number of hidden layers.
    weight_variance : float > 0, default=2.0
        ``sw2``, NTK parameterisation.
    bias_variance : float >= 0, default=0.0
        ``sb2``.
    block_rows : int or None, default=None
        Rows handed to BLAS and then to the fused pass at a time, rounded up
        to whole 256-row product chunks (``None``: all rows).  Both steps work
        in place in the output, so the extra memory is O((n_x + n_y) * depth)
        whatever the block; the result does not depend on it, bit for bit.

    Returns
    -------
    K : ndarray of shape (n_x, n_y), dtype of ``X``
        float32 input is computed in float32 throughout (after float64
        diagonal recursions), float64 in float64.
    """
    code, scale, sw2, sb2 = _network_args(X, kernel, activation, weight_variance,
                                          bias_variance)
    ntk = kernel == "ntk"
    codes = (int(depth), code, 0, ntk)
    coef = _coefficients(X.dtype, scale, sw2, sb2)
    tx, sigma, theta = _tables(X, scale, sw2, sb2, int(depth), code, 0)
    if Y is None:
        return _gram(X, None, tx, tx, theta if ntk else sigma, coef, codes,
                     block_rows)
    ty = _tables(Y, scale, sw2, sb2, int(depth), code, 0)[0]
    return _gram(X, Y, tx, ty, sigma, coef, codes, block_rows)


def kernel_diag(X, *, kernel="ntk", activation="relu", depth=1, weight_variance=2.0,
                bias_variance=0.0):
    """Diagonal ``K(x, x)`` of :func:`kernel_matrix`, in O(n_x * depth).

    Equal, bit for bit, to the diagonal of ``kernel_matrix(X)``: both take the
    closed forms at ``theta = 0``.  Parameters as for :func:`kernel_matrix`.

    Returns
    -------
    diag : ndarray of shape (n_x,), dtype of ``X``
    """
    code, scale, sw2, sb2 = _network_args(X, kernel, activation, weight_variance,
                                          bias_variance)
    _, sigma, theta = _row_tables(_row_sq_norms(X), scale, sw2, sb2, int(depth),
                                  code, 0)[:3]
    return (theta if kernel == "ntk" else sigma).astype(X.dtype)


def kernel_matrix_with_gradient(X, *, kernel="ntk", activation="relu", depth=1,
                                weight_variance=2.0, bias_variance=0.0,
                                wrt=HYPERPARAMETERS, block_rows=None):
    """Symmetric ``K(X, X)`` of :func:`kernel_matrix` and its log-derivatives.

    The recursion of DESIGN 4 is differentiated entry by entry in the same
    fused pass that evaluates it, so that the derivatives cost one more
    output per hyper-parameter, not one more Gram matrix.

    Parameters
    ----------
    X, kernel, activation, depth, weight_variance, bias_variance, block_rows
        As for :func:`kernel_matrix` (``Y`` is always ``X``).
    wrt : sequence of str, default=HYPERPARAMETERS
        Names from :data:`HYPERPARAMETERS` (``"bias_variance"``,
        ``"weight_variance"``), in the order wanted in the gradient.

    Returns
    -------
    K : ndarray of shape (n, n), dtype of ``X``
        Equal to ``kernel_matrix(X, ...)`` to rounding (the same formulas,
        compiled together with their derivatives); its diagonal is exactly
        :func:`kernel_diag`.
    K_gradient : ndarray of shape (n, n, len(wrt)), dtype of ``X``
        ``K_gradient[..., o] = p dK/dp`` for ``p = wrt[o]``: the derivative
        with respect to ``log(p)``, scikit-learn's convention.  A view of a
        C-contiguous ``(len(wrt), n, n)`` array (one symmetric matrix per
        hyper-parameter).  Its bits do not depend on ``wrt``, ``block_rows``
        or the thread count.  With ``bias_variance = 0`` the bias derivative
        is 0 (``p dK/dp`` vanishes with ``p``).
    """
    code, scale, sw2, sb2 = _network_args(X, kernel, activation, weight_variance,
                                          bias_variance)
    unknown = [name for name in wrt if name not in HYPERPARAMETERS]
    if unknown:
        raise ValueError(
            f"wrt must name hyper-parameters among {HYPERPARAMETERS}, got {unknown!r}."
        )
    which = np.array([HYPERPARAMETERS.index(name) for name in wrt], dtype=np.int64)
    ntk = kernel == "ntk"
    codes = (int(depth), code, 0, ntk)
    coef = _coefficients(X.dtype, scale, sw2, sb2)
    tx, sigma, theta, dx, dsigma, dtheta = _tables(X, scale, sw2, sb2, int(depth),
                                                   code, 0, derivatives=True)
    diag, d_diag = (theta, dtheta) if ntk else (sigma, dsigma)
    n = X.shape[0]
    out = np.empty((n, n), dtype=X.dtype)
    grad = np.empty((len(which), n, n), dtype=X.dtype)
    if n > 0:
        other = X.copy()  # gemm, not syrk: see _gram
        n_threads = numba.get_num_threads()
        with _SERIAL_BLAS:
            for r0, r1 in _block_steps(n, block_rows):
                _block_products(X, other, out, r0, r1, True, n_threads)
                _fused_lower_gradient(out, grad, which, r0, r1, tx, dx, diag, d_diag,
                                      coef, codes)
    return out, np.moveaxis(grad, 0, -1)


def arccos_matrix(X, Y=None, *, degree=1, block_rows=None):
    """Arc-cosine kernel of Cho & Saul (2009), degrees 0, 1 and 2.

    ``k_n(x, y) = |x|^n |y|^n J_n(theta) / pi`` with ``J_0 = pi - theta``,
    ``J_1 = sin(theta) + (pi - theta) cos(theta)`` and
    ``J_2 = 3 sin(theta) cos(theta) + (pi - theta)(1 + 2 cos(theta)^2)``.
    Where a row is zero the angle is taken as 0 (so ``k_0 = 1`` there).

    Parameters
    ----------
    X, Y, block_rows
        As for :func:`kernel_matrix`.
    degree : {0, 1, 2}, default=1

    Returns
    -------
    K : ndarray of shape (n_x, n_y), dtype of ``X``
        Its diagonal (``Y=None``) is exactly ``|x|^(2n)`` times 1, 1 or 3.
    """
    if degree not in ARCCOS_DEGREES:
        raise ValueError(f"degree must be one of {ARCCOS_DEGREES}, got {degree!r}.")
    degree = int(degree)
    codes = (1, _ARCCOS, degree, False)
    coef = _coefficients(X.dtype, 1.0, 1.0, 0.0)
    tx, diag, _ = _tables(X, 1.0, 1.0, 0.0, 1, _ARCCOS, degree)
    if Y is None:
        return _gram(X, None, tx, tx, diag, coef, codes, block_rows)
    ty = _tables(Y, 1.0, 1.0, 0.0, 1, _ARCCOS, degree)[0]
    return _gram(X, Y, tx, ty, diag, coef, codes, block_rows)
