"""Training recursions of DESIGN section 3: ADAM*, SGD, momentum and Adam.

The model is a readout over frozen features ``Psi`` (``K = Psi Psi^T``),
started at zero and trained on the mean, sample-weighted loss of each batch.
It is carried in one of three equivalent forms:

- **dual**: ``f = K A`` with dual coefficients ``A`` of shape ``(N, k)``
  (:class:`DualTrainer`), the form that exists at infinite width;
- **primal**: ``f = Psi w`` with readout weights ``w = Psi^T A`` of shape
  ``(P, k)`` (:class:`PrimalTrainer`), for finite networks narrower than the
  training set;
- **eigen**: full batch and squared loss only, the dual recursion written in
  the eigenbasis of ``W^1/2 K W^1/2`` (:class:`EigenTrainer`), one ``O(N k)``
  step per epoch after one ``eigh``, or, for a few epochs from zero, in the
  eigenbasis of its restriction to the Krylov subspace of the targets
  (:func:`krylov_decomposition`: ``T + 1`` products with ``K`` for ``T``
  epochs, then ``O(T k)`` per epoch), which every optimizer setting reuses.

On a batch ``B`` with weights ``w`` the loss gradient is
``L_i = w_i l'(f_i, y_i) / sum_{j in B} w_j`` and ``G`` is ``L`` on the batch,
zero elsewhere (dual), or ``Psi_B^T L`` (primal).  With ``c = 1 - lr * wd``
(decoupled weight decay, DESIGN 3.3, applied to the coefficients the gradient
was taken at, as AdamW does) every optimizer updates::

    sgd       A_t = c A_{t-1} - lr G_t
    momentum  M_t = mu M_{t-1} + G_t               A_t = c A_{t-1} - lr M_t
    adam*     M_t = b1 M_{t-1} + (1 - b1) G_t
              v_t = b2 v_{t-1} + (1 - b2) diag(L^T K_BB L)           (k,)
              D_t = 1 / ((1 - b1^t) (sqrt(v_t / (1 - b2^t)) + eps))
              A_t = c A_{t-1} - lr D_t M_t
    adam      (primal only) as adam* with a second moment per weight

Momentum is the heavy ball of Lee et al. (2019) without dampening (PyTorch's
``SGD(momentum=mu)`` convention); at a fixed point it takes steps of
``lr / (1 - mu)`` times the gradient.

True Adam uses the mean-field parameterisation of DESIGN 2: the weights
``W = sqrt(P) w`` see the per-weight gradient ``sqrt(P) (Psi^T L)``, so its
second moment (stored per weight, shape ``(P, k)``) is the exponential
average of ``P (Psi^T L)^2`` and the ADAM* second moment is its mean over the
weights.  The update of ``w`` is then the ADAM* update with ``v`` per weight,
and the step size does not depend on the width.

The epoch loop stays in Python (in the estimator); a trainer runs one epoch
at a time.  The hot loops are BLAS products (full batch) or Numba kernels
parallel over independent output rows or columns (mini-batch), so results do
not depend on the number of threads.  NumPy and Numba only: this module knows
nothing of scikit-learn.
"""

import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from numba import njit, prange

from . import _backend

LOSSES = ("squared", "logistic", "softmax")
OPTIMIZERS = ("adam*", "sgd", "momentum", "adam")
SOLVERS = ("dual", "eigen", "primal")

_LOSS_CODE = {"squared": 0, "logistic": 1, "softmax": 2}
_SGD, _MOMENTUM, _ADAM_STAR, _ADAM = 0, 1, 2, 3
_OPTIMIZER_CODE = {
    "sgd": _SGD, "momentum": _MOMENTUM, "adam*": _ADAM_STAR, "adam": _ADAM
}

# Feature columns per task when a mini-batch gradient Psi_B^T L is reduced
# over the batch: one chunk is one thread's private slice of the output.
_COLUMN_CHUNK = 256

# Below this many multiply-adds a gather runs on one thread: waking the
# others costs more than it saves (and much more on a loaded machine).
_PARALLEL_MIN_WORK = 2**16

# Largest K_BB that a mini-batch ADAM* epoch copies out of the rows it streams
# (above it, K_BB L is gathered from K directly, a second, scattered pass).
_BLOCK_BUFFER_BYTES = 64 * 2**20

# Cost of a symmetric eigendecomposition in units of the flops of a
# matrix-vector product at the speed BLAS streams a Gram matrix: eigh(K) takes
# about _EIGH_COST * N^3 such flops, i.e. time(eigh) = _EIGH_COST * N / 2 times
# time(K @ g).  benchmarks/bench_training.py measured (numpy.linalg.eigh,
# OpenBLAS, 2 shared cores) between 0.8 and 5.6 over N = 2000-8000 and runs
# (eigh runs at BLAS-3 speed while K @ g is bound by memory, so the constant
# falls as N grows); 4 errs towards the dual solver, which needs no second
# N x N matrix.
_EIGH_COST = 4.0


def _divergence_error(t, learning_rate):
    return FloatingPointError(
        f"The optimizer diverged at step {t}: the loss or the coefficients "
        f"became NaN or infinite. Lower learning_rate_init (it is "
        f"{learning_rate!r}) or standardise the targets."
    )


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------


def _row_loss(F, j, Y, r, loss_code, scale, L):
    """Loss of row ``j`` of ``F`` against row ``r`` of ``Y``; ``L[j] = scale * l'``.

    Plain Python on scalars and :mod:`math`, so that one statement of the
    three losses serves both backends: compiled for the CPU below, and as a
    device function by the CUDA backend.  Logistic and softmax are written
    so that ``exp`` never overflows.
    """
    k = F.shape[1]
    total = 0.0
    if loss_code == 0:
        for c in range(k):
            residual = F[j, c] - Y[r, c]
            total += residual * residual
            L[j, c] = scale * residual
        return 0.5 * total
    if loss_code == 1:
        # softplus(f) - y f and sigmoid(f).
        for c in range(k):
            f = F[j, c]
            y = Y[r, c]
            if f > 0:
                e = math.exp(-f)
                softplus = f + math.log1p(e)
                sigmoid = 1.0 / (1.0 + e)
            else:
                e = math.exp(f)
                softplus = math.log1p(e)
                sigmoid = e / (1.0 + e)
            total += softplus - y * f
            L[j, c] = scale * (sigmoid - y)
        return total
    shift = F[j, 0]
    for c in range(1, k):
        shift = max(shift, F[j, c])
    normaliser = 0.0
    y_total = 0.0
    for c in range(k):
        normaliser += math.exp(F[j, c] - shift)
        y_total += Y[r, c]
    log_normaliser = shift + math.log(normaliser)
    for c in range(k):
        total += Y[r, c] * (log_normaliser - F[j, c])
        probability = math.exp(F[j, c] - log_normaliser)
        L[j, c] = scale * (probability * y_total - Y[r, c])
    return total


_row_loss_cpu = njit(cache=True, error_model="numpy", inline="always")(_row_loss)


@njit(cache=True, error_model="numpy")
def _loss_rows(F, Y, loss_code, row_scale, loss_out, grad_out):
    """Per-row loss into ``loss_out``, ``row_scale[i] * dloss/dF[i]`` into ``grad_out``."""
    for i in range(F.shape[0]):
        loss_out[i] = _row_loss_cpu(F, i, Y, i, loss_code, row_scale[i], grad_out)


def loss_and_gradient(F, Y, loss):
    """Per-row loss and its gradient with respect to the model output.

    Parameters
    ----------
    F : ndarray of shape (n, k)
        Model outputs (logits for the classification losses).
    Y : ndarray of shape (n, k)
        Targets: real values (``"squared"``), 0/1 labels with ``k = 1``
        (``"logistic"``) or one-hot rows (``"softmax"``).
    loss : {"squared", "logistic", "softmax"}
        ``"squared"``: ``0.5 ||f - y||^2``, gradient ``f - y``.
        ``"logistic"``: ``log(1 + exp(-f))`` for ``y = 1`` and
        ``log(1 + exp(f))`` for ``y = 0``, evaluated without overflow,
        gradient ``sigmoid(f) - y``.
        ``"softmax"``: ``-sum_c y_c log softmax(f)_c``, gradient
        ``softmax(f) sum_c y_c - y``, which is ``softmax(f) - y`` for one-hot
        rows.

    Returns
    -------
    loss : ndarray of shape (n,)
        The loss of each row.
    gradient : ndarray of shape (n, k)
        ``dloss/dF``.
    """
    _check_loss(loss)
    F = np.asarray(F)
    Y = np.asarray(Y)
    dtype = np.float32 if F.dtype == np.float32 else np.float64
    F = np.ascontiguousarray(F, dtype=dtype)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if F.ndim != 2 or F.shape != Y.shape:
        raise ValueError(
            "F and Y must be 2-D arrays of the same shape, got "
            f"{F.shape} and {Y.shape}."
        )
    if loss == "logistic" and F.shape[1] != 1:
        raise ValueError(f"The logistic loss has one output, got {F.shape[1]}.")
    loss_out = np.empty(F.shape[0], dtype=dtype)
    grad_out = np.empty_like(F)
    ones = np.ones(F.shape[0], dtype=dtype)
    _loss_rows(F, Y, _LOSS_CODE[loss], ones, loss_out, grad_out)
    return loss_out, grad_out


