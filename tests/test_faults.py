"""Bad and extreme input: every call returns finite values or raises a clear error.

First the cases of issue 12 one by one (each raised a bare internal error,
returned NaN, or was silently wrong), then hypothesis property tests over
the estimators' parameters and data: every fit either raises a ValueError
that names its cause, or predicts finite values no larger than a sane
multiple of the targets.
"""

import os
import re
import tempfile
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import HealthCheck, given, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

import sklearn_adamntk
from sklearn_adamntk import (
    AdamStarNTKClassifier,
    AdamStarNTKRegressor,
    RandomNetworkFeatures,
    _backend,
    _eigen_cache,
    _solvers,
    _spectral,
    arccos_kernel,
    network_kernel,
    network_kernel_diag,
)
from sklearn_adamntk._random_network import draw_network, empirical_kernel

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# Hypothesis keeps files in ./.hypothesis by default (it reads this module's
# constants as soon as the tests below are decorated): not in the tree.
set_hypothesis_home_dir(
    os.path.join(tempfile.gettempdir(), "sklearn_adamntk-hypothesis"))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = X[:, 0] + 0.1 * rng.standard_normal(30)
    return X, y


# --------------------------------------------------------------------------
# 1. Extreme magnitudes: standardise them, or a clear error
# --------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1e-300, 1e-15, 1e15, 1e200, 1e300])
def test_targets_of_any_finite_magnitude_are_standardised(data, scale):
    X, y = data
    reference = AdamStarNTKRegressor(max_iter=20).fit(X, y).predict(X)
    pred = AdamStarNTKRegressor(max_iter=20).fit(X, scale * y).predict(X)
    assert np.all(np.isfinite(pred))
    # Standardising is scale-free: the same model, in the targets' units.
    np.testing.assert_allclose(pred / scale, reference, rtol=1e-9, atol=1e-12)


def test_a_constant_target_is_constant_relative_to_its_magnitude(data):
    X, y = data
    for value in (0.0, 1e-300, 3.0, -1e300):
        pred = AdamStarNTKRegressor(max_iter=5).fit(X, np.full(30, value)).predict(X)
        np.testing.assert_array_equal(pred, value)
    # Tiny but not constant: learnt in its own units (it predicted ~0.3 here).
    pred = AdamStarNTKRegressor(max_iter=50).fit(X, 1e-15 * y).predict(X)
    assert np.max(np.abs(pred)) < 1e-14
    assert np.corrcoef(pred, y)[0, 1] > 0.9


def test_huge_targets_without_normalize_y_get_a_clear_error(data):
    X, y = data
    with pytest.raises(ValueError, match=r"targets reach 2.*normalize_y=True"):
        AdamStarNTKRegressor(normalize_y=False).fit(X, 1e200 * y)


@pytest.mark.parametrize("Estimator", [AdamStarNTKRegressor, AdamStarNTKClassifier])
@pytest.mark.parametrize("entry", [1e155, 1e300, 1e60])
def test_rows_of_extreme_magnitude_at_predict_get_a_clear_error(data, Estimator, entry):
    X, y = data
    model = Estimator(max_iter=5).fit(X, y > 0 if Estimator is AdamStarNTKClassifier
                                      else y)
    row = np.array([[entry, 1.0, 1.0]])
    methods = ["predict"] + (["predict_proba", "decision_function",
                              "predict_log_proba"]
                             if Estimator is AdamStarNTKClassifier else [])
    for method in methods:
        with pytest.raises(ValueError, match="kernel on X .*Standardise X"):
            getattr(model, method)(row)
    with pytest.raises(ValueError, match="kernel on X"):
        next(model.staged_predict(row))


@pytest.mark.parametrize("scale", [1e60, 1e150, 1e200, 1e300])
def test_training_rows_of_extreme_magnitude_name_the_input_scale(data, scale):
    # They used to get "training diverged ... lower learning_rate_init".
    X, y = data
    with pytest.raises(ValueError, match="training rows .*Standardise X") as info:
        AdamStarNTKRegressor(max_iter=5).fit(scale * X, y)
    assert "learning_rate_init" not in str(info.value)


