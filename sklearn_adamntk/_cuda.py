"""CUDA backend: the kernels and the dual training loop on an NVIDIA GPU.

The same functions as the CPU core (:func:`kernel_matrix`, :func:`kernel_diag`,
:func:`arccos_matrix` of :mod:`._kernels`; :class:`DualTrainer` of
:mod:`._optimizers`), on device arrays through ``numba.cuda``, plus what the
estimators need around them: :func:`resolve_device` and block prediction
(:func:`predict`, :func:`predict_precomputed`).

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

Training.  :class:`DualTrainer` keeps the Gram matrix, the targets, the
weights, the coefficients and the optimizer state on the device for the
whole fit; an epoch copies back only its loss (and, on request, the
coefficients and the state).  Reductions run in a fixed order inside one
thread block, so a result does not depend on timing.
"""

import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

from . import _kernels, _optimizers
from ._optimizers import (
    _LOSS_CODE,
    _OPTIMIZER_CODE,
    OptimizerSettings,
    OptimizerState,
    _as_batches,
    _check_coef,
    _check_loss,
    _check_sample_weight,
    _check_square,
    _check_state,
    _check_targets,
    _divergence_error,
    _is_full_batch,
)

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
_SGD, _ADAM_STAR = _OPTIMIZER_CODE["sgd"], _OPTIMIZER_CODE["adam*"]
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
    _arccos_j = cuda.jit(device=True, cache=True)(_kernels._arccos_j)

    @cuda.jit(device=True, cache=True)
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

    @cuda.jit(device=True, cache=True)
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

    @cuda.jit(device=True, cache=True)
    def arccos_layer(s, tx, i, ty, j, degree, coef):
        one = coef[_ONE]
        two = coef[_TWO]
        c = (s * tx[0, 0, i]) * ty[0, 0, j]
        c = min(max(max(c, tx[0, 2, i]), ty[0, 2, j]), one)
        rest = math.acos(-c)
        sin = math.sqrt((one - c) * (one + c))
        j_n = _arccos_j(degree, c, sin, rest, one, two, coef[_THREE])
        return ((tx[0, 1, i] * coef[_INV_PI]) * ty[0, 1, j]) * j_n

    @cuda.jit(device=True, cache=True)
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
    loss_row = cuda.jit(device=True, cache=True)(_optimizers._row_loss)

    @cuda.jit(device=True, cache=True)
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

    @cuda.jit(cache=True)
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
def _training_kernels(launch):
    """Kernels of the dual training loop; all check ``status`` and stop after a failure.

    ``status = [code, batch]``: code 1 means a batch loss was not finite
    (no step taken), 2 a coefficient or output became non-finite.
    """
    _device_functions()
    from numba import types

    THREADS, OUTPUTS = launch.threads, launch.outputs

    @cuda.jit(cache=True)
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

    @cuda.jit(cache=True)
    def batch_loss(F, Y, weight, rows, loss_code, L, stats, b, status):
        """Loss and ``L`` on the batch ``rows`` (row ``j`` of ``F`` is ``rows[j]``).

        ``stats[b] = (weighted loss sum, weight sum)``; one block.
        """
        if status[0] != 0:
            return
        shared = cuda.shared.array(THREADS, types.float64)
        tid = cuda.threadIdx.x
        n = rows.shape[0]
        part = 0.0
        for j in range(tid, n, THREADS):
            part += weight[rows[j]]
        weight_sum = _block_sum(shared, part, tid)
        part = 0.0
        for j in range(tid, n, THREADS):
            w = weight[rows[j]]
            # A batch whose weights are all zero carries no gradient.
            scale = w / weight_sum if weight_sum > 0 else 0.0
            part += w * _loss_row(F, j, Y, rows[j], loss_code, scale, L)
        loss_sum = _block_sum(shared, part, tid)
        if tid == 0:
            stats[b, 0] = loss_sum
            stats[b, 1] = weight_sum
            if not math.isfinite(loss_sum):
                status[0] = 1
                status[1] = b

    @cuda.jit(cache=True)
    def adam_star_rates(L, KL, n, second, rates, lr, bias_1, bias_2, beta_2, epsilon,
                        status):
        """``v = b2 v + (1 - b2) diag(L^T K_BB L)`` and ``rates = lr D_t``; one block."""
        if status[0] != 0:
            return
        shared = cuda.shared.array(THREADS, types.float64)
        tid = cuda.threadIdx.x
        for c in range(second.shape[0]):
            part = 0.0
            for j in range(tid, n, THREADS):
                part += L[j, c] * KL[j, c]
            q = _block_sum(shared, part, tid)
            if tid == 0:
                # q >= 0 in exact arithmetic; rounding must not make sqrt(v) NaN.
                second[c] = beta_2 * second[c] + (1.0 - beta_2) * max(q, 0.0)
                rates[c] = lr / (bias_1 * (math.sqrt(second[c] / bias_2) + epsilon))

    @cuda.jit(cache=True)
    def full_step(coef, moment, F, U, L, KL, use_moment, keep, gain, rates, decay,
                  status):
        """Full-batch update of ``A, M`` and of ``F = K A, U = K M`` (DESIGN 3.1)."""
        if status[0] != 0:
            return
        n, k = coef.shape
        idx = cuda.grid(1)
        if idx >= n * k:
            return
        i = idx // k
        c = idx - i * k
        if use_moment:
            moment[i, c] = keep * moment[i, c] + gain * L[i, c]
            U[i, c] = keep * U[i, c] + gain * KL[i, c]
            coef[i, c] = decay * coef[i, c] - rates[c] * moment[i, c]
            F[i, c] = decay * F[i, c] - rates[c] * U[i, c]
        else:
            coef[i, c] = decay * coef[i, c] - rates[c] * L[i, c]
            F[i, c] = decay * F[i, c] - rates[c] * KL[i, c]
        if not (math.isfinite(coef[i, c]) and math.isfinite(F[i, c])):
            status[0] = 2

    @cuda.jit(cache=True)
    def batch_step(coef, moment, L, batch_of, slot, b, use_moment, keep, gain, rates,
                   decay, status):
        """Mini-batch update: ``G`` is ``L`` on the rows of batch ``b``, zero elsewhere."""
        if status[0] != 0:
            return
        n, k = coef.shape
        idx = cuda.grid(1)
        if idx >= n * k:
            return
        i = idx // k
        c = idx - i * k
        g = L[slot[i], c] if batch_of[i] == b else 0.0
        if use_moment:
            moment[i, c] = keep * moment[i, c] + gain * g
            coef[i, c] = decay * coef[i, c] - rates[c] * moment[i, c]
        else:
            coef[i, c] = decay * coef[i, c] - rates[c] * g
        if not math.isfinite(coef[i, c]):
            status[0] = 2
            status[1] = b

    return rows_dot, batch_loss, adam_star_rates, full_step, batch_step


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


