"""AdamStarNTKRegressor and AdamStarNTKClassifier: dynamics, protocol, bad input.

The dynamics are checked against the slow references of ``naive_dynamics``
(the recursions) and ``naive`` (the kernels), which import nothing from the
package. Data are tiny and epochs few, so that the file stays fast.
"""

import pickle
import re
import warnings

import joblib
import numpy as np
import pytest
from naive import network_kernel as naive_kernel
from naive_dynamics import dual_training, weight_space_predict, weight_space_training
from sklearn import config_context
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import gen_batches
from sklearn.utils._testing import create_memmap_backed_data

from sklearn_adamntk._estimators import AdamStarNTKClassifier, AdamStarNTKRegressor
from sklearn_adamntk._random_network import network_features

KERNEL = dict(
    kernel="nngp", activation="relu", depth=1, weight_variance=2.0, bias_variance=0.1
)
QUIET = dict(tol=0.0, n_iter_no_change=10_000, early_stopping=False)  # max_iter epochs


def _relative(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.fixture(autouse=True)
def _silence_convergence():
    # Most fits here stop at max_iter on purpose; the warning has its own test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(40, 3))
    X[3] = 0.0  # a zero row: the kernel's angle is undefined there
    y = X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=40)
    return X[:30], y[:30], X[30:], y[30:]


def _labels(y, n_classes):
    edges = np.quantile(y, np.linspace(0, 1, n_classes + 1)[1:-1])
    return np.digitize(y, edges)


def _epochs(n_rows, batch_size, n_epochs):
    if batch_size is None:
        return [[np.arange(n_rows)]] * n_epochs
    return [[np.arange(n_rows)[s] for s in gen_batches(n_rows, batch_size)]] * n_epochs


# ----------------------------------------------------------------------------
# 1. Every solver follows the slow reference of the recursion.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "optimizer, batch_size, solver, extra",
    [
        ("adam*", None, "dual", {}),
        ("adam*", None, "eigen", {}),
        ("adam*", None, "auto", {}),
        ("adam*", 8, "dual", {}),
        ("sgd", None, "eigen", {}),
        ("sgd", 8, "dual", {"weight_decay": 0.5}),
        ("momentum", None, "dual", {"momentum": 0.8}),
        ("momentum", 8, "dual", {}),
        ("adam*", None, "eigen", {"weight_decay": 0.3, "beta_1": 0.5, "beta_2": 0.9}),
    ],
)
def test_regressor_follows_reference(data, optimizer, batch_size, solver, extra):
    X, y, X_test, _ = data
    Y = np.column_stack([y, np.cos(X[:, 2])])  # two outputs, one second moment each
    weights = np.linspace(0.5, 2.0, X.shape[0])
    lr, n_epochs = 0.05, 6
    est = AdamStarNTKRegressor(
        optimizer=optimizer,
        learning_rate_init=lr,
        batch_size=batch_size,
        max_iter=n_epochs,
        shuffle=False,
        solver=solver,
        normalize_y=False,
        **KERNEL,
        **QUIET,
        **extra,
    ).fit(X, Y, sample_weight=weights)

    reference = dual_training(
        naive_kernel(X, **KERNEL),
        Y,
        _epochs(X.shape[0], batch_size, n_epochs),
        optimizer=optimizer,
        learning_rate=lr,
        sample_weight=weights,
        **extra,
    )
    expected = naive_kernel(X_test, X, **KERNEL) @ reference["coef"]
    assert est.n_iter_ == n_epochs
    assert est.t_ == reference["t"]
    assert _relative(est.predict(X_test), expected) < 1e-10
    np.testing.assert_allclose(est.loss_curve_, reference["losses"], rtol=1e-10)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("batch_size", [None, 7])
def test_classifier_follows_reference(data, n_classes, batch_size):
    X, y, X_test, _ = data
    labels = _labels(y, n_classes)
    lr, n_epochs = 0.1, 5
    est = AdamStarNTKClassifier(
        learning_rate_init=lr,
        batch_size=batch_size,
        max_iter=n_epochs,
        shuffle=False,
        solver="dual",
        **KERNEL,
        **QUIET,
    ).fit(X, labels)

    if n_classes == 2:
        Y, loss = labels[:, None].astype(float), "logistic"
    else:
        Y, loss = np.eye(n_classes)[labels], "softmax"
    reference = dual_training(
        naive_kernel(X, **KERNEL),
        Y,
        _epochs(X.shape[0], batch_size, n_epochs),
        optimizer="adam*",
        loss=loss,
        learning_rate=lr,
    )
    expected = naive_kernel(X_test, X, **KERNEL) @ reference["coef"]
    if n_classes == 2:
        expected = expected[:, 0]
    assert _relative(est.decision_function(X_test), expected) < 1e-10
    np.testing.assert_allclose(est.loss_curve_, reference["losses"], rtol=1e-10)