def test_the_limit_is_the_kernel_not_the_rows(data):
    # The same rows pass with a small weight variance and fail with a large
    # one: what is checked is the kernel the network computes on them.
    X, y = data
    AdamStarNTKRegressor(max_iter=5, weight_variance=1e-80).fit(1e40 * X, y)
    with pytest.raises(ValueError, match="weight_variance=1e\\+300"):
        AdamStarNTKRegressor(width=16, solver="primal", weight_variance=1e300,
                             max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="depth=40"):
        AdamStarNTKRegressor(depth=40, weight_variance=1e6, max_iter=5).fit(X, y)


def test_float32_rows_have_their_own_limit(data):
    X, y = data
    with pytest.raises(ValueError, match="supported in float32"):
        AdamStarNTKRegressor(max_iter=5).fit((1e10 * X).astype(np.float32), y)
    AdamStarNTKRegressor(max_iter=5).fit((10 * X).astype(np.float32), y)


@pytest.mark.parametrize("scale", [1e3, 1e40])
def test_a_huge_but_finite_kernel_warns(data, scale):
    # ADAM*'s step moves the model by about learning_rate_init * sqrt(K):
    # rows of 1e3 (K ~ 1e6) gave fitted values far beyond the targets.
    X, y = data
    with pytest.warns(UserWarning, match=r"kernel reaches .*Standardise X"):
        AdamStarNTKRegressor(max_iter=5).fit(scale * X, y)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*Standardise X")
        AdamStarNTKRegressor(max_iter=5).fit(10 * X, y)


@pytest.mark.parametrize("function",
                         [network_kernel, network_kernel_diag, arccos_kernel])
