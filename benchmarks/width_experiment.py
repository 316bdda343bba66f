"""Held-out loss against width (the paper's Figure 1), at equal steps and converged.

Sernau (2024, "Infinite Width Models That Work") plots test loss against the
width of a one-hidden-layer ReLU network for several training rules and asks
whether the infinite-width ADAM* model closes the gap that the classic (SGD)
neural tangent kernel leaves to a network trained with Adam. This script does
the same on two bundled tasks, Friedman #1 regression (squared loss) and
digits (softmax cross-entropy), for widths 64, 256, 1024, 4096 and infinity:

- ``MLP, Adam (all layers)``: ``MLPRegressor`` / ``MLPClassifier`` with one
  hidden ReLU layer of that width, every layer trained with Adam;
- ``muP MLP, Adam (all layers)`` (converged mode only): the same network in
  the maximal-update parametrisation (``mup_mlp.py`` beside this script),
  whose hidden layer still learns at infinite width;
- ``frozen layer, Adam readout``: the hidden layer frozen at its random
  initialisation and the readout trained with true per-weight Adam
  (``width=n, optimizer="adam"``); finite width only;
- ``SGD (kernel)``: the same readout trained with SGD (``optimizer="sgd"``),
  which at infinite width is the classic kernel gradient descent;
- ``ADAM* (kernel)``: the same readout trained with ADAM*
  (``optimizer="adam*"``), at infinite width the paper's model.

The three readout rows use ``kernel="nngp"`` (frozen random body, only the
readout trains, the construction of the paper's Figure 1) with the same random
network for a given seed, so they differ only in their update rule.

Every method trains full batch on standardised inputs (and, for regression,
targets standardised with the training rows' statistics), in two modes:

- **fixed steps** (the paper's comparison): the same number of epochs (=
  steps) for every method. Each method has its own grid of four learning
  rates per task (``RATES``); for every width and seed the rate with the
  lowest loss on a validation split (a quarter of the training rows) is refit
  on all training rows and scored on the test rows (the other half of the
  data);
- **converged** (``converged_run``): every method trains, at each rate of its
  grid (``CONVERGED_RATES``), until its validation loss stops improving (the
  package's path rule, up to a cap, ``MAX_EPOCHS``); the (rate, epoch) with
  the lowest validation loss is refit on all training rows for that many
  epochs and scored on the test rows.

The split, the network and the MLP's initialisation change with the seed; the
tables give mean and standard deviation over seeds.

Run::

    python benchmarks/width_experiment.py              # both modes, committed
    python benchmarks/width_experiment.py --converged  # one mode (or --fixed)
    python benchmarks/width_experiment.py --quick      # both, a smoke run

It prints markdown tables and writes ``WIDTH.md`` and ``width_experiment.png``:
beside this script for the full run of both modes, else in a new temporary
folder (``--out DIR`` to choose). The plot needs matplotlib (the package's
``plot`` extra).
"""

import argparse
import math
import os
import platform
import re
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_digits, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from threadpoolctl import threadpool_limits

