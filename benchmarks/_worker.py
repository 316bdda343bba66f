"""One fit (or one grid search) measured in a fresh process.

The fit, grid and memory sections run every configuration through
:func:`measure`, which starts ``python _worker.py CONFIG`` and reads back
one JSON line.  A fresh process per configuration

- makes peak memory mean something: the resident high-water mark is the
  fit's own, not that of an earlier, larger fit (and Python's allocator does
  not hand freed memory back to the system);
- lets a configuration that runs too long be stopped at a time limit;
- gives every model the same cold start: no cache left behind by another
  model (an eigendecomposition, a Gram matrix) can help it.

In the child, the data are made and a small fit of the same model is run
first (Numba's compiled code is loaded, scikit-learn's lazy imports done),
so neither is part of the times or of the memory.

The data: ``make_friedman1`` (10 features, ``noise=1``), the first
``n_train`` rows to fit and the next ``n_test`` rows held out; inputs and
targets standardised with the training rows' statistics, so that every
model sees the same numbers (R^2 does not depend on the target's units).
"""

import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# The kernel every model of the fit and grid tables uses: the regressor's own
# defaults (depth 1, ReLU, weight_variance 2, bias_variance 1) with the NTK,
# the kernel that KernelRidge and SVR get through NetworkKernel.
KERNEL = dict(kernel="ntk", activation="relu", depth=1, weight_variance=2.0,
              bias_variance=1.0)
# Peers' regularisation, fixed from a development run (held-out R^2 at
# N = 2000): KernelRidge's is flat (0.935) for alpha in [1e-3, 1e-2] and
# falls beyond 0.1; SVR's (epsilon 0.1) is flat (0.932) for C >= 3.
KRR_ALPHA = 1e-2
SVR_C = 3.0
WARMUP_ROWS = 200
_RESULT = "RESULT "


def friedman(n_train, n_test, dtype="float64", seed=0):
    """Standardised ``make_friedman1`` data: ``X_train, X_test, y_train, y_test``."""
    from sklearn.datasets import make_friedman1

    X, y = make_friedman1(n_samples=n_train + n_test, noise=1.0, random_state=seed)
    X_train, X_test = X[:n_train], X[n_train:]
    y_train, y_test = y[:n_train], y[n_train:]
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    X_train, X_test = (X_train - mean) / std, (X_test - mean) / std
    y_mean, y_std = y_train.mean(), y_train.std()
    y_train, y_test = (y_train - y_mean) / y_std, (y_test - y_mean) / y_std
    return (np.ascontiguousarray(X_train, dtype=dtype),
            np.ascontiguousarray(X_test, dtype=dtype), y_train, y_test)


def make_model(name, options=None):
    """``"adam"`` (AdamStarNTKRegressor), ``"krr"`` or ``"svr"`` on ``KERNEL``.

    ``options`` are extra constructor arguments (``solver``, ``max_iter``,
    ``width``, ``kernel``, ...), which replace the defaults above.
    """
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.svm import SVR

    from sklearn_adamntk import AdamStarNTKRegressor, NetworkKernel

    options = dict(options or {})
    if name == "adam":
        return AdamStarNTKRegressor(**{**KERNEL, "random_state": 0, **options})
    kernel = NetworkKernel(**KERNEL)
    if name == "krr":
        return KernelRidge(**{"alpha": KRR_ALPHA, "kernel": kernel, **options})
    if name == "svr":
        return SVR(**{"C": SVR_C, "kernel": kernel, **options})
    raise ValueError(f"unknown model {name!r}")


def _grid_search(config):
    from sklearn.model_selection import GridSearchCV

    return GridSearchCV(make_model(config["model"], config.get("options")),
                        config["grid"], cv=config.get("cv", 3), scoring="r2")


