"""The dual trainer on an NVIDIA GPU: :class:`._dual.DualTrainer` on device arrays.

The Gram matrix, the targets, the weights, the coefficients and the optimizer
state stay on the device for the whole fit; an epoch copies back only its
loss (and, on request, the coefficients and the state).  Reductions run in a
fixed order inside one thread block, so a result does not depend on timing.
The kernels are compiled at first use, with the device functions of
:mod:`._cuda` (the row losses are the CPU core's own statement); like there,
``numba.cuda`` is imported only then, and the kernels refer to it and to the
device functions as module globals, so that the simulator can swap in its
own ``cuda``.
"""

import dataclasses
import functools
import math

import numpy as np

from . import _cuda
from ._batch import _as_batches, _is_full_batch
from ._inputs import _check_coef, _check_square, _check_state
from ._jit import CACHE
from ._losses import _LOSS_CODE, _check_loss, _check_sample_weight, _check_targets
from ._optimizer import (
    _OPTIMIZER_CODE,
    OptimizerSettings,
    OptimizerState,
    _divergence_error,
)
from ._spectral import top_eigenvalue

# numba.cuda and the device functions, bound by _bind_device_functions() on
# first use.
cuda = None
_loss_row = _block_sum = None

_SGD, _ADAM_STAR = _OPTIMIZER_CODE["sgd"], _OPTIMIZER_CODE["adam*"]


def _bind_device_functions():
    """Import ``numba.cuda`` and compile the shared device functions, once."""
    global cuda, _loss_row, _block_sum
    _cuda._device_functions()
    cuda, _loss_row, _block_sum = _cuda.cuda, _cuda._loss_row, _cuda._block_sum


@functools.lru_cache(maxsize=None)
def _reduction_kernels(launch):
    """The batch loss and ADAM*'s rates (one block each); they check ``status``.

    ``status = [code, batch]``: code 1 means a batch loss was not finite
    (no step taken), 2 a coefficient or output became non-finite.
    """
    _bind_device_functions()
    from numba import types

    THREADS = launch.threads

    @cuda.jit(cache=CACHE)
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

    @cuda.jit(cache=CACHE)
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

    return batch_loss, adam_star_rates


@functools.lru_cache(maxsize=None)
def _update_kernels(launch):
    """The full-batch and mini-batch updates (one thread per coefficient).

    Both check ``status`` (see :func:`_reduction_kernels`) and stop after a
    failure.
    """
    _bind_device_functions()

    @cuda.jit(cache=CACHE)
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

    @cuda.jit(cache=CACHE)
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

    return full_step, batch_step


# --------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------



def _is_device_array(array):
    # Duck-typed: the simulator's arrays are not CUDA arrays to numba.cuda.
    return callable(getattr(array, "copy_to_host", None))