from sklearn_adamntk import (
    AdamStarNTKClassifier,
    AdamStarNTKClassifierCV,
    AdamStarNTKRegressor,
    AdamStarNTKRegressorCV,
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mup_mlp import MuPNetwork  # noqa: E402  (beside this script)

WIDTHS = (64, 256, 1024, 4096, None)  # None: infinite width

METHODS = {
    "mlp_adam": {"label": "MLP, Adam (all layers)", "finite_only": True, "color": "C0"},
    "mup": {"label": "muP MLP, Adam (all layers)", "finite_only": True,
            "color": "C4"},
    "frozen_adam": {"label": "frozen layer, Adam readout", "finite_only": True,
                    "color": "C1"},
    "sgd": {"label": "SGD (kernel)", "finite_only": False, "color": "C2"},
    "adam*": {"label": "ADAM* (kernel)", "finite_only": False, "color": "C3"},
}
# The muP network is the converged mode's addition; the fixed mode is the
# paper's comparison and stays as it was.
FIXED_METHODS = ("mlp_adam", "frozen_adam", "sgd", "adam*")
CONVERGED_METHODS = ("mlp_adam", "mup", "frozen_adam", "sgd", "adam*")
NETWORKS = ("mlp_adam", "mup")  # trained by this script, epoch by epoch

# Four rates per method and task, a factor of about 3 apart, placed where a
# wider scan (one seed, widths 64 to infinity) found each method's best rate
# after this many full-batch steps (WIDTH.md lists the rates chosen). Kernel
# SGD on the squared loss is best just below its stability limit
# 2 / lambda_max(K / N), about 0.85 on these splits (it
# diverges at 0.9), so its
# regression grid doubles up to 0.8 instead; on the cross-entropy its steps
# are far smaller and it wants ~30.
RATES = {
    "friedman1": {
        "mlp_adam": (1e-3, 3e-3, 1e-2, 3e-2),
        "frozen_adam": (0.1, 0.3, 1.0, 3.0),
        "sgd": (0.1, 0.2, 0.4, 0.8),
        "adam*": (0.1, 0.3, 1.0, 3.0),
    },
    "digits": {
        "mlp_adam": (3e-4, 1e-3, 3e-3, 1e-2),
        "frozen_adam": (0.1, 0.3, 1.0, 3.0),
        "sgd": (3.0, 10.0, 30.0, 100.0),
        "adam*": (0.1, 0.3, 1.0, 3.0),
    },
}

TASKS = {
    "friedman1": {
        "kind": "regression",
        "loss": "MSE (standardised y)",
        "score": "R^2",
    },
    "digits": {"kind": "classification", "loss": "log-loss", "score": "accuracy"},
}

# The converged mode. The muP network's base rate is the same at every width
# (what muP is for); four values a factor of about 3 apart, placed by
# one-seed scans at widths 64, 1024 and 4096 (on Friedman #1 the best is 0.03
# at width 64 and 0.1 above, and 0.3 is unstable; on digits 3e-2 is never
# best and 3e-4 sometimes is, by a few per cent of validation loss).
# The other methods keep their fixed-mode grids: past the fixed mode's 100
# steps a smaller rate mostly takes longer to the same place.
MUP_RATES = {"friedman1": (0.01, 0.03, 0.1, 0.3), "digits": (3e-4, 1e-3, 3e-3, 1e-2)}
CONVERGED_RATES = {
    task: dict(RATES[task], mup=MUP_RATES[task]) for task in RATES
}
# The most epochs of one path. The kernel paths on the squared loss run on
# the eigenbasis (O(N) an epoch) and end by the stopping rule long before
# 10^5; on the cross-entropy the kernel and per-weight Adam readouts pay a
# product with the kernel or the features every epoch, so they stop at 5000
# (only paths at rates that are not chosen get there). The networks' paths
# end by the rule within a few hundred epochs except at the smallest rates of
# narrow networks, which are cheap (WIDTH.md marks the paths that reached a
# cap).
MAX_EPOCHS = {
    "friedman1": {"mlp_adam": 10000, "mup": 10000, "frozen_adam": 10000,
                  "sgd": 100000, "adam*": 100000},
    "digits": {"mlp_adam": 10000, "mup": 10000, "frozen_adam": 5000,
               "sgd": 5000, "adam*": 5000},
}
# The package's path rule (early_stopping="auto", DESIGN 3.7), applied to
# every method alike: a path ends when its best held-out loss has not improved
# by PATH_TOL over the last max(PATH_MIN_PATIENCE, PATH_WINDOW * epochs)
# epochs, or at its cap; the best epoch is the model.
PATH_TOL = 1e-4
PATH_MIN_PATIENCE = 100
PATH_WINDOW = 0.1


def load_task(task, max_rows=None):
    """``X, y`` of a task, at most ``max_rows`` rows (a fixed subsample)."""
    if task == "friedman1":
        X, y = make_friedman1(n_samples=1200, noise=1.0, random_state=0)
    else:
        X, y = load_digits(return_X_y=True)
    if max_rows is not None and max_rows < len(y):
        rows = np.random.default_rng(0).choice(len(y), max_rows, replace=False)
        X, y = X[rows], y[rows]
    return X, y


def make_model(task, method, width, learning_rate, epochs, seed, n_rows):
    """One method at one width and rate, inside a standardising pipeline.

    Every model runs exactly ``epochs`` full-batch steps on all the rows it
    is given: no stopping rule (the package's ``early_stopping="auto"`` would
    hold rows out and keep the best epoch), and stopping on the training loss
    switched off (``tol=0`` and more patience than epochs).
    """
    regression = TASKS[task]["kind"] == "regression"
    if method == "mlp_adam":
        model = mlp(task, width, learning_rate, epochs, seed, n_rows)
        # float32 halves the MLP's time, the slow part of the experiment, and
        # changes nothing an Adam step cares about at this scale.
        steps = [StandardScaler(), FunctionTransformer(_as_float32), model]
    else:
        ntk = AdamStarNTKRegressor if regression else AdamStarNTKClassifier
        optimizer = {"frozen_adam": "adam", "sgd": "sgd", "adam*": "adam*"}[method]
        model = ntk(
            kernel="nngp",
            depth=1,
            width=width,
            optimizer=optimizer,
            learning_rate_init=learning_rate,
            batch_size=None,
            max_iter=epochs,
            early_stopping=False,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            random_state=seed,
            n_jobs=1,
        )
        steps = [StandardScaler(), model]
    pipeline = make_pipeline(*steps)
    if regression:
        return TransformedTargetRegressor(pipeline, transformer=StandardScaler())
    return pipeline


def mlp(task, width, learning_rate, epochs, seed, n_rows):
    """scikit-learn's MLP: one hidden ReLU layer, full-batch Adam, ``epochs`` steps."""
    model = MLPRegressor if TASKS[task]["kind"] == "regression" else MLPClassifier
    return model(
        hidden_layer_sizes=(width,),
        activation="relu",
        solver="adam",
        learning_rate_init=learning_rate,
        batch_size=n_rows,  # full batch, as the kernel models
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        random_state=seed,
    )


def _as_float32(X):
    return np.asarray(X, dtype=np.float32)


def held_out_loss(task, model, X_train, y_train, X_test, y_test):
    """Fit ``model`` and return its test ``(loss, score)``.

    A fit that diverges (the package raises, an MLP's outputs overflow) gets
    an infinite loss, so that its rate is never chosen.
    """
    regression = TASKS[task]["kind"] == "regression"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            with np.errstate(all="ignore"):
                model.fit(X_train, y_train)
                if regression:
                    predicted = model.predict(X_test)
                else:
                    proba = model.predict_proba(X_test)
    except ValueError as exc:
        if "diverged" in str(exc) or "NaN" in str(exc) or "infinity" in str(exc):
            return math.inf, math.nan
        raise
    if regression:
        if not np.all(np.isfinite(predicted)):
            return math.inf, math.nan
        # The squared error in units of the training target's variance: the
        # loss on targets standardised with the training rows' statistics.
        loss = mean_squared_error(y_test, predicted) / np.var(y_train)
        return float(loss), float(r2_score(y_test, predicted))
    if not np.all(np.isfinite(proba)):
        return math.inf, math.nan
    classes = model.classes_
    loss = log_loss(y_test, proba, labels=classes)
    score = accuracy_score(y_test, classes[np.argmax(proba, axis=1)])
    return float(loss), float(score)


def split(task, X, y, seed):
    """The seed's rows, as both modes use them.

    Returns ``(X_train, y_train), (X_test, y_test), (X_fit, y_fit), (X_val,
    y_val)``: half of the rows for testing, and the training half split again,
    a quarter of it for validation (stratified for classification).
    """
    stratify = y if TASKS[task]["kind"] == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, random_state=seed, stratify=stratify
    )
    stratify = y_train if stratify is not None else None
    X_fit, X_val, y_fit, y_val = train_test_split(
        X_train, y_train, test_size=0.25, random_state=seed, stratify=stratify
    )
    return (X_train, y_train), (X_test, y_test), (X_fit, y_fit), (X_val, y_val)