def test_normalize_y_is_undone_at_predict(data):
    X, y, X_test, _ = data
    y = 100.0 + 30.0 * y
    est = AdamStarNTKRegressor(
        max_iter=4, learning_rate_init=0.05, solver="dual", **KERNEL, **QUIET
    ).fit(X, y)
    mean, std = y.mean(), y.std()
    reference = dual_training(
        naive_kernel(X, **KERNEL),
        (y - mean) / std,
        _epochs(30, None, 4),
        optimizer="adam*",
        learning_rate=0.05,
    )
    expected = (naive_kernel(X_test, X, **KERNEL) @ reference["coef"])[
        :, 0
    ] * std + mean
    assert _relative(est.predict(X_test), expected) < 1e-10


# ----------------------------------------------------------------------------
# 2. Exactness contract (DESIGN 3.1): weight space == dual on the empirical kernel.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, batch_size, kernel",
    [
        ("regression", None, "nngp"),
        ("regression", 8, "nngp"),
        ("regression", None, "ntk"),
        ("binary", None, "nngp"),
        ("binary", 8, "nngp"),
        ("multiclass", None, "nngp"),
        ("multiclass", 8, "ntk"),
    ],
)
def test_primal_equals_dual_at_finite_width(data, kind, batch_size, kernel):
    X, y, X_test, _ = data
    params = dict(
        KERNEL,
        kernel=kernel,
        width=X.shape[0],
        batch_size=batch_size,
        max_iter=5,
        learning_rate_init=0.05,
        random_state=3,
        **QUIET,
    )
    if kind == "regression":
        Estimator, target = AdamStarNTKRegressor, y
    else:
        Estimator, target = (
            AdamStarNTKClassifier,
            _labels(y, 2 if kind == "binary" else 3),
        )
    primal = Estimator(solver="primal", **params).fit(X, target)
    dual = Estimator(solver="dual", **params).fit(X, target)
    assert primal.solver_ == "primal" and hasattr(primal, "coef_")
    assert dual.solver_ == "dual" and hasattr(dual, "dual_coef_")
    method = "predict" if kind == "regression" else "decision_function"
    assert (
        _relative(getattr(primal, method)(X_test), getattr(dual, method)(X_test))
        < 1e-10
    )
    np.testing.assert_allclose(primal.loss_curve_, dual.loss_curve_, rtol=1e-10)


def test_primal_follows_weight_space_reference(data):
    """The finite network trained per feature (naive) equals the estimator."""
    X, y, X_test, _ = data
    est = AdamStarNTKRegressor(
        width=12,
        solver="primal",
        max_iter=5,
        batch_size=10,
        shuffle=False,
        learning_rate_init=0.05,
        normalize_y=False,
        random_state=0,
        **KERNEL,
        **QUIET,
    ).fit(X, y)
    features = dict(
        kernel="nngp", activation="relu", weight_variance=2.0, bias_variance=0.1
    )
    Psi = network_features(est.network_, X, **features)
    reference = weight_space_training(
        Psi, y, _epochs(30, 10, 5), optimizer="adam*", learning_rate=0.05
    )
    expected = weight_space_predict(
        network_features(est.network_, X_test, **features), reference["W"]
    )[:, 0]
    assert _relative(est.predict(X_test), expected) < 1e-10


@pytest.mark.parametrize("change", [{"optimizer": "adam"}, {"beta_2": 0.99}])
def test_negative_control_differs(data, change):
    """True Adam (or a perturbed beta_2) must not match ADAM*: the test can fail.

    The gap only has to be far above the 1e-10 of the exactness contract.
    """
    X, y, X_test, _ = data
    params = dict(
        KERNEL,
        width=X.shape[0],
        solver="primal",
        max_iter=5,
        learning_rate_init=0.05,
        random_state=3,
        **QUIET,
    )
    reference = AdamStarNTKRegressor(**params).fit(X, y).predict(X_test)
    other = AdamStarNTKRegressor(**{**params, **change}).fit(X, y).predict(X_test)
    assert _relative(other, reference) > 1e-5


