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
from sklearn.gaussian_process.kernels import Kernel
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils.validation import check_is_fitted, validate_data

from ._pairwise import network_kernel, network_kernel_diag
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
    ``KernelRidge(kernel=...)`` and ``SVR(kernel=...)``. Its hyper-parameters
    describe an architecture and are fixed: the kernel exposes no
    ``Hyperparameter``, so ``theta`` is empty and a Gaussian process optimises
    only the kernels it is combined with (for instance the noise level of
    ``NetworkKernel() + WhiteKernel()``).

    Parameters
    ----------
    kernel : {"ntk", "nngp"}, default="ntk"
        ``"ntk"``: the neural tangent kernel (every layer trained);
        ``"nngp"``: the Gaussian-process kernel of the output (readout only).
    activation : {"relu", "erf"}, default="relu"
        Activation of the hidden layers.
    depth : int, default=1
        Number of hidden layers.
    weight_variance : float, default=2.0
        Variance ``sw2`` of the weights, NTK parameterisation.
    bias_variance : float, default=0.0
        Variance ``sb2`` of the biases.

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
    """

    _parameter_constraints = {
        "kernel": [StrOptions({"ntk", "nngp"})],
        **_ARCHITECTURE_CONSTRAINTS,
    }

    def __init__(
        self,
        kernel="ntk",
        activation="relu",
        depth=1,
        weight_variance=2.0,
        bias_variance=0.0,
    ):
        self.kernel = kernel
        self.activation = activation
        self.depth = depth
        self.weight_variance = weight_variance
        self.bias_variance = bias_variance

    def _kernel_params(self):
        params = self.get_params()
        validate_parameter_constraints(
            self._parameter_constraints, params, caller_name=type(self).__name__
        )
        return params

    def __call__(self, X, Y=None, eval_gradient=False):
        """Return the kernel ``k(X, Y)`` and, on request, its (empty) gradient.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        Y : array-like of shape (n_samples_Y, n_features), default=None
            ``None`` evaluates ``k(X, X)``.
        eval_gradient : bool, default=False
            Also return the gradient with respect to the log of the
            hyper-parameters; only when ``Y`` is None. There are none to
            optimise, so it has no columns.

        Returns
        -------
        K : ndarray of shape (n_samples_X, n_samples_Y)
            float32 if every input is float32, else float64.
        K_gradient : ndarray of shape (n_samples_X, n_samples_X, 0)
            Only if ``eval_gradient`` is True.
        """
        params = self._kernel_params()
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        X = check_array(X, dtype=[np.float64, np.float32])
        if Y is not None:
            Y = check_array(Y, dtype=[np.float64, np.float32])
        K = network_kernel(X, Y, **params)
        if eval_gradient:
            return K, np.empty((X.shape[0], X.shape[0], 0), dtype=K.dtype)
        return K

    def diag(self, X):
        """Return ``k(X, X)``'s diagonal without computing the whole matrix.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        K_diag : ndarray of shape (n_samples,)
        """
        params = self._kernel_params()
        X = check_array(X, dtype=[np.float64, np.float32])
        return network_kernel_diag(X, **params)

    def is_stationary(self):
        """Return False: the kernel depends on the inputs, not only on X - Y."""
        return False

    def __repr__(self):
        params = ", ".join(
            f"{name}={value!r}" for name, value in self.get_params().items()
        )
        return f"{type(self).__name__}({params})"


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
        Units per hidden layer. The transform has ``width + 1`` columns.
    depth : int, default=1
        Number of hidden layers.
    activation : {"relu", "erf"}, default="relu"
        Activation of the hidden layers.
    weight_variance : float, default=2.0
        Variance ``sw2`` of the weights, NTK parameterisation.
    bias_variance : float, default=0.0
        Variance ``sb2`` of the biases. The last column (the readout's bias
        unit) is the constant ``sqrt(sb2)``.
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
        bias_variance=0.0,
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
        self._n_features_out = self.width + 1
        return self

    def transform(self, X):
        """Map X to the network's readout inputs.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray of shape (n_samples, width + 1)
            float32 for float32 input, else float64.
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
        return features

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