# --------------------------------------------------------------------------
# Settings and state
# --------------------------------------------------------------------------


@dataclass
class OptimizerSettings:
    """Hyper-parameters of one optimizer (names follow ``MLPRegressor``).

    Parameters
    ----------
    optimizer : {"adam*", "sgd", "momentum", "adam"}
        ``"adam"`` (per-weight second moment) exists in the primal form only.
    learning_rate : float
        Step size ``lr`` (the estimators' ``learning_rate_init``).
    beta_1, beta_2 : float, default=0.9, 0.999
        Decay rates of the first and second moments (Adam and ADAM*).
    epsilon : float, default=1e-8
        Added to ``sqrt(v_hat)``, outside the square root.
    momentum : float, default=0.9
        Heavy-ball coefficient ``mu`` (``"momentum"`` only).
    weight_decay : float, default=0.0
        Decoupled weight decay ``wd``: the coefficients are multiplied by
        ``1 - lr * wd`` at every step.
    """

    optimizer: str
    learning_rate: float
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}."
            )
        checks = [
            ("learning_rate", 0.0, np.inf, False),
            ("beta_1", 0.0, 1.0, True),
            ("beta_2", 0.0, 1.0, True),
            ("epsilon", 0.0, np.inf, False),
            ("momentum", 0.0, 1.0, True),
            ("weight_decay", 0.0, np.inf, True),
        ]
        for name, low, high, low_included in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {value!r}.")
            value = float(value)
            above = value >= low if low_included else value > low
            if not (above and value < high):
                bound = "[" if low_included else "("
                raise ValueError(
                    f"{name} must be in {bound}{low}, {high}), got {value!r}."
                )
            setattr(self, name, value)
        if self.learning_rate * self.weight_decay >= 1.0:
            raise ValueError(
                "learning_rate * weight_decay must be below 1 (the coefficients are "
                f"multiplied by 1 - learning_rate * weight_decay), got "
                f"{self.learning_rate * self.weight_decay!r}."
            )


@dataclass
class OptimizerState:
    """Optimizer memory, resumable by any trainer of the same form.

    Attributes
    ----------
    momentum_buffer : ndarray of shape (n_rows, k)
        ``M``: first moment (adam*, adam) or velocity (momentum); zeros and
        unused for sgd.  ``n_rows`` is ``N`` in dual form, ``P`` in primal.
    second_moment : ndarray
        ``v``: shape ``(k,)`` for adam*, ``(P, k)`` for adam, ``(0,)`` otherwise.
    t : int
        Number of steps taken so far (bias corrections use it).
    """

    momentum_buffer: np.ndarray
    second_moment: np.ndarray
    t: int = 0

    def with_new_rows(self, n_new):
        """A copy with ``n_new`` zero rows appended (new training points, dual form).

        A per-weight second moment (``adam``, primal form) gets zero rows too.
        """
        n_new = int(n_new)
        if n_new < 0:
            raise ValueError(f"n_new must be non-negative, got {n_new}.")
        moment = self.momentum_buffer
        zeros = np.zeros((n_new, moment.shape[1]), dtype=moment.dtype)
        second = self.second_moment
        if second.ndim == 2:
            zero_rows = np.zeros((n_new, second.shape[1]), dtype=second.dtype)
            second = np.vstack([second, zero_rows])
        else:
            second = second.copy()
        return OptimizerState(np.vstack([moment, zeros]), second, self.t)

    def copy(self):
        """A deep copy."""
        return OptimizerState(
            self.momentum_buffer.copy(), self.second_moment.copy(), self.t
        )


