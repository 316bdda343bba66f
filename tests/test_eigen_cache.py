"""The eigendecomposition is paid once per kernel and training rows (issue 4)."""

import numpy as np
import pytest
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold

from sklearn_adamntk import AdamStarNTKRegressor, network_kernel
from sklearn_adamntk import _eigen_cache, _solvers
from sklearn_adamntk._eigen import EigenTrainer
from sklearn_adamntk._optimizer import OptimizerSettings
from sklearn_adamntk._solvers import choose_solver
from sklearn_adamntk._spectral import eigen_decomposition

pytestmark = pytest.mark.filterwarnings("ignore", category=ConvergenceWarning)


@pytest.fixture
def regression():
    X, y = make_friedman1(n_samples=60, n_features=5, random_state=0)
    return X, y


@pytest.fixture
def eigensolves(monkeypatch):
    """Counts the eigendecompositions the estimators compute."""
    calls = []

    def counted(K, *args, **kwargs):
        calls.append(K.shape[0])
        return eigen_decomposition(K, *args, **kwargs)

    monkeypatch.setattr(_solvers, "eigen_decomposition", counted)
    return calls


def _fit(X, y, **params):
    params = dict(dict(solver="eigen", max_iter=20, kernel="ntk", depth=2,
                       early_stopping=False), **params)
    return AdamStarNTKRegressor(**params).fit(X, y)


def _fresh(X, y, **params):
    _eigen_cache.clear()
    return _fit(X, y, **params)


def test_second_setting_reuses_the_decomposition(regression, eigensolves):
    X, y = regression
    _fit(X, y, beta_1=0.9)
    second = _fit(X, y, beta_1=0.5, learning_rate_init=0.3)
    assert eigensolves == [60]
    reference = _fresh(X, y, beta_1=0.5, learning_rate_init=0.3)
    assert eigensolves == [60, 60]
    np.testing.assert_array_equal(second.dual_coef_, reference.dual_coef_)


@pytest.mark.parametrize(
    "change",
    [
        dict(depth=3),
        dict(kernel="nngp"),
        dict(bias_variance=0.5),
        dict(weight_variance=1.5),
        dict(activation="erf"),
        dict(rows=slice(0, 50)),
        dict(sample_weight=True),
        dict(early_stopping=True, random_state=0),
    ],
)
def test_a_different_gram_matrix_is_not_served_from_the_cache(
    regression, eigensolves, change
):
    X, y = regression
    change = dict(change)
    rows = change.pop("rows", slice(None))
    weight = np.linspace(0.5, 1.5, X[rows].shape[0]) if change.pop(
        "sample_weight", False) else None
    _fit(X, y)
    est = AdamStarNTKRegressor(
        **dict(dict(solver="eigen", max_iter=20, kernel="ntk", depth=2,
                    early_stopping=False), **change)
    ).fit(X[rows], y[rows], sample_weight=weight)
    assert len(eigensolves) == 2
    reference = AdamStarNTKRegressor(**est.get_params())
    _eigen_cache.clear()
    reference.fit(X[rows], y[rows], sample_weight=weight)
    np.testing.assert_array_equal(est.dual_coef_, reference.dual_coef_)


def test_grid_search_pays_one_eigensolve_per_fold(regression, eigensolves):
    X, y = regression
    grid = {
        "beta_1": [0.0, 0.9],
        "beta_2": [0.9, 0.999],
        "learning_rate_init": [0.3, 1.0, 3.0],
    }
    search = GridSearchCV(
        AdamStarNTKRegressor(early_stopping=False, solver="eigen", max_iter=20,
                             kernel="ntk"),
        grid,
        cv=KFold(3),
    ).fit(X, y)
    # Three folds, plus the refit on every row.
    assert eigensolves == [40, 40, 40, 60]
    assert len(search.cv_results_["params"]) == 12

    # The same search with the cache emptied before every fit scores the same.
    uncached = GridSearchCV(
        _Uncached(early_stopping=False, solver="eigen", max_iter=20, kernel="ntk"),
        grid,
        cv=KFold(3),
    ).fit(X, y)
    np.testing.assert_array_equal(
        search.cv_results_["mean_test_score"], uncached.cv_results_["mean_test_score"]
    )