def test_kernel_functions_raise_instead_of_returning_inf(function):
    X = np.array([[1e300, 1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match=f"{function.__name__}: .*overflows"):
        function(X)
    if function is not network_kernel_diag:
        with pytest.raises(ValueError, match="on Y overflows"):
            function(np.ones((2, 2)), X)
    # Large but representable: finite values, as before.
    assert np.all(np.isfinite(function(np.array([[1e150, 1.0], [1.0, 2.0]]))))


def test_extreme_sample_weights_change_nothing(data):
    X, y = data
    weight = np.linspace(0.5, 2.0, 30)
    # The solvers agree on a fixed schedule (their default stopping rules differ).
    fixed = dict(max_iter=20, early_stopping=False, tol=0.0)
    reference = AdamStarNTKRegressor(solver="eigen", **fixed).fit(
        X, y, sample_weight=weight).predict(X)
    for scale in (1e-300, 1e300):
        for solver in ("eigen", "dual"):
            pred = AdamStarNTKRegressor(solver=solver, **fixed).fit(
                X, y, sample_weight=scale * weight).predict(X)
            np.testing.assert_allclose(pred, reference, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------
# 2. Internal crashes and misleading messages
# --------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["eigen", "auto", "dual"])
@pytest.mark.parametrize("max_iter", [5, 50])  # a Krylov restriction, a full eigh
def test_constant_and_zero_targets_train_with_every_solver(data, solver, max_iter):
    X, _ = data
    for y in (np.zeros(30), np.ones(30), np.zeros((30, 2))):
        for normalize_y in (True, False):
            model = AdamStarNTKRegressor(solver=solver, max_iter=max_iter,
                                         normalize_y=normalize_y).fit(X, y)
            pred = model.predict(X)
            if normalize_y or not np.any(y):
                np.testing.assert_allclose(pred, y, atol=1e-12)
            assert np.all(np.isfinite(pred))


@pytest.mark.parametrize("max_iter", [5, 50])
def test_a_failing_lapack_driver_gives_way_to_the_next(data, monkeypatch, max_iter):
    X, y = data
    # A fixed schedule: the default stopping rules of the two solvers differ.
    fixed = dict(max_iter=max_iter, early_stopping=False, tol=0.0)
    dual = AdamStarNTKRegressor(solver="dual", **fixed).fit(X, y).predict(X)
    eigh = scipy.linalg.eigh

    def failing(drivers):
        def broken(*args, driver=None, **kwargs):
            if driver in drivers:
                raise np.linalg.LinAlgError("failed to compute an eigenvalue")
            return eigh(*args, driver=driver, **kwargs)
        return broken

    for drivers, solver in [(("evd",), "eigen"), (("evd", "evr"), "eigen"),
                            (("evd", "evr", "ev"), "dual")]:
        monkeypatch.setattr(_spectral.scipy.linalg, "eigh", failing(drivers))
        _eigen_cache.clear()  # decompose again
        model = AdamStarNTKRegressor(solver="eigen", **fixed).fit(X, y)
        assert model.solver_ == solver
        np.testing.assert_allclose(model.predict(X), dual, rtol=1e-9, atol=1e-12)


def test_non_finite_eigenvalues_count_as_a_failure(monkeypatch):
    K = np.array([[2.0, 1.0], [1.0, 2.0]])
    eigh = scipy.linalg.eigh
    calls = []

    def nan_once(a, *args, driver=None, **kwargs):
        calls.append(driver)
        values, vectors = eigh(a, *args, driver=driver, **kwargs)
        return (values * np.nan if len(calls) == 1 else values), vectors

    monkeypatch.setattr(_spectral.scipy.linalg, "eigh", nan_once)
    decomposition = _spectral.eigen_decomposition(K)
    np.testing.assert_allclose(decomposition.eigenvalues, [1.0, 3.0])
    assert len(calls) == 2


def test_momentum_of_one_is_rejected_by_the_parameter_constraints(data):
    X, y = data
    with pytest.raises(ValueError, match=r"'momentum' parameter of "
                                         r"AdamStarNTKRegressor.*\[0.0, 1.0\)"):
        AdamStarNTKRegressor(optimizer="momentum", momentum=1.0).fit(X, y)


@pytest.mark.parametrize("change", [dict(optimizer="sgd"), dict(depth=2),
                                    dict(weight_variance=1.0)])
@pytest.mark.parametrize("width", [None, 16])
def test_changing_the_model_between_partial_fit_calls_says_so(data, change, width):
    X, y = data
    model = AdamStarNTKRegressor(width=width, random_state=0).partial_fit(X, y)
    before = model.predict(X)
    model.set_params(**change)
    name, value = next(iter(change.items()))
    with pytest.raises(ValueError, match=rf"partial_fit continues .*{name}=.* -> "
                                         rf"{value!r}.*call fit"):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model.predict(X), before)


def test_rules_between_parameters_name_the_estimator(data):
    X, y = data
    # It failed inside the optimizer's settings, without the estimator's name.
    with pytest.raises(ValueError, match="AdamStarNTKRegressor: learning_rate_init "
                                         r"\* weight_decay must be below 1"):
        AdamStarNTKRegressor(learning_rate_init=2.0, weight_decay=0.5).fit(X, y)
    # Scikit-learn's scorer failed on a validation split with no weight.
    weight = np.zeros(len(y))
    weight[0] = 1.0
    for Estimator, target in ((AdamStarNTKRegressor, y),
                              (AdamStarNTKClassifier, y > 0)):
        with pytest.raises(ValueError, match="rows of the early-stopping split have "
                                             "no positive sample_weight"):
            Estimator(early_stopping=True, validation_fraction=0.3,
                      random_state=0).fit(
                X, target, sample_weight=weight)


def test_mixed_label_types_get_a_value_error(data):
    X, _ = data
    labels = np.array(["a", 1] * 15, dtype=object)
    with pytest.raises(ValueError, match="cannot be sorted .*one type"):
        AdamStarNTKClassifier().fit(X, labels)
    with pytest.raises(ValueError, match="classes cannot be sorted"):
        AdamStarNTKClassifier().partial_fit(X, np.arange(30) % 2,
                                            classes=np.array(["a", 1], dtype=object))


# --------------------------------------------------------------------------
# 3. Silently wrong
# --------------------------------------------------------------------------


@pytest.mark.parametrize("make_bad, match", [
    (lambda K: -K, "negative entry"),
    (lambda K: K - 5 * np.eye(len(K)), "negative entry"),
    (lambda K: K + np.triu(np.full(K.shape, 0.1), 1), "not symmetric"),
    # A large diagonal hides it from the diagonal test; the Krylov subspace
    # finds the negative eigenvalue (-5, along the top eigenvector).
    (lambda K: K + 20 * np.eye(len(K)) - (np.linalg.eigvalsh(K)[-1] + 25)
     * np.outer(*2 * [np.linalg.eigh(K)[1][:, -1]]), "eigenvalue at or below"),
])
@pytest.mark.parametrize("solver", ["dual", "eigen"])
def test_a_precomputed_matrix_that_is_no_gram_matrix_is_rejected(
        data, make_bad, match, solver):
    X, y = data
    K = network_kernel(X)
    bad = make_bad(K)
    assert np.linalg.eigvalsh(0.5 * (bad + bad.T))[0] < -1e-3
    with pytest.raises(ValueError,
                       match=f"positive semi-definite Gram matrix .*{match}"):
        AdamStarNTKRegressor(kernel="precomputed", solver=solver).fit(bad, y)
    # A Gram matrix passes, float32 too.
    AdamStarNTKRegressor(kernel="precomputed", solver=solver, max_iter=5).fit(K, y)
    AdamStarNTKRegressor(kernel="precomputed", solver=solver, max_iter=5).fit(
        K.astype(np.float32), y)


def test_random_network_features_need_a_positive_weight_variance(data):
    X, _ = data
    with pytest.raises(ValueError, match="weight_variance"):
        RandomNetworkFeatures(width=4, weight_variance=0).fit(X)


def test_random_network_features_that_overflow_say_so(data):
    X, _ = data
    features = RandomNetworkFeatures(width=8, depth=3, weight_variance=1e300,
                                     random_state=0).fit(X)
    with pytest.raises(ValueError, match="features of X overflow.*Standardise X"):
        features.transform(X)


# --------------------------------------------------------------------------
# 7. The caller's array is not the model
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fit", ["fit", "partial_fit"])
def test_copy_X_keeps_the_training_rows_away_from_the_caller(data, fit):
    X, y = data
    X = X.copy()
    model = getattr(AdamStarNTKRegressor(max_iter=5), fit)(X, y)
    before = model.predict(X[:5].copy())
    assert model.X_fit_ is not X and not np.shares_memory(model.X_fit_, X)
    X[:] = 0.0  # the caller reuses its array
    np.testing.assert_array_equal(model.predict(data[0][:5]), before)
    # Opting out keeps a reference, as documented.
    shared = AdamStarNTKRegressor(max_iter=5, copy_X=False).fit(X, y)
    assert shared.X_fit_ is X


# --------------------------------------------------------------------------
# 9. Memory: the guard runs first and counts every large array
# --------------------------------------------------------------------------

MEMORY_CASES = [
    (1000, np.float64, dict(solver="dual")),
    (1000, np.float64, dict(solver="eigen", max_iter=2000)),  # whole spectrum
    (1000, np.float64, dict(solver="eigen", max_iter=20)),  # Krylov restriction
    (600, np.float64, dict(solver="eigen", max_iter=2000, kernel="precomputed")),
    (1000, np.float64, dict(solver="dual", early_stopping=True)),
    (500, np.float64, dict(width=3000, solver="primal", kernel="nngp")),
    (500, np.float64, dict(width=1500, depth=2, solver="primal", kernel="nngp")),
    (200, np.float64, dict(width=100, depth=2, solver="primal", kernel="ntk")),
    (800, np.float64, dict(width=3000, solver="dual", kernel="nngp")),
    (600, np.float64, dict(width=600, depth=2, solver="dual", kernel="ntk")),
    (600, np.float64, dict(width=2000, solver="eigen", kernel="nngp", max_iter=2000)),
    (800, np.float32, dict(width=300, depth=3, solver="primal", kernel="nngp")),
    (800, np.float32, dict(width=600, depth=2, solver="dual", kernel="ntk")),
]


def _memory_case(n, dtype, params):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 10)).astype(dtype)
    y = X[:, 0].astype(np.float64)
    if params.get("kernel") == "precomputed":
        X = network_kernel(X, kernel="nngp", bias_variance=1.0)
    return X, y, AdamStarNTKRegressor(**dict(dict(max_iter=3), **params))


