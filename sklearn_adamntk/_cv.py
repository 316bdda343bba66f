"""The cross-validated estimators: the learning rate and the epoch chosen on the path.

:class:`AdamStarNTKRegressorCV` and :class:`AdamStarNTKClassifierCV` follow
:class:`~sklearn.linear_model.RidgeCV` and
:class:`~sklearn.linear_model.LogisticRegressionCV` (DESIGN 3.8): for each
learning rate of a short list, one training run per fold scores the held-out
fold after every epoch, so the cost is about one fit per fold and rate, not
one per (rate, epoch).  The (rate, epoch) with the best mean score is refitted
on every row for that many epochs.

With ``cv=None`` the regressor uses, as ``RidgeCV`` does, an efficient
leave-one-out estimate instead of folds: robust generalised cross-validation
of the full-data path (DESIGN 3.7; ``_fitting.GCV_GAMMA``), one
eigendecomposition shared by every rate; the
chosen epoch of the chosen rate is the model, so nothing is refitted.

The estimators are the plain ones with ``learning_rate_init``,
``early_stopping``, ``validation_fraction`` and ``warm_start`` replaced by
the search (they are fixed at ``"auto"``, ``"auto"``, 0.1 and False) and no
``partial_fit``.
"""

import copy
import dataclasses
import types
import warnings

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv

from ._base import (
    _ATTRIBUTES_DOC,
    _PARAMETERS_DOC,
    DEFAULT_BIAS_VARIANCE,
    DEFAULT_MAX_ITER,
    DEFAULT_NORMALIZE_Y,
)
from ._estimators import AdamStarNTKClassifier, AdamStarNTKRegressor
from ._fitting import fit_model

__all__ = ["AdamStarNTKClassifierCV", "AdamStarNTKRegressorCV"]

# learning_rates=None: factors on the automatic step size (learning_rate_init=
# "auto"), which is in units of the kernel's scale already.  SGD and momentum
# start at half their stability limit, so their factors stay at or below 1.
RATE_FACTORS = {"adam*": (0.5, 1.0, 2.0), "adam": (0.5, 1.0, 2.0),
                "sgd": (0.25, 0.5, 1.0), "momentum": (0.25, 0.5, 1.0)}
# What the search decides, and so is no parameter of the CV estimators.
_SEARCHED = ("learning_rate_init", "early_stopping", "validation_fraction",
             "warm_start")