def test_same_seed_same_network(data):
    X, y, _, _ = data
    a = AdamStarNTKRegressor(width=8, max_iter=1, random_state=5).fit(X, y)
    b = AdamStarNTKRegressor(
        width=8,
        max_iter=2,
        random_state=5,
        early_stopping=True,
        validation_fraction=0.2,
    ).fit(X, y)
    c = AdamStarNTKRegressor(width=8, max_iter=1, random_state=6).fit(X, y)
    np.testing.assert_array_equal(
        a.network_.hidden_weights[0], b.network_.hidden_weights[0]
    )
    assert not np.array_equal(
        a.network_.hidden_weights[0], c.network_.hidden_weights[0]
    )


# ----------------------------------------------------------------------------
# 3. The eigen solver equals the dual one.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum"])
def test_eigen_equals_dual(data, optimizer):
    X, y, X_test, _ = data
    Y = np.column_stack([y, X[:, 0] * X[:, 1]])
    weights = np.r_[np.zeros(3), np.linspace(0.2, 3.0, 27)]
    params = dict(
        KERNEL, optimizer=optimizer, max_iter=25, learning_rate_init=0.05, **QUIET
    )
    eigen = AdamStarNTKRegressor(solver="eigen", **params).fit(
        X, Y, sample_weight=weights
    )
    dual = AdamStarNTKRegressor(solver="dual", **params).fit(
        X, Y, sample_weight=weights
    )
    assert eigen.solver_ == "eigen"
    assert _relative(eigen.predict(X_test), dual.predict(X_test)) < 1e-8
    for stage_e, stage_d in zip(
        eigen.staged_predict(X_test), dual.staged_predict(X_test)
    ):
        assert _relative(stage_e, stage_d) < 1e-8


def test_eigen_equals_dual_with_early_stopping(data):
    # The eigen solver scores the validation rows in its eigenbasis.
    X, y, X_test, _ = data
    params = dict(KERNEL, max_iter=40, learning_rate_init=0.3, early_stopping=True,
                  validation_fraction=0.3, n_iter_no_change=4, tol=0.0,
                  random_state=0)
    eigen = AdamStarNTKRegressor(solver="eigen", **params).fit(X, y)
    dual = AdamStarNTKRegressor(solver="dual", **params).fit(X, y)
    assert eigen.solver_ == "eigen" and eigen.n_iter_ == dual.n_iter_ < 40
    np.testing.assert_allclose(eigen.validation_scores_, dual.validation_scores_,
                               rtol=1e-8)
    assert _relative(eigen.predict(X_test), dual.predict(X_test)) < 1e-8


# ----------------------------------------------------------------------------
# 4. Precomputed kernels.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("Estimator", [AdamStarNTKRegressor, AdamStarNTKClassifier])
def test_precomputed_equals_analytic(data, Estimator):
    X, y, X_test, _ = data
    target = y if Estimator is AdamStarNTKRegressor else _labels(y, 3)
    params = dict(max_iter=5, learning_rate_init=0.05, solver="dual", **QUIET)
    direct = Estimator(**KERNEL, **params).fit(X, target)
    gram = Estimator(kernel="precomputed", **params).fit(
        naive_kernel(X, **KERNEL), target
    )
    assert gram.X_fit_ is None
    assert gram.n_features_in_ == X.shape[0]
    K_test = naive_kernel(X_test, X, **KERNEL)
    method = "predict" if Estimator is AdamStarNTKRegressor else "predict_proba"
    assert (
        _relative(getattr(gram, method)(K_test), getattr(direct, method)(X_test))
        < 1e-10
    )
    assert not hasattr(gram, "partial_fit")
    with pytest.raises(ValueError, match="square"):
        Estimator(kernel="precomputed").fit(K_test, target[: K_test.shape[0]])
    with pytest.raises(ValueError, match="features"):
        gram.predict(K_test[:, :-1])


# ----------------------------------------------------------------------------
# 5. Online learning, warm start, early stopping, staged predictions.
# ----------------------------------------------------------------------------


