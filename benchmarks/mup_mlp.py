"""A one-hidden-layer ReLU network in the maximal-update parametrisation, with Adam.

The width experiment's feature-learning reference that survives infinite
width. In the standard parametrisation (scikit-learn's ``MLPRegressor``) an
Adam step changes the output by an amount that grows with the width, so the
best learning rate shrinks like ``1/width`` and the infinite-width limit of a
fixed rate does not exist; in the NTK parametrisation the hidden layer stops
moving as the width grows (a kernel machine). The maximal-update
parametrisation (muP; Yang & Hu 2021, "Tensor Programs IV", and the Adam
column of Table 3 in "Tensor Programs V", Yang et al. 2022) keeps every
layer's update of order one at every width, so the hidden features still
learn in the limit and the best learning rate carries over from width to
width.

The scaling rules, for width ``n``, base width ``n_0 = 64`` (``BASE_WIDTH``),
input dimension ``d``, learning rate ``eta``; the network is
``f(x) = (n_0 / n) * relu(x W1 + b1) V + b2``:

================  ===================  ==================  ==========
parameter         initialisation       forward multiplier  Adam rate
================  ===================  ==================  ==========
``W1`` (d x n)    N(0, 2 / d)          1                   eta
``b1`` (n)        N(0, 1)              1                   eta
``V`` (n x k)     N(0, 1 / n_0)        n_0 / n             eta
``b2`` (k)        0                    1                   eta
================  ===================  ==================  ==========

Without the multiplier this is the same network with readout
``W2 = (n_0 / n) V``: initial variance ``n_0 / n^2`` (proportional to
``1 / fan_in^2``) and Adam rate ``eta * n_0 / n`` (proportional to
``1 / fan_in``), while the input layer and the biases keep a width-free
variance and rate: Tensor Programs V's muP for Adam. The two forms train
identically up to Adam's ``epsilon`` (Adam's step is unchanged when a
gradient is multiplied by a constant; ``V``'s gradient is ``n_0 / n`` times
``W2``'s). At ``n = n_0`` every multiplier is 1 and the network is an
ordinary MLP trained with Adam at rate ``eta`` in every layer. The hidden
layer starts as the frozen random layer of the package's ``kernel="nngp",
depth=1`` model (weight variance 2, bias variance 1), and the output starts
near zero (exactly zero in the limit), as the kernel models' readout does.

Training is full-batch Adam in scikit-learn's form (``MLPRegressor``'s
``AdamOptimizer``: bias correction folded into the step size) on the mean
squared loss ``mean(|f - y|^2) / 2`` or the mean softmax cross-entropy, with
no weight penalty.
"""

import numpy as np

BASE_WIDTH = 64
LOSSES = ("squared", "softmax")


def init_params(n_features, width, n_outputs, rng, dtype=np.float64):
    """Initial ``{"W1", "b1", "V", "b2"}`` (the table in the module docstring)."""
    return {
        "W1": (rng.standard_normal((n_features, width)) * np.sqrt(2.0 / n_features)
               ).astype(dtype),
        "b1": rng.standard_normal(width).astype(dtype),
        "V": (rng.standard_normal((width, n_outputs)) / np.sqrt(BASE_WIDTH)
              ).astype(dtype),
        "b2": np.zeros(n_outputs, dtype=dtype),
    }


def output_multiplier(width):
    """The readout's forward multiplier ``n_0 / n``."""
    return BASE_WIDTH / width


def forward(params, X):
    """Network outputs ``(n_samples, k)`` and hidden activities ``relu(X W1 + b1)``."""
    activity = X @ params["W1"]
    activity += params["b1"]
    np.maximum(activity, 0, out=activity)
    outputs = output_multiplier(activity.shape[1]) * (activity @ params["V"])
    return outputs + params["b2"], activity


