"""The dual trainer: ADAM*, SGD or momentum on dual coefficients, ``f = K A``.

The form that exists at infinite width (DESIGN 3.1): the coefficients ``A``
of shape ``(N, k)`` over the training rows, the Gram matrix ``K`` streamed
once per step.  NumPy and Numba only.
"""

import numpy as np
from numba import njit

from ._batch import _BatchTrainer, _batch_loss_gradient, _gather_block_dot
from ._inputs import _check_square
from ._jit import CACHE
from ._spectral import top_eigenvalue
from ._optimizer import (
    _ADAM_STAR,
    OptimizerSettings,
    _adam_star_rates,
    _column_dots,
    _moment_rule,
    _scheduled_rate,
    _step_dense,
    _step_rows,
)

# Largest K_BB that a mini-batch ADAM* epoch copies out of the rows it streams
# (above it, K_BB L is gathered from K directly, a second, scattered pass).
_BLOCK_BUFFER_BYTES = 64 * 2**20


@njit(cache=CACHE, error_model="numpy")
def _dual_full_update(coef, moment, F, U, L, KL, second, t, optimizer_code, lr,
                      power_t, weight_decay, beta_1, beta_2, epsilon, momentum):
    """Full-batch dual step ``t`` given ``L`` and ``KL = K @ L``: ``A, M`` and ``F, U``.

    Returns the number of non-finite coefficients or outputs.
    """
    k = coef.shape[1]
    lr = _scheduled_rate(lr, power_t, t)
    decay = 1.0 - lr * weight_decay
    rates = np.full(k, lr)
    use_moment, keep, gain = _moment_rule(optimizer_code, beta_1, momentum)
    if optimizer_code == _ADAM_STAR:
        q = np.empty(k)
        _column_dots(L, KL, q)
        _adam_star_rates(second, q, t, lr, beta_1, beta_2, epsilon, rates)
    n_bad = _step_dense(coef, moment, L, use_moment, keep, gain, rates, decay)
    return n_bad + _step_dense(F, U, KL, use_moment, keep, gain, rates, decay)


@njit(cache=CACHE, error_model="numpy")
def _dual_minibatch_epoch(K, Y, weight, coef, moment, second, t, order, offsets,
                          loss_code, optimizer_code, lr, power_t, weight_decay,
                          beta_1, beta_2, epsilon, momentum, block_bytes):
    """One epoch of mini-batch steps in dual form.

    ADAM* keeps ``K_BB`` in a buffer of at most ``block_bytes``.

    Returns ``(loss_sum, weight_sum, t, diverged)``.
    """
    k = coef.shape[1]
    rates = np.empty(k)
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
        lr_t = _scheduled_rate(lr, power_t, t)
        decay = 1.0 - lr_t * weight_decay
        rates[:] = lr_t
        if optimizer_code == _ADAM_STAR:
            KL = np.empty_like(L)
            _gather_block_dot(K, rows, L, KL, block)
            _column_dots(L, KL, q)
            _adam_star_rates(second, q, t, lr_t, beta_1, beta_2, epsilon, rates)
        if _step_rows(coef, moment, rows, L, use_moment, keep, gain, rates, decay) > 0:
            return loss_total, weight_total, t, True
    return loss_total, weight_total, t, False


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
        K = self._checked_gram(K)
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

    @staticmethod
    def _checked_gram(K):
        """The Gram matrix as the steps use it: square, contiguous, float."""
        return _check_square(K)

    def train_predictions(self):
        """Current outputs ``F = K A`` on the training rows, shape (N, k)."""
        if self._F is not None:
            return self._F.copy()
        return self._K @ self._coef

    def curvature(self):
        """``lambda_max(W^1/2 K W^1/2) / sum(w)``; SGD is stable below 2 / it."""
        sqrt_w = np.sqrt(self._weight)
        lam = top_eigenvalue(lambda v: sqrt_w * (self._K @ (sqrt_w * v)),
                             self._K.shape[0], self._K.dtype)
        return lam / self._weight_sum

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
            self._U = (self._times_K(self._moment) if use_moment
                       else np.zeros_like(self._F))
        loss_sum, L = self._full_gradient(self._F)
        if not np.isfinite(loss_sum):
            return loss_sum, self._weight_sum, True
        self._t += 1
        KL = self._K @ L
        _, optimizer_code, *scalars = self._step_scalars()
        n_bad = _dual_full_update(self._coef, self._moment, self._F, self._U, L, KL,
                                  self._second, self._t, optimizer_code, *scalars)
        return loss_sum, self._weight_sum, n_bad > 0


