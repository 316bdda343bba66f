"""Network and arc-cosine kernels as validated public functions.

Thin adapters: validate parameters and arrays the scikit-learn way, choose the
block size and thread count, and hand over to the compiled core in
:mod:`sklearn_adamntk._kernels`.
"""

from numbers import Integral, Real

import numpy as np
from sklearn import get_config
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from . import _backend
from ._kernels import (
    HYPERPARAMETERS,
    arccos_matrix,
    kernel_diag,
    kernel_matrix,
    kernel_matrix_with_gradient,
)
from ._magnitude import arccos_scale_error, kernel_scale_error

_ARRAYS = {
    # Sparse input is let through parameter validation so that check_array
    # can say plainly that it is not supported.
    "X": ["array-like", "sparse matrix"],
    "Y": ["array-like", "sparse matrix", None],
}
_NETWORK = {
    "kernel": [StrOptions({"nngp", "ntk"})],
    "activation": [StrOptions({"relu", "erf"})],
    "depth": [Interval(Integral, 1, None, closed="left")],
    "weight_variance": [Interval(Real, 0, None, closed="neither")],
    "bias_variance": [Interval(Real, 0, None, closed="left")],
}
_RUNTIME = {
    "working_memory": [Interval(Real, 0, None, closed="neither"), None],
    "n_jobs": [Integral, None],
}


def _check_arrays(X, Y):
    """Dense, finite, 2-D, C-ordered float arrays of one dtype.

    float32 only when every input is float32, float64 otherwise.
    """
    options = dict(accept_sparse=False, dtype=[np.float64, np.float32], order="C",
                   ensure_all_finite=True, ensure_2d=True, ensure_min_samples=1)
    X = check_array(X, input_name="X", **options)
    if Y is None:
        return X, None
    Y = check_array(Y, input_name="Y", **options)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} features but Y has {Y.shape[1]} features; "
            "both must have the same number of features."
        )
    if X.dtype != Y.dtype:
        X = X.astype(np.float64)
        Y = Y.astype(np.float64)
    return X, Y


def _check_scale(function, X, Y, **params):
    """A clear error, before any work, where the kernel would overflow."""
    for rows, name in ((X, "X"), (Y, "Y")):
        if rows is None:
            continue
        if "degree" in params:
            message = arccos_scale_error(rows, params["degree"], name)
        else:
            message = kernel_scale_error(
                rows, params, training=False, what=name,
                advice="Standardise the rows (e.g. StandardScaler) or lower "
                "weight_variance.")
        if message:
            raise ValueError(f"{function}: {message}")


def _gram_setup(X, Y, working_memory, n_gradients=None):
    """Check the output fits in memory; rows per block for the core.

    With ``n_gradients``, the output is the matrix and that many derivatives.
    """
    n_y = X.shape[0] if Y is None else Y.shape[0]
    what = f"the {X.shape[0]} x {n_y} kernel matrix"
    n_matrices = 1
    if n_gradients is not None:
        what += f" and its gradient ({n_gradients} more matrices)"
        n_matrices += n_gradients
    _backend.check_allocation(
        n_matrices * X.shape[0] * n_y * X.dtype.itemsize, what,
        "pass fewer samples, or float32 input to halve it",
    )
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    return _backend.block_rows(n_y, X.dtype, working_memory)


@validate_params({**_ARRAYS, **_NETWORK, **_RUNTIME,
                  "device": [StrOptions(set(_backend.DEVICES))]},
                 prefer_skip_nested_validation=True)
