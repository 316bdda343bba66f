"""NetworkKernel and RandomNetworkFeatures as scikit-learn building blocks."""

import inspect
import pickle
import warnings

import numpy as np
import pytest
from naive import network_kernel
from naive_gradients import network_kernel_gradient
from sklearn.base import clone
from sklearn.datasets import make_friedman1
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import (
    ConstantKernel,
    KernelOperator,
    WhiteKernel,
)
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVR
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_adamntk import AdamStarNTKRegressor
from sklearn_adamntk._kernel_objects import NetworkKernel, RandomNetworkFeatures
from sklearn_adamntk._random_network import network_features

# scikit-learn's own kernel tests, shipped with it; their functions take a
# kernel, and are run below on NetworkKernel instances.
sklearn_kernel_tests = pytest.importorskip(
    "sklearn.gaussian_process.tests.test_kernels")


@pytest.fixture(scope="module")
def friedman():
    # Standardised target: the kernels' scale is that of X, and SVR's epsilon
    # and a GP's unit prior assume a target of order one.
    X, y = make_friedman1(n_samples=60, n_features=5, noise=0.1, random_state=0)
    return X, (y - y.mean()) / y.std()


@pytest.fixture(scope="module")
def small():
    rng = np.random.RandomState(0)
    X = rng.standard_normal((6, 4))
    X[2] = 0.0
    return X, rng.standard_normal((3, 4))


# ---------------------------------------------------------------- NetworkKernel

# The defaults, written out: the estimators' kernel.
DEFAULTS = dict(kernel="nngp", activation="relu", depth=1, weight_variance=2.0,
                bias_variance=1.0)

KERNEL_CASES = [
    dict(),
    dict(
        kernel="nngp", activation="erf", depth=2, weight_variance=1.5, bias_variance=0.2
    ),
    dict(kernel="ntk", activation="relu", depth=3, bias_variance=0.1),
    dict(kernel="ntk", activation="erf", depth=2, weight_variance=1.0),
]


@pytest.mark.parametrize("params", KERNEL_CASES)
def test_network_kernel_matches_reference(small, params):
    X, Y = small
    kernel = NetworkKernel(**params)
    reference = {**DEFAULTS, **params}
    np.testing.assert_allclose(
        kernel(X), network_kernel(X, **reference), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        kernel(X, Y), network_kernel(X, Y, **reference), rtol=1e-10, atol=1e-12
    )
    # arccos near 1 loses half the digits where the diagonal is taken from an
    # angle computed by rounding (about 1e-8 relative), hence not 1e-12.
    np.testing.assert_allclose(
        kernel.diag(X), np.diag(kernel(X)), rtol=1e-7, atol=1e-12
    )


def test_defaults_are_the_estimators_kernel(small):
    """NetworkKernel() is the kernel AdamStarNTKRegressor() trains on (issue 15.2)."""
    X, _ = small
    estimator = AdamStarNTKRegressor().get_params()
    kernel = NetworkKernel()
    architecture = {name: estimator[name] for name in DEFAULTS}
    assert architecture == DEFAULTS
    assert {name: kernel.get_params()[name] for name in DEFAULTS} == architecture
    np.testing.assert_allclose(
        kernel(X), network_kernel(X, **architecture), rtol=1e-10, atol=1e-12
    )


def test_hyperparameters_and_theta(small):
    X, _ = small
    kernel = NetworkKernel(weight_variance=1.5, bias_variance=0.2)
    # scikit-learn orders hyper-parameters by name.
    assert [h.name for h in kernel.hyperparameters] == [
        "bias_variance", "weight_variance"]
    assert not any(h.fixed for h in kernel.hyperparameters)
    np.testing.assert_allclose(kernel.theta, np.log([0.2, 1.5]))
    np.testing.assert_allclose(kernel.bounds, np.log([[1e-5, 1e5], [1e-5, 1e5]]))
    assert kernel.n_dims == 2
    tuned = kernel.clone_with_theta(np.log([0.5, 3.0]))
    assert (tuned.bias_variance, tuned.weight_variance) == pytest.approx((0.5, 3.0))
    assert (kernel.bias_variance, kernel.weight_variance) == (0.2, 1.5)
    assert not kernel.is_stationary()
    assert kernel.requires_vector_input

    K, K_gradient = kernel(X, eval_gradient=True)
    assert K_gradient.shape == (6, 6, 2)
    np.testing.assert_allclose(K, kernel(X), rtol=1e-14)
    with pytest.raises(ValueError, match="Y is None"):
        kernel(X, X, eval_gradient=True)