def loss_and_output_gradient(outputs, Y, loss):
    """Mean loss and its gradient with respect to the outputs.

    ``Y``: targets ``(n_samples, k)`` for the squared loss, one-hot rows for
    the softmax cross-entropy.
    """
    n_samples = outputs.shape[0]
    if loss == "squared":
        residual = outputs - Y
        return 0.5 * float(np.mean(np.sum(residual**2, axis=1))), residual / n_samples
    shifted = outputs - outputs.max(axis=1, keepdims=True)
    log_proba = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    value = -float(np.mean(np.sum(Y * log_proba, axis=1)))
    return value, (np.exp(log_proba) - Y) / n_samples


def loss_and_gradients(params, X, Y, loss):
    """Mean training loss and its gradient with respect to every parameter."""
    outputs, activity = forward(params, X)
    value, d_outputs = loss_and_output_gradient(outputs, Y, loss)
    multiplier = output_multiplier(activity.shape[1])
    # In place: these are the (n_samples, width) arrays that set the cost.
    d_hidden = d_outputs @ (multiplier * params["V"].T)
    np.multiply(d_hidden, activity > 0, out=d_hidden)
    gradients = {
        "W1": X.T @ d_hidden,
        "b1": d_hidden.sum(axis=0),
        "V": multiplier * (activity.T @ d_outputs),
        "b2": d_outputs.sum(axis=0),
    }
    return value, gradients


class Adam:
    """Full-batch Adam in scikit-learn's form, one rate for every parameter."""

    def __init__(self, params, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
        self.learning_rate = learning_rate
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon
        self.t = 0
        self.m = {name: np.zeros_like(value) for name, value in params.items()}
        self.v = {name: np.zeros_like(value) for name, value in params.items()}

    def step(self, params, gradients):
        """Update ``params`` in place."""
        self.t += 1
        step_size = (self.learning_rate * np.sqrt(1 - self.beta_2**self.t)
                     / (1 - self.beta_1**self.t))
        for name, gradient in gradients.items():
            self.m[name] = self.beta_1 * self.m[name] + (1 - self.beta_1) * gradient
            self.v[name] = self.beta_2 * self.v[name] + (1 - self.beta_2) * gradient**2
            params[name] -= (step_size * self.m[name]
                             / (np.sqrt(self.v[name]) + self.epsilon)).astype(
                                 params[name].dtype)


class MuPNetwork:
    """A muP network and its Adam state: ``start``, then ``step`` once per epoch.

    Parameters
    ----------
    width : int
    learning_rate : float
        The base rate ``eta`` (the same at every width; see the module docstring).
    loss : {"squared", "softmax"}
    random_state : int
    dtype : numpy dtype, default=float32
    """

    def __init__(self, width, learning_rate, loss="squared", random_state=0,
                 dtype=np.float32):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.width = width
        self.learning_rate = learning_rate
        self.loss = loss
        self.random_state = random_state
        self.dtype = dtype

    def start(self, X, Y):
        """Draw the network for inputs ``X`` and targets ``Y`` ``(n_samples, k)``."""
        rng = np.random.default_rng(self.random_state)
        self.params_ = init_params(X.shape[1], self.width, Y.shape[1], rng, self.dtype)
        self.optimizer_ = Adam(self.params_, self.learning_rate)
        return self

    def step(self, X, Y):
        """One full-batch Adam step; returns the training loss before it."""
        X = np.asarray(X, dtype=self.dtype)
        Y = np.asarray(Y, dtype=self.dtype)
        value, gradients = loss_and_gradients(self.params_, X, Y, self.loss)
        if not np.isfinite(value):
            raise FloatingPointError("the muP network's loss is not finite")
        self.optimizer_.step(self.params_, gradients)
        return value

    def fit(self, X, Y, epochs):
        """``start``, then ``epochs`` steps."""
        self.start(X, Y)
        for _ in range(epochs):
            self.step(X, Y)
        return self

    def outputs(self, X):
        """Network outputs ``(n_samples, k)`` (logits for the softmax loss)."""
        return forward(self.params_, np.asarray(X, dtype=self.dtype))[0]