def _rows_dot(kernels, launch, d_K, d_rows, d_cols, gather, d_B, d_out, d_status):
    n_rows = d_rows.shape[0]
    if n_rows == 0:
        return
    for c0 in range(0, d_B.shape[1], launch.outputs):
        kernels[0][n_rows, launch.threads](d_K, d_rows, d_cols, gather, d_B, d_out, c0,
                                          d_status)


def _matmul_blocks(blocks, coef, n_rows, launch):
    """``sum over blocks`` of ``K_block @ coef`` on the device, one host row block each.

    ``blocks`` yields ``(r0, d_K_block)``; returns the ``(n_rows, k)`` host result.
    """
    kernels = _training_kernels(launch)
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
        _rows_dot(kernels, launch, d_K, d_rows, d_no_cols, 0, d_coef, d_out, d_status)
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


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _is_device_array(array):
    # Duck-typed: the simulator's arrays are not CUDA arrays to numba.cuda.
    return callable(getattr(array, "copy_to_host", None))


class DualTrainer:
    """:class:`._optimizers.DualTrainer` with everything resident on the GPU.

    Same interface and same recursion (ADAM*, SGD and momentum; full batch
    and mini-batch; squared, logistic and softmax losses); the results agree
    with the CPU trainer to rounding.  The Gram matrix, targets, weights,
    coefficients and optimizer state are copied to the device once; an epoch
    copies back a few numbers (its losses and a status), and :attr:`coef`,
    :attr:`state` and :meth:`train_predictions` copy back on request.

    Parameters
    ----------
    K : ndarray or device array of shape (N, N)
        Training Gram matrix (float32 or float64), e.g.
        ``kernel_matrix(X, keep_on_device=True)``.
    Y, settings, loss, sample_weight, coef, state
        As for :class:`sklearn_adamntk._optimizers.DualTrainer`.
    launch : Launch or None, default=None

    Notes
    -----
    A full-batch step runs, as on the CPU, one pass over ``K`` (``K @ L``)
    and keeps ``F = K A`` and ``U = K M`` up to date.  A mini-batch step
    reads the batch rows of ``K`` (``f_B = K[B] @ A``) and, for ADAM*,
    ``K_BB``; the batches of an epoch must not share rows.
    """

    def __init__(self, K, Y, settings, loss, sample_weight=None, coef=None,
                 state=None, *, launch=None):
        _import_cuda()
        if not isinstance(settings, OptimizerSettings):
            raise TypeError("settings must be an OptimizerSettings.")
        if settings.optimizer == "adam":
            raise ValueError(
                "optimizer='adam' (true Adam) has no dual form; train a finite-width "
                "network in primal form instead."
            )
        _check_loss(loss)
        if _is_device_array(K):
            if len(K.shape) != 2 or K.shape[0] != K.shape[1]:
                raise ValueError(f"K must be a square 2-D array, got shape {K.shape}.")
            if np.dtype(K.dtype) not in (np.float32, np.float64):
                raise ValueError(f"K must be float32 or float64, got {K.dtype}.")
            d_K = K
        else:
            K = _check_square(K)
            _check_device_allocation(
                K.nbytes, f"the {K.shape[0]} x {K.shape[0]} training Gram matrix",
                "use float32 input, fewer rows, or device='cpu'")
            d_K = cuda.to_device(K)
        dtype = np.dtype(d_K.dtype)
        n = d_K.shape[0]
        Y = _check_targets(Y, n, dtype, loss)
        k = Y.shape[1]
        weight = _check_sample_weight(sample_weight, n, dtype)
        state = _check_state(state, n, k, settings.optimizer, dtype)
        self._launch = DEFAULT_LAUNCH if launch is None else launch
        self._kernels = _training_kernels(self._launch)
        self._settings = settings
        self._loss_code = _LOSS_CODE[loss]
        self._n, self._k, self._dtype = n, k, dtype
        self._K = d_K
        self._Y = cuda.to_device(Y)
        self._weight = cuda.to_device(weight)
        coef = _check_coef(coef, n, k, dtype)
        # A fresh fit starts from zero: its first full-batch step needs no
        # product with K for F = K A and U = K M (two passes saved).
        self._from_zero = not (np.any(coef) or np.any(state.momentum_buffer))
        self._coef = cuda.to_device(coef)
        self._moment = cuda.to_device(state.momentum_buffer)
        # adam* keeps one second moment per output; others none (a dummy).
        second = state.second_moment if settings.optimizer == "adam*" else np.zeros(0, dtype)
        self._second = cuda.to_device(np.ascontiguousarray(second))
        self._t = state.t
        self._rates = cuda.to_device(np.full(k, settings.learning_rate))
        self._all_rows = cuda.to_device(np.arange(n, dtype=np.int64))
        self._no_cols = cuda.device_array(0, dtype=np.int64)
        self._F = None  # K @ coef and K @ moment, valid between full-batch steps
        self._U = None

    # The interface of the CPU trainers -----------------------------------

    @property
    def coef(self):
        """Current dual coefficients (a host copy)."""
        return self._coef.copy_to_host()

    @property
    def state(self):
        """Current :class:`OptimizerState` (host copies)."""
        second = self._second.copy_to_host()
        return OptimizerState(self._moment.copy_to_host(), second, self._t)

    def train_predictions(self):
        """Current outputs ``F = K A`` on the training rows, shape (N, k)."""
        if self._F is not None:
            return self._F.copy_to_host()
        return self._product(self._coef).copy_to_host()

    def run_epoch(self, batches):
        """Take one step per batch, in the order given.

        Parameters
        ----------
        batches : list of array-like of int
            Row indices of each batch, in the order of the steps; no row may
            appear twice in one epoch.  A single batch holding every row is
            a full-batch step.

        Returns
        -------
        loss : float
            Sample-weighted mean training loss over the epoch, each batch's
            loss measured before its step.

        Raises
        ------
        FloatingPointError
            As soon as a loss or a coefficient becomes NaN or infinite.
        """
        order, offsets = _as_batches(batches, self._n)
        if _is_full_batch(order, offsets, self._n):
            loss_sum, weight_sum, diverged = self._full_batch_step()
        else:
            if np.unique(order).size != order.size:
                raise ValueError(
                    "The batches of one epoch must not share rows on the CUDA "
                    "backend.")
            loss_sum, weight_sum, diverged = self._minibatch_epoch(order, offsets)
        if diverged:
            raise _divergence_error(self._t, self._settings.learning_rate)
        return float(loss_sum / weight_sum) if weight_sum > 0 else 0.0

    # Device work -----------------------------------------------------------

    def _product(self, d_B):
        """``K @ B`` on the device."""
        d_out = cuda.device_array((self._n, self._k), dtype=self._dtype)
        status = cuda.to_device(np.zeros(2, dtype=np.int64))
        _rows_dot(self._kernels, self._launch, self._K, self._all_rows, self._no_cols,
                  0, d_B, d_out, status)
        return d_out

    def _step_scalars(self):
        s = self._settings
        code = _OPTIMIZER_CODE[s.optimizer]
        if code == _SGD:
            use_moment, keep, gain = False, 0.0, 1.0
        elif code == _ADAM_STAR:
            use_moment, keep, gain = True, s.beta_1, 1.0 - s.beta_1
        else:
            use_moment, keep, gain = True, s.momentum, 1.0
        return use_moment, keep, gain, 1.0 - s.learning_rate * s.weight_decay

    def _rates_for_step(self, d_L, d_KL, n_rows, status):
        """ADAM*'s rates for step ``self._t`` (others keep ``rates = lr``)."""
        s = self._settings
        if s.optimizer != "adam*":
            return
        bias_1 = 1.0 - s.beta_1**self._t
        bias_2 = 1.0 - s.beta_2**self._t
        self._kernels[2][1, self._launch.threads](
            d_L, d_KL, n_rows, self._second, self._rates, s.learning_rate, bias_1,
            bias_2, s.beta_2, s.epsilon, status)

    def _elementwise_grid(self):
        n_items = self._n * self._k
        return max(1, -(-n_items // self._launch.threads)), self._launch.threads

    def _full_batch_step(self):
        launch, kernels = self._launch, self._kernels
        if self._F is None:
            zeros = np.zeros((self._n, self._k), dtype=self._dtype)
            self._F = cuda.to_device(zeros) if self._from_zero else self._product(self._coef)
            if self._settings.optimizer == "sgd" or self._from_zero:
                self._U = cuda.to_device(zeros)
            else:
                self._U = self._product(self._moment)
        self._from_zero = False
        status = cuda.to_device(np.zeros(2, dtype=np.int64))
        stats = cuda.to_device(np.zeros((1, 2)))
        d_L = cuda.device_array((self._n, self._k), dtype=self._dtype)
        d_KL = cuda.device_array((self._n, self._k), dtype=self._dtype)
        kernels[1][1, launch.threads](self._F, self._Y, self._weight, self._all_rows,
                                      self._loss_code, d_L, stats, 0, status)
        self._t += 1
        _rows_dot(kernels, launch, self._K, self._all_rows, self._no_cols, 0, d_L,
                  d_KL, status)
        self._rates_for_step(d_L, d_KL, self._n, status)
        use_moment, keep, gain, decay = self._step_scalars()
        kernels[3][self._elementwise_grid()](
            self._coef, self._moment, self._F, self._U, d_L, d_KL, use_moment, keep,
            gain, self._rates, decay, status)
        code = int(status.copy_to_host()[0])
        loss_sum, weight_sum = stats.copy_to_host()[0]
        if code == 1:  # the loss was not finite: no step was taken
            self._t -= 1
        return loss_sum, weight_sum, code != 0

    def _minibatch_epoch(self, order, offsets):
        launch, kernels = self._launch, self._kernels
        self._F = self._U = None
        self._from_zero = False
        n_batches = offsets.shape[0] - 1
        sizes = np.diff(offsets)
        largest = int(sizes.max())
        batch_of = np.full(self._n, -1, dtype=np.int64)
        slot = np.zeros(self._n, dtype=np.int64)
        batch_of[order] = np.repeat(np.arange(n_batches), sizes)
        slot[order] = np.arange(order.size) - np.repeat(offsets[:-1], sizes)
        d_order = cuda.to_device(order.astype(np.int64))
        d_batch_of = cuda.to_device(batch_of)
        d_slot = cuda.to_device(slot)
        status = cuda.to_device(np.zeros(2, dtype=np.int64))
        stats = cuda.to_device(np.zeros((n_batches, 2)))
        d_F = cuda.device_array((largest, self._k), dtype=self._dtype)
        d_L = cuda.device_array((largest, self._k), dtype=self._dtype)
        d_KL = cuda.device_array((largest, self._k), dtype=self._dtype)
        use_moment, keep, gain, decay = self._step_scalars()
        adam_star = self._settings.optimizer == "adam*"
        t0 = self._t
        for b in range(n_batches):
            d_rows = d_order[offsets[b]:offsets[b + 1]]
            n_rows = int(sizes[b])
            _rows_dot(kernels, launch, self._K, d_rows, self._no_cols, 0, self._coef,
                      d_F, status)
            kernels[1][1, launch.threads](d_F, self._Y, self._weight, d_rows,
                                          self._loss_code, d_L, stats, b, status)
            self._t = t0 + b + 1
            if adam_star:
                _rows_dot(kernels, launch, self._K, d_rows, d_rows, 1, d_L, d_KL, status)
                self._rates_for_step(d_L, d_KL, n_rows, status)
            kernels[4][self._elementwise_grid()](
                self._coef, self._moment, d_L, d_batch_of, d_slot, b, use_moment, keep,
                gain, self._rates, decay, status)
        code, failed = status.copy_to_host()
        stats = stats.copy_to_host()
        if code != 0:
            # Steps taken: up to the failed batch, which counts only if its
            # loss was finite (the CPU trainer stops before the step otherwise).
            self._t = t0 + int(failed) + (1 if code == 2 else 0)
            stats = stats[:failed + 1]
        # Summed batch by batch, in order, as the CPU trainer does.
        return sum(stats[:, 0].tolist()), sum(stats[:, 1].tolist()), code != 0