class _Uncached(AdamStarNTKRegressor):
    def fit(self, X, y, sample_weight=None):
        _eigen_cache.clear()
        return super().fit(X, y, sample_weight)


def test_warm_start_refit_reuses_the_decomposition(regression, eigensolves):
    X, y = regression
    est = _fit(X, y, warm_start=True, max_iter=5)
    est.set_params(max_iter=7)
    est.fit(X, y)
    assert eigensolves == [60]
    # 5 + 7 epochs equal 12 straight.
    straight = _fresh(X, y, max_iter=12)
    np.testing.assert_allclose(est.dual_coef_, straight.dual_coef_, rtol=1e-9,
                               atol=1e-12)
    assert est.t_ == 12


def test_auto_takes_the_eigen_solver_once_the_decomposition_is_paid(regression):
    X, y = regression
    assert _fit(X, y, solver="auto").solver_ == "dual"
    eigen = _fit(X, y, solver="eigen")
    auto = _fit(X, y, solver="auto")
    assert auto.solver_ == "eigen"
    np.testing.assert_array_equal(auto.dual_coef_, eigen.dual_coef_)
    dual = _fit(X, y, solver="dual")
    np.testing.assert_allclose(auto.predict(X), dual.predict(X), rtol=1e-8)


def test_choose_solver_counts_a_cached_decomposition_as_paid():
    settings = dict(n_samples=5000, n_outputs=1, n_feature_columns=None,
                    full_batch=True, loss="squared", optimizer="adam*", max_iter=100)
    assert choose_solver(**settings) == "dual"
    assert choose_solver(**settings, eigen_cached=True) == "eigen"
    # Mini-batches or a cross-entropy loss have no eigen form, cached or not.
    assert choose_solver(**dict(settings, full_batch=False), eigen_cached=True) == "dual"
    assert choose_solver(**dict(settings, loss="logistic"), eigen_cached=True) == "dual"


def test_nothing_is_kept_beyond_the_memory_budget(regression, monkeypatch,
                                                  eigensolves):
    from sklearn_adamntk import _backend

    X, y = regression
    # Room for the fit, but a quarter of it is less than one decomposition.
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: 2 * 60 * 60 * 8)
    _fit(X, y)
    _fit(X, y)
    assert eigensolves == [60, 60]
    assert _eigen_cache.nbytes() == 0


def test_least_recently_used_entry_is_evicted(monkeypatch):
    from sklearn_adamntk import _backend

    rng = np.random.default_rng(0)
    decompositions = [eigen_decomposition(network_kernel(rng.standard_normal((20, 3))))
                      for _ in range(3)]
    one = sum(a.nbytes for a in (decompositions[0].eigenvalues,
                                 decompositions[0].eigenvectors,
                                 decompositions[0].sample_weight,
                                 decompositions[0].sqrt_weight))
    # The budget holds two entries.
    monkeypatch.setattr(_backend, "available_memory_bytes",
                        lambda: int(2.5 * one / _eigen_cache.MAX_FRACTION))
    _eigen_cache.put("a", decompositions[0])
    _eigen_cache.put("b", decompositions[1])
    assert _eigen_cache.get("a") is decompositions[0]  # "b" is now the oldest
    _eigen_cache.put("c", decompositions[2])
    assert _eigen_cache.get("b") is None
    assert _eigen_cache.get("a") is decompositions[0]
    assert _eigen_cache.get("c") is decompositions[2]
    assert _eigen_cache.nbytes() == 2 * one


