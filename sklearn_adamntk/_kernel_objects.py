"""The network kernels as scikit-learn building blocks.

:class:`NetworkKernel` is the infinite-width NNGP / NTK as a
``sklearn.gaussian_process.kernels.Kernel``, so that ``KernelRidge``, ``SVR``
and ``GaussianProcessRegressor`` run on the same kernel as the ADAM*
estimators. :class:`RandomNetworkFeatures` is its finite-width counterpart in
the style of ``RBFSampler``: the features of one random network, whose inner
products converge to the NNGP as the width grows.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._pairwise import (
    _network_kernel_with_gradient,
    network_kernel,
    network_kernel_diag,
)
from ._random_network import draw_network, network_features

# Shared by both classes; Interval(..., None, closed="left") also excludes inf.
_ARCHITECTURE_CONSTRAINTS = {
    "activation": [StrOptions({"relu", "erf"})],
    "depth": [Interval(Integral, 1, None, closed="left")],
    "weight_variance": [Interval(Real, 0, None, closed="neither")],
    "bias_variance": [Interval(Real, 0, None, closed="left")],
}


class NetworkKernel(Kernel):
    """Infinite-width kernel of a fully connected network (NNGP or NTK).

    A kernel for :mod:`sklearn.gaussian_process` that can also be passed to
    ``KernelRidge(kernel=...)`` and ``SVR(kernel=...)``. Its defaults are those
    of :class:`AdamStarNTKRegressor`, so ``NetworkKernel()`` is the kernel that
    estimator trains on by default.

    ``weight_variance`` and ``bias_variance`` are hyper-parameters in
    scikit-learn's sense: ``theta`` holds their logarithms (bias first, the
    order of their names), so that ``GaussianProcessRegressor`` tunes them by
    maximising the log-marginal likelihood, as it tunes the length scale of
    ``RBF``. The gradient of the kernel with respect to ``theta`` is analytic:
    the layer recursion is differentiated in the same compiled pass that
    evaluates it. ``kernel``, ``activation`` and ``depth`` describe the
    architecture and are not tuned.

    Parameters
    ----------
    kernel : {"nngp", "ntk"}, default="nngp"
        ``"nngp"``: the Gaussian-process kernel of the output (readout only);
        ``"ntk"``: the neural tangent kernel (every layer trained).
    activation : {"relu", "erf"}, default="relu"
        Activation of the hidden layers.
    depth : int, default=1
        Number of hidden layers.
    weight_variance : float, default=2.0
        Variance ``sw2 > 0`` of the weights, NTK parameterisation.
    bias_variance : float, default=1.0
        Variance ``sb2 >= 0`` of the biases. ``0`` is a network without
        biases; its logarithm is ``-inf``, so it is then not a hyper-parameter
        to tune: it is left out of ``theta`` and of the gradient, as if
        ``bias_variance_bounds`` were ``"fixed"``. Start from a small positive
        value to have it tuned.
    weight_variance_bounds : pair of floats > 0 or "fixed", default=(1e-5, 1e5)
        Lower and upper bound on ``weight_variance`` while tuning; ``"fixed"``
        keeps it out of ``theta``.
    bias_variance_bounds : pair of floats > 0 or "fixed", default=(1e-5, 1e5)
        Lower and upper bound on ``bias_variance`` while tuning; ``"fixed"``
        keeps it out of ``theta``.

    See Also
    --------
    network_kernel : The same kernel as a function, with ``n_jobs`` and
        ``working_memory``.
    RandomNetworkFeatures : Finite-width random features of the NNGP.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.kernel_ridge import KernelRidge
    >>> X, y = make_friedman1(n_samples=50, random_state=0)
    >>> model = KernelRidge(kernel=NetworkKernel(depth=2), alpha=1e-3).fit(X, y)
    >>> model.predict(X[:2]).shape
    (2,)

    Tuning the variances by the marginal likelihood of a Gaussian process:

    >>> from sklearn.gaussian_process import GaussianProcessRegressor
    >>> from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
    >>> kernel = ConstantKernel() * NetworkKernel() + WhiteKernel()
    >>> gp = GaussianProcessRegressor(kernel).fit(X, y)
    >>> [h.name for h in gp.kernel_.hyperparameters]  # doctest: +NORMALIZE_WHITESPACE
    ['k1__k1__constant_value', 'k1__k2__bias_variance',
     'k1__k2__weight_variance', 'k2__noise_level']
    """

    _parameter_constraints = {
        "kernel": [StrOptions({"ntk", "nngp"})],
        **_ARCHITECTURE_CONSTRAINTS,
        "weight_variance": [Interval(Real, 0, None, closed="neither")],
        "weight_variance_bounds": [StrOptions({"fixed"}), "array-like"],
        "bias_variance_bounds": [StrOptions({"fixed"}), "array-like"],
    }
    _ARCHITECTURE = ("kernel", "activation", "depth", "weight_variance",
                     "bias_variance")
    _DEFAULT_BOUNDS = (1e-5, 1e5)

    def __init__(
        self,
        kernel="nngp",
        activation="relu",
        depth=1,
        weight_variance=2.0,
        bias_variance=1.0,
        weight_variance_bounds=(1e-5, 1e5),
        bias_variance_bounds=(1e-5, 1e5),
    ):
        self.kernel = kernel
        self.activation = activation
        self.depth = depth
        self.weight_variance = weight_variance
        self.bias_variance = bias_variance
        self.weight_variance_bounds = weight_variance_bounds
        self.bias_variance_bounds = bias_variance_bounds

    @property
    def hyperparameter_weight_variance(self):
        return Hyperparameter("weight_variance", "numeric", self.weight_variance_bounds)

    @property
    def hyperparameter_bias_variance(self):
        # A network without biases stays one: log(0) has no place in theta.
        bounds = "fixed" if self.bias_variance == 0 else self.bias_variance_bounds
        return Hyperparameter("bias_variance", "numeric", bounds)

    def _kernel_params(self):
        """The validated architecture: the arguments of ``network_kernel``."""
        params = self.get_params()
        validate_parameter_constraints(
            self._parameter_constraints, params, caller_name=type(self).__name__
        )
        for name in ("weight_variance_bounds", "bias_variance_bounds"):
            _check_bounds(name, params[name])
        return {name: params[name] for name in self._ARCHITECTURE}

    def __call__(self, X, Y=None, eval_gradient=False):
        """Return the kernel ``k(X, Y)`` and, on request, its gradient.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        Y : array-like of shape (n_samples_Y, n_features), default=None
            ``None`` evaluates ``k(X, X)``.
        eval_gradient : bool, default=False
            Also return the gradient with respect to ``theta``, the log of the
            free hyper-parameters; only when ``Y`` is None.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y)
            float32 if every input is float32, else float64.
        K_gradient : ndarray of shape (n_samples_X, n_samples_X, n_dims)
            Only if ``eval_gradient`` is True. ``K_gradient[..., i]`` is the
            derivative of ``K`` with respect to ``theta[i]``; ``n_dims`` is
            the number of free hyper-parameters (0 to 2). Computed with ``K``
            in one fused pass; equal to finite differences of ``K`` to
            rounding.
        """
        params = self._kernel_params()
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        X = check_array(X, dtype=[np.float64, np.float32])
        if Y is not None:
            Y = check_array(Y, dtype=[np.float64, np.float32])
        if not eval_gradient:
            return network_kernel(X, Y, **params)
        wrt = [h.name for h in self.hyperparameters if not h.fixed]
        if not wrt:
            K = network_kernel(X, **params)
            return K, np.empty((X.shape[0], X.shape[0], 0), dtype=K.dtype)
        return _network_kernel_with_gradient(X, **params, wrt=wrt)

    def diag(self, X):
        """Return ``k(X, X)``'s diagonal without computing the whole matrix.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, one row per sample.

        Returns
        -------
        K_diag : ndarray of shape (n_samples,)
            The diagonal of ``k(X, X)``.
        """
        params = self._kernel_params()
        X = check_array(X, dtype=[np.float64, np.float32])
        return network_kernel_diag(X, **params)

    def is_stationary(self):
        """Return whether the kernel depends only on ``X - Y``.

        Returns
        -------
        bool
            False: a network kernel depends on the inputs' norms and angle.
        """
        return False

    def __repr__(self):
        params = self.get_params()
        shown = [f"{name}={params[name]!r}"
                 for name in ("kernel", "activation", "depth")]
        # Hyper-parameters as scikit-learn's kernels print theirs.
        shown += [f"{name}={_short(params[name])}"
                  for name in ("weight_variance", "bias_variance")]
        shown += [f"{name}={params[name]!r}"
                  for name in ("weight_variance_bounds", "bias_variance_bounds")
                  if not _same_bounds(params[name], self._DEFAULT_BOUNDS)]
        return f"{type(self).__name__}({', '.join(shown)})"


def _short(value):
    """A hyper-parameter value as scikit-learn's kernels print it (3 digits)."""
    return f"{value:.3g}" if isinstance(value, Real) else repr(value)