def one_run(task, method, width, X, y, seed, epochs, rates):
    """Choose the rate on a validation split, refit, score on the test rows.

    Returns ``(test_loss, test_score, chosen_rate)``.
    """
    (X_train, y_train), (X_test, y_test), (X_fit, y_fit), (X_val, y_val) = split(
        task, X, y, seed
    )
    validation = [
        held_out_loss(
            task,
            make_model(task, method, width, rate, epochs, seed, len(y_fit)),
            X_fit, y_fit, X_val, y_val,
        )[0]
        for rate in rates
    ]
    # Best validation loss first (ties to the smaller rate). A rate that was
    # stable on three quarters of the rows can still diverge on all of them;
    # then the next best is refit, so a row reports a trained model.
    for index in np.argsort(validation, kind="stable"):
        rate = rates[index]
        model = make_model(task, method, width, rate, epochs, seed, len(y_train))
        loss, score = held_out_loss(task, model, X_train, y_train, X_test, y_test)
        if math.isfinite(loss):
            break
    return loss, score, rate


# ----------------------------------------------------------------------
# The converged mode: every method trained until its held-out loss stops
# improving, the rate and the epoch chosen on the validation rows.
# ----------------------------------------------------------------------
def converged_run(task, method, width, X, y, seed, rates, max_epochs):
    """Choose (rate, epoch) on the validation rows' paths, refit, score the test rows.

    For each rate, one path trains on the fit rows and scores the validation
    rows after every epoch, until the path rule (``PATH_*``) ends it or
    ``max_epochs``; the (rate, epoch) of the least validation loss (ties to
    the smaller rate, then the earlier epoch) is refitted on all training
    rows for that many epochs and scored on the test rows. The kernel
    readouts do this inside the package (``AdamStarNTK*CV`` with the
    validation rows as the one fold); the networks here, with the same rule.

    A rate whose refit diverges (stable on the fit rows, not on all of them)
    is dropped and the choice made again among the others, as in the fixed
    mode.

    Returns a dict: ``loss``, ``score`` (test), ``rate``, ``epoch`` (chosen),
    ``epochs_run`` (each rate's path length; 0 where it diverged or was
    dropped), ``dropped`` (the rates whose refit diverged).
    """
    data = _standardised(task, *split(task, X, y, seed))
    search = _network_search if method in NETWORKS else _kernel_search
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        # A diverged path is recorded (0 epochs run), not warned about.
        warnings.filterwarnings("ignore", message=".*left out of the search")
        with np.errstate(all="ignore"):
            return search(task, method, width, data, seed, rates, max_epochs)


def _standardised(task, train, test, fit, validation):
    """Inputs (and regression targets) standardised with the training rows.

    The training rows are the fit rows followed by the validation rows, so
    that the validation rows are the last ``len(y_val)`` of them.
    """
    X_train = np.vstack([fit[0], validation[0]])
    y_train = np.concatenate([fit[1], validation[1]])
    scaler = StandardScaler().fit(X_train)
    X_train, X_test = scaler.transform(X_train), scaler.transform(test[0])
    y_test, classes = test[1], None
    if TASKS[task]["kind"] == "regression":
        mean, scale = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / scale, (y_test - mean) / scale
    else:
        # Labels 0..k-1 (digits), so that probability columns are labels.
        classes = np.unique(y_train)
        assert np.array_equal(classes, np.arange(len(classes)))
    return {"X_train": X_train, "y_train": y_train, "X_test": X_test,
            "y_test": y_test, "n_fit": len(fit[1]), "classes": classes}


