"""The streamed primal trainer: features recomputed every epoch, never stored.

Its contract (issue 13): the model of the stored-feature primal solver to
rounding (1e-10 in float64) for every loss, optimizer and batching, with
memory of one block of features instead of ``N x P``.  The feature products
are checked against the explicit features of ``network_features`` (itself
checked against finite differences in ``test_random_network.py``), and a
perturbed ``beta_2`` must break the match (the test can fail).
"""

import tracemalloc
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning

from training_problems import (
    HYPER,
    MINI,
    N_TRAIN,
    make_targets,
    make_weights,
    relative_error,
    settings,
)

from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor, _backend
from sklearn_adamntk._losses import LOSSES
from sklearn_adamntk._primal import PrimalTrainer
from sklearn_adamntk._random_network import draw_network, network_features
from sklearn_adamntk._solvers import choose_solver
from sklearn_adamntk._streamed import FeatureMap, StreamedTrainer

N_FEATURES = 3

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _rows(n=N_TRAIN, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, N_FEATURES))
    X[4] = 0.0  # a zero row
    return X


def _feature_map(kernel, depth=1, activation="relu", width=6):
    network = draw_network(N_FEATURES, width=width, depth=depth, random_state=0)
    return FeatureMap(network, kernel=kernel, activation=activation,
                      weight_variance=1.7, bias_variance=0.4)


def _stored(features, X):
    return network_features(features.network, X, kernel=features.kernel,
                            activation=features.activation,
                            weight_variance=features.weight_variance,
                            bias_variance=features.bias_variance)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ["relu", "erf"])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_feature_products_equal_the_stored_features(kernel, depth, activation, dtype):
    features = _feature_map(kernel, depth, activation)
    X = _rows().astype(dtype)
    Psi = _stored(features, X)
    assert features.n_columns == Psi.shape[1]
    rng = np.random.default_rng(1)
    coef = rng.standard_normal((Psi.shape[1], 3)).astype(dtype)
    L = rng.standard_normal((X.shape[0], 3)).astype(dtype)
    rows = features.rows(X)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    assert features.times(rows, coef).dtype == dtype
    assert relative_error(features.times(rows, coef), Psi @ coef) < tol
    assert relative_error(features.transpose_times(rows, L), Psi.T @ L) < tol


def _pair(loss, optimizer, kernel="nngp", depth=1, block_rows=5, **overrides):
    features = _feature_map(kernel, depth)
    X = _rows()
    Y = make_targets(loss)
    weight = make_weights()
    stored = PrimalTrainer(_stored(features, X), Y, settings(optimizer), loss,
                           sample_weight=weight)
    streamed = StreamedTrainer(X, features, Y, settings(optimizer, **overrides), loss,
                               sample_weight=weight, block_rows=block_rows)
    return stored, streamed


def _epochs(batching, n_epochs=8):
    full = [np.arange(N_TRAIN)]
    if batching == "full":
        return [full] * n_epochs
    if batching == "mini":
        return [MINI[e % 2] for e in range(n_epochs)]
    return [full if e % 2 else MINI[e % 2] for e in range(n_epochs)]


@pytest.mark.parametrize("batching", ["full", "mini", "mixed"])
@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss", LOSSES)
def test_streamed_trainer_is_the_stored_primal_trainer(loss, optimizer, batching):
    stored, streamed = _pair(loss, optimizer)
    for batches in _epochs(batching):
        expected = stored.run_epoch(batches)
        assert streamed.run_epoch(batches) == pytest.approx(expected, rel=1e-12)
    assert relative_error(streamed.coef, stored.coef) < 1e-10
    assert relative_error(streamed.train_predictions(),
                          stored.train_predictions()) < 1e-10
    assert streamed.state.t == stored.state.t
    np.testing.assert_allclose(streamed.state.second_moment,
                               stored.state.second_moment, rtol=1e-10)


@pytest.mark.parametrize("depth", [1, 2])
def test_streamed_ntk_features_train_as_the_stored_jacobian(depth):
    stored, streamed = _pair("softmax", "adam*", kernel="ntk", depth=depth)
    for batches in _epochs("mixed"):
        stored.run_epoch(batches)
        streamed.run_epoch(batches)
    assert relative_error(streamed.coef, stored.coef) < 1e-10