def _traced_peak(function):
    """Peak bytes NumPy allocates while ``function`` runs (and its result)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        try:
            result = function()
        except MemoryError as exc:
            result = exc
        return tracemalloc.get_traced_memory()[1] - base, result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("n, dtype, params", MEMORY_CASES)
def test_the_memory_guard_counts_every_large_array(monkeypatch, n, dtype, params):
    X, y, model = _memory_case(n, dtype, params)
    clone(model).set_params(max_iter=1).fit(X[:40, :40] if model.kernel ==
                                            "precomputed" else X[:40], y[:40])
    estimates = []
    check = _solvers.check_memory

    def spy(problem, solver, n_train, **options):
        parts = _solvers.fit_allocations(problem, solver, n_train, **options)
        estimates.append(sum(n_bytes for n_bytes, _ in parts))
        return check(problem, solver, n_train, **options)

    monkeypatch.setattr(_solvers, "check_memory", spy)
    clone(model).fit(X, y)
    estimate = max(estimates)
    _eigen_cache.clear()

    # Just enough memory, as the guard counts it: the fit's peak stays
    # within it (the eigensolver then takes its driver with no N^2
    # workspace, as it does when memory is short).
    available = int(1.05 * estimate) + 2**20
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: available)
    peak, result = _traced_peak(lambda: clone(model).fit(X, y))
    assert not isinstance(result, MemoryError), result
    assert peak <= available, (peak, estimate)

    # A little less: MemoryError before anything large is allocated.
    _eigen_cache.clear()
    short = int(0.9 * estimate)
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: short)
    peak, result = _traced_peak(lambda: clone(model).fit(X, y))
    assert isinstance(result, MemoryError), peak
    # What the checks of the input take: blocks of at most 4 MiB.
    assert peak < 0.1 * estimate + 5 * 2**20, (peak, estimate)


@pytest.mark.parametrize("params, match", [
    (dict(width=20000, depth=2, kernel="ntk"), "random network's 400120001 weights"),
    (dict(width=10**7, depth=2), "random network's 100000060000001 weights"),
    # 40 MB of weights, then 240 MB of features and as much while making them.
    (dict(width=10**6, solver="primal"), "feature matrix"),
])
def test_the_network_is_never_drawn_beyond_the_memory(data, monkeypatch, params, match):
    # They drew 3.2 GiB (13 s) before the guard raised, or failed inside
    # NumPy ("Unable to allocate 728 TiB"), or peaked at 2-3.2 GiB with
    # 1 GiB available.
    X, y = data
    # A small fit first: the first fit in a process imports and compiles,
    # which allocates too and is not what is measured here.
    AdamStarNTKRegressor(**{**params, "width": 8}, max_iter=1).fit(X, y)
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: 2**28)
    peak, result = _traced_peak(lambda: AdamStarNTKRegressor(**params).fit(X, y))
    assert isinstance(result, MemoryError)
    advice = ".*memory is available; use .*a smaller width"
    assert re.search(match + advice, str(result))
    assert peak < 2**20


def test_prediction_blocks_are_counted(data, monkeypatch):
    X, y = data
    model = AdamStarNTKRegressor(width=4000, solver="dual", max_iter=3).fit(X, y)
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(MemoryError,
                       match="predicting in blocks of 30 rows.*fewer rows"):
        model.predict(X)


def test_the_eigen_cache_has_a_small_default_budget_and_a_public_face(data):
    X, y = data
    info = sklearn_adamntk.eigen_cache_info()
    assert info == {"entries": 0, "nbytes": 0, "max_bytes": 512 * 2**20}
    AdamStarNTKRegressor(solver="eigen", max_iter=50).fit(X, y)
    info = sklearn_adamntk.eigen_cache_info()
    assert info["entries"] == 1 and info["nbytes"] >= 30 * 30 * 8
    # A lower limit drops what no longer fits; 0 disables the cache.
    previous = sklearn_adamntk.set_eigen_cache_size(0)
    try:
        assert previous == 512 * 2**20
        assert sklearn_adamntk.eigen_cache_info()["entries"] == 0
        AdamStarNTKRegressor(solver="eigen", max_iter=50).fit(X, y)
        assert sklearn_adamntk.eigen_cache_info()["entries"] == 0
        with pytest.raises(ValueError, match="non-negative int"):
            sklearn_adamntk.set_eigen_cache_size(-1)
    finally:
        sklearn_adamntk.set_eigen_cache_size(None)
    AdamStarNTKRegressor(solver="eigen", max_iter=50).fit(X, y)
    sklearn_adamntk.clear_eigen_cache()
    assert sklearn_adamntk.eigen_cache_info()["entries"] == 0


def test_distinct_fits_stay_within_the_eigen_cache_budget():
    # 300 eigen fits on distinct data grew the process by 2.4 GiB.
    rng = np.random.default_rng(0)
    previous = sklearn_adamntk.set_eigen_cache_size(200 * 200 * 8 * 3)
    try:
        for _ in range(12):
            X = rng.standard_normal((200, 3))
            AdamStarNTKRegressor(solver="eigen", max_iter=1000).fit(X, X[:, 0])
            assert sklearn_adamntk.eigen_cache_info()["nbytes"] <= 200 * 200 * 8 * 3
        assert sklearn_adamntk.eigen_cache_info()["entries"] == 2
    finally:
        sklearn_adamntk.set_eigen_cache_size(previous)


# --------------------------------------------------------------------------
# Property tests: any parameters, any data
# --------------------------------------------------------------------------

# What an error may say: the estimator's name (every message of the package
# starts with it), scikit-learn's parameter validation, or its input checks.
CLEAR = re.compile(r"AdamStarNTK|parameter of|Input .*contains|Found array with|"
                   r"Expected 2D|n_samples|sample_weight|Sample weights|classes|class")
# A property test of fits: bounded, deterministic, no example database on
# disk; any one example may be slow while Numba compiles a new path.
# SKLEARN_ADAMNTK_FUZZ=20 runs 20 times as many random (not derandomized)
# examples, to hunt for failures outside CI.
_HUNT = float(os.environ.get("SKLEARN_ADAMNTK_FUZZ", "1"))
FUZZ = dict(deadline=None, derandomize=_HUNT == 1, database=None,
            suppress_health_check=list(HealthCheck))


def _examples(n):
    return int(n * _HUNT)


# How much larger than the targets' spread a prediction may be.  Stable
# settings stay well inside; 1e3 is room for an oscillating ADAM* at a large
# learning rate, not for an overflow.
SANE = 1e3


@st.composite
def regression_problems(draw):
    n = draw(st.integers(2, 24))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    # Mostly standardised-like rows, sometimes tiny, huge or degenerate ones.
    x_scale = 10.0 ** draw(st.sampled_from([0, 0, 0, -3, 2, -150, 40, 160, 300]))
    X = rng.standard_normal((n, d)) * x_scale
    layout = draw(st.sampled_from(["plain", "duplicates", "zero rows", "constant"]))
    if layout == "duplicates":
        X[n // 2:] = X[: n - n // 2]
    elif layout == "zero rows":
        X[::2] = 0.0
    elif layout == "constant":
        X[:] = X[0]
    normalize_y = draw(st.booleans())
    # Unstandardised tiny targets are excluded: Adam's epsilon (1e-8) then
    # dominates the step, which becomes an SGD step of rate lr / epsilon,
    # the documented behaviour of every Adam.
    y_scale = 10.0 ** draw(st.sampled_from(
        [0, 0, -15, 5, -300, 200, 300] if normalize_y else [0, 0, 5, 200, 300]))
    target = draw(st.sampled_from(
        ["signal", "signal", "constant", "zero", "2 outputs"]))
    if target == "signal":
        y = (np.sin(X[:, 0] / x_scale) + 0.1 * rng.standard_normal(n)) * y_scale
    elif target == "constant":
        y = np.full(n, 3.0 * y_scale)
    elif target == "zero":
        y = np.zeros(n)
    else:
        y = rng.standard_normal((n, 2)) * y_scale
    weight = None
    if draw(st.booleans()):
        weight = rng.choice([0.0, 0.5, 1.0, 3.0], size=n)
        weight *= 10.0 ** draw(st.sampled_from([0, -300, 300]))
    return X, y, weight, normalize_y


def _network_params(draw, X):
    n = len(X)
    width = draw(st.sampled_from([None, None, 1, 8, 40]))
    optimizer = draw(st.sampled_from(
        ["adam*", "adam*", "sgd", "momentum"] + (["adam"] if width else [])))
    solvers = ["auto", "dual"] + (["primal"] if width else [])
    params = dict(
        kernel=draw(st.sampled_from(["nngp", "ntk"])),
        activation=draw(st.sampled_from(["relu", "erf"])),
        depth=draw(st.integers(1, 3)),
        weight_variance=draw(st.sampled_from([0.1, 1.0, 2.0, 5.0])),
        bias_variance=draw(st.sampled_from([0.0, 0.1, 1.0])),
        width=width,
        optimizer=optimizer,
        learning_rate_init=draw(st.sampled_from([1e-3, 0.1, 1.0, 3.0])),
        beta_1=draw(st.sampled_from([0.0, 0.5, 0.9])),
        # Not beta_2=0: a batch of zero-weight rows is a step with a zero
        # gradient, whose second moment is then 0 while the momentum is not,
        # and the step lr * M / epsilon is Adam's (and ADAM*'s) own rule.
        beta_2=draw(st.sampled_from([0.5, 0.9, 0.999])),
        momentum=draw(st.sampled_from([0.0, 0.9])),
        weight_decay=draw(st.sampled_from([0.0, 0.0, 0.1])),
        batch_size=draw(st.sampled_from([None, None, 1, max(1, n // 3)])),
        max_iter=draw(st.integers(1, 25)),
        solver=draw(st.sampled_from(solvers)),
        early_stopping=draw(st.booleans()) and n >= 10,
        random_state=draw(st.integers(0, 3)),
        n_jobs=1,
    )
    if optimizer in ("sgd", "momentum"):
        # ADAM* normalises its steps; SGD and momentum are stable below
        # 2 / lambda_max(K / n) <= 2 / max K(x, x), a rate the user must fit
        # to the kernel.  An unstable rate grows the fit for a few epochs
        # without overflowing (a finding for the epoch loop's divergence
        # test, which watches for non-finite values), so the rate here is a
        # fraction of the stable one.
        kernel = {key: params[key] for key in ("kernel", "activation",
                                               "weight_variance", "bias_variance")}
        try:
            if width is None:
                largest = network_kernel_diag(X, depth=params["depth"], **kernel).max()
            else:  # the network the fit draws: narrow ones stray from the limit
                network = draw_network(X.shape[1], width=width, depth=params["depth"],
                                       random_state=params["random_state"])
                with np.errstate(all="ignore"):
                    largest = np.diag(empirical_kernel(network, X, **kernel)).max()
        except ValueError:  # the fit must refuse these rows
            largest = 1.0
        if not np.isfinite(largest):
            largest = 1.0
        fraction = draw(st.sampled_from([1e-3, 0.1, 0.5]))
        params["learning_rate_init"] = fraction / max(float(largest), 1e-12)
    return params


def _fit_or_clear_error(model, *args, **kwargs):
    """``(model, warned)``: the fitted model, or None after an error that names
    its cause, and whether the fit warned that the kernel is huge."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(*args, **kwargs)
    except ValueError as exc:
        assert CLEAR.search(str(exc)), repr(exc)
        return None, False
    warned = any("Standardise X" in str(w.message) for w in caught)
    return model, warned


