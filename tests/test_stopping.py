"""How long a fit trains (issue 11): the path's criteria, divergence, schedules.

The criteria are checked against brute force (separate fits of every number
of epochs) and against references written from DESIGN 3.6-3.7 in
``naive_dynamics.py``.
"""

import warnings

import numpy as np
import pytest
from naive import network_kernel as naive_kernel
from naive_dynamics import dual_training, smoother_trace
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor, _fitting

KERNEL = dict(kernel="nngp", activation="relu", depth=1, weight_variance=2.0,
              bias_variance=0.5)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(3)
    X = rng.normal(size=(60, 3))
    X[5] = 0.0
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.2 * rng.normal(size=60)
    return X[:45], y[:45], X[45:], y[45:]


def _quiet(estimator, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(*args, **kwargs)


# ----------------------------------------------------------------------------
# The epoch chosen on the path equals brute force over max_iter.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer, gamma", [("sgd", 1.0), ("momentum", 0.3),
                                             ("adam*", _fitting.GCV_GAMMA)])
def test_gcv_path_is_the_gcv_of_separate_fits(data, optimizer, gamma, monkeypatch):
    X, y, _, _ = data
    monkeypatch.setattr(_fitting, "GCV_GAMMA", gamma)
    weight = np.linspace(0.5, 2.0, X.shape[0])
    common = dict(optimizer=optimizer, learning_rate_init=0.4, normalize_y=False,
                  solver="eigen", **KERNEL)
    path = _quiet(AdamStarNTKRegressor(max_iter=40, tol=0.0, n_iter_no_change=1000,
                                       **common), X, y, sample_weight=weight)
    assert path._model.stopping == "gcv"
    # DESIGN 3.7 from the reference recursion and its step sizes.
    K = naive_kernel(X, **KERNEL)
    full = [np.arange(X.shape[0])]
    reference = dual_training(K, y, [full] * 40, optimizer=optimizer,
                              learning_rate=0.4, sample_weight=weight)
    traces, squares = (smoother_trace(K, reference["steps"], optimizer=optimizer,
                                      sample_weight=weight, power=power)[:, 0]
                       for power in (1, 2))
    gcv = []
    for epoch in range(1, 41):
        coef = dual_training(K, y, [full] * epoch, optimizer=optimizer,
                             learning_rate=0.4, sample_weight=weight)["coef"]
        residual = K @ coef[:, 0] - y
        rss = np.sum(weight * residual**2) / weight.sum()
        # Robust GCV (Lukas 2006); gamma = 1 is plain GCV.
        robustness = gamma + (1 - gamma) * squares[epoch - 1] / weight.sum()
        gcv.append(rss / (1 - traces[epoch - 1] / weight.sum()) ** 2 * robustness)
    np.testing.assert_allclose(-np.array(path.validation_scores_), gcv, rtol=1e-8)
    best = int(np.argmin(gcv)) + 1
    assert path.best_iteration_ == best
    # The model is that epoch's: a fit of exactly that many epochs.
    exact = AdamStarNTKRegressor(max_iter=best, early_stopping=False, **common)
    exact = _quiet(exact, X, y, sample_weight=weight)
    np.testing.assert_allclose(path.dual_coef_, exact.dual_coef_, rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("Estimator", [AdamStarNTKRegressor, AdamStarNTKClassifier])
def test_held_out_path_is_the_held_out_loss_of_separate_fits(data, Estimator):
    X, y, _, _ = data
    regression = Estimator is AdamStarNTKRegressor
    target = y if regression else (y > 0).astype(int)
    common = dict(learning_rate_init=0.3, solver="dual", random_state=0, **KERNEL)
    if regression:
        common["normalize_y"] = False
    path = _quiet(Estimator(max_iter=30, tol=0.0, n_iter_no_change=1000,
                            validation_fraction=0.25, **common), X, target)
    model = path._model
    assert model.stopping == "validation"
    train, held_out = model.train_rows, np.setdiff1d(np.arange(45), model.train_rows)
    scores = []
    for epoch in range(1, 31):
        separate = _quiet(Estimator(max_iter=epoch, early_stopping=False, **common),
                          X[train], target[train])
        if regression:
            residual = separate.predict(X[held_out]) - y[held_out]
            scores.append(-0.5 * np.mean(residual**2))
        else:
            p = separate.predict_proba(X[held_out])[:, 1]
            labels = target[held_out]
            scores.append(np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))
    np.testing.assert_allclose(path.validation_scores_, scores, rtol=1e-9)
    best = int(np.argmax(scores)) + 1
    assert path.best_iteration_ == best
    exact = _quiet(Estimator(max_iter=best, early_stopping=False, **common),
                   X[train], target[train])
    method = "predict" if regression else "decision_function"
    np.testing.assert_allclose(getattr(path, method)(X[held_out]),
                               getattr(exact, method)(X[held_out]), rtol=1e-9)


def test_a_default_fit_that_stopped_itself_does_not_warn(data):
    X, y, _, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model = AdamStarNTKRegressor().fit(X, y)
        classifier = AdamStarNTKClassifier().fit(X, y > 0)
    assert model.n_iter_ < model.max_iter and classifier.n_iter_ < classifier.max_iter
    assert model.best_iteration_ <= model.n_iter_
    with pytest.warns(ConvergenceWarning, match="still improving"):
        AdamStarNTKRegressor(max_iter=3).fit(X, y)


