"""The streamed primal trainer: the features of a block of rows, recomputed every epoch.

A finite network's primal fit (DESIGN 3.5) stores the ``N x P`` feature
matrix; that is what limits it (``N = 10^7`` rows of a width-1024 network
would take 41 GB in float32).  The full-batch gradient ``G = Psi^T L`` is a
sum over blocks of rows (DESIGN 4.1), and a block's features are cheap to
recompute from its rows of ``X``, so this trainer never holds more than one
block of them: memory ``O(block * P + N k)``, one forward pass of the network
over ``X`` per epoch.  The weights, their optimizer state and the step are
those of :class:`._primal.PrimalTrainer` (:func:`._primal.readout_step`),
so the two give the same model to rounding.

:class:`FeatureMap` is the network's features as two products per block of
rows, ``Psi_b @ w`` and ``Psi_b^T @ L``: for ``kernel="nngp"`` through the
block's ``width + 1`` features; for ``kernel="ntk"`` through the forward and
backward signals, so that the much wider Jacobian (one column per parameter)
is never formed, not even for one block.  :func:`gradient_pass` is one pass
over a batch's rows: loss, ``L`` and ``G``.  The Dask trainers
(:mod:`._distributed`) run the same pass on each chunk of rows.  NumPy and
Numba only.
"""

import numpy as np

from . import _backend
from ._batch import _BatchTrainer, _weighted_sum
from ._losses import _LOSS_CODE, _float_dtype, _loss_rows
from ._primal import readout_step
from ._spectral import top_eigenvalue
from ._random_network import (
    RandomNetwork,
    _activate_in_place,
    _as_data,
    _data_dtype,
    _forward,
    n_feature_columns,
)

# MiB of one block's features and temporaries.  `python
# benchmarks/bench_streamed.py --blocks` (N = 10^5, width 1024, float32, 2
# shared cores at load 4-5): 16 and 32 MiB within 2% of each other and the
# fastest; 1-8 MiB 18-66% slower, 64 MiB 29% slower (RESULTS.md).
BLOCK_MIB = 16


class FeatureMap:
    """A random network's features ``Psi`` as products over blocks of rows.

    ``Psi`` is :func:`._random_network.network_features` of the same
    arguments; only the products with it are computed, and equal those with
    the stored features to rounding.

    Parameters
    ----------
    network : RandomNetwork
    kernel : {"nngp", "ntk"}
    activation : {"relu", "erf"}
    weight_variance, bias_variance : float

    Notes
    -----
    ``"nngp"``: ``Psi = [s x_L, sqrt(sb2)]`` with ``s = sqrt(sw2 / width)``.
    A block keeps only ``x_L``, computed with the layer scales folded into
    the weights (one product, a bias and the activation per layer, each
    pass in cache for a block of a few MiB); ``s`` and the bias column enter
    the ``(n_b, k)`` and ``(P, k)`` products instead.  ``"ntk"``: the
    Jacobian products are assembled layer by layer from the forward inputs
    and backward signals of :func:`._random_network._forward`; column
    ``(i, j)`` of a layer's weights is ``input_i * delta_j``.
    """

    def __init__(self, network, kernel="ntk", activation="relu", weight_variance=2.0,
                 bias_variance=0.0):
        if not isinstance(network, RandomNetwork):
            raise TypeError("network must be a RandomNetwork.")
        self.network = network
        self.kernel = kernel
        self.activation = activation
        self.weight_variance = weight_variance
        self.bias_variance = bias_variance
        self.n_columns = n_feature_columns(network.n_features, width=network.width,
                                           depth=network.depth, kernel=kernel)
        self._layers = {}  # dtype -> [(scaled weight, scaled bias)] (nngp)

    def __getstate__(self):  # shipped to Dask workers without the dtype cache
        state = dict(self.__dict__)
        state["_layers"] = {}
        return state

    def block_rows(self, n_outputs, dtype, working_memory=BLOCK_MIB):
        """Rows per block so that one block's arrays fit in ``working_memory`` MiB."""
        width, depth = self.network.width, self.network.depth
        if self.kernel == "nngp":
            # a layer's output (and, below the first, its input)
            per_row = (1 if depth == 1 else 2) * width + 1
        else:
            # inputs, deltas and derivatives of every layer, and the
            # (width x k) products of one layer at a time
            per_row = (3 * depth + 1) * width + 2 * width * n_outputs
        return _backend.block_rows(per_row, dtype, working_memory)

    def _scaled_layers(self, dtype):
        layers = self._layers.get(dtype)
        if layers is None:
            net = self.network
            bias_scale = np.sqrt(self.bias_variance)
            layers = []
            for weight, bias in zip(net.hidden_weights, net.hidden_biases):
                scale = np.sqrt(self.weight_variance / weight.shape[0])
                layers.append((np.ascontiguousarray(scale * weight, dtype=dtype),
                               (bias_scale * bias).astype(dtype)))
            self._layers[dtype] = layers
        return layers

    def rows(self, X):
        """What the products over these rows need (``x_L``, or forward signals)."""
        X = _as_data(X, self.network, _data_dtype(X))
        if self.kernel == "nngp":
            x = X
            for weight, bias in self._scaled_layers(X.dtype):
                h = x @ weight
                h += bias
                x = _activate_in_place(self.activation, h)
            return x
        return _forward(self.network, X, activation=self.activation,
                        weight_variance=self.weight_variance,
                        bias_variance=self.bias_variance, backward=True)

    def _scales(self, dtype):
        """``s = sqrt(sw2 / width)`` and the bias column's value, in ``dtype``."""
        hidden = np.sqrt(self.weight_variance / self.network.width)
        return dtype.type(hidden), dtype.type(np.sqrt(self.bias_variance))

    def times(self, rows, coef):
        """``Psi_b @ coef`` for the rows of :meth:`rows`; shape ``(n_b, k)``."""
        hidden, bias = self._scales(coef.dtype)
        if self.kernel == "nngp":
            F = rows @ coef[:-1]
            F *= hidden
            F += bias * coef[-1]
            return F
        inputs, deltas = rows
        n, k = inputs[0].shape[0], coef.shape[1]
        F = np.zeros((n, k), dtype=coef.dtype)
        start = 0
        for x, delta in zip(inputs[:-1], deltas):
            fan_in, width = x.shape[1], delta.shape[1]
            stop = start + fan_in * width
            H = x @ coef[start:stop].reshape(fan_in, width * k)
            F += np.einsum("njc,nj->nc", H.reshape(n, width, k), delta)
            F += bias * (delta @ coef[stop:stop + width])
            start = stop + width
        width = inputs[-1].shape[1]
        F += inputs[-1] @ coef[start:start + width]
        F += bias * coef[start + width]
        return F

    def transpose_times(self, rows, L):
        """``Psi_b^T @ L`` for the rows of :meth:`rows`; shape ``(P, k)``."""
        hidden, bias = self._scales(L.dtype)
        G = np.empty((self.n_columns, L.shape[1]), dtype=L.dtype)
        if self.kernel == "nngp":
            np.matmul(rows.T, L, out=G[:-1])
            G[:-1] *= hidden
            G[-1] = bias * L.sum(axis=0)
            return G
        inputs, deltas = rows
        n, k = L.shape
        start = 0
        for x, delta in zip(inputs[:-1], deltas):
            fan_in, width = x.shape[1], delta.shape[1]
            stop = start + fan_in * width
            weighted = (delta[:, :, None] * L[:, None, :]).reshape(n, width * k)
            G[start:stop] = (x.T @ weighted).reshape(fan_in * width, k)
            G[stop:stop + width] = bias * (delta.T @ L)
            start = stop + width
        width = inputs[-1].shape[1]
        G[start:start + width] = inputs[-1].T @ L
        G[start + width] = bias * L.sum(axis=0)
        return G