def test_partial_fit_grows_the_support_set(data):
    X, y, X_test, _ = data
    est = AdamStarNTKRegressor(
        learning_rate_init=0.05,
        normalize_y=False,
        batch_size=4,
        shuffle=False,
        **KERNEL,
    )
    weights = np.linspace(0.5, 1.5, 30)
    chunks = [slice(0, 10), slice(10, 18), slice(18, 30)]
    for chunk in chunks:
        est.partial_fit(X[chunk], y[chunk], sample_weight=weights[chunk])
        assert est.X_fit_.shape == (chunk.stop, X.shape[1])
        assert est.dual_coef_.shape == (chunk.stop, 1)
        assert est.n_iter_ == 1 and len(list(est.staged_predict(X_test))) == 1
    # The online model is the dual recursion over all rows, each chunk one epoch
    # of batches over its own rows (rows not seen yet have zero coefficients).
    epochs = [
        [np.arange(30)[chunk][s] for s in gen_batches(chunk.stop - chunk.start, 4)]
        for chunk in chunks
    ]
    reference = dual_training(
        naive_kernel(X, **KERNEL),
        y,
        epochs,
        optimizer="adam*",
        learning_rate=0.05,
        sample_weight=weights,
    )
    assert est.t_ == reference["t"]
    expected = (naive_kernel(X_test, X, **KERNEL) @ reference["coef"])[:, 0]
    assert _relative(est.predict(X_test), expected) < 1e-10


def test_partial_fit_after_fit_and_finite_width(data):
    X, y, _, _ = data
    est = AdamStarNTKRegressor(max_iter=3, **QUIET).fit(X[:20], y[:20])
    t = est.t_
    est.partial_fit(X[20:], y[20:])
    assert est.X_fit_.shape[0] == 30 and est.t_ == t + 1

    primal = AdamStarNTKRegressor(width=10, random_state=0)
    primal.partial_fit(X[:15], y[:15])
    coef_shape = primal.coef_.shape
    primal.partial_fit(X[15:], y[15:])
    assert primal.solver_ == "primal" and primal.coef_.shape == coef_shape
    assert primal.t_ == 2
    with pytest.raises(ValueError, match="features"):
        primal.partial_fit(X[:, :2], y)


def test_classifier_partial_fit_needs_classes(data):
    X, y, _, _ = data
    labels = _labels(y, 3)
    clf = AdamStarNTKClassifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, labels)
    clf.partial_fit(X[:10], labels[:10], classes=[0, 1, 2])
    clf.partial_fit(X[10:], labels[10:])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict_proba(X).shape == (30, 3)
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, labels, classes=[0, 1])
    with pytest.raises(ValueError, match="not in"):
        clf.partial_fit(X, labels + 5)


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(batch_size=7, random_state=2),
        dict(width=15, solver="primal", random_state=2, batch_size=7),
        dict(solver="eigen"),
        dict(early_stopping=True, validation_fraction=0.2, random_state=1),
    ],
)
def test_warm_start_resumes(data, params):
    X, y, X_test, _ = data
    common = {**KERNEL, "learning_rate_init": 0.05, **QUIET, **params}
    ten = AdamStarNTKRegressor(max_iter=10, **common).fit(X, y)
    warm = AdamStarNTKRegressor(max_iter=5, warm_start=True, **common).fit(X, y)
    warm.fit(X, y)
    assert warm.n_iter_ == 5 and warm.t_ == ten.t_
    if not params.get("early_stopping"):
        assert _relative(warm.predict(X_test), ten.predict(X_test)) < 1e-10
    else:  # the best epoch of each call is kept; the training itself continued
        np.testing.assert_allclose(warm.loss_curve_, ten.loss_curve_[5:], rtol=1e-10)


def test_warm_start_with_precomputed_kernel(data):
    X, y, X_test, _ = data
    K, K_test = naive_kernel(X, **KERNEL), naive_kernel(X_test, X, **KERNEL)
    common = dict(kernel="precomputed", learning_rate_init=0.05, **QUIET)
    ten = AdamStarNTKRegressor(max_iter=10, **common).fit(K, y)
    warm = AdamStarNTKRegressor(max_iter=5, warm_start=True, **common).fit(K, y)
    warm.fit(K, y)
    assert warm.t_ == 10
    assert _relative(warm.predict(K_test), ten.predict(K_test)) < 1e-10
    warm.fit(2 * K, y)  # another Gram matrix: start afresh
    assert warm.t_ == 5


def test_warm_start_restarts_on_new_rows(data):
    X, y, X_test, _ = data
    common = dict(KERNEL, learning_rate_init=0.05, max_iter=5, **QUIET)
    warm = AdamStarNTKRegressor(warm_start=True, **common).fit(X, y)
    warm.fit(X[:20], y[:20])
    fresh = AdamStarNTKRegressor(**common).fit(X[:20], y[:20])
    assert warm.t_ == 5
    np.testing.assert_array_equal(warm.predict(X_test), fresh.predict(X_test))


