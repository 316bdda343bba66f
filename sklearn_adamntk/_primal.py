"""The primal trainer: any optimizer on the readout weights, ``f = Psi w``.

For a finite network narrower than the training set (DESIGN 3.5): the
weights ``w = Psi^T A`` of shape ``(P, k)``, two passes over the features per
step.  ADAM* averaged over the ``P`` weights is exactly the dual model on
``K = Psi Psi^T`` (DESIGN 3.1); true Adam keeps its second moment per weight.
NumPy and Numba only.
"""

import numpy as np
from numba import njit

from ._batch import _BatchTrainer, _batch_loss_gradient, _gather_rows_tdot
from ._jit import CACHE
from ._losses import _float_dtype
from ._spectral import top_eigenvalue
from ._optimizer import (
    _ADAM,
    _ADAM_STAR,
    _OPTIMIZER_CODE,
    _adam_star_rates,
    _adam_step_dense,
    _column_dots,
    _moment_rule,
    _scheduled_rate,
    _step_dense,
)


@njit(cache=CACHE, error_model="numpy")
def _primal_minibatch_epoch(Psi, Y, weight, coef, moment, second, t, order, offsets,
                            loss_code, optimizer_code, lr, power_t, weight_decay,
                            beta_1, beta_2, epsilon, momentum):
    """One epoch of mini-batch steps in primal form (any optimizer).

    ``second`` is 2-D: ``(P, k)`` for adam, ``(1, k)`` for adam* (one type
    for Numba whichever the optimizer).
    Returns ``(loss_sum, weight_sum, t, diverged)``.
    """
    n_weights, k = coef.shape
    rates = np.empty(k)
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
        lr_t = _scheduled_rate(lr, power_t, t)
        decay = 1.0 - lr_t * weight_decay
        _gather_rows_tdot(Psi, rows, L, G)
        if optimizer_code == _ADAM:
            n_bad = _adam_step_dense(coef, moment, second, G, n_weights, t, lr_t,
                                     beta_1, beta_2, epsilon, decay)
        else:
            rates[:] = lr_t
            if optimizer_code == _ADAM_STAR:
                _column_dots(G, G, q)
                _adam_star_rates(second[0], q, t, lr_t, beta_1, beta_2, epsilon,
                                 rates)
            n_bad = _step_dense(coef, moment, G, use_moment, keep, gain, rates, decay)
        if n_bad > 0:
            return loss_total, weight_total, t, True
    return loss_total, weight_total, t, False


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

    def curvature(self):
        """``lambda_max(Psi^T W Psi) / sum(w)``: full-batch SGD is stable below 2/it."""
        Psi, weight = self._Psi, self._weight
        lam = top_eigenvalue(lambda v: Psi.T @ (weight * (Psi @ v)), Psi.shape[1],
                             Psi.dtype)
        return lam / self._weight_sum

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
        loss_sum, L = self._full_gradient(self._Psi @ self._coef)
        if not np.isfinite(loss_sum):
            return loss_sum, self._weight_sum, True
        self._t += 1
        G = np.ascontiguousarray(self._Psi.T @ L)
        n_bad = readout_step(self._settings, self._coef, self._moment, self._second,
                             G, self._t)
        return loss_sum, self._weight_sum, n_bad > 0


def readout_step(settings, coef, moment, second, G, t):
    """Step ``t`` of any optimizer on readout weights, given ``G = Psi_B^T L``.

    Updates ``coef``, ``moment`` and ``second`` in place; ADAM*'s second
    moment takes ``diag(G^T G) = diag(L^T K_BB L)``.  Shared by every trainer
    of the primal form, whether its features are stored or recomputed.
    Returns the number of non-finite weights.
    """
    s = settings
    lr, decay = s.rate(t), s.decay(t)
    if s.optimizer == "adam":
        return _adam_step_dense(coef, moment, second, G, coef.shape[0], t,
                                lr, s.beta_1, s.beta_2, s.epsilon, decay)
    k = G.shape[1]
    rates = np.full(k, lr)
    if s.optimizer == "adam*":
        q = np.empty(k)
        _column_dots(G, G, q)
        _adam_star_rates(second, q, t, lr, s.beta_1, s.beta_2, s.epsilon, rates)
    use_moment, keep, gain = _moment_rule(_OPTIMIZER_CODE[s.optimizer], s.beta_1,
                                          s.momentum)
    return _step_dense(coef, moment, G, use_moment, keep, gain, rates, decay)