def test_the_default_beats_a_fixed_schedule_where_the_path_needs_many_epochs():
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=400, noise=1.0, random_state=0)
    X = StandardScaler().fit_transform(X)
    train, test = slice(0, 300), slice(300, None)
    default = AdamStarNTKRegressor().fit(X[train], y[train])
    previous = _quiet(AdamStarNTKRegressor(learning_rate_init=1.0, max_iter=100,
                                           early_stopping=False), X[train], y[train])
    assert default.best_iteration_ > 100
    assert (r2_score(y[test], default.predict(X[test]))
            > r2_score(y[test], previous.predict(X[test])) + 0.01)


# ----------------------------------------------------------------------------
# Divergence is never silent, and never convergence.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        dict(optimizer="sgd", learning_rate_init=3.0),
        dict(optimizer="momentum", learning_rate_init=5.0),
        dict(optimizer="adam*", learning_rate_init=300.0),
        dict(optimizer="adam", learning_rate_init=300.0, width=20, random_state=0),
        dict(optimizer="sgd", learning_rate_init=3.0, batch_size=8, random_state=0),
        dict(optimizer="sgd", learning_rate_init=3.0, solver="eigen"),
    ],
)
@pytest.mark.parametrize("early_stopping", [False, "auto"])
def test_a_growing_loss_is_an_error_not_convergence(data, params, early_stopping):
    X, y, X_test, _ = data
    before = AdamStarNTKRegressor(**KERNEL).fit(X, y)
    expected = before.predict(X_test)
    before.set_params(early_stopping=early_stopping, max_iter=500, **params)
    with pytest.raises(ValueError, match=r"diverged at epoch \d+: .*"
                                         r"Lower learning_rate_init"):
        before.fit(X, y)
    np.testing.assert_array_equal(before.predict(X_test), expected)


def test_raw_inputs_train_by_default_and_an_explicit_rate_says_standardise():
    X, y = load_diabetes(return_X_y=True)
    raw = 1000.0 * X + 50.0  # unscaled, off-centre inputs
    model = AdamStarNTKRegressor().fit(raw, y)
    assert np.isfinite(model.predict(raw)).all()
    assert model.score(raw, y) > 0.0
    with pytest.raises(ValueError, match="diverged.*StandardScaler"):
        AdamStarNTKRegressor(learning_rate_init=1.0).fit(raw, y)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_baselines_train_with_every_other_default(optimizer):
    X, y = load_diabetes(return_X_y=True)
    model = make_pipeline(StandardScaler(), AdamStarNTKRegressor(optimizer=optimizer))
    assert cross_val_score(model, X, y, cv=5).mean() >= 0.40
    fitted = model.fit(X, y)[-1]
    # Half the stability limit of full-batch SGD: 1 / lambda_max(K / n).
    K = naive_kernel(StandardScaler().fit_transform(X), kernel="nngp",
                     bias_variance=1.0)
    top = np.linalg.eigvalsh(K)[-1] / X.shape[0]
    assert fitted.learning_rate_ == pytest.approx(1.0 / top, rel=1e-9)


def test_automatic_adam_rate_makes_the_path_independent_of_the_kernel_scale(data):
    X, y, X_test, _ = data
    common = dict(kernel="precomputed", solver="dual", max_iter=30,
                  early_stopping=False, epsilon=1e-300)
    K, K_test = naive_kernel(X, **KERNEL), naive_kernel(X_test, X, **KERNEL)
    small = AdamStarNTKRegressor(**common).fit(K, y)
    large = AdamStarNTKRegressor(**common).fit(1e4 * K, y)
    assert large.learning_rate_ == pytest.approx(small.learning_rate_ / 100)
    np.testing.assert_allclose(large.predict(1e4 * K_test), small.predict(K_test),
                               rtol=1e-9)


# ----------------------------------------------------------------------------
# The learning-rate schedules of MLP (DESIGN 3.6).
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["dual", "eigen"])
def test_invscaling_follows_the_reference(data, solver):
    X, y, X_test, _ = data
    model = AdamStarNTKRegressor(learning_rate="invscaling", power_t=0.6,
                                 learning_rate_init=0.5, max_iter=12,
                                 early_stopping=False, normalize_y=False,
                                 solver=solver, **KERNEL)
    model = _quiet(model, X, y)
    K = naive_kernel(X, **KERNEL)
    reference = dual_training(K, y, [[np.arange(45)]] * 12, optimizer="adam*",
                              learning_rate=0.5, power_t=0.6)
    expected = naive_kernel(X_test, X, **KERNEL) @ reference["coef"][:, 0]
    np.testing.assert_allclose(model.predict(X_test), expected, rtol=1e-9)


def test_adaptive_divides_the_rate_by_five_after_two_stalled_epochs(data):
    X, y, X_test, _ = data
    model = AdamStarNTKRegressor(learning_rate="adaptive", learning_rate_init=0.5,
                                 tol=10.0, max_iter=100, early_stopping=False,
                                 normalize_y=False, optimizer="sgd", solver="dual",
                                 **KERNEL)
    model = model.fit(X, y)  # stops by its own rule: no warning
    # The first epoch sets the reference; no later one improves on it by
    # tol=10, so the rate falls by 5 after epochs 3, 5, ..., and training
    # stops at the ninth fall (0.5 / 5**9 < 1e-6), after epoch 19.
    assert model.n_iter_ == 19
    K = naive_kernel(X, **KERNEL)
    state = dict(coef=None, momentum_buffer=None, second_moment=None, t=0)
    rate = 0.5
    for segment in range(9):
        state = dual_training(K, y, [[np.arange(45)]] * (3 if segment == 0 else 2),
                              optimizer="sgd", learning_rate=rate, **state)
        state = {key: state[key] for key in ("coef", "momentum_buffer",
                                             "second_moment", "t")}
        rate /= 5
    np.testing.assert_allclose(model.predict(X_test),
                               naive_kernel(X_test, X, **KERNEL) @ state["coef"][:, 0],
                               rtol=1e-9)