def _assert_sane(pred, y):
    assert np.all(np.isfinite(pred)), pred
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    pred = np.asarray(pred, dtype=float).reshape(len(pred), -1)
    center = y.mean(axis=0)
    spread = np.max(np.abs(y - center), axis=0)
    # Relative to the targets' spread and magnitude (an untrained model
    # predicts zero).
    bound = SANE * (spread + np.abs(center)) + 1e-300
    excess = np.abs(pred - center)
    assert np.all(excess <= bound), (np.max(excess), bound)


@given(problem=regression_problems(), data=st.data())
@settings(max_examples=_examples(150), **FUZZ)
def test_property_regressor_fits_sanely_or_says_why(problem, data):
    X, y, weight, normalize_y = problem
    params = _network_params(data.draw, X)
    params["normalize_y"] = normalize_y
    if params["solver"] == "auto" and data.draw(st.booleans()):
        params["solver"] = "eigen"
    model, warned = _fit_or_clear_error(AdamStarNTKRegressor(**params), X, y,
                                        sample_weight=weight)
    if model is None:
        return
    rows = np.vstack([X, X[::-1] * 0.5])  # the training rows and rows among them
    try:
        pred = model.predict(rows)
    except ValueError as exc:  # only the magnitude of the rows may be refused
        assert "Standardise X" in str(exc) or "overflow" in str(exc), exc
        return
    if warned:  # told that the rows are far too large: finite is all we ask
        assert np.all(np.isfinite(pred))
    else:
        _assert_sane(pred, y)