def validation_loss(task, predicted, y_val):
    """The held-out loss the converged mode chooses by (lower is better).

    ``predicted``: values (regression, standardised targets: the squared
    error) or class probabilities, columns in label order 0..k-1 (the mean
    log-loss). Plain NumPy, as it runs after every epoch.
    """
    if TASKS[task]["kind"] == "regression":
        return float(np.mean((np.ravel(predicted) - y_val) ** 2))
    picked = predicted[np.arange(len(y_val)), y_val]
    return -float(np.mean(np.log(np.clip(picked, 1e-15, None))))


def loss_and_score(task, predicted, y_test):
    """Test ``(loss, score)`` of predictions, defined as in the fixed mode."""
    if not np.all(np.isfinite(predicted)):
        return math.inf, math.nan
    if TASKS[task]["kind"] == "regression":
        # Targets standardised with the training rows: this squared error is
        # the fixed mode's MSE over the training targets' variance.
        return (float(mean_squared_error(y_test, predicted)),
                float(r2_score(y_test, predicted)))
    labels = np.arange(predicted.shape[1])
    return (float(log_loss(y_test, predicted, labels=labels)),
            float(accuracy_score(y_test, np.argmax(predicted, axis=1))))


def path_exhausted(best_losses):
    """The path rule: no gain above ``PATH_TOL`` over the patience window.

    ``best_losses[i]``: the least held-out loss up to epoch ``i + 1``.
    """
    epoch = len(best_losses)
    patience = max(PATH_MIN_PATIENCE, int(PATH_WINDOW * epoch))
    return epoch > patience and not (
        best_losses[-1 - patience] - best_losses[-1] > PATH_TOL
    )


def validation_path(task, network, fit, validation, max_epochs, classes=None):
    """Held-out losses after each epoch until the path rule stops; None if diverged."""
    (X_fit, y_fit), (X_val, y_val) = fit, validation
    network.start(X_fit, y_fit, classes)
    losses, best = [], []
    for _ in range(max_epochs):
        try:
            network.step()
            loss = validation_loss(task, network.predict(X_val), y_val)
        except (FloatingPointError, ValueError):  # non-finite weights
            return None
        if not math.isfinite(loss):
            return None
        losses.append(loss)
        best.append(min(loss, best[-1]) if best else loss)
        if path_exhausted(best):
            break
    return np.array(losses)


def best_on_paths(paths):
    """``(rate index, epoch)`` of the least loss over every path (None: diverged).

    Ties go to the smaller rate (rates are listed in increasing order), then
    to the earlier epoch, as in the package's cross-validated estimators.
    """
    lengths = [0 if path is None else len(path) for path in paths]
    table = np.full((len(paths), max(max(lengths), 1)), np.inf)
    for row, path in enumerate(paths):
        if path is not None:
            table[row, : len(path)] = path
    index, epoch = np.unravel_index(np.argmin(table), table.shape)
    if not math.isfinite(table[index, epoch]):
        raise ValueError("every learning rate diverged")
    return int(index), int(epoch) + 1


def _network_search(task, method, width, data, seed, rates, max_epochs):
    n_fit, classes = data["n_fit"], data["classes"]
    X, y = data["X_train"], data["y_train"]
    paths = [
        validation_path(task, make_network(task, method, width, rate, seed),
                        (X[:n_fit], y[:n_fit]), (X[n_fit:], y[n_fit:]), max_epochs,
                        classes)
        for rate in rates
    ]
    dropped = []
    while True:
        index, epoch = best_on_paths(paths)
        network = make_network(task, method, width, rates[index], seed)
        network.start(X, y, classes)
        try:
            for _ in range(epoch):
                network.step()
            predicted = network.predict(data["X_test"])
        except (FloatingPointError, ValueError):
            predicted = np.array([np.nan])
        if np.all(np.isfinite(predicted)):
            break
        # The refit on all training rows diverged: choose among the others.
        dropped.append(rates[index])
        paths[index] = None
    loss, score = loss_and_score(task, predicted, data["y_test"])
    return {"loss": loss, "score": score, "rate": rates[index], "epoch": epoch,
            "epochs_run": [0 if path is None else len(path) for path in paths],
            "dropped": dropped}


def _kernel_search(task, method, width, data, seed, rates, max_epochs):
    """The package's search; a rate whose refit diverges is dropped, then again."""
    remaining, dropped = list(rates), []
    while True:
        try:
            search = _package_search(task, method, width, data, seed, remaining,
                                     max_epochs)
            break
        except ValueError as exc:
            rate = _refit_rate(exc)
            if rate is None or rate not in remaining:
                raise
            remaining.remove(rate)
            dropped.append(rate)
    regression = TASKS[task]["kind"] == "regression"
    X_test = data["X_test"]
    predicted = search.predict(X_test) if regression else search.predict_proba(X_test)
    loss, score = loss_and_score(task, predicted, data["y_test"])
    runs = dict(zip(remaining, (int(np.sum(np.isfinite(row)))
                                for row in search.scores_path_[0])))
    return {"loss": loss, "score": score, "rate": float(search.learning_rate_),
            "epoch": int(search.n_iter_),
            "epochs_run": [runs.get(rate, 0) for rate in rates], "dropped": dropped}


