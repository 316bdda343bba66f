"""Seeded finite-width fully connected networks: features and empirical kernels.

A network with ``depth`` hidden layers of ``width`` units each, in the NTK
parameterisation (DESIGN 4), with every weight and bias standard normal::

    h_1     = sqrt(sw2 / d) X W_1 + sqrt(sb2) b_1          W_1: (d, width)
    x_l     = phi(h_l)
    h_{l+1} = sqrt(sw2 / width) x_l W_{l+1} + sqrt(sb2) b_{l+1}
    f       = sqrt(sw2 / width) x_L w_out + sqrt(sb2) b_out

Two feature maps ``Psi`` are offered, each with ``Psi Psi^T`` the empirical
kernel that converges to the analytic one as the width grows:

- ``"nngp"``: the readout's inputs ``[sqrt(sw2 / width) x_L, sqrt(sb2)]``, the
  features of a frozen body with a trained readout (``width + 1`` columns);
- ``"ntk"``: the Jacobian of ``f`` with respect to every parameter, the
  features of the linearised network with every layer trained.

The columns of the ``"ntk"`` features follow the order in which the
parameters are drawn: layer by layer, the weight matrix (row-major, so the
column for ``W_l[i, j]`` comes before that for ``W_l[i, j + 1]``) and then
the bias; the readout weight and the readout bias last.

NumPy only: this module knows nothing of scikit-learn.
"""

import numbers
from dataclasses import dataclass

import numpy as np
from scipy.special import erf

KERNELS = ("nngp", "ntk")
ACTIVATIONS = ("relu", "erf")

_TWO_OVER_SQRT_PI = 2.0 / np.sqrt(np.pi)


# eq=False: comparing arrays field by field has no single truth value, so
# networks compare (and hash) by identity.
@dataclass(frozen=True, eq=False)
class RandomNetwork:
    """The parameters of one random network, drawn at initialisation.

    The arrays are float64 whatever the data; they are cast to the data's
    dtype when features are computed.

    Attributes
    ----------
    hidden_weights : list of ndarray
        ``W_1`` of shape ``(n_features, width)``, then ``depth - 1`` matrices of
        shape ``(width, width)``.
    hidden_biases : list of ndarray
        ``depth`` vectors of shape ``(width,)``.
    readout_weight : ndarray of shape (width,)
        ``w_out``.
    readout_bias : float
        ``b_out``.
    """

    hidden_weights: list
    hidden_biases: list
    readout_weight: np.ndarray
    readout_bias: float

    @property
    def n_features(self):
        """Input dimension ``d``."""
        return self.hidden_weights[0].shape[0]

    @property
    def width(self):
        """Number of units in each hidden layer."""
        return self.readout_weight.shape[0]

    @property
    def depth(self):
        """Number of hidden layers."""
        return len(self.hidden_weights)


def _as_random_state(random_state):
    """Turn ``None``, an int, a RandomState or a Generator into a sampler.

    Follows scikit-learn's ``check_random_state``: ``None`` is NumPy's global
    RandomState, an int seeds a new ``RandomState``.
    """
    if random_state is None:
        return np.random.mtrand._rand
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(
        random_state, bool
    ):
        return np.random.RandomState(random_state)
    raise ValueError(
        "random_state must be None, an int, a numpy RandomState or a numpy "
        f"Generator; got {random_state!r}."
    )


def _check_positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int; got {value!r}.")


def _check_kernel(kernel):
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}; got {kernel!r}.")


def _check_options(kernel, activation):
    _check_kernel(kernel)
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS}; got {activation!r}."
        )


def _check_variances(weight_variance, bias_variance):
    for name, value in (
        ("weight_variance", weight_variance),
        ("bias_variance", bias_variance),
    ):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")


