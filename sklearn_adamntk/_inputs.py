"""Checks of what a trainer is given: coefficients, state and Gram matrices.

Each returns a C-contiguous array of the problem's float type (float32 only
when the data are float32), or raises a ValueError saying what is wrong.
"""

import numpy as np

from ._losses import _float_dtype
from ._optimizer import OptimizerState, init_state


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