def _package_search(task, method, width, data, seed, rates, max_epochs):
    """``AdamStarNTK*CV`` with the validation rows as its one fold, fitted."""
    regression = TASKS[task]["kind"] == "regression"
    n_fit, n_train = data["n_fit"], len(data["y_train"])
    # The targets are standardised already, with the training rows' statistics.
    options = {"normalize_y": False} if regression else {}
    search = (AdamStarNTKRegressorCV if regression else AdamStarNTKClassifierCV)(
        **options,
        learning_rates=rates,
        cv=[(np.arange(n_fit), np.arange(n_fit, n_train))],
        scoring=_held_out_scorer(task),
        kernel="nngp",
        depth=1,
        width=width,
        optimizer={"frozen_adam": "adam", "sgd": "sgd", "adam*": "adam*"}[method],
        batch_size=None,
        max_iter=max_epochs,
        tol=PATH_TOL,
        random_state=seed,
        n_jobs=1,
    )
    return search.fit(data["X_train"], data["y_train"])


def _refit_rate(error):
    """The learning rate of a fit that diverged, read from the package's message.

    A path that diverges is left out of the search by the package; this is the
    refit on all training rows (or None: another error).
    """
    found = re.search(r"diverged at epoch .* Lower learning_rate_init \(it is "
                      r"([0-9.eE+-]+)", str(error))
    return None if found is None else float(found.group(1))


def _held_out_scorer(task):
    """The package's fold score: minus :func:`validation_loss`."""

    def score(estimator, X, y, sample_weight=None):
        if TASKS[task]["kind"] == "regression":
            return -validation_loss(task, estimator.predict(X), y)
        columns = np.searchsorted(estimator.classes_, y)
        return -validation_loss(task, estimator.predict_proba(X), columns)

    return score


def make_network(task, method, width, learning_rate, seed):
    """A network of the converged mode, to be trained one epoch at a time."""
    if method == "mup":
        return _MuP(task, width, learning_rate, seed)
    return _SklearnMLP(task, width, learning_rate, seed)


class _SklearnMLP:
    """The fixed mode's MLP, one full-batch Adam epoch per ``step`` (``partial_fit``).

    ``partial_fit`` keeps Adam's state, so ``k`` steps are ``fit`` with
    ``max_iter=k`` (the tests check it); unlike MLP's own
    ``early_stopping=True`` it lets every method use the same validation
    rows and the same held-out loss.
    """

    def __init__(self, task, width, learning_rate, seed):
        self.model = mlp(task, width, learning_rate, 1, seed, None)

    def start(self, X, y, classes=None):
        self.X, self.y, self.classes = _as_float32(X), y, classes
        self.model.set_params(batch_size=len(y))
        return self

    def step(self):
        if self.classes is None:
            self.model.partial_fit(self.X, self.y)
        else:
            self.model.partial_fit(self.X, self.y, classes=self.classes)

    def predict(self, X):
        if self.classes is None:
            return self.model.predict(_as_float32(X))
        return self.model.predict_proba(_as_float32(X))


class _MuP:
    """:class:`mup_mlp.MuPNetwork` with the same interface (float32, as the MLP)."""

    def __init__(self, task, width, learning_rate, seed):
        self.regression = TASKS[task]["kind"] == "regression"
        self.network = MuPNetwork(
            width, learning_rate, "squared" if self.regression else "softmax",
            random_state=seed,
        )

    def start(self, X, y, classes=None):
        if self.regression:
            Y = np.reshape(y, (-1, 1))
        else:
            Y = (np.asarray(y)[:, None] == classes).astype(float)  # one-hot
        self.X, self.Y = X, Y
        self.network.start(X, Y)
        return self

    def step(self):
        self.network.step(self.X, self.Y)

    def predict(self, X):
        outputs = self.network.outputs(X).astype(np.float64)
        if self.regression:
            return outputs[:, 0]
        outputs -= outputs.max(axis=1, keepdims=True)
        proba = np.exp(outputs)
        return proba / proba.sum(axis=1, keepdims=True)


def run(
    tasks=tuple(TASKS),
    methods=FIXED_METHODS,
    widths=WIDTHS,
    seeds=(0, 1, 2, 3, 4),
    epochs=100,
    max_rows=None,
    verbose=True,
):
    """The fixed mode: every (task, method, width) over the seeds; one record each.

    A record holds ``mode`` ("fixed"), ``task``, ``method``, ``width`` (None
    for infinite), ``loss_mean``, ``loss_std``, ``score_mean``,
    ``score_std``, per seed the ``rates`` chosen and the test ``losses`` and
    ``scores``, and ``seconds`` (wall time of its fits).

    Everything runs on one thread (BLAS and Numba): on a shared two-core
    machine, BLAS threads spinning for a busy core slowed the MLP fits by up
    to 25x, and the experiment compares losses, not speed.
    """

    def seed_run(task, method, width, X, y, seed):
        loss, score, rate = one_run(task, method, width, X, y, seed, epochs,
                                    RATES[task][method])
        return {"loss": loss, "score": score, "rate": rate}

    with threadpool_limits(limits=1):
        return _run("fixed", seed_run, tasks, methods, widths, seeds, max_rows,
                    verbose)