@st.composite
def classification_problems(draw):
    n = draw(st.integers(4, 24))
    d = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.standard_normal((n, d)) * 10.0 ** draw(st.sampled_from([0, 0, -3, 3, 200]))
    n_classes = draw(st.integers(2, 4))
    labels = draw(st.sampled_from([np.arange(n_classes), np.array(["b", "a", "c", "d"]),
                                   np.array([-1.5, 2.0, 7.0, 9.0])]))[:n_classes]
    codes = np.arange(n) % n_classes
    rng.shuffle(codes)
    weight = rng.choice([0.0, 1.0, 2.0], size=n) if draw(st.booleans()) else None
    return X, labels[codes], weight


@given(problem=classification_problems(), data=st.data())
@settings(max_examples=_examples(100), **FUZZ)
def test_property_classifier_fits_sanely_or_says_why(problem, data):
    X, y, weight = problem
    params = _network_params(data.draw, X)
    if params["solver"] == "eigen":
        params["solver"] = "dual"
    model, _ = _fit_or_clear_error(AdamStarNTKClassifier(**params), X, y,
                                   sample_weight=weight)
    if model is None:
        return
    proba = model.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.all((proba >= 0) & (proba <= 1))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(np.isfinite(model.decision_function(X)))
    assert set(model.predict(X)) <= set(model.classes_)
    assert np.all(np.isfinite(model.predict_log_proba(X)))