def draw_network(n_features, *, width, depth, random_state=None):
    """Draw the parameters of a random fully connected network.

    Every parameter is standard normal; the variances enter only when features
    are computed, so one network serves every ``weight_variance`` and
    ``bias_variance``. The parameters are drawn from ``random_state`` in a
    fixed order, so that a seed always gives the same network: for each hidden
    layer ``l = 1 .. depth`` the weight matrix ``W_l`` (row-major) and then the
    bias ``b_l``; then the readout weight ``w_out`` and the readout bias
    ``b_out``.

    Parameters
    ----------
    n_features : int
        Input dimension ``d``.
    width : int
        Units per hidden layer.
    depth : int
        Number of hidden layers.
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Source of the draws; an int seeds a new ``RandomState`` (as
        scikit-learn's ``check_random_state`` does).

    Returns
    -------
    network : RandomNetwork
    """
    _check_positive_int(n_features, "n_features")
    _check_positive_int(width, "width")
    _check_positive_int(depth, "depth")
    rng = _as_random_state(random_state)

    hidden_weights, hidden_biases = [], []
    fan_in = n_features
    for _ in range(depth):
        hidden_weights.append(rng.standard_normal((fan_in, width)))
        hidden_biases.append(rng.standard_normal(width))
        fan_in = width
    readout_weight = rng.standard_normal(width)
    readout_bias = float(rng.standard_normal())
    return RandomNetwork(hidden_weights, hidden_biases, readout_weight, readout_bias)


def n_network_parameters(n_features, *, width, depth):
    """Number of parameters :func:`draw_network` draws (float64 each).

    ``d * width + width`` for the first layer, ``width**2 + width`` for each
    other hidden layer, and ``width + 1`` for the readout: what to check
    against the available memory before drawing.
    """
    first_layer = n_features * width + width
    other_layers = (depth - 1) * (width * width + width)
    return first_layer + other_layers + width + 1


def forward_bytes(n_rows, n_features, *, width, depth, kernel, itemsize,
                  features=False):
    """Peak bytes of the temporaries of a forward pass over ``n_rows`` rows.

    Besides the result (the features of :func:`network_features`, with
    ``features=True``, or the kernel of :func:`empirical_kernel`):
    ``"nngp"`` runs the layers forward with one layer's scaled input and
    output alive at a time, then scales the last output into the features
    (a copy, for the kernel); ``"ntk"`` keeps every layer's input,
    activation derivative and backpropagated signal.  float32 data also
    casts one weight matrix at a time to float32.
    """
    fan_in = max(n_features, width) if depth > 1 else n_features
    cast = fan_in * width * 4 if itemsize == 4 else 0
    if kernel == "nngp":
        layer = n_rows * (fan_in + width)  # a layer's scaled input and output
        last = 0 if features else 2 * n_rows * width  # the output, scaled: a copy
        return max(layer, last) * itemsize + cast
    kept = n_rows * (n_features + (3 * depth + 1) * width)
    return kept * itemsize + cast


def n_feature_columns(n_features, *, width, depth, kernel):
    """Number of columns of :func:`network_features`.

    Parameters
    ----------
    n_features : int
        Input dimension ``d``.
    width : int
        Units per hidden layer.
    depth : int
        Number of hidden layers.
    kernel : {"nngp", "ntk"}

    Returns
    -------
    n_columns : int
        ``width + 1`` for ``"nngp"``; for ``"ntk"`` the number of parameters,
        ``d * width + width + (depth - 1) * (width**2 + width) + width + 1``.
    """
    _check_kernel(kernel)
    if kernel == "nngp":
        return width + 1
    return n_network_parameters(n_features, width=width, depth=depth)


def _activation_and_derivative(activation, h):
    if activation == "relu":
        return np.maximum(h, 0), (h > 0).astype(h.dtype)
    return erf(h), (_TWO_OVER_SQRT_PI * np.exp(-h * h)).astype(h.dtype, copy=False)


def _activate_in_place(activation, h):
    if activation == "relu":
        return np.maximum(h, 0, out=h)
    return erf(h, out=h)