def test_memory_check_drops_the_cache_before_failing(regression, monkeypatch):
    from sklearn_adamntk import _backend

    X, y = regression
    _fit(X, y)
    assert _eigen_cache.nbytes() > 0
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: 1000)
    # A cached decomposition needs no new N x N memory: the fit goes ahead.
    _fit(X, y, beta_1=0.5)
    with pytest.raises(MemoryError, match="eigenvectors"):
        _fit(X[:50], y[:50])
    assert _eigen_cache.nbytes() == 0


def test_precomputed_gram_matrix_is_left_untouched(regression):
    X, y = regression
    K = network_kernel(X, kernel="ntk", depth=2)
    before = K.copy()
    est = AdamStarNTKRegressor(early_stopping=False, kernel="precomputed", solver="eigen", max_iter=20)
    est.fit(K, y)
    np.testing.assert_array_equal(K, before)
    est.set_params(learning_rate_init=0.5).fit(K, y)
    np.testing.assert_array_equal(K, before)


def test_in_place_decomposition_equals_the_copying_one():
    rng = np.random.default_rng(3)
    K = network_kernel(rng.standard_normal((30, 4)), depth=2)
    weight = rng.uniform(0, 2, 30)
    weight[[3, 7]] = 0.0
    copied = eigen_decomposition(K, weight)
    scratch = K.copy()
    in_place = eigen_decomposition(scratch, weight, overwrite_K=True)
    np.testing.assert_array_equal(copied.eigenvalues, in_place.eigenvalues)
    np.testing.assert_array_equal(copied.eigenvectors, in_place.eigenvectors)
    # The decomposition reconstructs W^1/2 K W^1/2.
    Q, lam = in_place.eigenvectors, in_place.eigenvalues
    sw = np.sqrt(weight)
    np.testing.assert_allclose(Q @ np.diag(lam) @ Q.T, sw[:, None] * K * sw,
                               atol=1e-12)


def test_eigen_trainer_without_K_trains_from_zero_but_cannot_resume():
    rng = np.random.default_rng(4)
    K = network_kernel(rng.standard_normal((25, 3)))
    y = rng.standard_normal(25)
    settings = OptimizerSettings(optimizer="adam*", learning_rate=0.5)
    decomposition = eigen_decomposition(K)
    with_K = EigenTrainer(decomposition, K, y, settings)
    without_K = EigenTrainer(decomposition, None, y, settings)
    for _ in range(5):
        assert with_K.run_epoch() == without_K.run_epoch()
    np.testing.assert_array_equal(with_K.coef, without_K.coef)
    with pytest.raises(ValueError, match="needs the Gram matrix"):
        EigenTrainer(decomposition, None, y, settings, coef=with_K.coef)
    with pytest.raises(ValueError, match="needs the Gram matrix"):
        without_K.train_predictions()


@pytest.fixture
def krylov_builds(monkeypatch):
    """Counts the Krylov restrictions the estimators build."""
    from sklearn_adamntk._spectral import krylov_decomposition

    calls = []

    def counted(K, Y, n_epochs, **kwargs):
        calls.append((K.shape[0], n_epochs))
        return krylov_decomposition(K, Y, n_epochs, **kwargs)

    monkeypatch.setattr(_solvers, "krylov_decomposition", counted)
    return calls


