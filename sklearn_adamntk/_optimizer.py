"""Optimizer settings, state and the update rules of DESIGN 3.

The model is a readout over frozen features trained from zero.  With ``G``
the mean-loss gradient of a batch (dual form: ``L`` on the batch rows, zero
elsewhere; primal form: ``Psi_B^T L``) and ``c = 1 - lr * wd`` (decoupled
weight decay, DESIGN 3.3, applied to the coefficients the gradient was taken
at, as AdamW does) every optimizer updates::

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

:class:`OptimizerSettings` holds the hyper-parameters, :class:`OptimizerState`
the memory ``(M, v, t)`` that a resumed fit continues; the compiled rules
below are the steps every trainer (dual, primal, eigen) takes.  NumPy and
Numba only.
"""

import numbers
from dataclasses import dataclass

import numpy as np
from numba import njit

from ._jit import CACHE

OPTIMIZERS = ("adam*", "sgd", "momentum", "adam")

_SGD, _MOMENTUM, _ADAM_STAR, _ADAM = 0, 1, 2, 3
_OPTIMIZER_CODE = {
    "sgd": _SGD, "momentum": _MOMENTUM, "adam*": _ADAM_STAR, "adam": _ADAM
}


def _divergence_error(t, learning_rate):
    return FloatingPointError(
        f"The optimizer diverged at step {t}: the loss or the coefficients "
        f"became NaN or infinite. Lower learning_rate_init (it is "
        f"{learning_rate!r}) or standardise the targets."
    )


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
        ``1 - lr_t * wd`` at every step.
    power_t : float, default=0.0
        Exponent of the inverse scaling schedule (DESIGN 3.6): step ``t``
        (1-based, counted over the whole life of the state) uses
        ``lr_t = lr / t**power_t``; 0 keeps the rate constant.
    """

    optimizer: str
    learning_rate: float
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    momentum: float = 0.9
    weight_decay: float = 0.0
    power_t: float = 0.0

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
            ("power_t", 0.0, np.inf, True),
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

    def rate(self, t):
        """Step size of step ``t`` (1-based): ``lr / t**power_t``."""
        return _scheduled_rate(self.learning_rate, self.power_t, t)

    def decay(self, t):
        """Weight-decay factor of step ``t``: ``1 - lr_t * wd``."""
        return 1.0 - self.rate(t) * self.weight_decay


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


@njit(cache=CACHE, error_model="numpy")
def _scheduled_rate(lr, power_t, t):
    """``lr / t**power_t``: the inverse scaling schedule (``power_t = 0``: constant)."""
    if power_t == 0.0:
        return lr
    return lr / float(t) ** power_t


@njit(cache=CACHE, error_model="numpy")
def _column_dots(X, Y, out):
    """``out[c] = sum_i X[i, c] Y[i, c]`` in a fixed order."""
    n, k = X.shape
    for c in range(k):
        out[c] = 0.0
    for i in range(n):
        for c in range(k):
            out[c] += X[i, c] * Y[i, c]


@njit(cache=CACHE, error_model="numpy")
def _adam_star_rates(second, q, t, lr, beta_1, beta_2, epsilon, rates):
    """Update ``v`` with ``q = diag(L^T K_BB L)`` and set ``rates = lr * D_t``."""
    bias_1 = 1.0 - beta_1**t
    bias_2 = 1.0 - beta_2**t
    for c in range(second.shape[0]):
        # q >= 0 in exact arithmetic; rounding must not make sqrt(v) NaN.
        second[c] = beta_2 * second[c] + (1.0 - beta_2) * max(q[c], 0.0)
        rates[c] = lr / (bias_1 * (np.sqrt(second[c] / bias_2) + epsilon))


@njit(cache=CACHE, error_model="numpy")
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


@njit(cache=CACHE, error_model="numpy")
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


@njit(cache=CACHE, error_model="numpy")
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


@njit(cache=CACHE, error_model="numpy")
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