def _forward(network, X, activation, weight_variance, bias_variance, backward,
             readout_input=None):
    """Run the network on ``X``, keeping what the kernels need.

    Returns ``(inputs, deltas)``: ``inputs[l]`` is the input of Dense layer
    ``l`` already scaled as in the forward pass (``sqrt(sw2 / fan_in) x_l``;
    ``inputs[0]`` comes from ``X``, ``inputs[depth]`` feeds the readout), and
    ``deltas[l]`` is ``df / dh_{l+1}``, the signal backpropagated to hidden
    layer ``l + 1`` (empty unless ``backward``).

    Without ``backward`` only ``inputs[depth]`` is returned (as a list of
    one), computed with one ``N x width`` temporary per layer, and written
    into ``readout_input`` when given: the NNGP features of many rows cost
    little more than the features themselves.
    """
    dtype = X.dtype
    bias_scale = dtype.type(np.sqrt(bias_variance))
    hidden_scale = dtype.type(np.sqrt(weight_variance / network.width))
    inputs, derivatives = [], []
    x = X
    for weight, bias in zip(network.hidden_weights, network.hidden_biases):
        scaled = x * dtype.type(np.sqrt(weight_variance / x.shape[1]))
        x = h = None  # the previous layer's output (h is x) is no longer needed
        if backward:
            inputs.append(scaled)
        h = scaled @ weight.astype(dtype, copy=False)
        scaled = None
        h += bias_scale * bias.astype(dtype, copy=False)
        if backward:
            x, dphi = _activation_and_derivative(activation, h)
            derivatives.append(dphi)
        else:
            x = _activate_in_place(activation, h)
    inputs.append(np.multiply(hidden_scale, x, out=readout_input))

    deltas = []
    if backward:
        # df/dh_L = sqrt(sw2/n) w_out phi'(h_L), and
        # df/dh_l = phi'(h_l) * sqrt(sw2/n) (df/dh_{l+1}) W_{l+1}^T below it.
        readout = network.readout_weight.astype(dtype, copy=False)
        delta = derivatives[-1] * (hidden_scale * readout)
        deltas.append(delta)
        for layer in range(network.depth - 2, -1, -1):
            weight = network.hidden_weights[layer + 1].astype(dtype, copy=False)
            delta = derivatives[layer] * (hidden_scale * (delta @ weight.T))
            deltas.append(delta)
        deltas.reverse()
    return inputs, deltas


def _common_dtype(*arrays):
    if all(a.dtype == np.float32 for a in arrays):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _as_data(X, network, dtype):
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array; got {X.ndim} dimension(s).")
    if X.shape[1] != network.n_features:
        raise ValueError(
            f"X has {X.shape[1]} features, but the network was drawn for "
            f"{network.n_features} features."
        )
    return np.ascontiguousarray(X, dtype=dtype)


def _data_dtype(X):
    return _common_dtype(np.asarray(X))


