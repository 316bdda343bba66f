"""The three training losses and the checks on what they are given.

Regression trains ``1/2 ||f - y||^2``; binary classification one logit with
the logistic loss; three or more classes the softmax cross-entropy (DESIGN 2).
A batch's loss is the sample-weighted mean over its rows.  The row loss is
written once, as plain Python on :mod:`math`, so that the CPU trainers
(compiled here) and the CUDA backend (as a device function) share one
statement of it.  NumPy and Numba only.
"""

import math

import numpy as np
from numba import njit

from ._jit import CACHE

LOSSES = ("squared", "logistic", "softmax")

_LOSS_CODE = {"squared": 0, "logistic": 1, "softmax": 2}


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


_row_loss_cpu = njit(cache=CACHE, error_model="numpy", inline="always")(_row_loss)


@njit(cache=CACHE, error_model="numpy")
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