def gradient_pass(features, X, Y, weight, weight_total, coef, loss, rows=None,
                  block_rows=None):
    """One pass over a batch: its loss and ``G = Psi_B^T L``, block by block.

    Parameters
    ----------
    features : FeatureMap
    X : ndarray of shape (n, n_features)
    Y : ndarray of shape (n, k)
    weight : ndarray of shape (n,)
    weight_total : float
        The weight sum the batch's mean loss divides by: the batch's own, or
        the whole training set's when ``X`` is one chunk of it.
    coef : ndarray of shape (P, k)
    loss : {"squared", "logistic", "softmax"}
    rows : ndarray of int or None
        The batch's rows of ``X`` (``None``: every row, in order).
    block_rows : int or None
        Rows whose features are held at once (default:
        :meth:`FeatureMap.block_rows`).

    Returns
    -------
    loss_sum : float
        Sample-weighted sum of the batch's row losses.
    G : ndarray of shape (P, k)
        ``Psi_B^T L`` with ``L = weight * l'(F, Y) / weight_total``.
    """
    n = X.shape[0] if rows is None else rows.shape[0]
    k = coef.shape[1]
    if block_rows is None:
        block_rows = features.block_rows(k, coef.dtype)
    loss_code = _LOSS_CODE[loss]
    G = np.zeros((features.n_columns, k), dtype=coef.dtype)
    loss_sum = 0.0
    for start in range(0, n, block_rows):
        block = slice(start, min(start + block_rows, n))
        if rows is not None:
            block = rows[block]
        weight_b = weight[block]
        rows_b = features.rows(X[block])
        F = features.times(rows_b, coef)
        if weight_total > 0:
            scale = weight_b / weight.dtype.type(weight_total)
        else:  # a batch whose weights are all zero carries no gradient
            scale = np.zeros_like(weight_b)
        loss_rows = np.empty(F.shape[0], dtype=F.dtype)
        L = np.empty_like(F)
        _loss_rows(F, np.ascontiguousarray(Y[block]), loss_code, scale, loss_rows, L)
        loss_sum += _weighted_sum(weight_b, loss_rows)
        G += features.transpose_times(rows_b, L)
        rows_b = None  # freed before the next block is computed
    return loss_sum, G