@pytest.mark.parametrize("batching", ["full", "mini"])
def test_negative_control_perturbed_beta_2_breaks_the_match(batching):
    stored, streamed = _pair("squared", "adam*", beta_2=HYPER["beta_2"] * 0.999)
    for batches in _epochs(batching):
        stored.run_epoch(batches)
        streamed.run_epoch(batches)
    assert relative_error(streamed.coef, stored.coef) > 1e-6


def test_block_size_does_not_change_the_model():
    one_block = _pair("logistic", "adam*", block_rows=N_TRAIN)[1]
    row_blocks = _pair("logistic", "adam*", block_rows=1)[1]
    for batches in _epochs("mixed"):
        one_block.run_epoch(batches)
        row_blocks.run_epoch(batches)
    assert relative_error(row_blocks.coef, one_block.coef) < 1e-12


def test_resumes_a_stored_primal_fit():
    stored, _ = _pair("squared", "momentum")
    for batches in _epochs("mixed", 4):
        stored.run_epoch(batches)
    features = _feature_map("nngp")
    resumed = StreamedTrainer(_rows(), features, make_targets("squared"),
                              settings("momentum"), "squared",
                              sample_weight=make_weights(), coef=stored.coef,
                              state=stored.state, block_rows=4)
    for batches in _epochs("mixed", 4):
        stored.run_epoch(batches)
        resumed.run_epoch(batches)
    assert relative_error(resumed.coef, stored.coef) < 1e-10


def test_divergence_raises_floating_point_error():
    features = _feature_map("nngp")
    trainer = StreamedTrainer(_rows() * 1e3, features, make_targets("squared"),
                              settings("sgd", learning_rate=1e3, weight_decay=0.0),
                              "squared")
    with pytest.raises(FloatingPointError, match="diverged"):
        for _ in range(50):
            trainer.run_epoch([np.arange(N_TRAIN)])