def network_features(
    network,
    X,
    *,
    kernel="ntk",
    activation="relu",
    weight_variance=2.0,
    bias_variance=0.0,
):
    """Features ``Psi`` of a random network, with ``Psi Psi^T`` its empirical kernel.

    Parameters
    ----------
    network : RandomNetwork
        From :func:`draw_network`.
    X : array-like of shape (n_samples, n_features)
        float32 input gives float32 features; anything else is computed in
        float64.
    kernel : {"nngp", "ntk"}, default="ntk"
        ``"nngp"``: ``[sqrt(sw2 / width) x_L, sqrt(sb2)]``, the readout's
        inputs including its bias unit. ``"ntk"``: the Jacobian of the scalar
        output with respect to every parameter, in the order of the module
        docstring (layer by layer, weights row-major then bias, readout last).
    activation : {"relu", "erf"}, default="relu"
    weight_variance : float, default=2.0
        ``sw2``.
    bias_variance : float, default=0.0
        ``sb2``. The bias columns are kept (as zeros) when it is 0, so the
        column count does not depend on it.

    Returns
    -------
    Psi : ndarray of shape (n_samples, n_feature_columns)
        See :func:`n_feature_columns`.

    Notes
    -----
    The ``"ntk"`` features hold one column per parameter, ``O(n_samples *
    width**2 * depth)`` memory: they are meant for small networks and checks.
    :func:`empirical_kernel` gives their Gram matrix without forming them.
    """
    _check_options(kernel, activation)
    _check_variances(weight_variance, bias_variance)
    dtype = _data_dtype(X)
    X = _as_data(X, network, dtype)
    n_samples = X.shape[0]
    if kernel == "nngp":
        Psi = np.empty((n_samples, network.width + 1), dtype=dtype)
        _forward(network, X, activation, weight_variance, bias_variance,
                 backward=False, readout_input=Psi[:, :-1])
        Psi[:, -1] = np.sqrt(bias_variance)
        return Psi

    inputs, deltas = _forward(
        network, X, activation, weight_variance, bias_variance, backward=True
    )
    bias_column = np.full((n_samples, 1), np.sqrt(bias_variance), dtype=dtype)
    bias_scale = dtype.type(np.sqrt(bias_variance))
    blocks = []
    for scaled_input, delta in zip(inputs[:-1], deltas):
        # dh_j/dW[i, j] = scaled_input[i]: one outer product per sample, row-major.
        outer = scaled_input[:, :, None] * delta[:, None, :]
        blocks.append(outer.reshape(n_samples, -1))
        blocks.append(bias_scale * delta)
    blocks.append(inputs[-1])
    blocks.append(bias_column)
    return np.hstack(blocks)


def empirical_kernel(
    network,
    X,
    Y=None,
    *,
    kernel="ntk",
    activation="relu",
    weight_variance=2.0,
    bias_variance=0.0,
):
    """Empirical NNGP or NTK of a random network, without forming the Jacobian.

    Equal to ``network_features(network, X) @ network_features(network, Y).T``
    to rounding. The NTK is assembled layer by layer: for each Dense layer the
    Gram of its (scaled) inputs plus ``sb2`` is multiplied elementwise by the
    Gram of the signals backpropagated to its outputs (1 for the readout), so
    the cost is ``O(n_x n_y width depth)`` rather than the number of parameters.

    Parameters
    ----------
    network : RandomNetwork
        From :func:`draw_network`.
    X : array-like of shape (n_x, n_features)
    Y : array-like of shape (n_y, n_features), default=None
        ``None`` means ``Y = X``.
    kernel : {"nngp", "ntk"}, default="ntk"
    activation : {"relu", "erf"}, default="relu"
    weight_variance : float, default=2.0
    bias_variance : float, default=0.0

    Returns
    -------
    K : ndarray of shape (n_x, n_y)
        float32 if ``X`` (and ``Y``, if given) are float32, else float64.
    """
    _check_options(kernel, activation)
    _check_variances(weight_variance, bias_variance)
    dtype = _data_dtype(X) if Y is None else _common_dtype(np.asarray(X), np.asarray(Y))
    X = _as_data(X, network, dtype)
    backward = kernel == "ntk"
    inputs_x, deltas_x = _forward(
        network, X, activation, weight_variance, bias_variance, backward
    )
    if Y is None:
        inputs_y, deltas_y = inputs_x, deltas_x
    else:
        Y = _as_data(Y, network, dtype)
        inputs_y, deltas_y = _forward(
            network, Y, activation, weight_variance, bias_variance, backward
        )

    bias_variance = dtype.type(bias_variance)
    K = inputs_x[-1] @ inputs_y[-1].T
    K += bias_variance
    for in_x, in_y, delta_x, delta_y in zip(inputs_x, inputs_y, deltas_x, deltas_y):
        input_gram = in_x @ in_y.T
        input_gram += bias_variance
        input_gram *= delta_x @ delta_y.T
        K += input_gram
    return K