@pytest.mark.parametrize("params", [
    dict(),
    dict(optimizer="momentum", learning_rate_init=0.05, weight_decay=0.01),
    dict(early_stopping=True, n_iter_no_change=3, random_state=0),
])
def test_few_epochs_train_on_a_krylov_restriction_exactly(params, eigensolves,
                                                         krylov_builds):
    # 300 rows, 12 epochs: 13 directions instead of an eigensolve of 300.
    X, y = make_friedman1(n_samples=340, n_features=5, random_state=1)
    X_test, X = X[:40], X[40:]
    y = y[40:]
    weight = np.linspace(0.2, 2.0, 300)
    common = dict(dict(kernel="ntk", max_iter=12, tol=0.0, early_stopping=False),
                  **params)
    eigen = AdamStarNTKRegressor(solver="eigen", **common).fit(X, y, weight)
    dual = AdamStarNTKRegressor(solver="dual", **common).fit(X, y, weight)
    assert eigensolves == [] and len(krylov_builds) == 1
    assert eigen.n_iter_ == dual.n_iter_
    np.testing.assert_allclose(eigen.loss_curve_, dual.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(eigen.predict(X_test), dual.predict(X_test),
                               rtol=1e-8, atol=1e-10 * np.abs(y).max())
    for stage_e, stage_d in zip(eigen.staged_predict(X_test),
                                dual.staged_predict(X_test)):
        np.testing.assert_allclose(stage_e, stage_d, rtol=1e-8,
                                   atol=1e-10 * np.abs(y).max())


def test_grid_search_builds_one_krylov_restriction_per_fold(eigensolves,
                                                            krylov_builds):
    X, y = make_friedman1(n_samples=300, n_features=5, random_state=2)
    search = GridSearchCV(
        AdamStarNTKRegressor(early_stopping=False, solver="eigen", max_iter=10, kernel="ntk"),
        {"beta_1": [0.5, 0.9], "beta_2": [0.99, 0.999], "learning_rate_init": [0.3, 1.0]},
        cv=KFold(3),
    ).fit(X, y)
    assert eigensolves == []
    assert krylov_builds == [(200, 10)] * 3 + [(300, 10)]
    dual = GridSearchCV(
        AdamStarNTKRegressor(early_stopping=False, solver="dual", max_iter=10, kernel="ntk"),
        search.param_grid, cv=KFold(3),
    ).fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               dual.cv_results_["mean_test_score"], rtol=1e-9)
    # "auto" reuses a cached restriction for the next setting of the fold.
    est = AdamStarNTKRegressor(early_stopping=False, solver="auto", max_iter=10, kernel="ntk")
    assert est.fit(X, y).solver_ == "eigen"
    assert len(krylov_builds) == 4


def test_warm_start_resumes_with_the_whole_spectrum(eigensolves, krylov_builds):
    X, y = make_friedman1(n_samples=300, n_features=5, random_state=3)
    est = AdamStarNTKRegressor(early_stopping=False, solver="eigen", max_iter=8, kernel="ntk",
                               warm_start=True).fit(X, y)
    est.fit(X, y)  # resumes: a Krylov restriction holds only from zero
    assert len(krylov_builds) == 1 and eigensolves == [300]
    straight = AdamStarNTKRegressor(early_stopping=False, solver="dual", max_iter=16, kernel="ntk").fit(X, y)
    np.testing.assert_allclose(est.dual_coef_, straight.dual_coef_, rtol=1e-7,
                               atol=1e-9 * np.abs(straight.dual_coef_).max())


def test_krylov_restriction_in_float32(krylov_builds):
    X, y = make_friedman1(n_samples=300, n_features=5, random_state=4)
    X, y = X.astype(np.float32), y.astype(np.float32)
    common = dict(kernel="ntk", max_iter=12, tol=0.0)
    eigen = AdamStarNTKRegressor(early_stopping=False, solver="eigen", **common).fit(X, y)
    dual = AdamStarNTKRegressor(early_stopping=False, solver="dual", **common).fit(X, y)
    assert len(krylov_builds) == 1 and eigen.dual_coef_.dtype == np.float32
    np.testing.assert_allclose(eigen.predict(X), dual.predict(X), rtol=1e-4,
                               atol=1e-5 * np.abs(y).max())


def test_auto_hashes_the_data_only_when_something_is_cached(regression, monkeypatch):
    X, y = regression
    hashed = []
    digest = _eigen_cache.cache_key
    monkeypatch.setattr(_eigen_cache, "cache_key",
                        lambda *parts: hashed.append(1) or digest(*parts))
    _fit(X, y, solver="auto")
    assert hashed == []
    _fit(X, y, solver="eigen")
    _fit(X, y, solver="auto")
    assert len(hashed) == 2