def test_early_stopping_keeps_the_best_epoch(data):
    X, y, X_test, _ = data
    est = AdamStarNTKRegressor(
        early_stopping=True,
        validation_fraction=0.3,
        max_iter=30,
        learning_rate_init=0.3,
        n_iter_no_change=5,
        tol=0.0,
        random_state=0,
        **KERNEL,
    ).fit(X, y)
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ == len(est.loss_curve_)
    assert est.best_validation_score_ == max(scores)
    assert est.best_loss_ is None
    stages = list(est.staged_predict(X_test))
    best = int(np.argmax(scores))
    np.testing.assert_allclose(est.predict(X_test), stages[best], rtol=1e-12)
    # The held-out rows stay in X_fit_ with zero coefficients.
    assert est.X_fit_.shape[0] == 30
    assert np.sum(np.all(est.dual_coef_ == 0, axis=1)) == 9

    plain = AdamStarNTKRegressor(max_iter=3, early_stopping=False).fit(X, y)
    assert plain.validation_scores_ is None and plain.best_validation_score_ is None
    assert plain.best_loss_ == min(plain.loss_curve_)


@pytest.mark.parametrize(
    "Estimator, params",
    [
        (AdamStarNTKRegressor, dict(solver="dual")),
        (AdamStarNTKRegressor, dict(solver="eigen")),
        (AdamStarNTKRegressor, dict(width=10, solver="primal", random_state=0)),
        (AdamStarNTKClassifier, dict(batch_size=8, random_state=0)),
    ],
)
def test_staged_predict(data, Estimator, params):
    X, y, X_test, _ = data
    target = y if Estimator is AdamStarNTKRegressor else _labels(y, 3)
    est = Estimator(max_iter=6, **QUIET, **params).fit(X, target)
    stages = list(est.staged_predict(X_test))
    assert len(stages) == est.n_iter_ == 6
    np.testing.assert_allclose(stages[-1], est.predict(X_test), rtol=1e-12)
    if Estimator is AdamStarNTKRegressor:
        assert not np.allclose(stages[0], stages[-1])
    # Rows are evaluated in blocks that fit the working memory (here one row
    # each); the blocks change nothing.
    with config_context(working_memory=1e-6):
        blocked = list(est.staged_predict(X_test))
    np.testing.assert_allclose(np.stack(blocked), np.stack(stages), rtol=1e-12)


def test_stopping_on_tol_and_convergence_warning(data):
    X, y, _, _ = data
    with pytest.warns(ConvergenceWarning, match="maximum iterations"):
        AdamStarNTKRegressor(max_iter=3, early_stopping=False).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = AdamStarNTKRegressor(max_iter=50, tol=10.0, n_iter_no_change=2,
                                   early_stopping=False).fit(X, y)
    # No epoch improves by tol=10: the count passes n_iter_no_change at epoch 4.
    assert est.n_iter_ == 4


def test_verbose_prints_one_line_per_epoch(data, capsys):
    X, y, _, _ = data
    est = AdamStarNTKRegressor(max_iter=4, verbose=1, **QUIET).fit(X, y)
    lines = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(lines) == est.n_iter_ == 4
    assert re.fullmatch(r"Iteration 1, loss = \d+\.\d{8}", lines[0])

    AdamStarNTKRegressor(
        max_iter=3, verbose=1, random_state=0, **{**QUIET, "early_stopping": True}
    ).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("validation score = " in line for line in lines)


# ----------------------------------------------------------------------------
# 6. The scikit-learn protocol.
# ----------------------------------------------------------------------------


def test_pipeline_and_grid_search(data):
    X, y, X_test, y_test = data
    pipe = make_pipeline(
        StandardScaler(), AdamStarNTKRegressor(max_iter=4, random_state=0)
    )
    grid = GridSearchCV(
        pipe,
        {
            "adamstarntkregressor__beta_1": [0.8, 0.9],
            "adamstarntkregressor__beta_2": [0.99, 0.999],
            "adamstarntkregressor__width": [None, 8],
        },
        cv=2,
    ).fit(X, y)
    assert len(grid.cv_results_["params"]) == 8
    assert np.all(np.isfinite(grid.cv_results_["mean_test_score"]))
    assert np.isfinite(grid.score(X_test, y_test))