def run_converged(
    tasks=tuple(TASKS),
    methods=CONVERGED_METHODS,
    widths=WIDTHS,
    seeds=(0, 1, 2, 3, 4),
    max_epochs=None,
    max_rows=None,
    verbose=True,
):
    """The converged mode (:func:`converged_run`); records as :func:`run`'s.

    ``max_epochs``: the cap of every path, or None for ``MAX_EPOCHS``. The
    records' ``mode`` is "converged", and they also hold per seed the
    chosen ``epochs``, the ``epochs_run`` by each rate's path, and the
    ``max_epochs`` cap, and the rates ``dropped`` per seed because their
    refit diverged.
    """

    def seed_run(task, method, width, X, y, seed):
        cap = MAX_EPOCHS[task][method] if max_epochs is None else max_epochs
        result = converged_run(task, method, width, X, y, seed,
                               CONVERGED_RATES[task][method], cap)
        return dict(result, max_epochs=cap)

    with threadpool_limits(limits=1):
        return _run("converged", seed_run, tasks, methods, widths, seeds,
                    max_rows, verbose)


def _run(mode, seed_run, tasks, methods, widths, seeds, max_rows, verbose):
    records = []
    for task in tasks:
        X, y = load_task(task, max_rows)
        for method in methods:
            spec = METHODS[method]
            for width in widths:
                if width is None and spec["finite_only"]:
                    continue
                start = time.perf_counter()
                runs = [seed_run(task, method, width, X, y, seed) for seed in seeds]
                losses = np.array([r["loss"] for r in runs])
                scores = np.array([r["score"] for r in runs])
                record = {
                    "mode": mode,
                    "task": task,
                    "method": method,
                    "width": width,
                    "loss_mean": float(np.mean(losses)),
                    "loss_std": float(np.std(losses)),
                    "score_mean": float(np.mean(scores)),
                    "score_std": float(np.std(scores)),
                    "rates": [float(r["rate"]) for r in runs],
                    "losses": [float(loss) for loss in losses],
                    "scores": [float(score) for score in scores],
                    "seconds": time.perf_counter() - start,
                }
                if mode == "converged":
                    record["epochs"] = [r["epoch"] for r in runs]
                    record["epochs_run"] = [r["epochs_run"] for r in runs]
                    record["dropped"] = [r["dropped"] for r in runs]
                    record["max_epochs"] = runs[0]["max_epochs"]
                records.append(record)
                if verbose:
                    epochs = (f"  epochs {record['epochs']}" if mode == "converged"
                              else "")
                    print(
                        f"{mode:9s} {task:10s} {spec['label']:28s} "
                        f"{width_label(width):>5s} "
                        f"loss {record['loss_mean']:.4f} +- {record['loss_std']:.4f}  "
                        f"rates {record['rates']}{epochs}  "
                        f"{record['seconds']:.1f} s",
                        flush=True,
                    )
    return records


def width_label(width):
    return "inf" if width is None else str(width)


MODE_TITLES = {"fixed": "fixed steps", "converged": "trained to convergence"}


def markdown_table(records):
    """Markdown tables, per task and mode: methods as rows, widths as columns.

    A results table (``loss (std) / score (std)`` in each cell), then the
    choices made on the validation split, per seed: the learning rate (fixed
    mode) or ``rate @ epoch`` (converged mode, ``*`` where that rate's path
    reached its cap).
    """
    lines = []
    for task in dict.fromkeys(record["task"] for record in records):
        for mode in dict.fromkeys(record.get("mode", "fixed") for record in records):
            rows = [r for r in records
                    if r["task"] == task and r.get("mode", "fixed") == mode]
            if rows:
                lines += _tables(task, mode, rows)
    return "\n".join(lines)