@given(data=st.data())
@settings(max_examples=_examples(60), **FUZZ)
def test_property_kernel_functions_are_finite_or_say_why(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n, d = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    dtype = data.draw(st.sampled_from([np.float64, np.float32]))
    exponent = data.draw(st.sampled_from(
        [0, -30, 15, 100, 150, 160, 300] if dtype == np.float64
        else [0, -30, 15, 19, 30]))
    X = (rng.standard_normal((n, d)) * 10.0**exponent).astype(dtype)
    params = dict(kernel=data.draw(st.sampled_from(["nngp", "ntk"])),
                  activation=data.draw(st.sampled_from(["relu", "erf"])),
                  depth=data.draw(st.integers(1, 4)),
                  weight_variance=data.draw(st.sampled_from([0.5, 2.0, 1e10])),
                  bias_variance=data.draw(st.sampled_from([0.0, 1.0])))
    for function, kwargs in [(network_kernel, params), (network_kernel_diag, params),
                             (arccos_kernel,
                              dict(degree=data.draw(st.integers(0, 2))))]:
        try:
            # Underflow to zero is harmless; overflow or NaN would not be.
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                K = function(X, **kwargs)
        except ValueError as exc:
            assert re.match(f"{function.__name__}: .* (overflows|reaches)", str(exc))
            continue
        assert np.all(np.isfinite(K)), (function.__name__, K)
