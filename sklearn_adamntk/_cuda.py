"""CUDA backend: the kernels, and products with the coefficients, on an NVIDIA GPU.

The same functions as the CPU core (:func:`kernel_matrix`, :func:`kernel_diag`,
:func:`arccos_matrix` of :mod:`._kernels`), on device arrays through
``numba.cuda``, plus what the fitting engine needs around them:
:func:`resolve_device`, the device functions the dual trainer of
:mod:`._cuda_dual` shares, and block prediction (:func:`predict`,
:func:`predict_precomputed`).

Nothing here touches CUDA at import time: ``numba.cuda`` is imported, and the
kernels are compiled, at the first call that needs them, so that importing
the package never creates a CUDA context (forked joblib workers stay safe).
Under ``NUMBA_ENABLE_CUDASIM=1`` (set before Numba is imported) the same code
runs on Numba's CUDA simulator, which is how the tests check it on a machine
without a GPU.

Gram matrix.  One kernel per tile of the output: the product ``X @ Y.T`` is
accumulated in registers from tiles of ``X`` and ``Y`` staged in shared
memory, and the whole recursion of DESIGN 4 runs on the finished products
before the single write of each entry, so the output is the only ``N^2``
memory traffic.  The per-row numbers the recursion needs (from the diagonal
recursion, ``O(N depth)``) are computed on the host by the CPU core, so both
backends use the very same tables.  ``K(X, X)`` evaluates the lower triangle
of tiles and writes each entry and its mirror image (through shared memory,
so that both writes are coalesced); its diagonal is the exact ``theta = 0``
value.  When the output does not fit on the device it is computed in row
blocks; each block then evaluates every entry, with the larger row index
always in the role of the row, so the matrix stays exactly symmetric.

Products.  ``rows_dot`` multiplies rows of a device Gram matrix by the
coefficients, one block per row with a fixed-order reduction, so a result
does not depend on timing; prediction and the dual trainer both use it.
"""

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import _kernels, _losses
from ._jit import CACHE

DEVICES = ("cpu", "cuda", "auto")

INSTALL_HINT = 'pip install "sklearn_adamntk[cuda]"'

# numba.cuda, bound by _import_cuda() on first use, and the device functions,
# bound by _device_functions().  The kernels refer to them as module globals:
# that is what lets the simulator swap in its own ``cuda``, and it keeps the
# kernels' closures to plain constants, which Numba's cache can key on.
cuda = None
_entry = _loss_row = _block_sum = None
_relu_layer = _erf_layer = _arccos_layer = _arccos_j = None

# Integer codes and constant slots shared with the CPU core.
_RELU, _ERF, _ARCCOS = _kernels._RELU, _kernels._ERF, _kernels._ARCCOS
# coef[...] of the Gram kernel: _kernels._coefficients, then small integers
# in the output's precision (a float literal would make float32 code float64).
_SCALE, _SB2, _K, _E_SCALE, _DOT_SCALE, _INV_PI, _ZERO, _ONE, _TWO, _THREE = range(10)

# Fraction of the device's free memory a Gram matrix block may take.
_DEVICE_MEMORY_FRACTION = 0.8


@dataclass(frozen=True)
class Launch:
    """Launch sizes of every kernel in this module (one place to tune them).

    Parameters
    ----------
    tile_threads : int, default=16
        The Gram kernel runs ``tile_threads x tile_threads`` threads per block.
    tile_per_thread : int, default=4
        Each of them computes ``tile_per_thread x tile_per_thread`` entries,
        so an output tile is ``tile_threads * tile_per_thread`` square.
    tile_depth : int, default=8
        Features staged in shared memory per step of the product.
    threads : int, default=256
        Threads per block of the training kernels (a power of two).
    outputs : int, default=8
        Outputs (columns of the coefficients) accumulated per pass over a row
        of the Gram matrix.
    """

    tile_threads: int = 16
    tile_per_thread: int = 4
    tile_depth: int = 8
    threads: int = 256
    outputs: int = 8

    def __post_init__(self):
        for name in ("tile_threads", "tile_per_thread", "tile_depth", "threads",
                     "outputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {value!r}.")
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value!r}.")
        if self.tile_threads**2 > 1024 or self.threads > 1024:
            raise ValueError("A CUDA block holds at most 1024 threads.")
        if self.threads & (self.threads - 1):
            raise ValueError(f"threads must be a power of two, got {self.threads}.")

    @property
    def tile(self):
        """Rows (and columns) of one output tile of the Gram kernel."""
        return self.tile_threads * self.tile_per_thread


