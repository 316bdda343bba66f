"""ADAM* infinite-width networks as scikit-learn regressors and classifiers.

Each estimator says how its targets are validated, encoded for a loss and
scored, and how the model's raw outputs become predictions; the parameters,
the hand-over to the fitting engine and the prediction plumbing they share
live in :mod:`._base`.
"""

from contextlib import contextmanager

import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import validate_data

from ._base import (
    _ATTRIBUTES_DOC,
    _PARAMETERS_DOC,
    DEFAULT_BIAS_VARIANCE,
    DEFAULT_EARLY_STOPPING,
    DEFAULT_LEARNING_RATE_INIT,
    DEFAULT_MAX_ITER,
    DEFAULT_NORMALIZE_Y,
    _BaseAdamStarNTK,
    _dask_rows,
    _partial_fit_available,
    finite_outputs,
)
from ._fitting import Targets

__all__ = ["AdamStarNTKClassifier", "AdamStarNTKRegressor"]


class AdamStarNTKRegressor(RegressorMixin, _BaseAdamStarNTK):
    __doc__ = (
        """Infinite-width network regressor trained with ADAM* (or SGD, momentum).

    The exact infinite-width limit of a network whose readout (``"nngp"``)
    or linearised layers (``"ntk"``) are trained from zero with ADAM*, Adam
    with its second moment averaged over the features (Sernau 2024, "Infinite
    Width Models That Work"). The model is a kernel machine ``f(x) = sum_i
    A[i] K(x_i, x)`` whose dual coefficients follow the optimizer's
    trajectory exactly; training is stopped early (``max_iter``, ``tol``,
    ``early_stopping``), which is the regulariser. The squared loss
    ``1/2 ||f - y||^2`` is averaged over each (sample-weighted) batch; multi-
    output targets are trained jointly, with one second moment per output.

    Parameters
    ----------"""
        + _PARAMETERS_DOC
        + """
    normalize_y : bool, default=True
        Centre and scale the targets (sample-weighted mean and standard
        deviation) before training, undone at predict. With ``partial_fit``
        the statistics of the first call are kept.

    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    AdamStarNTKClassifier : The same model for classification.
    sklearn.kernel_ridge.KernelRidge : Kernel ridge regression (the
        ``weight_decay`` long-time limit), with ``NetworkKernel``.
    sklearn.svm.SVR : Support vector regression on the same kernel.
    sklearn.neural_network.MLPRegressor : A finite network trained with Adam.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_adamntk import AdamStarNTKRegressor
    >>> X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    >>> reg = AdamStarNTKRegressor(learning_rate_init=0.1, max_iter=100)
    >>> model = make_pipeline(StandardScaler(), reg).fit(X, y)
    >>> model.score(X, y) > 0.9
    True
    """
    )

    _parameter_constraints: dict = {
        **_BaseAdamStarNTK._parameter_constraints,
        "normalize_y": ["boolean"],
    }
    _squared_loss = True
    # check_X_y's options for y (also used when X is a Dask array).
    _y_checks = {"multi_output": True, "y_numeric": True}

    def __init__(
        self,
        *,
        kernel="nngp",
        activation="relu",
        depth=1,
        weight_variance=2.0,
        bias_variance=DEFAULT_BIAS_VARIANCE,
        width=None,
        optimizer="adam*",
        learning_rate_init=DEFAULT_LEARNING_RATE_INIT,
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
        early_stopping=DEFAULT_EARLY_STOPPING,
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        verbose=0,
        solver="auto",
        device="cpu",
        n_jobs=None,
        copy_X=True,
        normalize_y=DEFAULT_NORMALIZE_Y,
    ):
        # Every parameter but normalize_y is the base estimator's.
        arguments = dict(locals())
        for name in ("self", "__class__", "normalize_y"):
            arguments.pop(name, None)
        super().__init__(**arguments)
        self.normalize_y = normalize_y

    def _validate_Xy_fit(self, X, y, *, reset):
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=[np.float64, np.float32],
            order="C",
            **self._y_checks,
        )
        return X, self._check_targets(y)

    def _check_targets(self, y):
        if y.dtype.kind not in "biuf":
            raise ValueError(
                f"{type(self).__name__} needs numeric targets; got y of dtype "
                f"{y.dtype}. For class labels use AdamStarNTKClassifier."
            )
        return y

    def _encode_targets(self, y, sample_weight, *, classes=None, previous=None):
        """Standardised targets (``normalize_y``), or in ``previous``'s scaling."""
        y_1d = y.ndim == 1
        Y = np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)
        if previous is not None:
            mean, std = previous["_y_mean"], previous["_y_std"]
        elif self.normalize_y:
            mean, std = _standardisation(Y, sample_weight)
        else:
            mean = np.zeros(Y.shape[1])
            std = np.ones(Y.shape[1])

        def score(F_val, rows):
            pred = F_val * std + mean
            with np.errstate(all="ignore"):
                return float(r2_score(Y[rows], pred, sample_weight=sample_weight[rows]))

        with np.errstate(over="ignore"):  # reported by _check_encoded_targets
            encoded = (Y - mean) / std
        return Targets(
            Y=encoded,
            loss="squared",
            attributes={"_y_mean": mean, "_y_std": std, "_y_1d": y_1d},
            score=score,
            raw=y,
        )

    def _same_targets(self, previous, targets):
        return previous["_y_mean"].shape == targets.attributes["_y_mean"].shape

    @staticmethod
    def _to_prediction(F, targets):
        with np.errstate(over="ignore"):  # reported by finite_outputs
            pred = F * targets["_y_std"] + targets["_y_mean"]
        return pred.ravel() if targets["_y_1d"] else pred

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network from zero (or resume, with ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, or the ``(n_samples, n_samples)`` Gram matrix with
            ``kernel="precomputed"``. A Dask array of rows trains on its
            cluster, one map-reduce per epoch (full batch; see ``solver``).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Numeric targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; each batch's loss is the weighted mean.

        Returns
        -------
        self : AdamStarNTKRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, online=False)

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over the given rows, continuing the previous optimizer state.

        At infinite width (and with ``solver="dual"``) the new rows join the
        support set ``X_fit_`` with zero coefficients before the epoch, the
        paper's online setting; with a finite ``width`` and the primal solver
        the network's weights keep training. ``early_stopping`` is not
        supported; ``normalize_y`` keeps the statistics of the first call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New training rows.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Their targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : AdamStarNTKRegressor
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, online=True)

    @_dask_rows
    def predict(self, X):
        """Predict with the trained network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict, or their ``(n_samples, n_samples_fit)`` kernel
            against the training rows with ``kernel="precomputed"``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions, 1-D when ``y`` was 1-D at fit; a Dask array, chunk
            by chunk, for a Dask array ``X``.
        """
        model, F = self._raw_predict(X)
        return finite_outputs(self._to_prediction(F, model.targets),
                              type(self).__name__)

    def staged_predict(self, X):
        """Yield the predictions after each epoch of the last ``fit``/``partial_fit``.

        The model keeps no epoch's coefficients but its own: the training is
        run again from its record (same data, step sizes, batches and start),
        at about the cost of the fit, and ``X``'s kernel against the training
        rows is computed once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict (a kernel with ``kernel="precomputed"``).

        Yields
        ------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions after epoch 1, 2, ..., ``n_iter_``. With early
            stopping the last stage is the last epoch, not the restored best.
        """
        model, stages = self._raw_predict(X, staged=True)
        for F in stages:
            yield finite_outputs(self._to_prediction(F, model.targets),
                                 type(self).__name__)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class AdamStarNTKClassifier(ClassifierMixin, _BaseAdamStarNTK):
    __doc__ = (
        """Infinite-width network classifier trained with ADAM* (or SGD, momentum).

    The exact infinite-width limit of a network trained from a zero readout
    with ADAM* (Sernau 2024, "Infinite Width Models That Work"): a kernel
    machine whose dual coefficients follow the optimizer exactly. Two classes
    use one logit and the logistic loss; three or more use ``n_classes``
    logits and the softmax cross-entropy, as
    :class:`~sklearn.neural_network.MLPClassifier` does. Losses are
    (sample-weighted) means over each batch.

    Parameters
    ----------"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    AdamStarNTKRegressor : The same model for regression.
    sklearn.svm.SVC : Support vector classification on the same kernel.
    sklearn.neural_network.MLPClassifier : A finite network trained with Adam.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_adamntk import AdamStarNTKClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = AdamStarNTKClassifier(learning_rate_init=0.1, max_iter=100)
    >>> clf = make_pipeline(StandardScaler(), clf)
    >>> bool(cross_val_score(clf, X, y, cv=5).mean() > 0.9)
    True
    >>> clf.fit(X, y).predict_proba(X[:2]).shape
    (2, 3)
    """
    )

    # check_X_y's options for y (also used when X is a Dask array).
    _y_checks = {}

    def _validate_Xy_fit(self, X, y, *, reset):
        X, y = validate_data(
            self, X, y, reset=reset, dtype=[np.float64, np.float32], order="C",
            **self._y_checks,
        )
        return X, self._check_targets(y)

    def _check_targets(self, y):
        with _sortable_labels(type(self).__name__, "y"):
            check_classification_targets(y)
        return y

    def _encode_targets(self, y, sample_weight, *, classes=None, previous=None):
        name = type(self).__name__
        if previous is not None:
            known = previous["classes_"]
            if classes is not None and not np.array_equal(
                unique_labels(classes), known
            ):
                raise ValueError(
                    f"{name}: classes={classes!r} is not the same as on the "
                    f"first call to partial_fit, {known!r}."
                )
            labels = known
        elif classes is not None:
            with _sortable_labels(name, "classes"):
                labels = unique_labels(classes)
        else:
            labels = unique_labels(y)
        unseen = np.setdiff1d(np.unique(y), labels)
        if unseen.size:
            raise ValueError(
                f"{name}: y contains labels {unseen!r} that are not in "
                f"classes {labels!r}."
            )
        if labels.size < 2:
            raise ValueError(
                f"{name} needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {labels[0]!r}."
            )
        codes = np.searchsorted(labels, y)
        if labels.size == 2:
            Y = codes.astype(np.float64).reshape(-1, 1)
            loss = "logistic"
        else:
            Y = np.zeros((codes.size, labels.size))
            Y[np.arange(codes.size), codes] = 1.0
            loss = "softmax"

        def score(F_val, rows):
            predicted = _predicted_codes(F_val)
            return float(accuracy_score(codes[rows], predicted,
                                        sample_weight=sample_weight[rows]))

        return Targets(Y=Y, loss=loss, attributes={"classes_": labels}, score=score,
                       stratify=codes, raw=y)

    def _same_targets(self, previous, targets):
        return np.array_equal(previous["classes_"], targets.attributes["classes_"])

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network from zero (or resume, with ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, or the ``(n_samples, n_samples)`` Gram matrix with
            ``kernel="precomputed"``. A Dask array of rows trains on its
            cluster, one map-reduce per epoch (full batch; see ``solver``).
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; each batch's loss is the weighted mean.

        Returns
        -------
        self : AdamStarNTKClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, online=False)

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over the given rows, continuing the previous optimizer state.

        At infinite width (and with ``solver="dual"``) the new rows join the
        support set ``X_fit_`` before the epoch (the paper's online setting);
        with a finite ``width`` and the primal solver the network's weights
        keep training. ``early_stopping`` is not supported.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New training rows.
        y : array-like of shape (n_samples,)
            Their labels.
        classes : array-like of shape (n_classes,), default=None
            Every class that will ever appear. Required on the first call
            (unless the estimator was fitted with ``fit``), ignored after.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : AdamStarNTKClassifier
            The updated estimator.
        """
        if classes is None and "_model" not in self.__dict__:
            raise ValueError(
                f"{type(self).__name__}: classes must be passed on the first "
                "call to partial_fit."
            )
        return self._fit(X, y, sample_weight, online=True, classes=classes)

    @_dask_rows
    def decision_function(self, X):
        """Return the logits of the trained network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel against the training rows with
            ``kernel="precomputed"``).

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes the logit of ``classes_[1]``, else one logit per
            class.
        """
        _, F = self._raw_predict(X)
        return F.ravel() if F.shape[1] == 1 else F

    @_dask_rows
    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels.
        """
        model, F = self._raw_predict(X)
        return model.targets["classes_"][_predicted_codes(F)]

    @_dask_rows
    def predict_proba(self, X):
        """Class probabilities (sigmoid for two classes, softmax otherwise).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_``.
        """
        _, F = self._raw_predict(X)
        return _probabilities(F)

    @_dask_rows
    def predict_log_proba(self, X):
        """Logarithm of the class probabilities, computed without underflow.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        _, F = self._raw_predict(X)
        if F.shape[1] == 1:
            return np.hstack([-np.logaddexp(0, F), -np.logaddexp(0, -F)])
        return log_softmax(F, axis=1)

    def staged_decision_function(self, X):
        """Yield the logits after each epoch of the last ``fit`` or ``partial_fit``.

        The training is run again from the model's record, at about the cost
        of the fit (see :meth:`AdamStarNTKRegressor.staged_predict`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Yields
        ------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            As :meth:`decision_function`, after epoch 1, 2, ..., ``n_iter_``.
        """
        _, stages = self._raw_predict(X, staged=True)
        for F in stages:
            yield F.ravel() if F.shape[1] == 1 else F

    def staged_predict_proba(self, X):
        """Yield class probabilities after each epoch of the last fit or partial_fit.

        The training is run again from the model's record, at about the cost
        of the fit (see :meth:`AdamStarNTKRegressor.staged_predict`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Yields
        ------
        proba : ndarray of shape (n_samples, n_classes)
            As :meth:`predict_proba`, after epoch 1, 2, ..., ``n_iter_``.
        """
        _, stages = self._raw_predict(X, staged=True)
        for F in stages:
            yield _probabilities(F)

    def staged_predict(self, X):
        """Yield the predicted labels after each epoch of the last fit or partial_fit.

        The training is run again from the model's record, at about the cost
        of the fit (see :meth:`AdamStarNTKRegressor.staged_predict`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Yields
        ------
        y_pred : ndarray of shape (n_samples,)
            Labels after epoch 1, 2, ..., ``n_iter_``. With early stopping the
            last stage is the last epoch, not the restored best.
        """
        model, stages = self._raw_predict(X, staged=True)
        for F in stages:
            yield model.targets["classes_"][_predicted_codes(F)]


def _standardisation(Y, sample_weight):
    """Sample-weighted mean and standard deviation of each column of ``Y``.

    Computed on ``Y`` divided by its largest ``|y|``, so that targets of any
    finite magnitude (``1e200``: the squares overflow; ``1e-15``: tiny but
    not constant) give finite statistics.  A column whose standard deviation
    is within rounding of its own magnitude (a relative test: 64 ulps) is
    constant: it is centred, not scaled.
    """
    scale = np.max(np.abs(Y), axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    Z = Y / scale
    mean = np.average(Z, axis=0, weights=sample_weight)
    std = np.sqrt(np.average((Z - mean) ** 2, axis=0, weights=sample_weight))
    constant = std <= 64 * np.finfo(np.float64).eps
    return mean * scale, np.where(constant, 1.0, std * scale)


@contextmanager
def _sortable_labels(name, what):
    """A ValueError naming the cause where class labels cannot be sorted."""
    try:
        yield
    except TypeError as exc:
        raise ValueError(
            f"{name}: the class labels in {what} cannot be sorted ({exc}); "
            "they mix types (e.g. str and int). Use labels of one type, "
            "e.g. y.astype(str)."
        ) from exc


def _predicted_codes(F):
    if F.shape[1] == 1:
        return (F[:, 0] > 0).astype(np.intp)
    return np.argmax(F, axis=1)


def _probabilities(F):
    """Sigmoid of one logit (two classes), softmax of several."""
    if F.shape[1] == 1:
        p = expit(F)
        return np.hstack([1 - p, p])
    return softmax(F, axis=1)