class DualTrainer:
    """:class:`._dual.DualTrainer` with everything resident on the GPU.

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
        As for :class:`sklearn_adamntk._dual.DualTrainer`.
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
        _bind_device_functions()
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
            _cuda._check_device_allocation(
                K.nbytes, f"the {K.shape[0]} x {K.shape[0]} training Gram matrix",
                "use float32 input, fewer rows, or device='cpu'")
            d_K = cuda.to_device(K)
        dtype = np.dtype(d_K.dtype)
        n = d_K.shape[0]
        Y = _check_targets(Y, n, dtype, loss)
        k = Y.shape[1]
        weight = _check_sample_weight(sample_weight, n, dtype)
        state = _check_state(state, n, k, settings.optimizer, dtype)
        self._launch = _cuda.DEFAULT_LAUNCH if launch is None else launch
        self._reductions = _reduction_kernels(self._launch)
        self._updates = _update_kernels(self._launch)
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
        self._rate_on_device = settings.learning_rate
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
        _cuda._rows_dot(self._launch, self._K, self._all_rows, self._no_cols,
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
        return use_moment, keep, gain

    def _rates_for_step(self, d_L, d_KL, n_rows, status):
        """The rates of step ``self._t``; returns its weight-decay factor.

        ADAM* computes its rates on the device; SGD and momentum use the
        scheduled step size, copied over only when it changes.
        """
        s = self._settings
        lr = s.rate(self._t)
        if s.optimizer == "adam*":
            bias_1 = 1.0 - s.beta_1**self._t
            bias_2 = 1.0 - s.beta_2**self._t
            self._reductions[1][1, self._launch.threads](
                d_L, d_KL, n_rows, self._second, self._rates, lr, bias_1,
                bias_2, s.beta_2, s.epsilon, status)
        elif lr != self._rate_on_device:
            self._rates.copy_to_device(np.full(self._k, lr, dtype=np.float64))
            self._rate_on_device = lr
        return s.decay(self._t)

    @property
    def learning_rate(self):
        """The base step size the trainer runs with."""
        return self._settings.learning_rate

    def set_learning_rate(self, learning_rate):
        """Continue with another base step size (the ``"adaptive"`` schedule)."""
        self._settings = dataclasses.replace(self._settings,
                                             learning_rate=learning_rate)

    def curvature(self):
        """``lambda_max(W^1/2 K W^1/2) / sum(w)``, by power iteration on the device."""
        sqrt_w = np.sqrt(self._weight.copy_to_host())

        def matvec(v):
            d_v = cuda.to_device(np.ascontiguousarray(
                (sqrt_w * v)[:, None].repeat(self._k, axis=1), dtype=self._dtype))
            return sqrt_w * self._product(d_v).copy_to_host()[:, 0]

        lam = top_eigenvalue(matvec, self._n, self._dtype)
        return lam / float(np.sum(sqrt_w**2))

    def snapshot(self):
        """The current coefficients (a host copy), to be restored by :meth:`coef_of`."""
        return self.coef

    def coef_of(self, snapshot):
        """The coefficients of a :meth:`snapshot`."""
        return snapshot.copy()

    def _elementwise_grid(self):
        n_items = self._n * self._k
        return max(1, -(-n_items // self._launch.threads)), self._launch.threads

    def _full_batch_step(self):
        launch = self._launch
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
        self._reductions[0][1, launch.threads](self._F, self._Y, self._weight, self._all_rows,
                                      self._loss_code, d_L, stats, 0, status)
        self._t += 1
        _cuda._rows_dot(launch, self._K, self._all_rows, self._no_cols, 0, d_L,
                  d_KL, status)
        decay = self._rates_for_step(d_L, d_KL, self._n, status)
        use_moment, keep, gain = self._step_scalars()
        self._updates[0][self._elementwise_grid()](
            self._coef, self._moment, self._F, self._U, d_L, d_KL, use_moment, keep,
            gain, self._rates, decay, status)
        code = int(status.copy_to_host()[0])
        loss_sum, weight_sum = stats.copy_to_host()[0]
        if code == 1:  # the loss was not finite: no step was taken
            self._t -= 1
        return loss_sum, weight_sum, code != 0

    def _minibatch_epoch(self, order, offsets):
        launch = self._launch
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
        use_moment, keep, gain = self._step_scalars()
        t0 = self._t
        for b in range(n_batches):
            d_rows = d_order[offsets[b]:offsets[b + 1]]
            n_rows = int(sizes[b])
            _cuda._rows_dot(launch, self._K, d_rows, self._no_cols, 0, self._coef,
                      d_F, status)
            self._reductions[0][1, launch.threads](d_F, self._Y, self._weight, d_rows,
                                          self._loss_code, d_L, stats, b, status)
            self._t = t0 + b + 1
            if self._settings.optimizer == "adam*":
                _cuda._rows_dot(launch, self._K, d_rows, d_rows, 1, d_L, d_KL, status)
            decay = self._rates_for_step(d_L, d_KL, n_rows, status)
            self._updates[1][self._elementwise_grid()](
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