def test_clone_pickle_and_joblib_round_trip(data, tmp_path):
    X, y, X_test, _ = data
    for est in [
        AdamStarNTKRegressor(max_iter=3, width=6, random_state=0),
        AdamStarNTKRegressor(max_iter=3, early_stopping=True, random_state=0),
        AdamStarNTKClassifier(max_iter=3).fit(X, _labels(y, 3)),
    ]:
        if not hasattr(est, "n_iter_"):
            est.fit(X, y)
        cloned = clone(est)
        assert cloned.get_params() == est.get_params()
        assert not hasattr(cloned, "n_iter_")
        restored = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(restored.predict(X_test), est.predict(X_test))
        path = tmp_path / "model.joblib"
        joblib.dump(est, path)
        np.testing.assert_array_equal(
            joblib.load(path).predict(X_test), est.predict(X_test)
        )


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_cross_val_score_under_joblib_backends(data, backend):
    X, y, _, _ = data
    est = AdamStarNTKClassifier(max_iter=3, n_jobs=1)
    labels = _labels(y, 2)
    with joblib.parallel_backend(backend):
        parallel = cross_val_score(est, X, labels, cv=KFold(3), n_jobs=2)
    serial = cross_val_score(est, X, labels, cv=KFold(3), n_jobs=1)
    np.testing.assert_array_equal(parallel, serial)


def test_numba_threads_follow_n_jobs_and_are_restored(data, monkeypatch):
    numba = pytest.importorskip("numba")
    from sklearn_adamntk import _solvers
    from sklearn_adamntk._dual import DualTrainer

    seen = []

    class Recording(DualTrainer):
        def run_epoch(self, batches):
            seen.append(numba.get_num_threads())
            return super().run_epoch(batches)

    monkeypatch.setattr(_solvers, "DualTrainer", Recording)
    X, y, _, _ = data
    before = numba.get_num_threads()
    AdamStarNTKRegressor(max_iter=2, solver="dual", n_jobs=1).fit(X, y)
    assert seen == [1, 1]
    assert numba.get_num_threads() == before


def test_result_does_not_depend_on_n_jobs(data):
    X, y, X_test, _ = data
    one = AdamStarNTKRegressor(max_iter=4, batch_size=8, random_state=0, n_jobs=1)
    two = clone(one).set_params(n_jobs=2)
    np.testing.assert_array_equal(
        one.fit(X, y).predict(X_test), two.fit(X, y).predict(X_test)
    )


def test_readonly_memmap_float32_and_int_inputs(data, tmp_path):
    X, y, X_test, _ = data
    reference = AdamStarNTKRegressor(max_iter=3).fit(X, y)
    X_mm, y_mm = create_memmap_backed_data([X, y])
    assert not X_mm.flags.writeable
    mapped = AdamStarNTKRegressor(max_iter=3).fit(X_mm, y_mm)
    np.testing.assert_array_equal(mapped.predict(X_test), reference.predict(X_test))

    single = AdamStarNTKRegressor(max_iter=3).fit(X.astype(np.float32), y)
    assert single.X_fit_.dtype == np.float32
    np.testing.assert_allclose(
        single.predict(X_test.astype(np.float32)),
        reference.predict(X_test),
        rtol=1e-3,
        atol=1e-3,
    )

    X_int = np.round(3 * X).astype(np.int64)
    labels = _labels(y, 2)
    clf = AdamStarNTKClassifier(max_iter=3).fit(X_int, labels)
    assert clf.X_fit_.dtype == np.float64
    assert clf.predict(X_int).shape == (30,)


def test_targets_shapes_and_probabilities(data):
    X, y, X_test, _ = data
    reg = AdamStarNTKRegressor(max_iter=3).fit(X, y)
    assert reg.predict(X_test).shape == (10,)
    reg2 = AdamStarNTKRegressor(max_iter=3).fit(X, y[:, None])
    assert reg2.predict(X_test).shape == (10, 1)
    np.testing.assert_allclose(
        reg2.predict(X_test)[:, 0], reg.predict(X_test), rtol=1e-12
    )

    names = np.array(["low", "mid", "high"])[_labels(y, 3)]
    clf = AdamStarNTKClassifier(max_iter=3).fit(X, names)
    np.testing.assert_array_equal(clf.classes_, ["high", "low", "mid"])
    proba = clf.predict_proba(X_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X_test)), proba, rtol=1e-12)
    np.testing.assert_array_equal(
        clf.predict(X_test), clf.classes_[np.argmax(proba, axis=1)]
    )

    binary = AdamStarNTKClassifier(max_iter=3).fit(X, y > 0)
    scores = binary.decision_function(X_test)
    assert scores.shape == (10,)
    np.testing.assert_array_equal(binary.predict(X_test), scores > 0)
    np.testing.assert_allclose(
        binary.predict_proba(X_test)[:, 1], 1 / (1 + np.exp(-scores))
    )