class _CrossValidatedMixin:
    """The search shared by both CV estimators (put before the plain class)."""

    # The plain estimators read these; the search sets the rate and the epoch.
    learning_rate_init = "auto"
    early_stopping = "auto"
    validation_fraction = 0.1
    warm_start = False

    @property
    def partial_fit(self):
        raise AttributeError(
            f"{type(self).__name__} has no partial_fit: it chooses the number of "
            "epochs of a whole fit. Use the plain estimator for online training."
        )

    def _fit(self, X, y, sample_weight, *, online, classes=None):
        super()._fit(X, y, sample_weight, online=online, classes=classes)
        self.__dict__.update(self.__dict__.pop("_search_results"))
        return self

    def _fit_model(self, X, y, sample_weight, online, classes):
        """The search: every (fold, rate) path, the choice, the refit."""
        problem = self._training_problem(X, y, sample_weight, online=False,
                                         classes=classes, previous=None)
        problem = dataclasses.replace(problem, callbacks=None)
        rates, factors = self._rates()
        if self.cv is None and self._has_spectrum():
            model, scores, index, epoch, score = self._search_gcv(problem, rates,
                                                                  factors)
        else:
            model, scores, index, epoch, score = self._search_folds(problem, rates,
                                                                    factors)
        self._search_results = {
            "best_index_": index,
            "learning_rate_": model.learning_rate,
            "n_iter_": epoch,
            "best_score_": score,
            "scores_path_": scores,
            "learning_rates_": np.asarray(rates, dtype=float),
            "rates_are_factors_": factors,
        }
        return model

    def _rates(self):
        """The rates to try, and whether they are factors on the automatic rate."""
        if self.learning_rates is None:
            return list(RATE_FACTORS[self.optimizer]), True
        rates = [float(rate) for rate in np.ravel(self.learning_rates)]
        if not rates or min(rates) <= 0:
            raise ValueError(
                f"{type(self).__name__}: learning_rates must be positive numbers, "
                f"got {self.learning_rates!r}."
            )
        return rates, False

    def _has_spectrum(self):
        """Whether the fit runs on the eigenbasis, where GCV is available."""
        return (self._squared_loss and self.batch_size is None and self.width is None
                and self.solver in ("auto", "eigen") and self.device != "cuda")

    def _search_gcv(self, problem, rates, factors):
        """``cv=None``: GCV of each rate's path on all rows; its best epoch wins."""
        problem = dataclasses.replace(problem, solver="eigen")
        models = [self._path(problem, rate, factors) for rate in rates]
        best_scores = [-np.inf if model is None else model.best_validation_score
                       for model in models]
        best = self._best(best_scores, rates)
        paths = [[] if model is None else model.validation_scores for model in models]
        model = models[best]
        return (model, _padded(paths)[None], best, model.best_iteration,
                best_scores[best])

    def _search_folds(self, problem, rates, factors):
        """k folds: every (fold, rate) path scored, the best (rate, epoch) refitted."""
        splitter = check_cv(self.cv, problem.targets.stratify,
                            classifier=problem.targets.stratify is not None)
        problem = dataclasses.replace(problem,
                                      validation_score=self._fold_score(problem))
        n_rows = problem.X.shape[0]
        folds = []
        for train, test in splitter.split(np.zeros((n_rows, 1)),
                                          problem.targets.stratify):
            fold = dataclasses.replace(problem, split=(train, test))
            paths = [self._path(fold, rate, factors) for rate in rates]
            folds.append([[] if model is None else model.validation_scores
                          for model in paths])
        scores = np.array([_padded(fold, length=self.max_iter) for fold in folds])
        # An epoch is a candidate while every fold still has a score for it.
        mean = scores.mean(axis=0)
        mean[np.isnan(mean)] = -np.inf
        rate, epoch = np.unravel_index(np.argmax(mean), mean.shape)
        self._best([mean[rate, epoch]], rates)
        refit = self._with_rate(problem, rates[rate], factors)
        refit = dataclasses.replace(
            refit, stopping="fixed", validation_score=None,
            schedule=dataclasses.replace(refit.schedule, max_iter=int(epoch) + 1))
        return (fit_model(refit), scores, int(rate), int(epoch) + 1,
                float(mean[rate, epoch]))

    def _path(self, problem, rate, factors):
        """One training path; None when it diverges (that rate is never chosen)."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return fit_model(self._with_rate(problem, rate, factors))
        except ValueError as error:
            if "diverged" not in str(error):
                raise
            warnings.warn(f"{error} (this learning rate is left out of the search)")
            return None

    def _with_rate(self, problem, rate, factors):
        if factors:
            return dataclasses.replace(problem, learning_rate_auto=True,
                                       learning_rate_scale=rate)
        settings = dataclasses.replace(problem.settings, learning_rate=rate)
        return dataclasses.replace(problem, settings=settings,
                                   learning_rate_auto=False)

    def _best(self, scores, rates):
        best = int(np.argmax(scores))
        if not np.isfinite(scores[best]):
            raise ValueError(
                f"{type(self).__name__}: training diverged at every learning rate "
                f"({rates}); lower them, or standardise the inputs (e.g. "
                "StandardScaler in a pipeline)."
            )
        return best

    def _fold_score(self, problem):
        """``score(F_val, val_rows)`` of a fold's held-out rows (``scoring``)."""
        targets = problem.targets
        if self.scoring is None:
            return targets.score
        scorer = check_scoring(self, scoring=self.scoring)
        y, weight = targets.raw, problem.sample_weight

        def score(F_val, rows):
            given = _given_outputs(self, F_val, targets.attributes)
            return float(scorer(given, np.zeros((len(rows), 1)), y[rows],
                                sample_weight=weight[rows]))

        return score