def _tables(task, mode, rows):
    widths = list(dict.fromkeys(record["width"] for record in rows))
    methods = list(dict.fromkeys(record["method"] for record in rows))
    spec = TASKS[task]
    header = ["| method | " + " | ".join(width_label(w) for w in widths) + " |",
              "|---|" + "---:|" * len(widths)]

    def table(cell):
        lines = list(header)
        for method in methods:
            cells = []
            for width in widths:
                found = [r for r in rows
                         if r["method"] == method and r["width"] == width]
                cells.append(cell(found[0]) if found else "–")
            lines.append(f"| {METHODS[method]['label']} | " + " | ".join(cells) + " |")
        return lines

    def result(r):
        return (f"{r['loss_mean']:.3f} ({r['loss_std']:.3f}) / "
                f"{r['score_mean']:.3f} ({r['score_std']:.3f})")

    def rates(r):
        return ", ".join(f"{rate:g}" for rate in r["rates"])

    def rates_and_epochs(r):
        grid = list(CONVERGED_RATES[task][r["method"]])
        cells = []
        for rate, epoch, runs, dropped in zip(r["rates"], r["epochs"],
                                              r["epochs_run"], r["dropped"]):
            capped = rate in grid and runs[grid.index(rate)] >= r["max_epochs"]
            cells.append(f"{rate:g} @ {epoch}" + ("*" if capped else "")
                         + ("†" if dropped else ""))
        return ", ".join(cells)

    lines = [f"#### {task}, {MODE_TITLES[mode]}: test {spec['loss']} / "
             f"{spec['score']}", ""]
    lines += table(result)
    lines.append("")
    if mode == "fixed":
        lines.append("Learning rate chosen on the validation split, per seed:")
        lines.append("")
        lines += table(rates)
    else:
        lines.append("Learning rate @ epoch chosen on the validation split, per "
                     "seed (`*`: that rate's path reached its cap of epochs; `†`: "
                     "the refit of a better rate diverged on all training rows "
                     "and that rate was dropped):")
        lines.append("")
        lines += table(rates_and_epochs)
    lines.append("")
    return lines


def plot(records, path):
    """Loss (top) and score (bottom) against width, one column per task and mode.

    The two modes of a task sit side by side on the same y axes. The x axis
    is logarithmic; infinite width sits to the right of the largest finite
    width, past a break mark, with its own tick.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tasks = list(dict.fromkeys(r["task"] for r in records))
    columns = sorted(
        dict.fromkeys((r["task"], r.get("mode", "fixed")) for r in records),
        key=lambda column: (tasks.index(column[0]), list(MODE_TITLES).index(column[1])),
    )
    finite = sorted({r["width"] for r in records if r["width"] is not None})
    largest = finite[-1] if finite else 1
    infinity_x = largest * 8.0
    break_x = largest * math.sqrt(8.0)
    fig, axes = plt.subplots(
        2, len(columns), figsize=(4.6 * len(columns), 7.5), squeeze=False,
        sharex=True,
    )
    for column, (task, mode) in enumerate(columns):
        spec = TASKS[task]
        shown = [r for r in records
                 if r["task"] == task and r.get("mode", "fixed") == mode]
        for row, (key, name) in enumerate(
            [("loss", "test " + spec["loss"]), ("score", "test " + spec["score"])]
        ):
            ax = axes[row, column]
            for index, method in enumerate(METHODS):
                rows = [r for r in shown if r["method"] == method]
                if rows:
                    _plot_method(ax, rows, key, method, index, infinity_x)
            ax.set_xscale("log")
            ax.set_xticks(finite + [infinity_x])
            ax.set_xticklabels([str(w) for w in finite] + ["inf"])
            ax.minorticks_off()
            ax.axvline(break_x, color="0.6", linestyle="--", linewidth=0.8)
            ax.text(break_x, 0.0, "//", transform=ax.get_xaxis_transform(),
                    ha="center", va="center", fontsize=12, color="0.3",
                    backgroundcolor="white")
            if column == 0 or columns[column - 1][0] != task:
                ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{task}, {MODE_TITLES[mode]}")
            if row == 1:
                ax.set_xlabel("hidden width")
    # The modes of a task share their y axes, so the eye compares them.
    for row in range(2):
        for task in dict.fromkeys(task for task, _ in columns):
            group = [axes[row, c] for c, (t, _) in enumerate(columns) if t == task]
            low = min(ax.get_ylim()[0] for ax in group)
            high = max(ax.get_ylim()[1] for ax in group)
            for ax in group:
                ax.set_ylim(low, high)
    handles, labels = [], []
    for method in [m for m in METHODS if any(r["method"] == m for r in records)]:
        handles.append(Line2D([], [], color=METHODS[method]["color"], marker="o"))
        labels.append(METHODS[method]["label"])
    handles.append(Line2D([], [], color="0.3", marker="*", markersize=10,
                          linestyle="none"))
    labels.append("infinite width (exact kernel)")
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_method(ax, rows, key, method, index, infinity_x):
    """One method's mean and spread against width, with its infinite-width star."""
    color = METHODS[method]["color"]
    # Nudge each method sideways a little so error bars stay apart.
    nudge = 1.06 ** (index - (len(METHODS) - 1) / 2)
    sized = [r for r in rows if r["width"] is not None]
    ax.errorbar(
        [r["width"] * nudge for r in sized],
        [r[key + "_mean"] for r in sized],
        yerr=[r[key + "_std"] for r in sized],
        color=color, marker="o", capsize=3,
    )
    unbounded = [r for r in rows if r["width"] is None]
    if unbounded:
        r = unbounded[0]
        ax.errorbar(
            [infinity_x * nudge], [r[key + "_mean"]], yerr=[r[key + "_std"]],
            color=color, marker="*", markersize=11, capsize=3, linestyle="none",
        )
        # A faint line to the limit: the same method, width -> inf.
        if sized:
            ax.plot(
                [sized[-1]["width"] * nudge, infinity_x * nudge],
                [sized[-1][key + "_mean"], r[key + "_mean"]],
                color=color, linestyle=":", alpha=0.6,
            )