def network_kernel(X, Y=None, *, kernel="ntk", activation="relu", depth=1,
                   weight_variance=2.0, bias_variance=0.0, working_memory=None,
                   n_jobs=None, device="cpu"):
    """NTK or NNGP of an infinitely wide fully connected network.

    The network has ``depth`` hidden layers of activation ``activation``, NTK
    parameterisation, weight variance ``weight_variance`` and bias variance
    ``bias_variance`` (the conventions of neural-tangents'
    ``stax.Dense(W_std, b_std, parameterization="ntk")``, with
    ``W_std**2 = weight_variance``).  With ``Sigma^1(x, y) = sw2 <x, y> / d + sb2``:

    - ``kernel="nngp"``: ``Sigma^{depth+1}``, the kernel of a network whose
      body is frozen and only the readout trains;
    - ``kernel="ntk"``: ``Theta^{depth+1}``, the neural tangent kernel (every
      layer trains).

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        Dense input; sparse matrices are not supported.
    Y : array-like of shape (n_samples_Y, n_features), default=None
        ``None`` computes ``K(X, X)``, exactly symmetric, at about half the
        cost.
    kernel : {"ntk", "nngp"}, default="ntk"
        Tangent kernel of the whole network, or the readout-only kernel.
    activation : {"relu", "erf"}, default="relu"
        Hidden-layer nonlinearity.
    depth : int, default=1
        Number of hidden layers, at least 1.
    weight_variance : float, default=2.0
        Variance of the weights (``sw2 > 0``); 2 keeps ReLU activations at
        constant scale through the layers.
    bias_variance : float, default=0.0
        Variance of the biases (``sb2 >= 0``).
    working_memory : float, default=None
        MiB to aim for per block of rows; ``None`` uses scikit-learn's
        ``working_memory`` setting.
    n_jobs : int, default=None
        Threads for the elementwise pass and the matrix product.  ``None``
        and -1 use all available, -2 all but one.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        ``"cuda"``: computed on an NVIDIA GPU in row blocks that fit its
        memory (an error when there is none); ``"auto"``: the GPU when
        there is one.  The result agrees with the CPU's to rounding and is
        returned as a NumPy array either way.

    Returns
    -------
    K : ndarray of shape (n_samples_X, n_samples_Y)
        The kernel matrix: float32 when every input is float32, float64
        otherwise.

    See Also
    --------
    network_kernel_diag : The diagonal alone, in O(n_samples).
    arccos_kernel : The arc-cosine kernels behind the ReLU recursion.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_adamntk import network_kernel
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> network_kernel(X, kernel="nngp", depth=1).round(4)
    array([[1.    , 0.3183],
           [0.3183, 1.    ]])
    """
    X, Y = _check_arrays(X, Y)
    _check_scale("network_kernel", X, Y, kernel=kernel, activation=activation,
                 depth=depth, weight_variance=weight_variance,
                 bias_variance=bias_variance)
    device = _backend.resolve_device(device)
    block_rows = _gram_setup(X, Y, working_memory)
    if device == "cuda":
        return _backend.gpu_kernel_matrix(X, Y, kernel=kernel, activation=activation,
                                          depth=depth, weight_variance=weight_variance,
                                          bias_variance=bias_variance)
    with _backend.numba_threads(n_jobs):
        return kernel_matrix(X, Y, kernel=kernel, activation=activation, depth=depth,
                             weight_variance=weight_variance,
                             bias_variance=bias_variance, block_rows=block_rows)


@validate_params({"X": _ARRAYS["X"], **_NETWORK, "n_jobs": _RUNTIME["n_jobs"]},
                 prefer_skip_nested_validation=True)
def network_kernel_diag(X, *, kernel="ntk", activation="relu", depth=1,
                        weight_variance=2.0, bias_variance=0.0, n_jobs=None):
    """Diagonal ``K(x, x)`` of :func:`network_kernel`, in O(n_samples * depth).

    Equal, bit for bit, to ``np.diag(network_kernel(X, ...))``: both take the
    closed forms at an angle of zero.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Dense input; sparse matrices are not supported.
    kernel : {"ntk", "nngp"}, default="ntk"
        Tangent kernel of the whole network, or the readout-only kernel.
    activation : {"relu", "erf"}, default="relu"
        Hidden-layer nonlinearity.
    depth : int, default=1
        Number of hidden layers, at least 1.
    weight_variance : float, default=2.0
        Variance of the weights (``sw2 > 0``).
    bias_variance : float, default=0.0
        Variance of the biases (``sb2 >= 0``).
    n_jobs : int, default=None
        Accepted for symmetry with :func:`network_kernel`; the diagonal is
        cheap and computed on one thread.

    Returns
    -------
    diag : ndarray of shape (n_samples,)
        The diagonal: float32 for float32 input, float64 otherwise.

    See Also
    --------
    network_kernel : The whole matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_adamntk import network_kernel, network_kernel_diag
    >>> X = np.array([[1.0, 0.0], [0.0, 2.0]])
    >>> network_kernel_diag(X, kernel="nngp")
    array([1., 4.])
    >>> bool(np.all(network_kernel_diag(X) == np.diag(network_kernel(X))))
    True
    """
    X, _ = _check_arrays(X, None)
    _check_scale("network_kernel_diag", X, None, kernel=kernel, activation=activation,
                 depth=depth, weight_variance=weight_variance,
                 bias_variance=bias_variance)
    with _backend.numba_threads(n_jobs):
        return kernel_diag(X, kernel=kernel, activation=activation, depth=depth,
                           weight_variance=weight_variance, bias_variance=bias_variance)