def covariance_times(features, X, weight, v, block_rows=None):
    """``Psi^T (weight * (Psi @ v))`` for a vector ``v``, block by block."""
    v = v.reshape(-1, 1)
    if block_rows is None:
        block_rows = features.block_rows(1, v.dtype)
    out = np.zeros_like(v)
    for start in range(0, X.shape[0], block_rows):
        block = slice(start, start + block_rows)
        rows_b = features.rows(X[block])
        Fv = features.times(rows_b, v)
        Fv *= weight[block, None]
        out += features.transpose_times(rows_b, Fv)
    return out.ravel()


def streamed_outputs(features, X, coef, block_rows=None):
    """``Psi(X) @ coef``, the features of one block of rows at a time."""
    if block_rows is None:
        block_rows = features.block_rows(coef.shape[1], coef.dtype)
    out = np.empty((X.shape[0], coef.shape[1]), dtype=coef.dtype)
    for start in range(0, X.shape[0], block_rows):
        block = slice(start, start + block_rows)
        out[block] = features.times(features.rows(X[block]), coef)
    return out


class StreamedOperator:
    """Rows whose outputs are ``Psi(X) @ coef``, computed block by block.

    Stands for the held-out rows' features in early stopping, where storing
    them would defeat streaming.
    """

    def __init__(self, features, X):
        self.features = features
        self.X = X

    def __matmul__(self, coef):
        return streamed_outputs(self.features, self.X, coef)


class StreamedTrainer(_BatchTrainer):
    """Any optimizer on readout weights ``w`` of features recomputed every epoch.

    The model and the steps of :class:`._primal.PrimalTrainer` on
    ``Psi = features(X)``, without storing ``Psi``: each step recomputes the
    features of its batch from ``X``, ``block_rows`` rows at a time.

    Parameters
    ----------
    X : ndarray of shape (N, n_features)
        Training rows (float32 gives float32 features and weights).
    features : FeatureMap
    Y : ndarray of shape (N, k) or (N,)
    settings : OptimizerSettings
    loss : {"squared", "logistic", "softmax"}
    sample_weight : ndarray of shape (N,), default=None
    coef : ndarray of shape (P, k), default=None
        Weights to start from; ``None`` means zeros.
    state : OptimizerState, default=None
        Primal-form state.
    block_rows : int, default=None
        Rows whose features are held at once (default: ``BLOCK_MIB`` MiB).

    Notes
    -----
    A full-batch step is one pass over ``X``: for each block, the forward
    pass, ``F_b = Psi_b w``, the loss rows and ``G += Psi_b^T L_b``; then one
    step of the weights.  Memory: one block of features, the ``(P, k)``
    weights, state and gradient, and ``O(N k)`` targets.  Mini-batch steps
    recompute the features of each batch, in blocks when the batch is large.
    """

    def __init__(self, X, features, Y, settings, loss, sample_weight=None, coef=None,
                 state=None, block_rows=None):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array, got shape {X.shape}.")
        if not isinstance(features, FeatureMap):
            raise TypeError("features must be a FeatureMap.")
        self._X = np.ascontiguousarray(X, dtype=_float_dtype(X))
        self._features = features
        self._setup(self._X, features.n_columns, Y, settings, loss, sample_weight,
                    coef, state)
        self._weight_sum = float(self._weight.sum())
        if block_rows is None:
            block_rows = features.block_rows(self._Y.shape[1], self._X.dtype)
        self._block_rows = int(block_rows)

    def train_predictions(self):
        """Current outputs ``F = Psi w`` on the training rows, shape (N, k)."""
        return streamed_outputs(self._features, self._X, self._coef, self._block_rows)

    def curvature(self):
        """``lambda_max(Psi^T W Psi) / sum(w)``, one pass over ``X`` per iteration."""
        lam = top_eigenvalue(
            lambda v: covariance_times(self._features, self._X, self._weight, v,
                                       self._block_rows),
            self._features.n_columns, self._X.dtype)
        return lam / self._weight_sum

    def _pass(self, rows, weight_total):
        return gradient_pass(self._features, self._X, self._Y, self._weight,
                             weight_total, self._coef, self._loss, rows=rows,
                             block_rows=self._block_rows)

    def _step(self, G):
        self._t += 1
        return readout_step(self._settings, self._coef, self._moment, self._second, G,
                            self._t)

    def _full_batch_step(self):
        loss_sum, G = self._pass(None, self._weight_sum)
        if not np.isfinite(loss_sum):
            return loss_sum, self._weight_sum, True
        return loss_sum, self._weight_sum, self._step(G) > 0

    def _minibatch_epoch(self, order, offsets):
        loss_total = weight_total = 0.0
        for b in range(offsets.shape[0] - 1):
            rows = order[offsets[b]:offsets[b + 1]]
            batch_weight = _weighted_sum(self._weight[rows], np.ones(rows.shape[0]))
            batch_loss, G = self._pass(rows, batch_weight)
            loss_total += batch_loss
            weight_total += batch_weight
            if not np.isfinite(batch_loss) or self._step(G) > 0:
                return loss_total, weight_total, True
        return loss_total, weight_total, False