def machine():
    """The CPU model and core count, for the record in WIDTH.md."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = {
    # The committed table: about 60 minutes on one core (both modes; 3586 s,
    # the fixed mode about 6 of them, the networks on digits most of the rest).
    "full": {"seeds": (0, 1, 2, 3, 4), "max_rows": None, "widths": WIDTHS,
             "epochs": 100, "max_epochs": None},
    # A smoke run of both modes, seconds (the tests run it).
    "quick": {"seeds": (0,), "max_rows": 240, "widths": (64, None), "epochs": 30,
              "max_epochs": 150},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixed", action="store_true",
                        help="only the fixed-step mode (the paper's comparison)")
    parser.add_argument("--converged", action="store_true",
                        help="only the mode trained to convergence")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in seconds: one seed, 240 rows, widths 64 "
                             "and inf, 30 steps, paths capped at 150 epochs")
    parser.add_argument("--out", default=None,
                        help="folder for WIDTH.md and width_experiment.png "
                             "(default: beside this script for the full run of "
                             "both modes, the committed one; else a new "
                             "temporary folder)")
    args = parser.parse_args(argv)
    modes = tuple(mode for mode in ("fixed", "converged") if getattr(args, mode))
    modes = modes or ("fixed", "converged")
    committed = not args.quick and len(modes) == 2
    out = args.out or (HERE if committed else tempfile.mkdtemp(
        prefix="width_experiment_"))
    settings = dict(SIZES["quick" if args.quick else "full"], modes=modes)
    command = " ".join(["python benchmarks/width_experiment.py"]
                       + [f"--{flag}" for flag in ("quick", "fixed", "converged")
                          if getattr(args, flag)])
    common = {key: settings[key] for key in ("seeds", "max_rows", "widths")}
    start = time.perf_counter()
    records = []
    if "fixed" in modes:
        records += run(epochs=settings["epochs"], **common)
    if "converged" in modes:
        records += run_converged(max_epochs=settings["max_epochs"], **common)
    seconds = time.perf_counter() - start
    table = markdown_table(records)
    print()
    print(table)
    print(f"({seconds:.0f} s in all)")
    os.makedirs(out, exist_ok=True)
    plot(records, os.path.join(out, "width_experiment.png"))
    write_report(os.path.join(out, "WIDTH.md"), table, command, settings, seconds,
                 keep_reading=committed)
    print(f"Wrote WIDTH.md and width_experiment.png in {out}")
    return 0


def write_report(path, table, command, settings, seconds, keep_reading=True):
    """WIDTH.md: the tables with how they were made.

    The written reading of the full run sits between ``<!-- reading -->``
    markers and survives a rerun of the full run (``keep_reading``); a quick
    or one-mode run drops it, since it would not describe their numbers.
    """
    reading = ""
    if keep_reading and os.path.exists(path):
        with open(path) as handle:
            text = handle.read()
        begin, end = "<!-- reading -->", "<!-- /reading -->"
        if begin in text and end in text:
            reading = text[text.index(begin): text.index(end) + len(end)]
    rows = "all" if settings["max_rows"] is None else f"at most {settings['max_rows']}"
    modes = settings.get("modes", ("fixed",))
    header = (
        "# Width experiment\n\n"
        f"`{command}`: {len(settings['seeds'])} seed(s), {rows} rows of each task "
        "(Friedman #1: 1200 rows, noise 1; digits: 1797 rows), half of them for "
        "testing, a quarter of the rest (the validation rows) for choosing the "
        "learning rate; one thread; "
        f"{seconds:.0f} s on {machine()}, shared with other work.\n\n"
    )
    if "fixed" in modes:
        header += (
            f"- **Fixed steps** (the paper's comparison): {settings['epochs']} "
            "full-batch epochs for every method, the rate with the least "
            "validation loss refitted on all training rows.\n"
        )
    if "converged" in modes:
        cap = settings.get("max_epochs")
        caps = ("every path capped at {cap} epochs".format(cap=cap) if cap else
                "paths capped at " + "; ".join(
                    f"{task}: " + ", ".join(
                        f"{METHODS[m]['label']} {n}" for m, n in caps_.items())
                    for task, caps_ in MAX_EPOCHS.items()))
        header += (
            "- **Trained to convergence**: for each rate of its grid, every "
            "method trains on the fit rows and scores the validation rows after "
            "every epoch until that loss stops improving (the package's path "
            f"rule: no gain of {PATH_TOL:g} over the last max({PATH_MIN_PATIENCE}, "
            f"{PATH_WINDOW:g} x epochs run) epochs), {caps}; the (rate, epoch) "
            "with the least validation loss is refitted on all training rows "
            "for that many epochs. Inputs (and regression targets) standardised "
            "with the training rows.\n"
        )
    header += (
        "\nEach cell: test loss (std over seeds) / test score (std). "
        "Regression loss: mean squared error over the variance of the training "
        "targets (the MSE on targets standardised with the training rows' "
        "statistics). Classification loss: mean log-loss.\n\n"
        "![held-out loss against width](width_experiment.png)\n\n"
    )
    with open(path, "w") as handle:
        handle.write(header + table + "\n")
        if reading:
            handle.write("\n" + reading + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