def _given_outputs(estimator, outputs, encoding):
    """The estimator's predictions of given model outputs (what a scorer calls).

    A shallow copy of the estimator whose ``_raw_predict`` returns the outputs
    of a fold's held-out rows, so that ``predict``, ``predict_proba`` and
    ``decision_function`` decode them exactly as a fitted model would.
    """
    given = copy.copy(estimator)
    model = types.SimpleNamespace(targets=encoding)
    given._raw_predict = lambda X, staged=False: (model, outputs)
    given.__dict__.update(encoding)
    return given


def _padded(paths, length=None):
    """Score paths of unequal lengths as one array, NaN past each path's end."""
    length = length or max((len(path) for path in paths), default=1)
    out = np.full((len(paths), max(length, 1)), np.nan)
    for i, path in enumerate(paths):
        out[i, :len(path)] = path[:length]
    return out


def _without(doc, names):
    """Parameter documentation without the blocks of ``names``."""
    blocks = doc.split("\n\n")
    return "\n\n".join(block for block in blocks
                       if not any(block.lstrip().startswith(f"{name} :")
                                  for name in names))


_SEARCH_DOC = """
    learning_rates : array-like of float or None, default=None
        The base step sizes to try. ``None``: three factors on the automatic
        step size of ``learning_rate_init="auto"`` (which is in units of the
        kernel's scale): 1/2, 1 and 2 for ``"adam*"`` and ``"adam"``; 1/4,
        1/2 and 1 for ``"sgd"`` and ``"momentum"`` (1 is half their stability
        limit).

    cv : int, cross-validation generator, iterable or None, default=None
        ``None``: for the regressor, when the fit runs on the eigenbasis
        (full batch, squared loss, infinite width), generalised
        cross-validation of the full-data path, RidgeCV's efficient
        leave-one-out default; otherwise 5 folds (stratified for the
        classifier), as :func:`~sklearn.model_selection.check_cv` makes them.

    scoring : str, callable or None, default=None
        How a fold's held-out rows are scored after every epoch: ``None`` is
        the estimator's ``score`` (R^2 or accuracy), otherwise a scorer as
        :func:`~sklearn.metrics.check_scoring` takes it. With the GCV of
        ``cv=None`` it is not used.
"""

_SEARCH_ATTRIBUTES_DOC = """
    learning_rate_ : float
        The chosen base step size.

    n_iter_ : int
        The chosen number of epochs, the model's.

    best_score_ : float
        The chosen (rate, epoch)'s mean held-out score (with the GCV of
        ``cv=None``, minus its estimate of the prediction error, in
        standardised target units).

    scores_path_ : ndarray of shape (n_folds, n_rates, n_epochs)
        The held-out score of every fold and rate after every epoch (the GCV
        of ``cv=None`` is one "fold" of minus its estimate); NaN after a
        path stopped (a tenth of its epochs after its best, or at
        ``max_iter``) or diverged.

    learning_rates_ : ndarray of shape (n_rates,)
        The rates tried: factors on the automatic rate when
        ``learning_rates=None`` (then ``rates_are_factors_`` is True), else
        step sizes.

    rates_are_factors_ : bool
        Whether ``learning_rates_`` are factors on the automatic rate.

    best_index_ : int
        Index of the chosen rate in ``learning_rates_``.
"""


def _cv_doc(summary, examples, extra_parameters=""):
    parameters = _without(_PARAMETERS_DOC, _SEARCHED) + extra_parameters
    attributes = _without(_ATTRIBUTES_DOC, ("n_iter_", "learning_rate_"))
    return (summary + "\n\n    Parameters\n    ----------" + _SEARCH_DOC + parameters
            + "\n    Attributes\n    ----------" + _SEARCH_ATTRIBUTES_DOC + attributes
            + "\n    Examples\n    --------\n" + examples)


