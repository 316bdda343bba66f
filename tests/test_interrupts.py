"""Ctrl-C during a fit, and what a fitted model carries (issue 12, items 6-7).

An interrupt is simulated by raising SIGINT from inside a trainer's step, at
the point where a trainer has advanced its step count but not yet its
coefficients (full batch), or has finished a compiled epoch but not yet
returned it (mini-batch).  Without deferral the ``KeyboardInterrupt`` would
land there and leave ``t_`` one step ahead of the kept coefficients.
"""

import pickle
import signal
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from sklearn_adamntk import AdamStarNTKRegressor, _dual

KERNEL = dict(kernel="nngp", activation="relu", depth=1, weight_variance=2.0,
              bias_variance=1.0)
FIXED = dict(tol=0.0, n_iter_no_change=10_000, early_stopping=False,
             learning_rate_init=0.05, solver="dual", **KERNEL)


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(50, 3))
    y = X[:, 0] - 0.5 * X[:, 1] ** 2 + 0.1 * rng.normal(size=50)
    return X[:40], y[:40], X[40:]


def _interrupting(function, at_call, before):
    """``function`` that raises SIGINT on its ``at_call``-th call."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(None)
        if before and len(calls) == at_call:
            signal.raise_signal(signal.SIGINT)
        result = function(*args, **kwargs)
        if not before and len(calls) == at_call:
            signal.raise_signal(signal.SIGINT)
        return result
    return wrapped


# (kernel of the step to interrupt, batch size, steps per epoch, interrupt
# before the kernel runs): the full-batch update runs after ``t += 1``; the
# mini-batch epoch's new ``t`` is assigned only once it returns.
CASES = {
    "full batch": ("_dual_full_update", 40, 1, True),
    "mini-batch": ("_dual_minibatch_epoch", 10, 4, False),
}


@pytest.mark.parametrize("case", CASES)
def test_interrupted_fit_is_consistent_and_resumes(data, case, monkeypatch):
    X, y, X_test = data
    name, batch_size, steps, before = CASES[case]
    params = dict(FIXED, batch_size=batch_size, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        uninterrupted = AdamStarNTKRegressor(max_iter=10, **params).fit(X, y)

    monkeypatch.setattr(_dual, name,
                        _interrupting(getattr(_dual, name), at_call=4, before=before))
    model = AdamStarNTKRegressor(max_iter=10, warm_start=True, **params)
    with pytest.warns(UserWarning, match="interrupted by user after 4 epochs"):
        model.fit(X, y)
    monkeypatch.undo()

    # The last completed epoch: counters, curve and state agree.
    assert model.n_iter_ == 4
    assert model.t_ == 4 * steps
    assert len(model.loss_curve_) == 4
    np.testing.assert_allclose(model.loss_curve_, uninterrupted.loss_curve_[:4],
                               rtol=1e-12)
    assert np.all(np.isfinite(model.predict(X_test)))

    # A warm continuation for the remaining epochs is the uninterrupted fit.
    model.set_params(max_iter=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    assert model.t_ == uninterrupted.t_
    np.testing.assert_allclose(model.predict(X_test), uninterrupted.predict(X_test),
                               rtol=1e-10, atol=1e-12)


def test_pickle_does_not_grow_with_the_epochs(data):
    """No path of coefficients is stored: staged_predict replays the fit."""
    X, y, X_test = data
    X, y = np.tile(X, (5, 1)) + 0.01 * np.arange(200)[:, None], np.tile(y, 5)
    sizes, models = {}, {}
    for max_iter in (5, 200):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            models[max_iter] = AdamStarNTKRegressor(
                max_iter=max_iter, **dict(FIXED, learning_rate_init=0.01)).fit(X, y)
        sizes[max_iter] = len(pickle.dumps(models[max_iter]))
    # 195 more epochs may add their losses (8 bytes each) and little else; a
    # stored path of the 200 x 1 dual coefficients would add 312 KB.
    assert sizes[200] - sizes[5] < 195 * 8 + 1000
    restored = pickle.loads(pickle.dumps(models[200]))
    staged = list(restored.staged_predict(X_test))
    assert len(staged) == 200
    np.testing.assert_allclose(staged[-1], models[200].predict(X_test), rtol=1e-10)