@pytest.mark.parametrize("params", KERNEL_CASES)
def test_gradient_matches_reference(small, params):
    """The gradient in theta's order, against differences of the naive kernel."""
    X, _ = small
    kernel = NetworkKernel(**params)
    reference = {**DEFAULTS, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, K_gradient = kernel(X, eval_gradient=True)
    _, expected = network_kernel_gradient(X, **reference)
    free = [name for name in ("bias_variance", "weight_variance")
            if reference[name] > 0]
    assert K_gradient.shape == (6, 6, len(free))
    columns = [("bias_variance", "weight_variance").index(name) for name in free]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(K_gradient, expected[..., columns], rtol=1e-9,
                               atol=1e-12 * scale)


def test_fixed_bounds_leave_theta(small):
    X, _ = small
    free = NetworkKernel(kernel="ntk", activation="erf", depth=2, bias_variance=0.3)
    _, both = free(X, eval_gradient=True)
    weight_only = clone(free).set_params(bias_variance_bounds="fixed")
    bias_only = clone(free).set_params(weight_variance_bounds="fixed")
    neither = clone(weight_only).set_params(weight_variance_bounds="fixed")
    np.testing.assert_array_equal(weight_only.theta, free.theta[1:])
    np.testing.assert_array_equal(bias_only.theta, free.theta[:1])
    assert neither.theta.shape == (0,) and neither.n_dims == 0
    # The same bits: a fixed variance only drops its column.
    np.testing.assert_array_equal(weight_only(X, eval_gradient=True)[1], both[..., 1:])
    np.testing.assert_array_equal(bias_only(X, eval_gradient=True)[1], both[..., :1])
    K, empty = neither(X, eval_gradient=True)
    assert empty.shape == (6, 6, 0)
    np.testing.assert_array_equal(K, neither(X))


def test_zero_bias_variance_is_not_tuned(small):
    """A network without biases stays one: log(0) never enters theta."""
    X, _ = small
    kernel = NetworkKernel(kernel="ntk", bias_variance=0.0)
    assert [h.fixed for h in kernel.hyperparameters] == [True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no log(0) warning
        np.testing.assert_array_equal(kernel.theta, np.log([2.0]))
        K, K_gradient = kernel(X, eval_gradient=True)
    assert K_gradient.shape == (6, 6, 1)
    # Without biases the ReLU NTK of depth 1 is homogeneous of degree 2 in sw2.
    np.testing.assert_allclose(K_gradient[..., 0], 2 * K, rtol=1e-12)
    tuned = kernel.clone_with_theta(np.log([3.0]))
    assert tuned.weight_variance == pytest.approx(3.0) and tuned.bias_variance == 0.0


def test_get_params_describe_the_network():
    """What an estimator needs to build its kernel from a NetworkKernel (issue 16.3)."""
    params = NetworkKernel(depth=3, weight_variance_bounds="fixed").get_params()
    assert params == {
        "kernel": "nngp", "activation": "relu", "depth": 3, "weight_variance": 2.0,
        "bias_variance": 1.0, "weight_variance_bounds": "fixed",
        "bias_variance_bounds": (1e-5, 1e5),
    }


def test_network_kernel_float32(small):
    X, Y = small
    K32 = NetworkKernel()(X.astype(np.float32), Y.astype(np.float32))
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, network_kernel(X, Y, **DEFAULTS), rtol=1e-5,
                               atol=1e-6)
    K32, gradient32 = NetworkKernel()(X.astype(np.float32), eval_gradient=True)
    assert K32.dtype == gradient32.dtype == np.float32
    gradient = NetworkKernel()(X, eval_gradient=True)[1]
    np.testing.assert_allclose(gradient32, gradient, rtol=1e-5, atol=1e-6)


def test_kernel_ridge(friedman):
    X, y = friedman
    model = KernelRidge(kernel=NetworkKernel(depth=2), alpha=1e-3).fit(X, y)
    # 60 points and a full-rank kernel at small alpha: a near fit of the
    # training set (0.9998 here); 0.9 leaves room for alpha's shrinkage.
    assert model.score(X, y) > 0.9
    # New points: a training row against itself has an angle of zero that
    # the X-vs-Y reference only reaches up to rounding (arccos near 1 loses
    # half the digits, amplified by the large dual coefficients).
    X_new = 0.9 * X[:5] + 0.05
    np.testing.assert_allclose(
        model.predict(X_new),
        network_kernel(X_new, X, **{**DEFAULTS, "depth": 2}) @ model.dual_coef_,
        rtol=1e-10,
    )


def test_svr_calls_the_kernel(friedman):
    X, y = friedman
    model = SVR(
        kernel=NetworkKernel(kernel="nngp", depth=2), C=100.0, epsilon=0.05
    ).fit(X, y)
    # SVR calls the kernel as kernel(X, Y). With C=100 on a standardised
    # target the fit is close; 0.9 is well above a linear fit (0.76 here).
    assert model.score(X, y) > 0.9
    assert model.predict(X[:3]).shape == (3,)


def test_gaussian_process_tunes_the_variances():
    """Issue 16: ConstantKernel() * NetworkKernel() + WhiteKernel(), tuned."""
    # Standardised features, the target as it comes (noise variance 1): here
    # the optimum is inside the bounds.  (With a centred target the ReLU
    # kernel's readout bias is not wanted, and the optimum runs off along
    # C -> 0, sw2, sb2 -> inf; scikit-learn then warns about the bounds.)
    X, y = make_friedman1(n_samples=60, n_features=5, noise=1.0, random_state=0)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    kernel = ConstantKernel() * NetworkKernel() + WhiteKernel()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConvergenceWarning about the bounds
        gp = GaussianProcessRegressor(kernel=kernel, random_state=0).fit(X, y)
    start = kernel.theta
    tuned = gp.kernel_.k1.k2
    assert isinstance(tuned, NetworkKernel)
    # Both variances moved, and the likelihood rose well above the start's.
    assert tuned.weight_variance != 2.0 and tuned.bias_variance != 1.0
    assert gp.log_marginal_likelihood_value_ > gp.log_marginal_likelihood(start) + 10
    # At the optimum the likelihood's gradient (built from the kernel's) is
    # about zero.
    lml, gradient = gp.log_marginal_likelihood(gp.kernel_.theta, eval_gradient=True)
    assert np.all(np.abs(gradient) < 1e-3 * abs(lml))
    # ... and that gradient equals the likelihood's finite differences.
    theta = gp.kernel_.theta + 0.1
    _, gradient = gp.log_marginal_likelihood(theta, eval_gradient=True)
    step = 1e-6
    differences = [
        (gp.log_marginal_likelihood(theta + step * e)
         - gp.log_marginal_likelihood(theta - step * e)) / (2 * step)
        for e in np.eye(len(theta))
    ]
    np.testing.assert_allclose(gradient, differences, rtol=1e-5)
    mean, std = gp.predict(X[:4], return_std=True)
    assert mean.shape == std.shape == (4,) and np.all(std >= 0)
    assert gp.score(X, y) > 0.9


def test_gaussian_process_with_fixed_network(friedman):
    """With both variances fixed only the kernels around it are optimised."""
    X, y = friedman
    network = NetworkKernel(weight_variance_bounds="fixed",
                            bias_variance_bounds="fixed")
    noise_start = 1.0
    gp = GaussianProcessRegressor(
        kernel=network + WhiteKernel(noise_level=noise_start), random_state=0
    ).fit(X, y)
    assert gp.kernel_.k1 == network
    assert gp.kernel_.k2.noise_level != noise_start
    assert gp.kernel_.theta.shape == (1,)
    assert gp.log_marginal_likelihood_value_ > gp.log_marginal_likelihood(
        np.log([noise_start])
    )


# ------------------------------------- scikit-learn's kernel tests, on ours

# Settings that give the gradient and theta checks something to check: free
# variances (NNGP and NTK, ReLU and erf, depth 1 and 3), a fixed bound, no
# biases, and the composition of the issue.
SKLEARN_SUITE_KERNELS = [
    NetworkKernel(),
    NetworkKernel(kernel="ntk", depth=3, weight_variance=1.5, bias_variance=0.2),
    NetworkKernel(kernel="nngp", activation="erf", depth=3, weight_variance=0.7,
                  bias_variance=1.1),
    NetworkKernel(kernel="ntk", activation="erf"),
    NetworkKernel(kernel="ntk", depth=2, weight_variance_bounds="fixed"),
    NetworkKernel(activation="erf", bias_variance=0.0),
    ConstantKernel(2.0) * NetworkKernel(kernel="ntk", depth=2) + WhiteKernel(0.5),
    ConstantKernel(2.0) * NetworkKernel(activation="erf", bias_variance_bounds="fixed"),
]


def _all_free(kernel):
    return all(not h.fixed for h in kernel.hyperparameters)


def _has_white(kernel):
    return "WhiteKernel" in repr(kernel)


# Which kernels each test takes, as scikit-learn's own parametrisation
# selects them: its theta test skips kernel operators and assumes every
# hyper-parameter free (it indexes theta by hyper-parameter); WhiteKernel
# breaks k(X) == k(X, X); the stationarity test is for stationary kernels,
# which NetworkKernel is not (test_hyperparameters_and_theta checks that).
SKLEARN_SUITE_SELECTION = {
    "test_kernel_gradient": lambda kernel: True,
    "test_kernel_theta": lambda kernel: (
        not isinstance(kernel, KernelOperator) and _all_free(kernel)),
    "test_auto_vs_cross": lambda kernel: not _has_white(kernel),
    "test_kernel_diag": lambda kernel: True,
    "test_kernel_input_type": lambda kernel: True,
    "test_kernel_clone": lambda kernel: True,
    "test_kernel_clone_after_set_params": lambda kernel: True,
    "test_kernel_versus_pairwise": lambda kernel: not _has_white(kernel),
    "test_set_get_params": lambda kernel: True,
    "test_repr_kernels": lambda kernel: True,
}
SKLEARN_SUITE = [
    pytest.param(name, kernel, id=f"{name}-{i}")
    for name, selected in SKLEARN_SUITE_SELECTION.items()
    for i, kernel in enumerate(SKLEARN_SUITE_KERNELS)
    if selected(kernel)
]


def test_sklearn_suite_covers_every_kernel_test():
    """A new kernel test in scikit-learn must be added to the selection above."""
    takes_a_kernel = {
        name for name, function in vars(sklearn_kernel_tests).items()
        if name.startswith("test_") and callable(function)
        and "kernel" in inspect.signature(function).parameters
    }
    assert takes_a_kernel - {"test_kernel_stationary"} == set(SKLEARN_SUITE_SELECTION)


@pytest.mark.parametrize("name, kernel", SKLEARN_SUITE)
def test_sklearn_kernel_suite(name, kernel):
    getattr(sklearn_kernel_tests, name)(kernel)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(depth=0), "depth"),
        (dict(activation="tanh"), "activation"),
        (dict(kernel="rbf"), "kernel"),
        (dict(weight_variance=-1.0), "weight_variance"),
        (dict(weight_variance=0.0), "weight_variance"),
        (dict(bias_variance=-0.5), "bias_variance"),
        (dict(weight_variance_bounds="free"), "weight_variance_bounds"),
        (dict(weight_variance_bounds=(0.0, 1.0)), "weight_variance_bounds"),
        (dict(bias_variance_bounds=(2.0, 1.0)), "bias_variance_bounds"),
        (dict(bias_variance_bounds=(1.0, 2.0, 3.0)), "bias_variance_bounds"),
        (dict(bias_variance_bounds=(1.0, np.inf)), "bias_variance_bounds"),
    ],
)
def test_network_kernel_bad_parameters(small, params, match):
    X, _ = small
    kernel = NetworkKernel(**params)
    with pytest.raises(ValueError, match=match):
        kernel(X)
    with pytest.raises(ValueError, match=match):
        kernel.diag(X)
    with pytest.raises(ValueError, match=match):
        kernel(X, eval_gradient=True)