@validate_params({**_ARRAYS, "degree": [Interval(Integral, 0, 2, closed="both")],
                  **_RUNTIME},
                 prefer_skip_nested_validation=True)
def arccos_kernel(X, Y=None, *, degree=1, working_memory=None, n_jobs=None):
    """Arc-cosine kernel of Cho & Saul (2009), degrees 0, 1 and 2.

    ``k_n(x, y) = |x|^n |y|^n J_n(theta) / pi`` with ``theta`` the angle
    between ``x`` and ``y`` and ``J_0 = pi - theta``,
    ``J_1 = sin(theta) + (pi - theta) cos(theta)``,
    ``J_2 = 3 sin(theta) cos(theta) + (pi - theta)(1 + 2 cos(theta)^2)``.
    It is ``2 E[step(w.x) step(w.y)]``, ``2 E[relu(w.x) relu(w.y)]`` and
    ``2 E[relu(w.x)^2 relu(w.y)^2]`` for standard normal ``w``.  Where a row
    is zero the angle is taken as 0.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
        Dense input; sparse matrices are not supported.
    Y : array-like of shape (n_samples_Y, n_features), default=None
        ``None`` computes ``K(X, X)``.
    degree : {0, 1, 2}, default=1
        Degree ``n`` of the kernel.
    working_memory : float, default=None
        MiB to aim for per block of rows; ``None`` uses scikit-learn's
        ``working_memory`` setting.
    n_jobs : int, default=None
        Threads for the elementwise pass and the matrix product.  ``None``
        and -1 use all available, -2 all but one.

    Returns
    -------
    K : ndarray of shape (n_samples_X, n_samples_Y)
        The kernel matrix: float32 when every input is float32, float64
        otherwise.

    See Also
    --------
    network_kernel : The ReLU network kernels, built from these.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_adamntk import arccos_kernel
    >>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> arccos_kernel(X, degree=0)
    array([[1. , 0.5],
           [0.5, 1. ]])
    >>> arccos_kernel(X, degree=1).round(4)
    array([[1.    , 0.3183],
           [0.3183, 1.    ]])
    """
    X, Y = _check_arrays(X, Y)
    _check_scale("arccos_kernel", X, Y, degree=int(degree))
    block_rows = _gram_setup(X, Y, working_memory)
    with _backend.numba_threads(n_jobs):
        return arccos_matrix(X, Y, degree=int(degree), block_rows=block_rows)


def _network_kernel_with_gradient(X, *, kernel, activation, depth, weight_variance,
                                  bias_variance, wrt=HYPERPARAMETERS,
                                  working_memory=None, n_jobs=None):
    """``K(X, X)`` and its log-derivatives with respect to the variances in ``wrt``.

    For :class:`~sklearn_adamntk.NetworkKernel`, which validates the
    parameters itself; see
    :func:`sklearn_adamntk._kernels.kernel_matrix_with_gradient`.

    Returns
    -------
    K : ndarray of shape (n_samples, n_samples)
    K_gradient : ndarray of shape (n_samples, n_samples, len(wrt))
    """
    X, _ = _check_arrays(X, None)
    _check_scale("NetworkKernel", X, None, kernel=kernel, activation=activation,
                 depth=depth, weight_variance=weight_variance,
                 bias_variance=bias_variance)
    block_rows = _gram_setup(X, None, working_memory, n_gradients=len(wrt))
    with _backend.numba_threads(n_jobs):
        return kernel_matrix_with_gradient(
            X, kernel=kernel, activation=activation, depth=depth,
            weight_variance=weight_variance, bias_variance=bias_variance, wrt=wrt,
            block_rows=block_rows)