def init_state(n_rows, n_outputs, optimizer, dtype=np.float64):
    """Zero optimizer state: ``M = 0``, ``v = 0``, ``t = 0``.

    Parameters
    ----------
    n_rows : int
        ``N`` for the dual and eigen forms, ``P`` for the primal form.
    n_outputs : int
        ``k``.
    optimizer : {"adam*", "sgd", "momentum", "adam"}
    dtype : dtype, default=np.float64

    Returns
    -------
    OptimizerState
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    moment = np.zeros((n_rows, n_outputs), dtype=dtype)
    if optimizer == "adam*":
        second = np.zeros(n_outputs, dtype=dtype)
    elif optimizer == "adam":
        second = np.zeros((n_rows, n_outputs), dtype=dtype)
    else:
        second = np.zeros(0, dtype=dtype)
    return OptimizerState(moment, second, 0)


# --------------------------------------------------------------------------
# Compiled kernels.  Every parallel loop writes disjoint outputs and sums in
# a fixed order, so the thread count cannot change a result.
# --------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _row_dot(row, b):
    """``row @ b`` for contiguous 1-D arrays, vectorised.

    Only reassociation (and fused multiply-add) is allowed, so NaN and inf
    still propagate; the summation order is fixed by the compiled loop, and
    each dot product runs on one thread, so the thread count cannot change
    the result.  Measured 2x faster than the strict sequential loop, which
    is bound by the latency of the additions.
    """
    total = 0.0
    for p in range(row.shape[0]):
        total += row[p] * b[p]
    return total


@njit(cache=True, error_model="numpy")
def _gather_one_row(M, rows, BT, out, block, j):
    row = M[rows[j]]
    for c in range(BT.shape[0]):
        out[j, c] = _row_dot(row, BT[c])
    if block.shape[0] >= rows.shape[0]:
        for jj in range(rows.shape[0]):
            block[j, jj] = row[rows[jj]]


@njit(parallel=True, cache=True, error_model="numpy")
def _gather_rows_dot(M, rows, B, out, block):
    """``out = M[rows] @ B`` reading each selected row once, parallel over rows.

    When ``block`` has room (``block.shape[0] >= len(rows)``), it also
    receives ``M[rows][:, rows]``, gathered while each row is still in cache
    (ADAM*'s ``K_BB`` then costs no second pass over memory).
    """
    BT = np.ascontiguousarray(B.T)
    if rows.shape[0] * M.shape[1] * B.shape[1] < _PARALLEL_MIN_WORK:
        for j in range(rows.shape[0]):
            _gather_one_row(M, rows, BT, out, block, j)
    else:
        for j in prange(rows.shape[0]):
            _gather_one_row(M, rows, BT, out, block, j)


@njit(cache=True, error_model="numpy")
def _block_one_row(K, rows, LT, out, block, j):
    n_rows = rows.shape[0]
    if block.shape[0] >= n_rows:
        row = np.ascontiguousarray(block[j, :n_rows])
    else:
        row = np.empty(n_rows, dtype=K.dtype)
        for jj in range(n_rows):
            row[jj] = K[rows[j], rows[jj]]
    for c in range(LT.shape[0]):
        out[j, c] = _row_dot(row, LT[c])


@njit(parallel=True, cache=True, error_model="numpy")
def _gather_block_dot(K, rows, L, out, block):
    """``out = K[rows][:, rows] @ L``, from ``block`` when it holds ``K_BB``."""
    n_rows = rows.shape[0]
    LT = np.ascontiguousarray(L.T)
    if n_rows * n_rows * L.shape[1] < _PARALLEL_MIN_WORK:
        for j in range(n_rows):
            _block_one_row(K, rows, LT, out, block, j)
    else:
        for j in prange(n_rows):
            _block_one_row(K, rows, LT, out, block, j)


@njit(cache=True, error_model="numpy")
def _tdot_one_chunk(M, rows, L, out, chunk):
    start = chunk * _COLUMN_CHUNK
    stop = min(start + _COLUMN_CHUNK, M.shape[1])
    k = L.shape[1]
    for p in range(start, stop):
        for c in range(k):
            out[p, c] = 0.0
    for j in range(rows.shape[0]):
        r = rows[j]
        for p in range(start, stop):
            a = M[r, p]
            for c in range(k):
                out[p, c] += a * L[j, c]


@njit(parallel=True, cache=True, error_model="numpy")
def _gather_rows_tdot(M, rows, L, out):
    """``out = M[rows].T @ L``, parallel over chunks of columns of ``M``."""
    n_chunks = (M.shape[1] + _COLUMN_CHUNK - 1) // _COLUMN_CHUNK
    if rows.shape[0] * M.shape[1] * L.shape[1] < _PARALLEL_MIN_WORK:
        for chunk in range(n_chunks):
            _tdot_one_chunk(M, rows, L, out, chunk)
    else:
        for chunk in prange(n_chunks):
            _tdot_one_chunk(M, rows, L, out, chunk)


@njit(cache=True, error_model="numpy")
def _weighted_sum(weight, values):
    total = 0.0
    for i in range(values.shape[0]):
        total += weight[i] * values[i]
    return total


@njit(cache=True, error_model="numpy")
def _column_dots(X, Y, out):
    """``out[c] = sum_i X[i, c] Y[i, c]`` in a fixed order."""
    n, k = X.shape
    for c in range(k):
        out[c] = 0.0
    for i in range(n):
        for c in range(k):
            out[c] += X[i, c] * Y[i, c]


@njit(cache=True, error_model="numpy")
def _adam_star_rates(second, q, t, lr, beta_1, beta_2, epsilon, rates):
    """Update ``v`` with ``q = diag(L^T K_BB L)`` and set ``rates = lr * D_t``."""
    bias_1 = 1.0 - beta_1**t
    bias_2 = 1.0 - beta_2**t
    for c in range(second.shape[0]):
        # q >= 0 in exact arithmetic; rounding must not make sqrt(v) NaN.
        second[c] = beta_2 * second[c] + (1.0 - beta_2) * max(q[c], 0.0)
        rates[c] = lr / (bias_1 * (np.sqrt(second[c] / bias_2) + epsilon))


@njit(cache=True, error_model="numpy")
def _moment_rule(optimizer_code, beta_1, momentum):
    """``(use_moment, keep, gain)`` of the first-moment update ``M = keep M + gain G``.

    Heavy ball keeps ``momentum`` of the buffer and adds the whole gradient;
    Adam and ADAM* take the exponential average; SGD has no buffer.
    """
    if optimizer_code == _MOMENTUM:
        return True, momentum, 1.0
    if optimizer_code == _ADAM_STAR or optimizer_code == _ADAM:
        return True, beta_1, 1.0 - beta_1
    return False, 0.0, 1.0


@njit(cache=True, error_model="numpy")
def _step_dense(coef, moment, G, use_moment, keep, gain, rates, decay):
    """``M = keep M + gain G; coef = decay coef - rates M`` (or ``- rates G``).

    Returns the number of non-finite coefficients.
    """
    n, k = coef.shape
    n_bad = 0
    for i in range(n):
        for c in range(k):
            if use_moment:
                moment[i, c] = keep * moment[i, c] + gain * G[i, c]
                value = decay * coef[i, c] - rates[c] * moment[i, c]
            else:
                value = decay * coef[i, c] - rates[c] * G[i, c]
            coef[i, c] = value
            if not np.isfinite(value):
                n_bad += 1
    return n_bad


@njit(cache=True, error_model="numpy")
def _step_rows(coef, moment, rows, G_rows, use_moment, keep, gain, rates, decay):
    """:func:`_step_dense` with ``G`` zero outside ``rows`` (``G[rows] = G_rows``)."""
    n, k = coef.shape
    n_bad = 0
    if use_moment:
        for i in range(n):
            for c in range(k):
                moment[i, c] *= keep
        for j in range(rows.shape[0]):
            for c in range(k):
                moment[rows[j], c] += gain * G_rows[j, c]
        for i in range(n):
            for c in range(k):
                value = decay * coef[i, c] - rates[c] * moment[i, c]
                coef[i, c] = value
                if not np.isfinite(value):
                    n_bad += 1
    else:
        if decay != 1.0:
            for i in range(n):
                for c in range(k):
                    coef[i, c] *= decay
        # Only the batch rows can turn non-finite: 0 < decay <= 1.
        for j in range(rows.shape[0]):
            for c in range(k):
                coef[rows[j], c] -= rates[c] * G_rows[j, c]
                if not np.isfinite(coef[rows[j], c]):
                    n_bad += 1
    return n_bad


@njit(cache=True, error_model="numpy")
def _adam_step_dense(coef, moment, second, G, n_weights, t, lr, beta_1, beta_2,
                     epsilon, decay):
    """True Adam on ``w`` with the mean-field per-weight gradient ``sqrt(P) G``."""
    bias_1 = 1.0 - beta_1**t
    bias_2 = 1.0 - beta_2**t
    n, k = coef.shape
    n_bad = 0
    for i in range(n):
        for c in range(k):
            g = G[i, c]
            moment[i, c] = beta_1 * moment[i, c] + (1.0 - beta_1) * g
            second[i, c] = beta_2 * second[i, c] + (1.0 - beta_2) * n_weights * g * g
            rate = lr / (bias_1 * (np.sqrt(second[i, c] / bias_2) + epsilon))
            value = decay * coef[i, c] - rate * moment[i, c]
            coef[i, c] = value
            if not np.isfinite(value):
                n_bad += 1
    return n_bad


@njit(cache=True, error_model="numpy")
def _dual_full_update(coef, moment, F, U, L, KL, second, t, optimizer_code, lr, decay,
                      beta_1, beta_2, epsilon, momentum):
    """Full-batch dual step given ``L`` and ``KL = K @ L``: ``A, M`` and ``F, U``.

    Returns the number of non-finite coefficients or outputs.
    """
    k = coef.shape[1]
    rates = np.full(k, lr)
    use_moment, keep, gain = _moment_rule(optimizer_code, beta_1, momentum)
    if optimizer_code == _ADAM_STAR:
        q = np.empty(k)
        _column_dots(L, KL, q)
        _adam_star_rates(second, q, t, lr, beta_1, beta_2, epsilon, rates)
    n_bad = _step_dense(coef, moment, L, use_moment, keep, gain, rates, decay)
    return n_bad + _step_dense(F, U, KL, use_moment, keep, gain, rates, decay)


@njit(cache=True, error_model="numpy")
def _batch_gradient(F_rows, Y, weight, rows, loss_code):
    """Loss of the batch (weighted sum), its weight, and ``L`` (mean-loss gradient)."""
    n_rows = rows.shape[0]
    k = F_rows.shape[1]
    weight_rows = np.empty(n_rows, dtype=weight.dtype)
    Y_rows = np.empty((n_rows, k), dtype=Y.dtype)
    weight_sum = 0.0
    for j in range(n_rows):
        weight_rows[j] = weight[rows[j]]
        weight_sum += weight_rows[j]
        for c in range(k):
            Y_rows[j, c] = Y[rows[j], c]
    # A batch whose weights are all zero carries no gradient (L = 0).
    scale = np.zeros(n_rows, dtype=weight.dtype)
    if weight_sum > 0:
        for j in range(n_rows):
            scale[j] = weight_rows[j] / weight_sum
    loss_rows = np.empty(n_rows, dtype=F_rows.dtype)
    L = np.empty_like(F_rows)
    _loss_rows(F_rows, Y_rows, loss_code, scale, loss_rows, L)
    return _weighted_sum(weight_rows, loss_rows), weight_sum, L


@njit(cache=True, error_model="numpy")
def _batch_loss_gradient(rows_source, rows, coef, Y, weight, loss_code, block):
    """Outputs on the batch (``rows_source[rows] @ coef``), then its loss and ``L``.

    ``rows_source`` is the Gram matrix (dual form) or the features (primal
    form): either way a batch's outputs are its rows times the coefficients.
    Returns ``(weighted loss sum, weight sum, L)``.
    """
    F_rows = np.empty((rows.shape[0], coef.shape[1]), dtype=coef.dtype)
    _gather_rows_dot(rows_source, rows, coef, F_rows, block)
    return _batch_gradient(F_rows, Y, weight, rows, loss_code)


@njit(cache=True, error_model="numpy")
def _dual_minibatch_epoch(K, Y, weight, coef, moment, second, t, order, offsets,
                          loss_code, optimizer_code, lr, decay, beta_1, beta_2,
                          epsilon, momentum, block_bytes):
    """One epoch of mini-batch steps in dual form.

    ADAM* keeps ``K_BB`` in a buffer of at most ``block_bytes``.

    Returns ``(loss_sum, weight_sum, t, diverged)``.
    """
    k = coef.shape[1]
    rates = np.full(k, lr)
    q = np.empty(k)
    use_moment, keep, gain = _moment_rule(optimizer_code, beta_1, momentum)
    block_rows = 0
    if optimizer_code == _ADAM_STAR:
        largest = np.max(offsets[1:] - offsets[:-1])
        if largest * largest * K.itemsize <= block_bytes:
            block_rows = largest
    block = np.empty((block_rows, block_rows), dtype=K.dtype)
    loss_total = 0.0
    weight_total = 0.0
    for b in range(offsets.shape[0] - 1):
        rows = order[offsets[b]:offsets[b + 1]]
        batch_loss, batch_weight, L = _batch_loss_gradient(
            K, rows, coef, Y, weight, loss_code, block)
        loss_total += batch_loss
        weight_total += batch_weight
        if not np.isfinite(batch_loss):
            return loss_total, weight_total, t, True
        t += 1
        if optimizer_code == _ADAM_STAR:
            KL = np.empty_like(L)
            _gather_block_dot(K, rows, L, KL, block)
            _column_dots(L, KL, q)
            _adam_star_rates(second, q, t, lr, beta_1, beta_2, epsilon, rates)
        if _step_rows(coef, moment, rows, L, use_moment, keep, gain, rates, decay) > 0:
            return loss_total, weight_total, t, True
    return loss_total, weight_total, t, False


@njit(cache=True, error_model="numpy")
def _primal_minibatch_epoch(Psi, Y, weight, coef, moment, second, t, order, offsets,
                            loss_code, optimizer_code, lr, decay, beta_1, beta_2,
                            epsilon, momentum):
    """One epoch of mini-batch steps in primal form (any optimizer).

    ``second`` is 2-D: ``(P, k)`` for adam, ``(1, k)`` for adam* (one type
    for Numba whichever the optimizer).
    Returns ``(loss_sum, weight_sum, t, diverged)``.
    """
    n_weights, k = coef.shape
    rates = np.full(k, lr)
    q = np.empty(k)
    G = np.empty_like(coef)
    use_moment, keep, gain = _moment_rule(optimizer_code, beta_1, momentum)
    no_block = np.empty((0, 0), dtype=Psi.dtype)
    loss_total = 0.0
    weight_total = 0.0
    for b in range(offsets.shape[0] - 1):
        rows = order[offsets[b]:offsets[b + 1]]
        batch_loss, batch_weight, L = _batch_loss_gradient(
            Psi, rows, coef, Y, weight, loss_code, no_block)
        loss_total += batch_loss
        weight_total += batch_weight
        if not np.isfinite(batch_loss):
            return loss_total, weight_total, t, True
        t += 1
        _gather_rows_tdot(Psi, rows, L, G)
        if optimizer_code == _ADAM:
            n_bad = _adam_step_dense(coef, moment, second, G, n_weights, t, lr,
                                     beta_1, beta_2, epsilon, decay)
        else:
            if optimizer_code == _ADAM_STAR:
                _column_dots(G, G, q)
                _adam_star_rates(second[0], q, t, lr, beta_1, beta_2, epsilon, rates)
            n_bad = _step_dense(coef, moment, G, use_moment, keep, gain, rates, decay)
        if n_bad > 0:
            return loss_total, weight_total, t, True
    return loss_total, weight_total, t, False


@njit(cache=True, error_model="numpy")
def _eigen_step(lam, eta, phi, mu, alpha, beta, zeta, second, scalars, t,
                optimizer_code, lr, decay, beta_1, beta_2, epsilon, momentum,
                weight_sum):
    """One full-batch squared-loss step in the eigenbasis (DESIGN 3.4), O(N k).

    ``scalars = [gamma, rho]``: the factors of the initial coefficients and of
    the initial momentum on zero-weight rows.  Returns ``(loss, n_bad)``.
    """
    n, k = phi.shape
    loss = 0.0
    for i in range(n):
        for c in range(k):
            r = phi[i, c] - eta[i, c]
            loss += r * r
    loss = 0.5 * loss / weight_sum
    rates = np.full(k, lr)
    if optimizer_code == _ADAM_STAR:
        q = np.zeros(k)
        for i in range(n):
            for c in range(k):
                r = phi[i, c] - eta[i, c]
                q[c] += lam[i] * r * r
        for c in range(k):
            q[c] /= weight_sum * weight_sum
        _adam_star_rates(second, q, t, lr, beta_1, beta_2, epsilon, rates)
        keep, gain = beta_1, 1.0 - beta_1
    else:
        keep, gain = momentum, 1.0
    n_bad = 0
    if optimizer_code == _SGD:
        for i in range(n):
            for c in range(k):
                g = (phi[i, c] - eta[i, c]) / weight_sum
                phi[i, c] = decay * phi[i, c] - rates[c] * lam[i] * g
                alpha[i, c] = decay * alpha[i, c] - rates[c] * g
                if not (np.isfinite(phi[i, c]) and np.isfinite(alpha[i, c])):
                    n_bad += 1
    else:
        rho = keep * scalars[1]
        scalars[1] = rho
        for c in range(k):
            beta[c] = decay * beta[c] - rates[c] * rho
        for i in range(n):
            for c in range(k):
                g = (phi[i, c] - eta[i, c]) / weight_sum
                mu[i, c] = keep * mu[i, c] + gain * g
                velocity = lam[i] * mu[i, c] + rho * zeta[i, c]
                phi[i, c] = decay * phi[i, c] - rates[c] * velocity
                alpha[i, c] = decay * alpha[i, c] - rates[c] * mu[i, c]
                if not (np.isfinite(phi[i, c]) and np.isfinite(alpha[i, c])):
                    n_bad += 1
    scalars[0] *= decay
    return loss, n_bad


# --------------------------------------------------------------------------
# Input checks shared by the trainers
# --------------------------------------------------------------------------


def _check_loss(loss):
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")


def _float_dtype(array):
    return np.float32 if array.dtype == np.float32 else np.float64


def _check_targets(Y, n_rows, dtype, loss):
    Y = np.asarray(Y)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n_rows:
        raise ValueError(f"Y must have {n_rows} rows, got shape {Y.shape}.")
    if loss == "logistic" and Y.shape[1] != 1:
        raise ValueError(f"The logistic loss has one output, got {Y.shape[1]}.")
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if not np.all(np.isfinite(Y)):
        raise ValueError("Y contains NaN or infinity.")
    return Y


def _check_sample_weight(sample_weight, n_rows, dtype):
    if sample_weight is None:
        return np.ones(n_rows, dtype=dtype)
    weight = np.ascontiguousarray(sample_weight, dtype=dtype)
    if weight.shape != (n_rows,):
        raise ValueError(
            f"sample_weight must have shape ({n_rows},), got {weight.shape}."
        )
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError("sample_weight must be finite and non-negative.")
    if not np.any(weight > 0):
        raise ValueError("sample_weight must have at least one positive entry.")
    return weight


def _check_coef(coef, n_rows, k, dtype):
    if coef is None:
        return np.zeros((n_rows, k), dtype=dtype)
    coef = np.array(coef, dtype=dtype, order="C", copy=True)
    if coef.ndim == 1:
        coef = coef[:, None]
    if coef.shape != (n_rows, k):
        raise ValueError(f"coef must have shape {(n_rows, k)}, got {coef.shape}.")
    return coef


def _check_state(state, n_rows, k, optimizer, dtype):
    if state is None:
        return init_state(n_rows, k, optimizer, dtype)
    expected = init_state(0, k, optimizer, dtype)
    moment = np.array(state.momentum_buffer, dtype=dtype, order="C", copy=True)
    second = np.array(state.second_moment, dtype=dtype, order="C", copy=True)
    if optimizer == "adam":
        second_shape = (n_rows, k)
    else:
        second_shape = expected.second_moment.shape
    if moment.shape != (n_rows, k) or second.shape != second_shape:
        raise ValueError(
            f"The optimizer state does not fit optimizer={optimizer!r} with {n_rows} "
            f"rows and {k} outputs: momentum_buffer {moment.shape}, second_moment "
            f"{second.shape}; expected {(n_rows, k)} and {second_shape}."
        )
    return OptimizerState(moment, second, int(state.t))


def _check_square(K, name="K"):
    K = np.asarray(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be a square 2-D array, got shape {K.shape}.")
    return np.ascontiguousarray(K, dtype=_float_dtype(K))


def _as_batches(batches, n_rows):
    """Concatenated row order and batch offsets, checked against ``n_rows``."""
    empty = ValueError("batches must be a non-empty list of non-empty index arrays.")
    if len(batches) == 1:  # full batch: the common case, kept cheap
        order = np.ascontiguousarray(batches[0], dtype=np.intp).ravel()
        offsets = np.array([0, order.shape[0]], dtype=np.intp)
        if order.shape[0] == 0:
            raise empty
    else:
        batches = [np.asarray(batch, dtype=np.intp).ravel() for batch in batches]
        if not batches or any(batch.shape[0] == 0 for batch in batches):
            raise empty
        order = np.concatenate(batches)
        offsets = np.zeros(len(batches) + 1, dtype=np.intp)
        offsets[1:] = np.cumsum([batch.shape[0] for batch in batches])
    if not _indices_in_range(order, n_rows):
        raise ValueError(f"Batch indices must lie in [0, {n_rows}).")
    return order, offsets


@njit(cache=True)
def _indices_in_range(order, n_rows):
    for i in range(order.shape[0]):
        if order[i] < 0 or order[i] >= n_rows:
            return False
    return True


@njit(cache=True)
def _is_permutation(order, n_rows):
    if order.shape[0] != n_rows:
        return False
    seen = np.zeros(n_rows, dtype=np.bool_)
    for i in range(n_rows):
        if seen[order[i]]:
            return False
        seen[order[i]] = True
    return True


def _is_full_batch(order, offsets, n_rows):
    return offsets.shape[0] == 2 and _is_permutation(order, n_rows)


class _BatchTrainer:
    """What the dual and primal trainers share: settings, state, the epoch loop."""

    def _setup(self, matrix, n_rows, Y, settings, loss, sample_weight, coef, state):
        if not isinstance(settings, OptimizerSettings):
            raise TypeError("settings must be an OptimizerSettings.")
        _check_loss(loss)
        dtype = matrix.dtype
        self._settings = settings
        self._loss = loss
        self._Y = _check_targets(Y, matrix.shape[0], dtype, loss)
        k = self._Y.shape[1]
        self._weight = _check_sample_weight(sample_weight, matrix.shape[0], dtype)
        self._coef = _check_coef(coef, n_rows, k, dtype)
        state = _check_state(state, n_rows, k, settings.optimizer, dtype)
        self._moment = state.momentum_buffer
        self._second = state.second_moment
        self._t = state.t

    @property
    def coef(self):
        """Current coefficients (a copy)."""
        return self._coef.copy()

    @property
    def state(self):
        """Current :class:`OptimizerState` (a copy)."""
        return OptimizerState(self._moment.copy(), self._second.copy(), self._t)

    def _step_scalars(self):
        s = self._settings
        return (
            _LOSS_CODE[self._loss],
            _OPTIMIZER_CODE[s.optimizer],
            s.learning_rate,
            1.0 - s.learning_rate * s.weight_decay,
            s.beta_1,
            s.beta_2,
            s.epsilon,
            s.momentum,
        )

    def _full_gradient(self, F):
        """Weighted loss sum and ``L`` on every training row."""
        scale = self._weight / self._weight_sum
        loss_rows = np.empty(F.shape[0], dtype=F.dtype)
        L = np.empty_like(F)
        _loss_rows(F, self._Y, _LOSS_CODE[self._loss], scale, loss_rows, L)
        return _weighted_sum(self._weight, loss_rows), L

    def run_epoch(self, batches):
        """Take one step per batch, in the order given.

        Parameters
        ----------
        batches : list of array-like of int
            Disjoint row indices of each batch, in the order of the steps.
            A single batch holding every row is a full-batch step.

        Returns
        -------
        loss : float
            Sample-weighted mean training loss over the epoch, each batch's
            loss measured before its step (as ``MLPRegressor.loss_curve_``).

        Raises
        ------
        FloatingPointError
            As soon as a loss or a coefficient becomes NaN or infinite.
        """
        order, offsets = _as_batches(batches, self._Y.shape[0])
        with np.errstate(all="ignore"):
            if _is_full_batch(order, offsets, self._Y.shape[0]):
                loss_sum, weight_sum, diverged = self._full_batch_step()
            else:
                loss_sum, weight_sum, diverged = self._minibatch_epoch(order, offsets)
        if diverged:
            raise _divergence_error(self._t, self._settings.learning_rate)
        return float(loss_sum / weight_sum) if weight_sum > 0 else 0.0


class DualTrainer(_BatchTrainer):
    """ADAM*, SGD or momentum on dual coefficients ``A``: ``f = K A``.

    Parameters
    ----------
    K : ndarray of shape (N, N)
        Training Gram matrix (float32 or float64; everything follows its dtype).
    Y : ndarray of shape (N, k) or (N,)
        Targets in the encoding of ``loss`` (see :func:`loss_and_gradient`).
    settings : OptimizerSettings
        ``optimizer="adam"`` is refused: true Adam has no dual form.
    loss : {"squared", "logistic", "softmax"}
    sample_weight : ndarray of shape (N,), default=None
        Non-negative weights; ``None`` means ones.
    coef : ndarray of shape (N, k), default=None
        Dual coefficients to start from; ``None`` means zeros (``f_0 = 0``).
    state : OptimizerState, default=None
        Dual-form state to resume; ``None`` means :func:`init_state`.

    Notes
    -----
    A mini-batch step computes ``f_B = K[B] @ A`` (one pass over the batch
    rows of ``K``); ADAM* copies ``K_BB`` out of those rows while they are in
    cache (up to a 64 MiB buffer), so an epoch streams ``K`` about once.

    A full-batch step instead keeps ``F = K A`` and ``U = K M`` up to date
    (DESIGN 3.1, function-space form), so that it needs a single product
    ``K @ L``, which gives both ``diag(L^T K L)`` and the updates of ``F`` and
    ``U``: one pass over ``K`` per step.
    """

    def __init__(self, K, Y, settings, loss, sample_weight=None, coef=None,
                 state=None):
        K = _check_square(K)
        if isinstance(settings, OptimizerSettings) and settings.optimizer == "adam":
            raise ValueError(
                "optimizer='adam' (true Adam) has no dual form; train a finite-width "
                "network in primal form instead."
            )
        self._K = K
        self._setup(K, K.shape[0], Y, settings, loss, sample_weight, coef, state)
        self._weight_sum = float(self._weight.sum())
        self._F = None  # K @ coef and K @ moment, valid only between full-batch steps
        self._U = None

    def train_predictions(self):
        """Current outputs ``F = K A`` on the training rows, shape (N, k)."""
        if self._F is not None:
            return self._F.copy()
        return self._K @ self._coef

    def _times_K(self, M):
        return self._K @ M if np.any(M) else np.zeros_like(M)

    def _minibatch_epoch(self, order, offsets):
        self._F = self._U = None
        loss_sum, weight_sum, self._t, diverged = _dual_minibatch_epoch(
            self._K, self._Y, self._weight, self._coef, self._moment, self._second,
            self._t, order, offsets, *self._step_scalars(), _BLOCK_BUFFER_BYTES
        )
        return loss_sum, weight_sum, diverged

    def _full_batch_step(self):
        if self._F is None:
            # From zero (a fresh fit) there is nothing to multiply: skipping
            # saves two passes over K.
            self._F = self._times_K(self._coef)
            use_moment = self._settings.optimizer != "sgd"
            self._U = self._times_K(self._moment) if use_moment else np.zeros_like(self._F)
        loss_sum, L = self._full_gradient(self._F)
        if not np.isfinite(loss_sum):
            return loss_sum, self._weight_sum, True
        self._t += 1
        KL = self._K @ L
        _, optimizer_code, *scalars = self._step_scalars()
        n_bad = _dual_full_update(self._coef, self._moment, self._F, self._U, L, KL,
                                  self._second, self._t, optimizer_code, *scalars)
        return loss_sum, self._weight_sum, n_bad > 0


class PrimalTrainer(_BatchTrainer):
    """Any optimizer on readout weights ``w``: ``f = Psi w`` (finite width).

    Parameters
    ----------
    Psi : ndarray of shape (N, P)
        Features with ``Psi Psi^T = K``.
    Y : ndarray of shape (N, k) or (N,)
    settings : OptimizerSettings
        ``"adam*"`` averages the second moment over the ``P`` weights, so it
        follows exactly the dual model on ``K = Psi Psi^T`` (DESIGN 3.1);
        ``"adam"`` keeps it per weight (mean-field parameterisation, see the
        module docstring).
    loss : {"squared", "logistic", "softmax"}
    sample_weight : ndarray of shape (N,), default=None
    coef : ndarray of shape (P, k), default=None
        Weights to start from; ``None`` means zeros.  A dual model converts
        with ``w = Psi^T A``.
    state : OptimizerState, default=None
        Primal-form state (``momentum_buffer`` of shape ``(P, k)``).

    Notes
    -----
    A step costs two passes over the batch rows of ``Psi``: ``f_B = Psi_B w``
    and ``g = Psi_B^T L``; the ADAM* second moment adds
    ``(1 - b2) sum_p g_p^2 = (1 - b2) diag(L^T K_BB L)``.
    """

    def __init__(self, Psi, Y, settings, loss, sample_weight=None, coef=None,
                 state=None):
        Psi = np.asarray(Psi)
        if Psi.ndim != 2:
            raise ValueError(f"Psi must be a 2-D array, got shape {Psi.shape}.")
        Psi = np.ascontiguousarray(Psi, dtype=_float_dtype(Psi))
        self._Psi = Psi
        self._setup(Psi, Psi.shape[1], Y, settings, loss, sample_weight, coef, state)
        self._weight_sum = float(self._weight.sum())

    def train_predictions(self):
        """Current outputs ``F = Psi w`` on the training rows, shape (N, k)."""
        return self._Psi @ self._coef

    def _minibatch_epoch(self, order, offsets):
        second = self._second if self._second.ndim == 2 else self._second.reshape(1, -1)
        loss_sum, weight_sum, self._t, diverged = _primal_minibatch_epoch(
            self._Psi, self._Y, self._weight, self._coef, self._moment, second,
            self._t, order, offsets, *self._step_scalars()
        )
        return loss_sum, weight_sum, diverged

    def _full_batch_step(self):
        s = self._settings
        loss_sum, L = self._full_gradient(self._Psi @ self._coef)
        if not np.isfinite(loss_sum):
            return loss_sum, self._weight_sum, True
        self._t += 1
        G = np.ascontiguousarray(self._Psi.T @ L)
        decay = 1.0 - s.learning_rate * s.weight_decay
        if s.optimizer == "adam":
            n_bad = _adam_step_dense(self._coef, self._moment, self._second, G,
                                     self._Psi.shape[1], self._t, s.learning_rate,
                                     s.beta_1, s.beta_2, s.epsilon, decay)
        else:
            rates = np.full(L.shape[1], s.learning_rate)
            if s.optimizer == "adam*":
                q = np.empty(L.shape[1])
                _column_dots(G, G, q)
                _adam_star_rates(self._second, q, self._t, s.learning_rate, s.beta_1,
                                 s.beta_2, s.epsilon, rates)
            use_moment, keep, gain = _moment_rule(
                _OPTIMIZER_CODE[s.optimizer], s.beta_1, s.momentum)
            n_bad = _step_dense(self._coef, self._moment, G, use_moment, keep, gain,
                                rates, decay)
        return loss_sum, self._weight_sum, n_bad > 0


# --------------------------------------------------------------------------
# Eigenbasis form
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class EigenDecomposition:
    """``W^1/2 K W^1/2 = Q diag(lam) Q^T``, computed once, shared by trainers.

    Either the whole spectrum (:func:`eigen_decomposition`) or its
    restriction to the Krylov subspace the training dynamics of a few epochs
    cannot leave (:func:`krylov_decomposition`).

    Attributes
    ----------
    eigenvalues : ndarray of shape (r,)
        ``lam``, ascending, rounding negatives clipped to zero (``r = N``
        for the whole spectrum).
    eigenvectors : ndarray of shape (N, r)
        ``Q`` (orthonormal columns).
    sample_weight : ndarray of shape (N,)
        ``w`` (ones when none was given).
    sqrt_weight : ndarray of shape (N,)
        ``w^1/2``.
    weight_sum : float
        ``sum(w)``.
    krylov : bool, default=False
        Restricted to the Krylov subspace of its targets: exact only from
        zero coefficients, on those targets.
    max_epochs : int or None, default=None
        Epochs for which a Krylov restriction is exact (``None``: any
        number; the subspace is invariant, or the spectrum is whole).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    sample_weight: np.ndarray
    sqrt_weight: np.ndarray
    weight_sum: float
    krylov: bool = False
    max_epochs: int = None


def _eigh_driver(n, dtype):
    """``"evd"`` when its extra ``2 N^2`` workspace fits in half the free memory."""
    available = _backend.available_memory_bytes()
    workspace = 2 * n * n * np.dtype(dtype).itemsize
    return "evd" if available is not None and workspace < available / 2 else "evr"


def eigen_decomposition(K, sample_weight=None, *, overwrite_K=False):
    """Eigendecomposition of ``W^1/2 K W^1/2`` for :class:`EigenTrainer`.

    One ``O(N^3)`` symmetric eigensolve that every optimizer setting on the
    same kernel and weights can reuse.  Rows with zero weight give zero rows
    and columns: their directions get eigenvalue zero and never move, which
    is how the pseudo-inverse ``W^-1/2`` is taken.

    LAPACK's divide-and-conquer driver (``syevd``, about 25% faster) is used
    when its ``2 N^2`` numbers of workspace are free; otherwise its MRRR
    driver (``syevr``), whose workspace is ``O(N)``, so that the peak is the
    weighted matrix plus the eigenvectors, ``2 N^2`` numbers
    (``numpy.linalg.eigh`` would also copy its input).

    Parameters
    ----------
    K : ndarray of shape (N, N)
        Symmetric positive semi-definite training Gram matrix.
    sample_weight : ndarray of shape (N,), default=None
    overwrite_K : bool, default=False
        Weight and decompose ``K`` in place (its contents are destroyed),
        saving one ``N x N`` array when the caller no longer needs it.

    Returns
    -------
    EigenDecomposition
    """
    K = _check_square(K)
    weight = _check_sample_weight(sample_weight, K.shape[0], K.dtype)
    sqrt_weight = np.sqrt(weight)
    if overwrite_K and K.flags.writeable:
        weighted = K
        weighted *= sqrt_weight[:, None]
    else:
        weighted = K * sqrt_weight[:, None]
    weighted *= sqrt_weight[None, :]
    # LAPACK works in column-major order: the transpose of the symmetric
    # matrix is the same matrix, and lets LAPACK overwrite it without a copy.
    eigenvalues, eigenvectors = scipy.linalg.eigh(
        weighted.T, overwrite_a=True, check_finite=False,
        driver=_eigh_driver(weighted.shape[0], weighted.dtype),
    )
    del weighted
    np.maximum(eigenvalues, 0, out=eigenvalues)
    return EigenDecomposition(
        eigenvalues=eigenvalues,
        # LAPACK's column-major Q is kept as it is (a C-order copy would be a
        # third N x N array); every use of it is a BLAS product.
        eigenvectors=eigenvectors,
        sample_weight=weight,
        sqrt_weight=sqrt_weight,
        weight_sum=float(weight.sum()),
    )


def krylov_pays(n_samples, n_outputs, n_epochs):
    """Whether a Krylov restriction beats an eigensolve for ``n_epochs`` epochs.

    It needs ``(n_epochs + 1) k`` directions, each a product with ``K``, and
    pays while they are a small part (a quarter) of the ``N`` dimensions.
    """
    return 4 * (n_epochs + 1) * n_outputs <= n_samples


def krylov_decomposition(K, Y, n_epochs, sample_weight=None):
    """Restriction of ``W^1/2 K W^1/2`` to the subspace ``n_epochs`` steps can reach.

    Full-batch squared-loss training from zero coefficients keeps every
    vector of the eigenbasis form (``W^1/2 (F - Y)``, the momentum, ``W^-1/2 A``)
    in the block Krylov subspace spanned by ``S^j W^1/2 Y``, ``j <= t``, with
    ``S = W^1/2 K W^1/2``: each step multiplies by ``S`` once.  The
    eigenpairs of ``S`` restricted to the subspace for ``j <= n_epochs``
    (Ritz pairs) therefore drive :class:`EigenTrainer` through ``n_epochs``
    epochs exactly as the whole spectrum would, at the cost of
    ``n_epochs + 1`` products with ``K``, about one dual fit, instead of an
    ``O(N^3)`` eigensolve; every optimizer setting on the same kernel,
    targets and weights can then reuse it.

    The basis is built one block at a time and orthogonalised twice against
    everything before it (classical Gram-Schmidt, twice: orthonormal to
    rounding); a direction that is already in the span to rounding is
    dropped, as is everything after the subspace stops growing (it is then
    invariant, and exact for any number of epochs).

    Parameters
    ----------
    K : ndarray of shape (N, N)
        Symmetric positive semi-definite training Gram matrix.
    Y : ndarray of shape (N, k) or (N,)
        Targets (squared loss).
    n_epochs : int
        Epochs the restriction must be exact for.
    sample_weight : ndarray of shape (N,), default=None

    Returns
    -------
    EigenDecomposition
        With at most ``(n_epochs + 1) k`` eigenpairs and ``max_epochs`` set.
    """
    K = _check_square(K)
    n = K.shape[0]
    dtype = K.dtype
    weight = _check_sample_weight(sample_weight, n, dtype)
    sqrt_weight = np.sqrt(weight)
    Y = _check_targets(Y, n, dtype, "squared")
    # Below this fraction of its length before orthogonalisation, a new
    # direction is rounding noise: it is dropped rather than normalised.
    tolerance = 64 * np.finfo(dtype).eps
    blocks, images = [], []
    block = sqrt_weight[:, None] * Y
    invariant = False
    for _ in range(n_epochs + 1):
        block = _orthonormal_block(block, blocks, tolerance)
        if block.shape[1] == 0:
            invariant = True
            break
        blocks.append(block)
        block = sqrt_weight[:, None] * (K @ (sqrt_weight[:, None] * block))
        images.append(block.copy())
    V = np.hstack(blocks) if blocks else np.zeros((n, 0), dtype=dtype)
    projected = V.T @ (np.hstack(images) if images else np.zeros_like(V))
    projected = 0.5 * (projected + projected.T)
    eigenvalues, rotation = np.linalg.eigh(projected)
    np.maximum(eigenvalues, 0, out=eigenvalues)
    return EigenDecomposition(
        eigenvalues=eigenvalues,
        eigenvectors=V @ rotation,
        sample_weight=weight,
        sqrt_weight=sqrt_weight,
        weight_sum=float(weight.sum()),
        krylov=True,
        max_epochs=None if invariant else n_epochs,
    )


def _orthonormal_block(block, basis, tolerance):
    """Columns of ``block`` made orthonormal to ``basis`` and to each other.

    Directions whose remaining length falls below ``tolerance`` times their
    length before orthogonalisation are dropped.
    """
    kept = []
    for c in range(block.shape[1]):
        v = block[:, c].copy()
        length = np.linalg.norm(v)
        for _ in range(2):
            for B in basis:
                v -= B @ (B.T @ v)
            for u in kept:
                v -= u * (u @ v)
        remaining = np.linalg.norm(v)
        if length > 0 and remaining > tolerance * length:
            kept.append(v / remaining)
    if not kept:
        return np.zeros((block.shape[0], 0), dtype=block.dtype)
    return np.column_stack(kept)


class EigenTrainer:
    """Full-batch squared-loss training in the eigenbasis (DESIGN 3.4).

    Follows :class:`DualTrainer` with one batch of every row and
    ``loss="squared"`` (to rounding) at ``O(N k)`` per epoch.  With
    ``W^1/2 K W^1/2 = Q diag(lam) Q^T``, ``S = sum(w)``, the trainer carries
    ``phi = Q^T W^1/2 F``, ``eta = Q^T W^1/2 Y``, ``mu`` with
    ``M = W^1/2 Q mu`` and ``alpha`` with ``A = W^1/2 Q alpha`` (plus the
    decaying resumed part below); with ``r = phi - eta``::

        mu_t    = b1 mu_{t-1} + (1 - b1) r / S               (momentum: mu mu + r / S)
        v_t     = b2 v_{t-1} + (1 - b2) sum_i lam_i r_i^2 / S^2
        phi_t   = c phi_{t-1} - lr D_t lam mu_t
        alpha_t = c alpha_{t-1} - lr D_t mu_t

    A resumed ``coef`` ``A_0`` and the part ``M_0'`` of a resumed momentum on
    zero-weight rows (which the eigenbasis cannot hold) are carried exactly
    as ``A_t = gamma_t A_0 + beta_t M_0' + W^1/2 Q alpha_t`` with scalar
    ``gamma_t = c^t`` and per-output ``beta_t``.

    Parameters
    ----------
    decomposition : EigenDecomposition
        From :func:`eigen_decomposition` on the same ``K`` and weights.
    K : ndarray of shape (N, N) or None
        The Gram matrix, used only to resume from a non-zero ``coef`` (or a
        momentum on zero-weight rows) and by :meth:`train_predictions`.
        ``None`` when training starts from zero: the decomposition is then
        all the trainer needs, and the Gram matrix can be freed.
    Y : ndarray of shape (N, k) or (N,)
    settings : OptimizerSettings
        ``optimizer`` in ``{"adam*", "sgd", "momentum"}``.
    sample_weight : ndarray of shape (N,), default=None
        ``None`` means the weights of ``decomposition``; anything else must
        equal them.
    coef : ndarray of shape (N, k), default=None
        Dual coefficients to resume from.
    state : OptimizerState, default=None
        Dual-form state to resume from.

    Attributes
    ----------
    coef : ndarray of shape (N, k)
        Dual coefficients, ``O(N^2 k)`` per access.
    state : OptimizerState
        Dual-form state, ``O(N^2 k)`` per access; resumable by
        :class:`DualTrainer` or another :class:`EigenTrainer`.

    Notes
    -----
    :meth:`coef_path` returns the dual coefficients after every epoch this
    trainer ran, from one matrix product: the estimator can run all epochs at
    ``O(N k)`` each and recover, e.g., the best epoch afterwards.
    """

    def __init__(self, decomposition, K, Y, settings, sample_weight=None, coef=None,
                 state=None):
        if not isinstance(decomposition, EigenDecomposition):
            raise TypeError("decomposition must come from eigen_decomposition.")
        if not isinstance(settings, OptimizerSettings):
            raise TypeError("settings must be an OptimizerSettings.")
        if settings.optimizer not in ("adam*", "sgd", "momentum"):
            raise ValueError(
                "The eigen solver runs adam*, sgd and momentum, not "
                f"{settings.optimizer!r}."
            )
        Q = decomposition.eigenvectors
        n = Q.shape[0]
        if K is not None:
            K = _check_square(K)
            if K.shape[0] != n:
                raise ValueError(
                    f"K has {K.shape[0]} rows but the decomposition {n}."
                )
        dtype = Q.dtype
        if sample_weight is not None:
            weight = _check_sample_weight(sample_weight, n, dtype)
            if not np.array_equal(weight, decomposition.sample_weight):
                raise ValueError(
                    "sample_weight differs from the weights of the decomposition; "
                    "recompute eigen_decomposition(K, sample_weight)."
                )
        self._K = K
        self._settings = settings
        self._decomposition = decomposition
        self._Y = _check_targets(Y, n, dtype, "squared")
        k = self._Y.shape[1]
        sqrt_w = decomposition.sqrt_weight
        positive = decomposition.sample_weight > 0

        A0 = _check_coef(coef, n, k, dtype)
        state = _check_state(state, n, k, settings.optimizer, dtype)
        if decomposition.krylov:
            self._check_krylov_start(A0, state, sqrt_w)
        self._A0 = A0 if np.any(A0) else None
        if self._A0 is not None:
            self._require_K("resume from non-zero coefficients")
        self._second = state.second_moment
        self._t = state.t

        self._eta = Q.T @ (sqrt_w[:, None] * self._Y)
        self._phi = (
            Q.T @ (sqrt_w[:, None] * (K @ A0)) if self._A0 is not None
            else np.zeros_like(self._eta)
        )
        self._alpha = np.zeros_like(self._eta)
        self._beta = np.zeros(k)
        self._scalars = np.array([1.0, 1.0])  # gamma, rho
        self._mu = np.zeros_like(self._eta)
        self._zeta = np.zeros_like(self._eta)
        self._M0 = state.momentum_buffer  # kept as is by sgd
        self._M0_perp = None
        M0 = state.momentum_buffer
        if settings.optimizer != "sgd" and np.any(M0):
            on_positive = np.where(positive[:, None], M0, 0)
            scaled = np.divide(on_positive, sqrt_w[:, None], out=np.zeros_like(M0),
                               where=positive[:, None])
            self._mu = Q.T @ scaled
            perp = np.where(positive[:, None], 0, M0)
            if np.any(perp):
                self._require_K("resume a momentum on zero-weight rows")
                self._M0_perp = perp
                self._zeta = Q.T @ (sqrt_w[:, None] * (K @ perp))
        self._path = []

    def _check_krylov_start(self, A0, state, sqrt_w):
        """A Krylov restriction holds from zero, for the targets it was built on."""
        if np.any(A0) or np.any(state.momentum_buffer) or state.t:
            raise ValueError(
                "A Krylov decomposition trains from zero coefficients only; "
                "resume with eigen_decomposition(K, sample_weight) instead."
            )
        Q = self._decomposition.eigenvectors
        target = sqrt_w[:, None] * self._Y
        outside = target - Q @ (Q.T @ target)
        scale = np.linalg.norm(target)
        if np.linalg.norm(outside) > 1e3 * np.finfo(Q.dtype).eps * max(scale, 1e-300):
            raise ValueError(
                "Y is not the target the Krylov decomposition was built for."
            )

    def _require_K(self, purpose):
        if self._K is None:
            raise ValueError(f"EigenTrainer needs the Gram matrix K to {purpose}.")

    @property
    def coef(self):
        """Dual coefficients ``A`` (N, k), one ``O(N^2 k)`` product."""
        gamma = self._scalars[0]
        return self._dual(self._alpha, gamma, self._beta)

    def _dual(self, alpha, gamma, beta):
        sqrt_w = self._decomposition.sqrt_weight
        coef = sqrt_w[:, None] * (self._decomposition.eigenvectors @ alpha)
        if self._A0 is not None:
            coef += gamma * self._A0
        if self._M0_perp is not None:
            coef += beta[None, :] * self._M0_perp
        return coef

    @property
    def state(self):
        """Dual-form :class:`OptimizerState`, one ``O(N^2 k)`` product."""
        if self._settings.optimizer == "sgd":
            moment = self._M0.copy()
        else:
            sqrt_w = self._decomposition.sqrt_weight
            moment = sqrt_w[:, None] * (self._decomposition.eigenvectors @ self._mu)
            if self._M0_perp is not None:
                moment += self._scalars[1] * self._M0_perp
        return OptimizerState(moment, self._second.copy(), self._t)

    def train_predictions(self):
        """Current outputs ``F = K A`` on the training rows, shape (N, k)."""
        self._require_K("compute the training outputs")
        return self._K @ self.coef

    def run_epoch(self, batches=None):
        """One full-batch step (``batches`` is ignored).

        Returns
        -------
        loss : float
            Sample-weighted mean squared loss ``0.5 ||f - y||^2`` before the step.

        Raises
        ------
        FloatingPointError
            As soon as the loss or a coefficient becomes NaN or infinite.
        """
        s = self._settings
        limit = self._decomposition.max_epochs
        if limit is not None and len(self._path) >= limit:
            raise RuntimeError(
                f"This Krylov decomposition is exact for {limit} epochs; "
                f"build it for more (krylov_decomposition(..., n_epochs=...))."
            )
        self._t += 1
        loss, n_bad = _eigen_step(
            self._decomposition.eigenvalues, self._eta, self._phi, self._mu,
            self._alpha, self._beta, self._zeta, self._second, self._scalars, self._t,
            _OPTIMIZER_CODE[s.optimizer], s.learning_rate,
            1.0 - s.learning_rate * s.weight_decay, s.beta_1, s.beta_2, s.epsilon,
            s.momentum, self._decomposition.weight_sum,
        )
        if n_bad > 0 or not np.isfinite(loss):
            raise _divergence_error(self._t, s.learning_rate)
        self._path.append((self._alpha.copy(), self._scalars[0], self._beta.copy()))
        return float(loss)

    def output_map(self, operator):
        """A function returning ``operator @ coef`` for the current ``coef``.

        One ``O(m N^2)`` product up front maps ``operator`` into the
        eigenbasis; each call then costs ``O(m N k)`` instead of the
        ``O(N^2 k)`` of reading :attr:`coef` (``m`` = rows of ``operator``,
        e.g. the validation rows' kernel for early stopping).

        Parameters
        ----------
        operator : ndarray of shape (m, N)

        Returns
        -------
        outputs : callable
            ``outputs()`` is an (m, k) array.
        """
        sqrt_w = self._decomposition.sqrt_weight
        basis = (operator * sqrt_w[None, :]) @ self._decomposition.eigenvectors
        from_A0 = None if self._A0 is None else operator @ self._A0
        from_perp = None if self._M0_perp is None else operator @ self._M0_perp

        def outputs():
            out = basis @ self._alpha
            if from_A0 is not None:
                out += self._scalars[0] * from_A0
            if from_perp is not None:
                out += self._beta[None, :] * from_perp
            return out

        return outputs

    def coef_path(self):
        """Dual coefficients after each epoch run by this trainer.

        The recorded eigen-coefficients (``N k`` numbers per epoch) are
        mapped to dual form with a single matrix product, ``O(N^2 k T)`` for
        ``T`` epochs at BLAS-3 speed.

        Returns
        -------
        path : ndarray of shape (T, N, k)
            ``path[e]`` equals :attr:`coef` after epoch ``e + 1``.
        """
        Q = self._decomposition.eigenvectors
        n, (r, k) = Q.shape[0], self._eta.shape
        if not self._path:
            return np.zeros((0, n, k), dtype=Q.dtype)
        alphas = np.stack([alpha for alpha, _, _ in self._path], axis=1)  # (r, T, k)
        path = (Q @ alphas.reshape(r, -1)).reshape(n, len(self._path), k)
        path *= self._decomposition.sqrt_weight[:, None, None]
        path = np.ascontiguousarray(path.transpose(1, 0, 2))
        for e, (_, gamma, beta) in enumerate(self._path):
            if self._A0 is not None:
                path[e] += gamma * self._A0
            if self._M0_perp is not None:
                path[e] += beta[None, :] * self._M0_perp
        return path


# --------------------------------------------------------------------------
# Solver choice
# --------------------------------------------------------------------------


def choose_solver(*, n_samples, n_outputs, n_feature_columns, full_batch, loss,
                  optimizer, max_iter, eigen_cached=False):
    """Pick the cheapest exact solver for one fit.

    Cost model, in flops (a multiply-add counts 2), with ``N = n_samples``,
    ``k = n_outputs``, ``P = n_feature_columns``, ``T = max_iter``:

    - ``"dual"``: ``T * 2 N^2 k`` (every epoch streams the Gram once), plus
      ``2 N^2 P`` to build the empirical Gram at finite width.  Memory
      ``N^2``.
    - ``"eigen"`` (full batch, squared loss, not ``"adam"``): one ``eigh``,
      ``_EIGH_COST * N^3`` with ``_EIGH_COST = 4`` measured as
      ``time(eigh) / time(K @ g)`` in BLAS-streaming flops, or, when
      :func:`krylov_pays`, the Krylov restriction's ``(T + 1) k`` products
      with ``K`` and its orthogonalisation, ``2 N^2 (T + 1) k +
      4 N ((T + 1) k)^2`` (never below the dual cost: it pays only when
      reused); plus
      ``6 N^2 k`` to enter and leave the eigenbasis and ``T * 10 N k`` for
      the epochs; plus the Gram at finite width.  Memory ``2 N^2``.  When
      the decomposition is cached (``eigen_cached``, e.g. the previous
      setting of a grid search on the same rows), only ``6 N^2 k`` and the
      epochs remain, so eigen wins from a handful of epochs on.
    - ``"primal"`` (finite width only, and only when ``P <= N`` so that the
      features take no more memory than the Gram): ``T * 4 N P k``
      (``Psi w`` and ``Psi^T L`` every epoch).  Memory ``N P``.

    ``optimizer="adam"`` has no kernel form and always gives ``"primal"``.

    Parameters
    ----------
    n_samples, n_outputs : int
    n_feature_columns : int or None
        ``P`` of a finite-width network; ``None`` at infinite width or for a
        precomputed kernel (no primal form).
    full_batch : bool
    loss : {"squared", "logistic", "softmax"}
    optimizer : {"adam*", "sgd", "momentum", "adam"}
    max_iter : int
        Planned number of epochs.
    eigen_cached : bool, default=False
        Whether the eigendecomposition of this training Gram matrix is
        already available.

    Returns
    -------
    solver : {"dual", "eigen", "primal"}
    """
    _check_loss(loss)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    if optimizer == "adam":
        return "primal"
    n, k, epochs = float(n_samples), float(n_outputs), float(max_iter)
    gram = 0.0 if n_feature_columns is None else 2.0 * n * n * float(n_feature_columns)
    costs = {"dual": gram + epochs * 2.0 * n * n * k}
    if full_batch and loss == "squared":
        eigensolve = _EIGH_COST * n**3
        if krylov_pays(n_samples, n_outputs, max_iter):
            directions = (epochs + 1.0) * k
            eigensolve = min(eigensolve, directions * 2.0 * n * n
                             + 4.0 * n * directions**2)
        setup = 0.0 if eigen_cached else gram + eigensolve
        costs["eigen"] = setup + 6.0 * n * n * k + epochs * 10.0 * n * k
    if n_feature_columns is not None and n_feature_columns <= n_samples:
        costs["primal"] = epochs * 4.0 * n * float(n_feature_columns) * k
    return min(costs, key=costs.get)