def test_network_kernel_bad_input(small):
    X, Y = small
    X_nan = X.copy()
    X_nan[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NetworkKernel()(X_nan)
    with pytest.raises(ValueError, match="NaN"):
        NetworkKernel()(X, X_nan)
    with pytest.raises(ValueError, match="NaN"):
        NetworkKernel().diag(X_nan)
    with pytest.raises(ValueError):
        NetworkKernel()(X, Y[:, :3])


# -------------------------------------------------------- RandomNetworkFeatures


def test_random_features_pipeline(friedman):
    X, y = friedman
    model = make_pipeline(
        RandomNetworkFeatures(width=200, depth=2, random_state=0), Ridge(alpha=1e-3)
    )
    model.fit(X, y)
    assert model.predict(X[:5]).shape == (5,)
    # Ridge on 201 random relu features of 60 points: a close fit, as for the
    # kernel ridge above.
    assert model.score(X, y) > 0.9


def test_random_features_names_and_shape(small):
    X, _ = small
    transformer = RandomNetworkFeatures(width=5, random_state=0).fit(X)
    assert transformer.transform(X).shape == (6, 6)
    names = transformer.get_feature_names_out()
    assert list(names) == [f"randomnetworkfeatures{i}" for i in range(6)]
    assert transformer.n_features_in_ == 4
    assert transformer.network_.width == 5


def test_random_features_bias_column(small):
    """The readout's bias unit is a real constant, never an all-zero column (15.3)."""
    X, _ = small
    # The default is the estimators' bias_variance=1: a column of ones.
    Phi = RandomNetworkFeatures(width=8, random_state=0).fit_transform(X)
    assert Phi.shape == (6, 9)
    np.testing.assert_array_equal(Phi[:, -1], 1.0)
    Phi = RandomNetworkFeatures(
        width=5, bias_variance=0.25, random_state=0
    ).fit_transform(X)
    np.testing.assert_array_equal(Phi[:, -1], 0.5)
    # Without biases there is no bias unit: width columns, the hidden units'.
    transformer = RandomNetworkFeatures(width=8, bias_variance=0.0, random_state=0)
    Phi = transformer.fit_transform(X)
    assert Phi.shape == (6, 8) and Phi.flags.c_contiguous
    assert len(transformer.get_feature_names_out()) == 8
    every_column = network_features(transformer.network_, X, kernel="nngp",
                                    bias_variance=0.0)
    assert np.all(every_column[:, -1] == 0)
    np.testing.assert_array_equal(Phi, every_column[:, :-1])


def test_random_features_converge_to_nngp(small):
    X, _ = small
    params = dict(depth=2, activation="erf", weight_variance=1.5, bias_variance=0.1)
    target = network_kernel(X, kernel="nngp", **params)

    def mean_error(width):
        errors = []
        for seed in range(20):
            Phi = RandomNetworkFeatures(
                width=width, random_state=seed, **params
            ).fit_transform(X)
            errors.append(np.abs(Phi @ Phi.T - target).max())
        return np.mean(errors)

    # 16-fold width, 4-fold smaller error (see test_random_network.py).
    assert 2.5 < mean_error(64) / mean_error(1024) < 6.5
    assert mean_error(1024) < 0.05 * np.abs(target).max()


def test_random_features_seed_and_dtype(small):
    X, _ = small
    a = RandomNetworkFeatures(width=8, random_state=3).fit_transform(X)
    b = RandomNetworkFeatures(width=8, random_state=3).fit_transform(X)
    c = RandomNetworkFeatures(width=8, random_state=4).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)

    transformer = RandomNetworkFeatures(width=8, random_state=3).fit(
        X.astype(np.float32)
    )
    Phi32 = transformer.transform(X.astype(np.float32))
    assert Phi32.dtype == np.float32
    np.testing.assert_allclose(Phi32, a, rtol=1e-5, atol=1e-6)
    # The network is kept in float64, so float64 data is not degraded.
    assert transformer.transform(X).dtype == np.float64
    np.testing.assert_array_equal(transformer.transform(X), a)