DEFAULT_LAUNCH = Launch()


# --------------------------------------------------------------------------
# Device choice
# --------------------------------------------------------------------------


def _import_cuda():
    """``numba.cuda``, imported on first use; a clear error when it is missing."""
    global cuda
    if cuda is None:
        try:
            from numba import cuda as module
        except ImportError as error:
            raise RuntimeError(
                "device='cuda' needs Numba's CUDA target, which could not be "
                f"imported ({error}); install it with {INSTALL_HINT}."
            ) from error
        cuda = module
    return cuda


def cuda_available():
    """Whether a CUDA device (or Numba's CUDA simulator) can be used.

    Imports ``numba.cuda`` and asks the driver; creates no CUDA context.
    """
    try:
        return bool(_import_cuda().is_available())
    except RuntimeError:
        return False


def resolve_device(device):
    """The device a computation runs on: ``"cpu"`` or ``"cuda"``.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"}
        ``"cpu"`` never touches CUDA.  ``"cuda"`` raises when no CUDA device
        is available (there is no silent fallback).  ``"auto"`` is
        ``"cuda"`` when ``numba.cuda.is_available()``, else ``"cpu"``.

    Returns
    -------
    device : {"cpu", "cuda"}

    Raises
    ------
    RuntimeError
        For ``"cuda"`` without a usable device, saying why and what to do.

    Examples
    --------
    >>> from sklearn_adamntk._cuda import resolve_device
    >>> resolve_device("cpu")
    'cpu'
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}.")
    if device == "cpu":
        return "cpu"
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    module = _import_cuda()
    if not module.is_available():
        reason = ""
        try:
            error = module.cuda_error()
        except Exception:  # pragma: no cover - depends on the CUDA target
            error = None
        if error:
            reason = " ({})".format(" ".join(str(error).split()))
        raise RuntimeError(
            f"device='cuda' was requested but no CUDA GPU is available{reason}. "
            "Use device='cpu', or device='auto' to use a GPU only when there is "
            f"one. On a machine with an NVIDIA GPU and driver, {INSTALL_HINT} "
            "installs the CUDA target."
        )
    return "cuda"


def _free_device_bytes():
    free, _ = cuda.current_context().get_memory_info()
    return float(free)


def _check_device_allocation(n_bytes, what, advice):
    free = _free_device_bytes()
    if n_bytes > free:
        raise MemoryError(
            f"{what} needs {n_bytes / 2**30:.1f} GiB of GPU memory but only "
            f"{free / 2**30:.1f} GiB is free; {advice}."
        )


# --------------------------------------------------------------------------
# Compiled kernels, built at first use (one set per precision and launch)
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _device_functions():
    """Bind the device functions: per-entry recursion (DESIGN 4), losses, block sum."""
    global _entry, _loss_row, _block_sum, _relu_layer, _erf_layer, _arccos_layer
    global _arccos_j
    _import_cuda()
    # Cho & Saul's polynomial is the CPU core's own statement.
    _arccos_j = cuda.jit(device=True, cache=CACHE)(_kernels._arccos_j)

    @cuda.jit(device=True, cache=CACHE)
    def relu_layer(s, t, layer, tx, i, ty, j, coef):
        # Table rows: 1 / sqrt(S) (0 at a zero norm) and sqrt(S); pi - theta
        # as arccos(-c), without cancellation near c = -1.
        one = coef[_ONE]
        k = coef[_K]
        c = min(max((s * tx[layer, 0, i]) * ty[layer, 0, j], -one), one)
        rest = math.acos(-c)
        sin = math.sqrt((one - c) * (one + c))
        s_next = ((k * tx[layer, 1, i]) * ty[layer, 1, j]) * (sin + rest * c) + coef[_SB2]
        return s_next, s_next + (k * rest) * t

    @cuda.jit(device=True, cache=CACHE)
    def erf_layer(s, t, layer, tx, i, ty, j, coef):
        # Table rows sqrt(2 / a), sqrt(2 S / a), 1 / a, S / a, sqrt(a) with
        # a = 1 + 2 S; the clipping and the sum of non-negative terms are
        # those of the CPU core (no NaN from rounding or huge norms).
        two = coef[_TWO]
        bound = tx[layer, 1, i] * ty[layer, 1, j]
        arg = min(max((s * tx[layer, 0, i]) * ty[layer, 0, j], -bound), bound)
        ia_i = tx[layer, 2, i]
        ia_j = ty[layer, 2, j]
        q = ia_i * ia_j + two * (tx[layer, 3, i] * ia_j + ty[layer, 3, j] * ia_i)
        q += (bound - arg) * (bound + arg)
        s_dot = coef[_DOT_SCALE] / ((tx[layer, 4, i] * ty[layer, 4, j]) * math.sqrt(q))
        s_next = coef[_E_SCALE] * math.asin(arg) + coef[_SB2]
        return s_next, s_next + s_dot * t

    @cuda.jit(device=True, cache=CACHE)
    def arccos_layer(s, tx, i, ty, j, degree, coef):
        one = coef[_ONE]
        two = coef[_TWO]
        c = (s * tx[0, 0, i]) * ty[0, 0, j]
        c = min(max(max(c, tx[0, 2, i]), ty[0, 2, j]), one)
        rest = math.acos(-c)
        sin = math.sqrt((one - c) * (one + c))
        j_n = _arccos_j(degree, c, sin, rest, one, two, coef[_THREE])
        return ((tx[0, 1, i] * coef[_INV_PI]) * ty[0, 1, j]) * j_n

    @cuda.jit(device=True, cache=CACHE)
    def entry(product, tx, i, ty, j, coef, codes):
        """Kernel value from the raw product ``<x_i, y_j>`` (every layer)."""
        s = coef[_SCALE] * product + coef[_SB2]
        t = s
        activation = codes[1]
        for layer in range(codes[0]):
            if activation == _RELU:
                s, t = _relu_layer(s, t, layer, tx, i, ty, j, coef)
            elif activation == _ERF:
                s, t = _erf_layer(s, t, layer, tx, i, ty, j, coef)
            else:
                s = _arccos_layer(s, tx, i, ty, j, codes[2], coef)
        return t if codes[3] else s

    # The losses are the CPU core's own statement, compiled for the device.
    loss_row = cuda.jit(device=True, cache=CACHE)(_losses._row_loss)

    @cuda.jit(device=True, cache=CACHE)
    def block_sum(shared, value, tid):
        """Sum of ``value`` over the block (``shared`` has one slot per thread,
        a power of two), in a fixed order; every thread gets the total."""
        shared[tid] = value
        cuda.syncthreads()
        step = shared.shape[0] // 2
        while step > 0:
            if tid < step:
                shared[tid] += shared[tid + step]
            cuda.syncthreads()
            step //= 2
        total = shared[0]
        cuda.syncthreads()
        return total

    _relu_layer, _erf_layer, _arccos_layer = relu_layer, erf_layer, arccos_layer
    _entry, _loss_row, _block_sum = entry, loss_row, block_sum


@functools.lru_cache(maxsize=None)
def _gram_kernel(dtype, launch, mirror):
    """The tiled Gram kernel for one precision, launch and mode.

    ``mirror=True``: one block per tile of the lower triangle of the full
    ``K(X, X)`` (``out`` is the whole matrix), each entry also written to
    its mirror image.  ``mirror=False``: one block per tile of ``out``, rows
    ``row0:row0 + len(out)``; with ``symmetric`` the larger index takes the
    role of the row and the diagonal is ``diag``.
    """
    _device_functions()
    from numba import types

    scalar = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    TB, R, KC, T = launch.tile_threads, launch.tile_per_thread, launch.tile_depth, launch.tile
    # Shared arrays need literal shapes: the padded width is a constant too.
    T_PAD = T + 1
    # Shared staging of the mirrored tile (a dummy when not mirroring); the
    # extra column keeps the transposed reads free of bank conflicts.
    MIRROR_ROWS, MIRROR_COLS = (T, T + 1) if mirror else (1, 1)

    @cuda.jit(cache=CACHE)
    def gram(X, Y, tx, ty, diag, coef, codes, out, row0, n_col_tiles, symmetric):
        sx = cuda.shared.array((KC, T_PAD), scalar)
        sy = cuda.shared.array((KC, T_PAD), scalar)
        so = cuda.shared.array((MIRROR_ROWS, MIRROR_COLS), scalar)
        acc = cuda.local.array((R, R), scalar)
        p = cuda.blockIdx.x
        if mirror:
            # p-th tile (bi, bj) of the lower triangle, bj <= bi, row by row.
            bi = int((math.sqrt(8.0 * p + 1.0) - 1.0) * 0.5)
            while (bi + 1) * (bi + 2) // 2 <= p:
                bi += 1
            while bi * (bi + 1) // 2 > p:
                bi -= 1
            bj = p - bi * (bi + 1) // 2
        else:
            bi = p // n_col_tiles
            bj = p - bi * n_col_tiles
        row_base = row0 + bi * T
        col_base = bj * T
        row_end = row0 + out.shape[0]
        n_cols = out.shape[1]
        d = X.shape[1]
        ti = cuda.threadIdx.y
        tj = cuda.threadIdx.x
        flat = ti * TB + tj
        zero = coef[_ZERO]
        for a in range(R):
            for b in range(R):
                acc[a, b] = zero
        for k0 in range(0, d, KC):
            # Consecutive threads read consecutive features of a row.
            for e in range(flat, T * KC, TB * TB):
                r = e // KC
                kk = e - r * KC
                k = k0 + kk
                g = row_base + r
                sx[kk, r] = X[g, k] if g < row_end and k < d else zero
                g = col_base + r
                sy[kk, r] = Y[g, k] if g < n_cols and k < d else zero
            cuda.syncthreads()
            for kk in range(KC):
                for a in range(R):
                    xa = sx[kk, ti + TB * a]
                    for b in range(R):
                        acc[a, b] += xa * sy[kk, tj + TB * b]
            cuda.syncthreads()
        for a in range(R):
            i = row_base + ti + TB * a
            for b in range(R):
                j = col_base + tj + TB * b
                if i < row_end and j < n_cols:
                    if symmetric and i == j:
                        value = diag[i]
                    elif symmetric and j > i:
                        value = _entry(acc[a, b], tx, j, ty, i, coef, codes)
                    else:
                        value = _entry(acc[a, b], tx, i, ty, j, coef, codes)
                    if not mirror or j <= i:
                        out[i - row0, j] = value
                    if mirror:
                        so[ti + TB * a, tj + TB * b] = value
        if mirror:
            cuda.syncthreads()
            # Entry (i, j) of the tile goes to (j, i): consecutive threads
            # write consecutive columns.
            for a in range(R):
                j = col_base + ti + TB * a
                for b in range(R):
                    i = row_base + tj + TB * b
                    if i < row_end and j < n_cols and j < i:
                        out[j, i] = so[tj + TB * b, ti + TB * a]

    return gram


@functools.lru_cache(maxsize=None)
def _product_kernel(launch):
    """``rows_dot``: products of rows of a device Gram matrix with coefficients.

    Used by prediction here and by the dual trainer (:mod:`._cuda_dual`).
    """
    _device_functions()
    from numba import types

    THREADS, OUTPUTS = launch.threads, launch.outputs

    @cuda.jit(cache=CACHE)
    def rows_dot(K, rows, cols, gather, B, out, c0, status):
        """``out[i, c] = sum_j K[rows[i], col_j] B[j, c]`` for ``OUTPUTS`` columns from ``c0``.

        ``col_j`` is ``cols[j]`` when ``gather`` (``K_BB``), else ``j``.
        One block per output row; threads read the row of ``K`` coalesced.
        """
        if status[0] != 0:
            return
        acc = cuda.local.array(OUTPUTS, types.float64)
        shared = cuda.shared.array((OUTPUTS, THREADS), types.float64)
        tid = cuda.threadIdx.x
        i = cuda.blockIdx.x
        n_out = min(OUTPUTS, B.shape[1] - c0)
        n_terms = cols.shape[0] if gather else B.shape[0]
        r = rows[i]
        for c in range(OUTPUTS):
            acc[c] = 0.0
        for j in range(tid, n_terms, THREADS):
            kij = K[r, cols[j]] if gather else K[r, j]
            for c in range(n_out):
                acc[c] += kij * B[j, c0 + c]
        for c in range(OUTPUTS):
            shared[c, tid] = acc[c]
        cuda.syncthreads()
        step = THREADS // 2
        while step > 0:
            if tid < step:
                for c in range(n_out):
                    shared[c, tid] += shared[c, tid + step]
            cuda.syncthreads()
            step //= 2
        for c in range(tid, n_out, THREADS):
            out[i, c0 + c] = shared[c, 0]

    return rows_dot


# --------------------------------------------------------------------------
# Gram matrices
# --------------------------------------------------------------------------


def _gram_constants(dtype, scale, sw2, sb2):
    base = _kernels._coefficients(dtype, scale, sw2, sb2)
    return np.array(base + (0.0, 1.0, 2.0, 3.0), dtype=dtype)


def _launch_gram(kernel, d_X, d_Y, d_tx, d_ty, d_diag, d_coef, d_codes, d_out, row0,
                 symmetric, launch):
    T = launch.tile
    n_rows, n_cols = d_out.shape
    n_row_tiles = -(-n_rows // T)
    n_col_tiles = -(-n_cols // T)
    n_tiles = n_row_tiles * (n_row_tiles + 1) // 2 if kernel[1] else n_row_tiles * n_col_tiles
    if n_tiles:
        kernel[0][n_tiles, (launch.tile_threads, launch.tile_threads)](
            d_X, d_Y, d_tx, d_ty, d_diag, d_coef, d_codes, d_out, row0, n_col_tiles,
            symmetric)


def _block_plan(n_rows, n_cols, itemsize, block_rows, launch):
    """Rows per device block: whole tiles, within the free device memory."""
    T = launch.tile
    if block_rows is None:
        budget = _DEVICE_MEMORY_FRACTION * _free_device_bytes()
        fit = budget / max(1, n_cols * itemsize)
        step = n_rows if fit >= n_rows else int(fit)
        if step < 1:
            raise MemoryError(
                f"One row of the {n_rows} x {n_cols} kernel matrix does not fit "
                "in the free GPU memory; pass fewer columns (Y rows)."
            )
    else:
        step = max(1, int(block_rows))
    step = min(n_rows, -(-step // T) * T)
    return max(step, 1)


def _gram(X, Y, tx, ty, diag, coef, codes, block_rows, launch, keep_on_device):
    """Device Gram matrix, whole or by row blocks copied into a host array."""
    launch = DEFAULT_LAUNCH if launch is None else launch
    _import_cuda()
    symmetric = Y is None
    n_x = X.shape[0]
    n_y = n_x if symmetric else Y.shape[0]
    dtype = X.dtype
    if keep_on_device:
        _check_device_allocation(
            n_x * n_y * dtype.itemsize, f"the {n_x} x {n_y} kernel matrix",
            "use float32 input, fewer rows, or device='cpu'")
    if n_x == 0 or n_y == 0:
        empty = np.empty((n_x, n_y), dtype=dtype)
        return cuda.to_device(empty) if keep_on_device else empty
    d_X = cuda.to_device(X)
    d_Y = d_X if symmetric else cuda.to_device(Y)
    d_tx = cuda.to_device(np.ascontiguousarray(tx))
    d_ty = d_tx if symmetric else cuda.to_device(np.ascontiguousarray(ty))
    d_diag = cuda.to_device(np.ascontiguousarray(diag, dtype=dtype))
    d_coef = cuda.to_device(coef)
    d_codes = cuda.to_device(np.asarray(codes, dtype=np.int64))
    step = n_x if keep_on_device else _block_plan(n_x, n_y, dtype.itemsize, block_rows,
                                                  launch)
    args = (d_X, d_Y, d_tx, d_ty, d_diag, d_coef, d_codes)
    if step >= n_x:
        d_out = cuda.device_array((n_x, n_y), dtype=dtype)
        mirror = symmetric
        kernel = (_gram_kernel(dtype, launch, mirror), mirror)
        _launch_gram(kernel, *args, d_out, 0, symmetric, launch)
        return d_out if keep_on_device else d_out.copy_to_host()
    out = np.empty((n_x, n_y), dtype=dtype)
    kernel = (_gram_kernel(dtype, launch, False), False)
    d_block = cuda.device_array((step, n_y), dtype=dtype)
    for r0 in range(0, n_x, step):
        r1 = min(n_x, r0 + step)
        d_out = d_block[: r1 - r0]
        _launch_gram(kernel, *args, d_out, r0, symmetric, launch)
        d_out.copy_to_host(out[r0:r1])
    return out


def kernel_matrix(X, Y=None, *, kernel="ntk", activation="relu", depth=1,
                  weight_variance=2.0, bias_variance=0.0, block_rows=None, launch=None,
                  keep_on_device=False):
    """NNGP or NTK Gram matrix on the GPU; :func:`._kernels.kernel_matrix` on the CPU.

    Parameters
    ----------
    X, Y, kernel, activation, depth, weight_variance, bias_variance
        As for :func:`sklearn_adamntk._kernels.kernel_matrix` (validated
        float32 or float64 C-contiguous arrays of one dtype).
    block_rows : int or None, default=None
        Rows computed on the device at a time (rounded up to whole tiles);
        ``None``: as many as fit in the free device memory.
    launch : Launch or None, default=None
        Launch sizes; ``None`` means :data:`DEFAULT_LAUNCH`.
    keep_on_device : bool, default=False
        Return the device array (computed whole; a ``MemoryError`` says so
        when it does not fit) instead of copying it to the host.

    Returns
    -------
    K : ndarray or device array of shape (n_x, n_y), dtype of ``X``
        Agrees with the CPU core to rounding; with ``Y=None`` it is exactly
        symmetric and its diagonal is exactly :func:`kernel_diag`.
    """
    code, scale, sw2, sb2 = _kernels._network_args(X, kernel, activation,
                                                   weight_variance, bias_variance)
    ntk = kernel == "ntk"
    codes = (int(depth), code, 0, int(ntk))
    coef = _gram_constants(X.dtype, scale, sw2, sb2)
    tx, sigma, theta = _kernels._tables(X, scale, sw2, sb2, int(depth), code, 0)
    diag = theta if ntk else sigma
    ty = tx if Y is None else _kernels._tables(Y, scale, sw2, sb2, int(depth), code, 0)[0]
    return _gram(X, Y, tx, ty, diag, coef, codes, block_rows, launch, keep_on_device)


def kernel_diag(X, *, kernel="ntk", activation="relu", depth=1, weight_variance=2.0,
                bias_variance=0.0):
    """Diagonal of :func:`kernel_matrix`: ``O(n depth)``, so computed on the host.

    The very numbers the GPU writes on the diagonal of ``K(X, X)``.
    """
    return _kernels.kernel_diag(X, kernel=kernel, activation=activation, depth=depth,
                                weight_variance=weight_variance,
                                bias_variance=bias_variance)


def arccos_matrix(X, Y=None, *, degree=1, block_rows=None, launch=None,
                  keep_on_device=False):
    """Arc-cosine kernel of degree 0, 1 or 2 on the GPU (:func:`._kernels.arccos_matrix`)."""
    if degree not in _kernels.ARCCOS_DEGREES:
        raise ValueError(
            f"degree must be one of {_kernels.ARCCOS_DEGREES}, got {degree!r}.")
    degree = int(degree)
    codes = (1, _ARCCOS, degree, 0)
    coef = _gram_constants(X.dtype, 1.0, 1.0, 0.0)
    tx, diag, _ = _kernels._tables(X, 1.0, 1.0, 0.0, 1, _ARCCOS, degree)
    ty = tx if Y is None else _kernels._tables(Y, 1.0, 1.0, 0.0, 1, _ARCCOS, degree)[0]
    return _gram(X, Y, tx, ty, diag, coef, codes, block_rows, launch, keep_on_device)


# --------------------------------------------------------------------------
# Products with the coefficients, prediction
# --------------------------------------------------------------------------


def _rows_dot(launch, d_K, d_rows, d_cols, gather, d_B, d_out, d_status):
    """``out = K[rows] @ B`` (or ``K[rows][:, cols] @ B`` when ``gather``)."""
    n_rows = d_rows.shape[0]
    if n_rows == 0:
        return
    kernel = _product_kernel(launch)
    for c0 in range(0, d_B.shape[1], launch.outputs):
        kernel[n_rows, launch.threads](d_K, d_rows, d_cols, gather, d_B, d_out, c0,
                                       d_status)


def _matmul_blocks(blocks, coef, n_rows, launch):
    """``sum over blocks`` of ``K_block @ coef`` on the device, one host row block each.

    ``blocks`` yields ``(r0, d_K_block)``; returns the ``(n_rows, k)`` host result.
    """
    coef = np.ascontiguousarray(coef)
    if coef.ndim != 2:
        raise ValueError(f"coef must be 2-D, got shape {coef.shape}.")
    out = np.empty((n_rows, coef.shape[1]), dtype=coef.dtype)
    d_coef = cuda.to_device(coef)
    d_status = cuda.to_device(np.zeros(2, dtype=np.int64))
    d_no_cols = cuda.device_array(0, dtype=np.int64)
    for r0, d_K in blocks:
        n = d_K.shape[0]
        d_rows = cuda.to_device(np.arange(n, dtype=np.int64))
        d_out = cuda.device_array((n, coef.shape[1]), dtype=coef.dtype)
        _rows_dot(launch, d_K, d_rows, d_no_cols, 0, d_coef, d_out, d_status)
        d_out.copy_to_host(out[r0:r0 + n])
    return out


def _prediction_rows(n_rows, n_cols, itemsize, block_rows, launch):
    if block_rows is not None:
        return max(1, int(block_rows))
    return _block_plan(n_rows, n_cols, itemsize, None, launch)


def predict(X_fit, coef, X, *, kernel="ntk", activation="relu", depth=1,
            weight_variance=2.0, bias_variance=0.0, block_rows=None, launch=None):
    """``K(X, X_fit) @ coef`` with each kernel block computed and used on the device.

    Only the ``(n, k)`` outputs come back to the host; the kernel blocks
    never leave the device.

    Parameters
    ----------
    X_fit : ndarray of shape (n_fit, n_features)
        Support rows of the dual coefficients.
    coef : ndarray of shape (n_fit, k)
        Dual coefficients.
    X : ndarray of shape (n, n_features)
        Rows to predict, same dtype as ``X_fit``.
    kernel, activation, depth, weight_variance, bias_variance
        As for :func:`kernel_matrix`.
    block_rows : int or None, default=None
        Rows of ``X`` per device block; ``None``: as many as fit.
    launch : Launch or None, default=None

    Returns
    -------
    F : ndarray of shape (n, k), dtype of ``coef``
    """
    launch = DEFAULT_LAUNCH if launch is None else launch
    _import_cuda()
    if X.dtype != X_fit.dtype:  # as network_kernel: float32 only when both are
        X, X_fit = X.astype(np.float64), X_fit.astype(np.float64)
    code, scale, sw2, sb2 = _kernels._network_args(X, kernel, activation,
                                                   weight_variance, bias_variance)
    depth = int(depth)
    codes = cuda.to_device(np.array([depth, code, 0, int(kernel == "ntk")],
                                    dtype=np.int64))
    coef_consts = cuda.to_device(_gram_constants(X.dtype, scale, sw2, sb2))
    t_fit = cuda.to_device(_kernels._tables(X_fit, scale, sw2, sb2, depth, code, 0)[0])
    d_fit = cuda.to_device(X_fit)
    gram = (_gram_kernel(X.dtype, launch, False), False)
    step = _prediction_rows(X.shape[0], X_fit.shape[0], X.dtype.itemsize, block_rows,
                            launch)
    no_diag = cuda.device_array(0, dtype=X.dtype)

    def blocks():
        for r0 in range(0, X.shape[0], step):
            rows = np.ascontiguousarray(X[r0:r0 + step])
            t_rows = _kernels._tables(rows, scale, sw2, sb2, depth, code, 0)[0]
            d_block = cuda.device_array((rows.shape[0], X_fit.shape[0]), dtype=X.dtype)
            _launch_gram(gram, cuda.to_device(rows), d_fit, cuda.to_device(t_rows),
                         t_fit, no_diag, coef_consts, codes, d_block, 0, False, launch)
            yield r0, d_block

    if X_fit.shape[0] == 0:
        return np.zeros((X.shape[0], np.shape(coef)[1]), dtype=np.result_type(coef))
    return _matmul_blocks(blocks(), coef, X.shape[0], launch)


def predict_precomputed(K, coef, *, block_rows=None, launch=None):
    """``K @ coef`` on the device, by row blocks of the host array ``K``.

    Parameters
    ----------
    K : ndarray of shape (n, n_fit)
        Kernel between the rows to predict and the support rows.
    coef : ndarray of shape (n_fit, k)
    block_rows : int or None, default=None
    launch : Launch or None, default=None

    Returns
    -------
    F : ndarray of shape (n, k)
    """
    launch = DEFAULT_LAUNCH if launch is None else launch
    _import_cuda()
    K = np.ascontiguousarray(K)
    coef = np.ascontiguousarray(coef, dtype=K.dtype)
    step = _prediction_rows(K.shape[0], K.shape[1], K.dtype.itemsize, block_rows,
                            launch)
    blocks = ((r0, cuda.to_device(K[r0:r0 + step])) for r0 in range(0, K.shape[0], step))
    return _matmul_blocks(blocks, coef, K.shape[0], launch)
