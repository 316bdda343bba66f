"""NetworkKernel and RandomNetworkFeatures as scikit-learn building blocks."""

import pickle

import numpy as np
import pytest
from naive import network_kernel
from sklearn.base import clone
from sklearn.datasets import make_friedman1
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVR
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_adamntk._kernel_objects import NetworkKernel, RandomNetworkFeatures


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
    np.testing.assert_allclose(
        kernel(X), network_kernel(X, **params), rtol=1e-10, atol=1e-12
    )
    np.testing.assert_allclose(
        kernel(X, Y), network_kernel(X, Y, **params), rtol=1e-10, atol=1e-12
    )
    # arccos near 1 loses half the digits where the diagonal is taken from an
    # angle computed by rounding (about 1e-8 relative), hence not 1e-12.
    np.testing.assert_allclose(
        kernel.diag(X), np.diag(kernel(X)), rtol=1e-7, atol=1e-12
    )


def test_network_kernel_gradient_and_hyperparameters(small):
    X, Y = small
    kernel = NetworkKernel(depth=2)
    K, K_gradient = kernel(X, eval_gradient=True)
    np.testing.assert_array_equal(K, kernel(X))
    assert K_gradient.shape == (6, 6, 0)
    assert kernel.theta.shape == (0,)
    assert kernel.n_dims == 0
    assert kernel.hyperparameters == []
    assert not kernel.is_stationary()
    assert kernel.requires_vector_input
    with pytest.raises(ValueError, match="Y is None"):
        kernel(X, Y, eval_gradient=True)


def test_network_kernel_clone_repr_pickle():
    kernel = NetworkKernel(depth=3, activation="erf")
    cloned = clone(kernel)
    assert cloned.get_params() == kernel.get_params()
    assert cloned.depth == 3
    assert cloned == kernel
    assert pickle.loads(pickle.dumps(kernel)) == kernel
    assert repr(kernel) == (
        "NetworkKernel(kernel='ntk', activation='erf', depth=3, weight_variance=2.0, "
        "bias_variance=0.0)"
    )
    # clone_with_theta is how a GP copies kernels; an empty theta must round-trip.
    assert kernel.clone_with_theta(kernel.theta) == kernel


def test_network_kernel_float32(small):
    X, Y = small
    K32 = NetworkKernel()(X.astype(np.float32), Y.astype(np.float32))
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, network_kernel(X, Y), rtol=1e-5, atol=1e-6)


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
        network_kernel(X_new, X, depth=2) @ model.dual_coef_,
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


def test_gaussian_process(friedman):
    X, y = friedman
    # An empty theta: the default optimizer has nothing to do and must not crash.
    gp = GaussianProcessRegressor(
        kernel=NetworkKernel(), alpha=1e-2, random_state=0
    ).fit(X, y)
    assert gp.kernel_ == NetworkKernel()
    mean, std = gp.predict(X[:4], return_std=True)
    assert mean.shape == std.shape == (4,)
    assert np.all(std >= 0)
    assert gp.score(X, y) > 0.9

    # Combined with a white kernel, only the noise level is optimised.
    noise_start = 1.0
    gp = GaussianProcessRegressor(
        kernel=NetworkKernel() + WhiteKernel(noise_level=noise_start), random_state=0
    ).fit(X, y)
    assert gp.kernel_.k1 == NetworkKernel()
    assert gp.kernel_.k2.noise_level != noise_start
    assert gp.log_marginal_likelihood_value_ > gp.log_marginal_likelihood(
        np.log([noise_start])
    )
    assert gp.kernel_.theta.shape == (1,)
    assert np.isfinite(gp.log_marginal_likelihood_value_)
    assert gp.predict(X[:4]).shape == (4,)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(depth=0), "depth"),
        (dict(activation="tanh"), "activation"),
        (dict(kernel="rbf"), "kernel"),
        (dict(weight_variance=-1.0), "weight_variance"),
        (dict(bias_variance=-0.5), "bias_variance"),
    ],
)
def test_network_kernel_bad_parameters(small, params, match):
    X, _ = small
    kernel = NetworkKernel(**params)
    with pytest.raises(ValueError, match=match):
        kernel(X)
    with pytest.raises(ValueError, match=match):
        kernel.diag(X)


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
    X, _ = small
    Phi = RandomNetworkFeatures(
        width=5, bias_variance=0.25, random_state=0
    ).fit_transform(X)
    np.testing.assert_array_equal(Phi[:, -1], 0.5)


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