def _constraints(plain):
    constraints = {key: value for key, value in plain._parameter_constraints.items()
                   if key not in _SEARCHED}
    constraints.update(learning_rates=["array-like", None], cv=["cv_object"],
                       scoring=[str, callable, None])
    return constraints


class AdamStarNTKRegressorCV(_CrossValidatedMixin, AdamStarNTKRegressor):
    __doc__ = _cv_doc(
        """ADAM* network regressor whose learning rate and epochs are cross-validated.

    :class:`AdamStarNTKRegressor` with ``learning_rate_init`` and the number
    of epochs chosen as :class:`~sklearn.linear_model.RidgeCV` chooses
    ``alpha``: each rate of ``learning_rates`` is trained once per fold, the
    held-out fold scored after every epoch, and the (rate, epoch) with the
    best mean score refitted on every row. The default ``cv=None`` does it
    without folds, by robust generalised cross-validation of the full-data
    path.""",
        """    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_adamntk import AdamStarNTKRegressorCV
    >>> X, y = make_friedman1(n_samples=200, noise=1.0, random_state=0)
    >>> model = make_pipeline(StandardScaler(), AdamStarNTKRegressorCV()).fit(X, y)
    >>> search = model[-1]
    >>> search.scores_path_.shape[:2], search.n_iter_ > 0
    ((1, 3), True)
""",
        """
    normalize_y : bool, default=True
        Centre and scale the targets (sample-weighted mean and standard
        deviation) before training, undone at predict.
""",
    )

    _parameter_constraints = _constraints(AdamStarNTKRegressor)

    def __init__(
        self,
        *,
        learning_rates=None,
        cv=None,
        scoring=None,
        kernel="nngp",
        activation="relu",
        depth=1,
        weight_variance=2.0,
        bias_variance=DEFAULT_BIAS_VARIANCE,
        width=None,
        optimizer="adam*",
        learning_rate="constant",
        power_t=0.5,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        momentum=0.9,
        weight_decay=0.0,
        batch_size=None,
        max_iter=DEFAULT_MAX_ITER,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        random_state=None,
        verbose=0,
        solver="auto",
        device="cpu",
        n_jobs=None,
        copy_X=True,
        normalize_y=DEFAULT_NORMALIZE_Y,
    ):
        _set_params(self, locals())


class AdamStarNTKClassifierCV(_CrossValidatedMixin, AdamStarNTKClassifier):
    __doc__ = _cv_doc(
        """ADAM* network classifier whose learning rate and epochs are cross-validated.

    :class:`AdamStarNTKClassifier` with ``learning_rate_init`` and the number
    of epochs chosen as :class:`~sklearn.linear_model.LogisticRegressionCV`
    chooses ``C``: each rate of ``learning_rates`` is trained once per fold
    (stratified, 5 by default), the held-out fold scored after every epoch,
    and the (rate, epoch) with the best mean score refitted on every row.""",
        """    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_adamntk import AdamStarNTKClassifierCV
    >>> X, y = load_iris(return_X_y=True)
    >>> model = make_pipeline(StandardScaler(), AdamStarNTKClassifierCV(cv=3))
    >>> model.fit(X, y)[-1].scores_path_.shape[:2]
    (3, 3)
""",
    )

    _parameter_constraints = _constraints(AdamStarNTKClassifier)

    def __init__(
        self,
        *,
        learning_rates=None,
        cv=None,
        scoring=None,
        kernel="nngp",
        activation="relu",
        depth=1,
        weight_variance=2.0,
        bias_variance=DEFAULT_BIAS_VARIANCE,
        width=None,
        optimizer="adam*",
        learning_rate="constant",
        power_t=0.5,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        momentum=0.9,
        weight_decay=0.0,
        batch_size=None,
        max_iter=DEFAULT_MAX_ITER,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        random_state=None,
        verbose=0,
        solver="auto",
        device="cpu",
        n_jobs=None,
        copy_X=True,
    ):
        _set_params(self, locals())


def _set_params(estimator, arguments):
    for name, value in arguments.items():
        if name not in ("self", "__class__"):
            setattr(estimator, name, value)

