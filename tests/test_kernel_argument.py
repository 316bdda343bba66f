"""A NetworkKernel object as the estimators' ``kernel`` (issue 16, item 3)."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor, NetworkKernel

ARCHITECTURE = dict(kernel="ntk", activation="erf", depth=2, weight_variance=1.5,
                    bias_variance=0.3)
SCHEDULE = dict(learning_rate_init=0.05, max_iter=20, tol=0.0,
                n_iter_no_change=10_000, early_stopping=False)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(50, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.normal(size=50)
    return X[:40], y[:40], X[40:]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.mark.parametrize("width", [None, 64])
def test_kernel_object_is_the_same_model_as_its_parameters(data, width):
    X, y, X_test = data
    by_name = AdamStarNTKRegressor(**ARCHITECTURE, width=width, random_state=0,
                                   **SCHEDULE).fit(X, y)
    by_object = AdamStarNTKRegressor(kernel=NetworkKernel(**ARCHITECTURE),
                                     width=width, random_state=0,
                                     **SCHEDULE).fit(X, y)
    np.testing.assert_array_equal(by_object.predict(X_test), by_name.predict(X_test))


def test_classifier_takes_a_kernel_object(data):
    X, y, X_test = data
    labels = np.where(y > np.median(y), "high", "low")
    by_name = AdamStarNTKClassifier(**ARCHITECTURE, **SCHEDULE).fit(X, labels)
    by_object = AdamStarNTKClassifier(kernel=NetworkKernel(**ARCHITECTURE),
                                      **SCHEDULE).fit(X, labels)
    np.testing.assert_array_equal(by_object.predict_proba(X_test),
                                  by_name.predict_proba(X_test))


def test_gp_tuned_kernel_goes_into_training(data):
    X, y, X_test = data
    gp = GaussianProcessRegressor(
        ConstantKernel() * NetworkKernel(weight_variance=1.0, bias_variance=0.5)
        + WhiteKernel(), normalize_y=True, random_state=0).fit(X, y)
    tuned = gp.kernel_.k1.k2
    assert (tuned.weight_variance, tuned.bias_variance) != (1.0, 0.5)
    # The tuned variances set the kernel's scale: the step size follows it.
    schedule = dict(SCHEDULE, learning_rate_init="auto")
    model = AdamStarNTKRegressor(kernel=tuned, **schedule).fit(X, y)
    by_name = AdamStarNTKRegressor(
        kernel=tuned.kernel, weight_variance=tuned.weight_variance,
        bias_variance=tuned.bias_variance, **schedule).fit(X, y)
    np.testing.assert_array_equal(model.predict(X_test), by_name.predict(X_test))


def test_kernel_object_clones_and_grid_searches_its_parameters(data):
    X, y, _ = data
    model = AdamStarNTKRegressor(kernel=NetworkKernel(), **SCHEDULE)
    copy = clone(model)
    assert copy.kernel is not model.kernel and copy.kernel == model.kernel
    search = GridSearchCV(model, {"kernel__depth": [1, 2]}, cv=2).fit(X, y)
    assert search.best_estimator_.kernel.depth in (1, 2)
    assert search.best_estimator_.depth == 1  # the estimator's own is untouched


def test_architecture_set_twice_is_an_error(data):
    X, y, _ = data
    model = AdamStarNTKRegressor(kernel=NetworkKernel(), depth=3, **SCHEDULE)
    with pytest.raises(ValueError, match="depth was also set on the estimator.*"
                                         "kernel__depth"):
        model.fit(X, y)


def test_other_kernel_objects_are_refused(data):
    X, y, _ = data
    with pytest.raises(InvalidParameterError, match="kernel"):
        AdamStarNTKRegressor(kernel=RBF()).fit(X, y)
