"""The cross-validated estimators against a brute-force loop of separate fits."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss, r2_score
from sklearn.model_selection import KFold, StratifiedKFold

from sklearn_adamntk import (
    AdamStarNTKClassifier,
    AdamStarNTKClassifierCV,
    AdamStarNTKRegressor,
    AdamStarNTKRegressorCV,
)

KERNEL = dict(kernel="nngp", depth=1, weight_variance=2.0, bias_variance=0.5)
RATES = [0.05, 0.2, 0.8]


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(7)
    X = rng.normal(size=(36, 3))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.2 * rng.normal(size=36)
    return X, y


def _separate(Estimator, X, y, train, rate, epochs, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return Estimator(learning_rate_init=rate, max_iter=epochs,
                         early_stopping=False, **KERNEL, **params).fit(X[train],
                                                                       y[train])


def test_regressor_fold_paths_are_separate_fits(data):
    X, y = data
    folds = KFold(3, shuffle=True, random_state=0)
    search = AdamStarNTKRegressorCV(learning_rates=RATES, cv=folds, max_iter=25,
                                    normalize_y=False, solver="dual", **KERNEL)
    search.fit(X, y)
    assert search.scores_path_.shape == (3, 3, 25)
    for f, (train, test) in enumerate(folds.split(X)):
        for r, rate in enumerate(RATES):
            path = search.scores_path_[f, r]
            for epoch in (1, 7, 25):
                if np.isnan(path[epoch - 1]):
                    continue
                separate = _separate(AdamStarNTKRegressor, X, y, train, rate, epoch,
                                     normalize_y=False, solver="dual")
                expected = r2_score(y[test], separate.predict(X[test]))
                assert path[epoch - 1] == pytest.approx(expected, rel=1e-10, abs=1e-12)
    # The best mean (rate, epoch), refitted on every row for that many epochs.
    mean = np.where(np.isnan(search.scores_path_).any(axis=0), -np.inf,
                    search.scores_path_.mean(axis=0))
    rate, epoch = np.unravel_index(np.argmax(mean), mean.shape)
    assert search.best_index_ == rate and search.n_iter_ == epoch + 1
    assert search.learning_rate_ == RATES[rate]
    assert search.best_score_ == pytest.approx(mean[rate, epoch])
    refit = _separate(AdamStarNTKRegressor, X, y, slice(None), RATES[rate], epoch + 1,
                      normalize_y=False, solver="dual")
    np.testing.assert_allclose(search.predict(X), refit.predict(X), rtol=1e-10)


def test_regressor_gcv_search_is_the_plain_gcv_path(data):
    X, y = data
    search = AdamStarNTKRegressorCV(learning_rates=RATES, max_iter=300, **KERNEL)
    search.fit(X, y)
    assert search.scores_path_.shape[:2] == (1, 3)
    best_scores = []
    for r, rate in enumerate(RATES):
        plain = AdamStarNTKRegressor(learning_rate_init=rate, max_iter=300,
                                     solver="eigen", **KERNEL).fit(X, y)
        path = search.scores_path_[0, r]
        np.testing.assert_allclose(path[:len(plain.validation_scores_)],
                                   plain.validation_scores_, rtol=1e-12)
        best_scores.append(plain.best_validation_score_)
        if r == search.best_index_:
            np.testing.assert_allclose(search.predict(X), plain.predict(X),
                                       rtol=1e-12)
            assert search.n_iter_ == plain.best_iteration_
    assert search.best_index_ == int(np.argmax(best_scores))


def test_classifier_fold_paths_are_separate_fits(data):
    X, y = data
    labels = np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))
    folds = StratifiedKFold(3, shuffle=True, random_state=1)
    for scoring, metric in [(None, accuracy_score), ("neg_log_loss", None)]:
        search = AdamStarNTKClassifierCV(learning_rates=RATES[:2], cv=folds,
                                         max_iter=15, scoring=scoring, **KERNEL)
        search.fit(X, labels)
        for f, (train, test) in enumerate(folds.split(X, labels)):
            for r, rate in enumerate(RATES[:2]):
                epoch = 15 if not np.isnan(search.scores_path_[f, r, 14]) else 5
                separate = _separate(AdamStarNTKClassifier, X, labels, train, rate,
                                     epoch)
                if metric is None:
                    expected = -log_loss(labels[test], separate.predict_proba(X[test]),
                                         labels=[0, 1, 2])
                else:
                    expected = metric(labels[test], separate.predict(X[test]))
                assert search.scores_path_[f, r, epoch - 1] == pytest.approx(
                    expected, rel=1e-10)
    assert search.predict(X).shape == (36,)
    assert not hasattr(search, "partial_fit")


def test_default_rates_are_factors_on_the_automatic_rate(data):
    X, y = data
    search = AdamStarNTKRegressorCV(max_iter=200, **KERNEL).fit(X, y)
    assert search.rates_are_factors_
    np.testing.assert_allclose(search.learning_rates_, [0.5, 1, 2])
    automatic = AdamStarNTKRegressor(max_iter=1, early_stopping=False,
                                     **KERNEL).fit(X, y).learning_rate_
    chosen = search.learning_rates_[search.best_index_]
    assert search.learning_rate_ == pytest.approx(chosen * automatic)


def test_a_diverging_rate_is_left_out_with_a_warning(data):
    X, y = data
    with pytest.warns(UserWarning, match="diverged.*left out of the search"):
        search = AdamStarNTKRegressorCV(learning_rates=[0.1, 1e4], cv=3, max_iter=20,
                                        **KERNEL).fit(X, y)
    assert search.learning_rate_ == 0.1
    assert np.isnan(search.scores_path_[:, 1]).all()
    with pytest.raises(ValueError, match="diverged at every learning rate"):
        AdamStarNTKRegressorCV(learning_rates=[1e4], cv=3, max_iter=20,
                               **KERNEL).fit(X, y)


def test_validation_path_display(data):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from sklearn_adamntk import ValidationPathDisplay

    X, y = data
    search = AdamStarNTKRegressorCV(learning_rates=RATES, cv=3, max_iter=30,
                                    **KERNEL).fit(X, y)
    display = ValidationPathDisplay.from_estimator(search)
    assert len(display.lines_) == 3
    assert display.ax_.get_xscale() == "log"
    with pytest.raises(TypeError, match="scores_path_"):
        ValidationPathDisplay.from_estimator(AdamStarNTKRegressor(max_iter=2).fit(X, y))