def test_fit_callbacks_receive_epoch_events(data):
    callback = pytest.importorskip(
        "sklearn.callback", reason="scikit-learn < 1.9 has no callback API"
    )
    X, y, _, _ = data

    class Recorder:
        def __init__(self):
            self.events = []

        def setup(self, estimator, context):
            self.events.append("setup")

        def on_fit_task_begin(self, estimator, context, *, X=None, y=None):
            self.events.append(("begin", context.task_name))

        def on_fit_task_end(self, estimator, context, *, fitted_estimator=None):
            self.events.append(("end", context.task_name))
            if context.task_name == "epoch":
                self.predictions = fitted_estimator.predict(X[:2])
            return len(self.events) > 8  # asks to stop after the fourth epoch

        def teardown(self, estimator, context):
            self.events.append("teardown")

    recorder = Recorder()
    assert isinstance(recorder, callback.FitCallback)
    est = AdamStarNTKRegressor(max_iter=10, **QUIET).set_callbacks(recorder).fit(X, y)
    epochs = [e for e in recorder.events if e == ("end", "epoch")]
    assert len(epochs) == est.n_iter_ == 4
    assert recorder.events[0] == "setup" and recorder.events[-1] == "teardown"
    assert recorder.events[1] == ("begin", "fit") and recorder.events[-2] == (
        "end",
        "fit",
    )
    np.testing.assert_allclose(recorder.predictions, est.predict(X[:2]))


def test_progress_bar_callback(data):
    callback = pytest.importorskip("sklearn.callback")
    pytest.importorskip("rich", reason="ProgressBar needs rich")
    X, y, _, _ = data
    est = AdamStarNTKRegressor(max_iter=3).set_callbacks(callback.ProgressBar())
    assert est.fit(X, y).n_iter_ == 3


# ----------------------------------------------------------------------------
# 7. Bad input (DESIGN 8).
# ----------------------------------------------------------------------------


def test_bad_data_raises(data):
    X, y, _, _ = data
    reg, clf = AdamStarNTKRegressor(max_iter=2), AdamStarNTKClassifier(max_iter=2)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reg.fit(X_nan, y)
    X_inf = X.copy()
    X_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        reg.fit(X_inf, y)
    with pytest.raises(ValueError, match="NaN"):
        reg.fit(X, np.r_[np.nan, y[1:]])
    with pytest.raises(ValueError, match="numeric targets"):
        reg.fit(X, np.array(["a", "b", "c"] * 10))
    with pytest.raises(ValueError, match="one class"):
        clf.fit(X, np.ones(30))
    with pytest.raises(ValueError, match="Unknown label type"):
        clf.fit(X, y)
    with pytest.raises(ValueError, match="0 sample"):
        reg.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="(?i)negative"):
        reg.fit(X, y, sample_weight=-np.ones(30))
    with pytest.raises(NotFittedError):
        reg.predict(X)
    reg.fit(X, y)
    with pytest.raises(
        ValueError,
        match="X has 2 features, but AdamStarNTKRegressor is expecting 3 features",
    ):
        reg.predict(X[:, :2])


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(learning_rate_init=-1.0), "learning_rate_init"),
        (dict(kernel="rbf"), "kernel"),
        (dict(device="gpu"), "device"),
        (dict(width=0), "width"),
        (dict(beta_2=1.0), "beta_2"),
        (dict(batch_size=0), "batch_size"),
        (dict(optimizer="adam"), "optimizer='adam'.*width"),
        (dict(optimizer="adam", width=5, solver="dual"), "solver='primal'"),
        (dict(kernel="precomputed", width=5), "precomputed.*width"),
        (dict(solver="primal"), "solver='primal'.*width"),
        (dict(solver="eigen", batch_size=5), "full-batch"),
    ],
)
def test_invalid_hyper_parameters(data, params, match):
    X, y, _, _ = data
    with pytest.raises(ValueError, match=match):
        AdamStarNTKRegressor(**params).fit(X, y)