def run_fit(config):
    """Fit and predict one model; times, peak memory, held-out R^2."""
    from sklearn.base import clone
    from sklearn.metrics import r2_score

    from _common import current_rss, peak_rss, reset_peak_rss

    X_train, X_test, y_train, y_test = friedman(
        config["n_train"], config["n_test"], config.get("dtype", "float64"))
    model = make_model(config["model"], config.get("options"))
    warm = min(WARMUP_ROWS, X_train.shape[0])
    clone(model).fit(X_train[:warm], y_train[:warm]).predict(X_test[:warm])
    gc.collect()

    measured = reset_peak_rss()
    before = current_rss()
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    fit_peak = peak_rss() - before if measured else None

    measured = reset_peak_rss()
    before = current_rss()
    start = time.perf_counter()
    prediction = model.predict(X_test)
    predict_s = time.perf_counter() - start
    predict_peak = peak_rss() - before if measured else None
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "r2": float(r2_score(y_test, prediction)),
        "fit_peak_bytes": fit_peak,
        "predict_peak_bytes": predict_peak,
        "solver": getattr(model, "solver_", None),
        "n_iter": getattr(model, "n_iter_", None),
    }


def run_grid(config):
    """One ``GridSearchCV`` fit; its time, best CV score and held-out R^2."""
    from sklearn.metrics import r2_score

    X_train, X_test, y_train, y_test = friedman(config["n_train"], config["n_test"])
    warm = min(WARMUP_ROWS, X_train.shape[0])
    make_model(config["model"], config.get("options")).fit(
        X_train[:warm], y_train[:warm])
    gc.collect()

    search = _grid_search(config)
    start = time.perf_counter()
    search.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    results = search.cv_results_
    return {
        "fit_s": fit_s,
        "n_settings": len(results["params"]),
        "mean_fit_s": float(np.mean(results["mean_fit_time"])),
        "best_cv_r2": float(search.best_score_),
        "best_params": {key: float(value) if isinstance(value, float) else value
                        for key, value in search.best_params_.items()},
        "r2": float(r2_score(y_test, search.predict(X_test))),
        "refit_s": float(search.refit_time_),
    }


def run_cv(config):
    """One cross-validated estimator's fit; its time, choice and held-out R^2."""
    from sklearn.metrics import r2_score

    from sklearn_adamntk import AdamStarNTKRegressorCV

    dtype = config.get("dtype", "float64")
    X_train, X_test, y_train, y_test = friedman(config["n_train"], config["n_test"],
                                                dtype)
    model = AdamStarNTKRegressorCV(**{**KERNEL, **config.get("options", {})})
    warm = min(WARMUP_ROWS, X_train.shape[0])
    AdamStarNTKRegressorCV(**{**KERNEL, **config.get("options", {})}).fit(
        X_train[:warm], y_train[:warm])
    gc.collect()
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - start
    return {
        "fit_s": fit_s,
        "r2": float(r2_score(y_test, model.predict(X_test))),
        "learning_rate": float(model.learning_rate_),
        "n_iter": int(model.n_iter_),
        "best_score": float(model.best_score_),
    }


TASKS = {"fit": run_fit, "grid": run_grid, "cv": run_cv}


def measure(config, timeout=None):
    """Run one configuration in a fresh process; its result as a dict.

    On a time limit the result is ``{"timeout": timeout}``; on a failure,
    ``{"error": the last line the child printed}``.
    """
    command = [sys.executable, str(Path(__file__).resolve()), json.dumps(config)]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    for line in done.stdout.splitlines():
        if line.startswith(_RESULT):
            return json.loads(line[len(_RESULT):])
    lines = (done.stderr or done.stdout or f"exit status {done.returncode}").strip()
    return {"error": lines.splitlines()[-1][:200]}


def main():
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    # max_iter is part of each configuration; hitting it is expected.
    warnings.simplefilter("ignore", ConvergenceWarning)
    config = json.loads(sys.argv[1])
    result = TASKS[config["task"]](config)
    print(_RESULT + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