def test_memory_is_one_block_of_features_not_the_feature_matrix():
    n, width = 20_000, 255
    X = np.random.default_rng(0).standard_normal((n, N_FEATURES))
    Y = np.random.default_rng(1).standard_normal((n, 1))
    network = draw_network(N_FEATURES, width=width, depth=1, random_state=0)
    features = FeatureMap(network, kernel="nngp")
    feature_bytes = n * (width + 1) * 8  # 41 MB
    block_rows = 2000
    trainer = StreamedTrainer(X, features, Y, settings("adam*"), "squared",
                              block_rows=block_rows)
    trainer.run_epoch([np.arange(n)])  # compile outside the measurement
    tracemalloc.start()
    try:
        trainer.run_epoch([np.arange(n)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One block's layer output (4 MB) and O(N k) arrays, never the features.
    assert peak < 2 * block_rows * width * 8 + 20 * n * 8, (peak, feature_bytes)
    assert peak < feature_bytes / 4


def test_bad_input_is_refused():
    features = _feature_map("nngp")
    with pytest.raises(ValueError, match="2-D"):
        StreamedTrainer(np.zeros(5), features, np.zeros(5), settings("sgd"), "squared")
    with pytest.raises(TypeError, match="FeatureMap"):
        StreamedTrainer(_rows(), None, make_targets("squared"), settings("sgd"),
                        "squared")
    with pytest.raises(ValueError, match="features"):
        features.rows(np.zeros((3, N_FEATURES + 1)))


# --------------------------------------------------------------------------
# The estimators: solver="streamed", and "auto" when the features do not fit
# --------------------------------------------------------------------------


def _regression():
    return make_regression(n_samples=150, n_features=4, noise=5.0, random_state=0)


@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
@pytest.mark.parametrize("batch_size", [None, 40])
def test_regressor_streamed_equals_primal(kernel, batch_size):
    X, y = _regression()
    options = dict(kernel=kernel, width=24, batch_size=batch_size, max_iter=12,
                   random_state=0)
    primal = AdamStarNTKRegressor(solver="primal", **options).fit(X, y)
    streamed = AdamStarNTKRegressor(solver="streamed", **options).fit(X, y)
    assert streamed.solver_ == "streamed" and primal.solver_ == "primal"
    assert not hasattr(streamed, "dual_coef_")
    assert relative_error(streamed.coef_, primal.coef_) < 1e-10
    assert relative_error(streamed.predict(X), primal.predict(X)) < 1e-10
    np.testing.assert_allclose(streamed.loss_curve_, primal.loss_curve_, rtol=1e-10)


def test_classifier_streamed_with_early_stopping_and_float32():
    X, y = make_classification(n_samples=160, n_features=4, n_informative=3,
                               n_redundant=0, n_classes=3, random_state=0)
    options = dict(width=16, max_iter=15, early_stopping=True, random_state=0)
    primal = AdamStarNTKClassifier(solver="primal", **options).fit(X, y)
    streamed = AdamStarNTKClassifier(solver="streamed", **options).fit(X, y)
    np.testing.assert_allclose(streamed.validation_scores_, primal.validation_scores_)
    assert relative_error(streamed.predict_proba(X), primal.predict_proba(X)) < 1e-10
    X32 = X.astype(np.float32)
    primal32 = AdamStarNTKClassifier(solver="primal", **options).fit(X32, y)
    streamed32 = AdamStarNTKClassifier(solver="streamed", **options).fit(X32, y)
    assert streamed32.coef_.dtype == np.float32
    assert relative_error(streamed32.coef_, primal32.coef_) < 1e-4


def test_warm_start_and_partial_fit_continue_across_primal_and_streamed():
    X, y = _regression()
    # A fixed schedule: a held-out best epoch would end the straight fit early.
    options = dict(width=20, max_iter=6, early_stopping=False, random_state=0)
    straight = AdamStarNTKRegressor(solver="primal", **{**options, "max_iter": 12})
    straight.fit(X, y)
    resumed = AdamStarNTKRegressor(solver="primal", warm_start=True, **options)
    resumed.fit(X, y).set_params(solver="streamed").fit(X, y)
    assert resumed.solver_ == "streamed" and resumed.t_ == 12
    assert relative_error(resumed.coef_, straight.coef_) < 1e-10

    online = AdamStarNTKRegressor(solver="streamed", **options).fit(X, y)
    reference = AdamStarNTKRegressor(solver="primal", **options).fit(X, y)
    online.partial_fit(X[:50], y[:50])
    reference.partial_fit(X[:50], y[:50])
    assert online.solver_ == "streamed" and online.t_ == 7
    assert relative_error(online.coef_, reference.coef_) < 1e-10


def test_streamed_needs_a_finite_width():
    X, y = _regression()
    with pytest.raises(ValueError, match="solver='streamed' trains the weights"):
        AdamStarNTKRegressor(solver="streamed").fit(X, y)


def test_choose_solver_streams_when_the_stored_solver_exceeds_the_budget():
    common = dict(n_samples=200_000, n_outputs=1, loss="squared", max_iter=20,
                  full_batch=True)
    features = 200_000 * 1025 * 4
    kwargs = dict(n_feature_columns=1025, optimizer="adam*", itemsize=4, **common)
    assert choose_solver(memory_budget=features + 1, **kwargs) == "primal"
    assert choose_solver(memory_budget=features - 1, **kwargs) == "streamed"
    assert choose_solver(memory_budget=None, **kwargs) == "primal"
    assert choose_solver(**{**kwargs, "optimizer": "adam"}, memory_budget=1) \
        == "streamed"
    # A wide network on few rows: the dual's N x N Gram, or else streaming.
    narrow = dict(common, n_samples=2000, n_feature_columns=10**6, optimizer="adam*",
                  full_batch=False)
    assert choose_solver(memory_budget=2000**2 * 8 + 1, **narrow) == "dual"
    assert choose_solver(memory_budget=2000**2 * 8 - 1, **narrow) == "streamed"
    # Infinite width has nothing to stream: the memory check speaks instead.
    assert choose_solver(n_feature_columns=None, optimizer="adam*",
                         memory_budget=1, **common) == "dual"


def test_auto_streams_when_the_features_would_not_fit(monkeypatch):
    X, y = _regression()
    options = dict(width=24, max_iter=5, random_state=0)
    primal = AdamStarNTKRegressor(**options).fit(X, y)
    assert primal.solver_ == "primal"
    with monkeypatch.context() as patch:
        # 150 x 25 float64 features are 30 kB: make them more than half of memory.
        patch.setattr(_backend, "available_memory_bytes", lambda: 50_000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            streamed = AdamStarNTKRegressor(**options).fit(X, y)
        # Asking for the stored features then fails fast, naming the way out.
        with pytest.raises(MemoryError, match="solver='streamed'"):
            AdamStarNTKRegressor(solver="primal", width=400).fit(X, y)
    assert streamed.solver_ == "streamed"
    assert relative_error(streamed.predict(X), primal.predict(X)) < 1e-10