def test_invalid_combinations_specific_to_estimators(data):
    X, y, _, _ = data
    with pytest.raises(ValueError, match="squared loss"):
        AdamStarNTKClassifier(solver="eigen").fit(X, y > 0)
    # As MLP's: one online epoch has nothing to stop, so partial_fit trains
    # it whatever early_stopping is; the eigen solver cannot train online.
    online = AdamStarNTKRegressor(early_stopping=True).partial_fit(X, y)
    assert online.n_iter_ == 1 and online.validation_scores_ is None
    assert not hasattr(AdamStarNTKRegressor(solver="eigen"), "partial_fit")
    with pytest.warns(UserWarning, match="too few rows"):
        AdamStarNTKClassifier(early_stopping=True, max_iter=5).fit(X[:8], y[:8] > 0)


@pytest.mark.parametrize(
    "params", [dict(), dict(solver="eigen"), dict(width=8, solver="primal")]
)
def test_divergence_raises_and_keeps_previous_fit(data, params):
    X, y, X_test, _ = data
    est = AdamStarNTKRegressor(max_iter=3, random_state=0, **params).fit(X, y)
    before = est.predict(X_test)
    attributes = dict(est.__dict__)
    est.set_params(optimizer="sgd", learning_rate_init=1e200, max_iter=5)
    with pytest.raises(ValueError, match="diverged.*learning_rate_init"):
        est.fit(X[:20], y[:20])
    assert set(est.__dict__) == set(attributes)
    assert est.n_features_in_ == 3 and est.n_iter_ == 3
    np.testing.assert_array_equal(est.predict(X_test), before)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(solver="dual", early_stopping=False),
         "30 x 30 training Gram matrix.*width=.*solver='primal'"),
        (dict(solver="eigen"), "its eigenvectors for solver='eigen'"),
        (dict(width=50, solver="primal", early_stopping=False),
         "30 x 51 feature matrix.*smaller width"),
    ],
)
def test_memory_request_fails_fast(data, monkeypatch, params, match):
    from sklearn_adamntk import _backend

    X, y, _, _ = data
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: 1000)
    with pytest.raises(MemoryError, match=match):
        AdamStarNTKRegressor(**params).fit(X, y)


@pytest.mark.parametrize("Estimator", [AdamStarNTKRegressor, AdamStarNTKClassifier])
def test_docstrings_document_every_parameter(Estimator):
    documented = re.findall(r"^    (\w+) : ", Estimator.__doc__, flags=re.MULTILINE)
    assert sorted(set(Estimator().get_params()) - set(documented)) == []
    for method in ["fit", "partial_fit", "predict", "staged_predict"]:
        assert "Parameters" in getattr(Estimator, method).__doc__


def test_an_online_loop_over_the_same_rows_keeps_the_support_set(data):
    # The usual loop: every call passes the same rows. Each call trains their
    # coefficients instead of appending them again, which is the same model:
    # the loop is ordinary training, one epoch per call.
    X, y, X_test, _ = data
    common = dict(learning_rate_init=0.05, batch_size=8, shuffle=False, **KERNEL)
    online = AdamStarNTKRegressor(**common)
    for _ in range(12):
        online.partial_fit(X, y)
    assert online.X_fit_.shape == X.shape and online.t_ == 12 * 4
    straight = AdamStarNTKRegressor(max_iter=12, **QUIET, **common).fit(X, y)
    assert _relative(online.predict(X_test), straight.predict(X_test)) < 1e-10
    # New rows still join: the support set grows by the rows not seen.
    online.partial_fit(np.vstack([X[:5], X_test[:3]]), np.r_[y[:5], y[:3]])
    assert online.X_fit_.shape[0] == X.shape[0] + 3


def test_staged_probabilities_and_logits(data):
    X, y, X_test, _ = data
    for n_classes in (2, 3):
        labels = _labels(y, n_classes)
        clf = AdamStarNTKClassifier(max_iter=5, **QUIET, **KERNEL).fit(X, labels)
        probabilities = list(clf.staged_predict_proba(X_test))
        logits = list(clf.staged_decision_function(X_test))
        assert len(probabilities) == len(logits) == clf.n_iter_ == 5
        np.testing.assert_allclose(probabilities[-1], clf.predict_proba(X_test),
                                   rtol=1e-12)
        np.testing.assert_allclose(logits[-1], clf.decision_function(X_test),
                                   rtol=1e-12)