def _same_bounds(bounds, default):
    if isinstance(bounds, str):
        return False
    return np.shape(bounds) == np.shape(default) and bool(np.all(
        np.asarray(bounds) == default))


def _check_bounds(name, bounds):
    """``"fixed"``, or a pair ``(low, high)`` with ``0 < low <= high < inf``.

    The bounds are taken in log-space by the optimizer, hence ``low > 0``.
    """
    if isinstance(bounds, str):
        return  # "fixed", by the parameter constraints
    try:
        low, high = np.asarray(bounds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        low = high = None
    if low is None or not (0 < low <= high < np.inf):
        raise ValueError(
            f"{name} must be 'fixed' or a pair (low, high) with "
            f"0 < low <= high < inf; got {bounds!r}."
        )


class RandomNetworkFeatures(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Random features of a finite-width network, approximating the NNGP kernel.

    Draws one fully connected network at initialisation (NTK
    parameterisation, standard normal weights and biases) and maps each
    sample to the inputs of its readout layer, scaled so that the inner
    product of two feature vectors is the network's empirical NNGP kernel,
    readout bias included. As ``width`` grows it converges to
    ``network_kernel(kernel="nngp")``, at a rate ``1 / sqrt(width)``. A linear
    model on these features is a network whose body is frozen and whose
    readout is trained.

    Parameters
    ----------
    width : int, default=100
        Units per hidden layer. The transform has ``width + 1`` columns (the
        last one the readout's bias unit), or ``width`` when
        ``bias_variance=0``.
    depth : int, default=1
        Number of hidden layers.
    activation : {"relu", "erf"}, default="relu"
        Activation of the hidden layers.
    weight_variance : float, default=2.0
        Variance ``sw2`` of the weights, NTK parameterisation.
    bias_variance : float, default=1.0
        Variance ``sb2`` of the biases (the estimators' default). The last
        column, the readout's bias unit, is the constant ``sqrt(sb2)``; a
        network without biases (``sb2 = 0``) has no such unit, and the
        column, which would be all zeros, is left out.
    random_state : int, RandomState instance or None, default=None
        Draws the network. Pass an int for the same network on every fit.

    Attributes
    ----------
    network_ : RandomNetwork
        The drawn parameters (float64 whatever the data).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit; only when X has string column
        names.

    See Also
    --------
    NetworkKernel : The infinite-width kernel these features approximate.
    sklearn.kernel_approximation.RBFSampler : Random Fourier features.

    Examples
    --------
    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.linear_model import Ridge
    >>> from sklearn.pipeline import make_pipeline
    >>> X, y = make_friedman1(n_samples=50, random_state=0)
    >>> model = make_pipeline(RandomNetworkFeatures(width=64, random_state=0), Ridge())
    >>> model.fit(X, y).predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints = {
        "width": [Interval(Integral, 1, None, closed="left")],
        **_ARCHITECTURE_CONSTRAINTS,
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        width=100,
        depth=1,
        activation="relu",
        weight_variance=2.0,
        bias_variance=1.0,
        random_state=None,
    ):
        self.width = width
        self.depth = depth
        self.activation = activation
        self.weight_variance = weight_variance
        self.bias_variance = bias_variance
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Draw the network for the number of features of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Only its number of features is used.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted transformer.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        self.network_ = draw_network(
            X.shape[1],
            width=self.width,
            depth=self.depth,
            random_state=check_random_state(self.random_state),
        )
        return self

    @property
    def _n_features_out(self):
        """Columns of the transform: one per hidden unit, and the bias unit."""
        return self.network_.width + int(self.bias_variance != 0)

    def transform(self, X):
        """Map X to the network's readout inputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Inputs, one row per sample.

        Returns
        -------
        X_new : ndarray of shape (n_samples, width + 1) or (n_samples, width)
            The readout inputs, in float32 for float32 input, else float64. Without biases
            (``bias_variance=0``) the bias unit's column is left out.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        with np.errstate(over="ignore", invalid="ignore"):  # reported below
            features = network_features(
                self.network_,
                X,
                kernel="nngp",
                activation=self.activation,
                weight_variance=self.weight_variance,
                bias_variance=self.bias_variance,
            )
        if not np.all(np.isfinite(features)):
            raise ValueError(
                f"{type(self).__name__}: the network's features of X overflow "
                f"(the largest |entry| of X is {np.max(np.abs(X)):.3g}, with "
                f"weight_variance={self.weight_variance!r} and depth="
                f"{self.depth!r}). Standardise X or lower weight_variance."
            )
        if self.bias_variance == 0:
            features = np.ascontiguousarray(features[:, :-1])
        return features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