def test_random_features_clone_and_pickle(small):
    X, _ = small
    transformer = RandomNetworkFeatures(
        width=7, depth=2, activation="erf", random_state=1
    )
    assert clone(transformer).get_params() == transformer.get_params()
    transformer.fit(X)
    restored = pickle.loads(pickle.dumps(transformer))
    np.testing.assert_array_equal(restored.transform(X), transformer.transform(X))
    refit = clone(transformer).fit(X)
    np.testing.assert_array_equal(refit.transform(X), transformer.transform(X))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(width=0), "width"),
        (dict(depth=0), "depth"),
        (dict(activation="tanh"), "activation"),
        (dict(weight_variance=-1.0), "weight_variance"),
        (dict(bias_variance=-1.0), "bias_variance"),
        (dict(random_state="seed"), "random_state"),
    ],
)
def test_random_features_bad_parameters(small, params, match):
    X, _ = small
    with pytest.raises(ValueError, match=match):
        RandomNetworkFeatures(**params).fit(X)


def test_random_features_bad_input(small):
    X, _ = small
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RandomNetworkFeatures(width=4).fit(X_nan)
    transformer = RandomNetworkFeatures(width=4).fit(X)
    with pytest.raises(ValueError, match="NaN"):
        transformer.transform(X_nan)
    with pytest.raises(ValueError, match="features"):
        transformer.transform(X[:, :3])


@parametrize_with_checks([RandomNetworkFeatures(width=16)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
