"""Plots of training: the loss of one fit, the score paths of a search.

:class:`LossCurveDisplay` (a fitted model's training loss and validation
score per epoch) and :class:`ValidationPathDisplay` (the cross-validated
score of every learning rate against the epoch) follow scikit-learn's Display pattern
(:class:`~sklearn.metrics.RocCurveDisplay`,
:class:`~sklearn.model_selection.LearningCurveDisplay`): the constructor holds
the numbers, :meth:`~LossCurveDisplay.plot` draws them and
:meth:`~LossCurveDisplay.from_estimator` reads them from a fitted model.
matplotlib is imported only inside ``plot``; it comes with the ``plot`` extra.
"""

import numpy as np
from sklearn.base import is_classifier, is_regressor
from sklearn.utils.validation import check_is_fitted

__all__ = ["LossCurveDisplay", "ValidationPathDisplay"]


def _import_pyplot(caller_name):
    """``matplotlib.pyplot``, or an ImportError naming the extra that installs it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"{caller_name} requires matplotlib, which is not installed. "
            'Install it with: pip install "sklearn_adamntk[plot]"'
        ) from exc
    return plt


def _score_name(model):
    """What a model's ``validation_scores_`` are, for the axis label."""
    if getattr(model, "early_stopping", None) == "auto":
        if getattr(model, "solver_", None) == "eigen":
            return "Minus GCV estimate"
        return "Minus held-out loss"
    if is_classifier(model):
        return "Validation accuracy"
    if is_regressor(model):
        return "Validation R^2"
    return None


def _final_estimator(estimator):
    """The last step of a pipeline (the model that trained), else the estimator."""
    steps = getattr(estimator, "steps", None)
    return steps[-1][1] if steps else estimator


class LossCurveDisplay:
    """Training loss and validation score per epoch.

    The training loss is drawn on the left y-axis and, when the model's
    stopping rule scored the path (``early_stopping=True`` or ``"auto"``),
    its criterion on a second y-axis on the right sharing the epoch axis
    (``twinx``): the two have different scales and units (a loss to
    minimise, a score to maximise).

    Create it with :meth:`from_estimator`, or with the constructor from
    stored curves and then :meth:`plot`. Works with any fitted estimator that
    has ``loss_curve_`` (and ``validation_scores_``), such as
    :class:`~sklearn_adamntk.AdamStarNTKRegressor`,
    :class:`~sklearn_adamntk.AdamStarNTKClassifier` and scikit-learn's
    :class:`~sklearn.neural_network.MLPRegressor`.

    Parameters
    ----------
    loss_curve : array-like of shape (n_epochs,)
        Mean training loss of each epoch (a model's ``loss_curve_``).

    validation_scores : array-like of shape (n_epochs,) or None, default=None
        Score on the held-out rows after each epoch (``validation_scores_``),
        or ``None`` to draw the loss only.

    name : str or None, default=None
        Name of the model, shown in the legend.

    score_name : str or None, default=None
        Label of the validation score's axis; ``None`` means
        ``"Validation score"``.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the training loss (left y-axis).

    score_ax_ : matplotlib Axes or None
        Twin axes with the validation score (right y-axis), or ``None``
        without validation scores.

    figure_ : matplotlib Figure
        Figure holding the axes.

    lines_ : list of matplotlib Line2D
        The training loss's line, then the validation score's if drawn.

    See Also
    --------
    sklearn.model_selection.LearningCurveDisplay : Scores against the
        number of training rows.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import make_regression
    >>> from sklearn_adamntk import AdamStarNTKRegressor, LossCurveDisplay
    >>> X, y = make_regression(n_samples=80, n_features=4, random_state=0)
    >>> reg = AdamStarNTKRegressor(early_stopping=True, max_iter=30, random_state=0)
    >>> display = LossCurveDisplay.from_estimator(reg.fit(X, y))
    >>> len(display.lines_)
    2
    """

    def __init__(
        self, *, loss_curve, validation_scores=None, name=None, score_name=None
    ):
        self.loss_curve = loss_curve
        self.validation_scores = validation_scores
        self.name = name
        self.score_name = score_name

    def plot(self, ax=None, *, name=None, loss_kwargs=None, score_kwargs=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw the loss on; the validation score goes on its twin.
            ``None`` creates a new figure.

        name : str or None, default=None
            Name of the model in the legend; ``None`` uses ``self.name``.

        loss_kwargs : dict, default=None
            Keyword arguments for ``ax.plot`` of the training loss.

        score_kwargs : dict, default=None
            Keyword arguments for ``ax.plot`` of the validation score.

        Returns
        -------
        display : LossCurveDisplay
            ``self``, with ``ax_``, ``score_ax_``, ``figure_`` and ``lines_``.
        """
        plt = _import_pyplot(f"{type(self).__name__}.plot")
        if ax is None:
            _, ax = plt.subplots()
        name = self.name if name is None else name
        prefix = "" if name is None else f"{name}: "

        loss = np.asarray(self.loss_curve, dtype=float)
        epochs = np.arange(1, loss.size + 1)
        # Default colours come from one cycle, so the twin's line does not
        # repeat the loss line's colour.
        colours = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1"])
        loss_style = {"label": f"{prefix}training loss", "color": colours[0]}
        loss_style.update(loss_kwargs or {})
        lines = ax.plot(epochs, loss, **loss_style)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Training loss")

        score_ax = None
        if self.validation_scores is not None:
            scores = np.asarray(self.validation_scores, dtype=float)
            if scores.shape != loss.shape:
                raise ValueError(
                    f"validation_scores has {scores.size} values but loss_curve "
                    f"has {loss.size}; they are one value per epoch."
                )
            score_name = self.score_name or "Validation score"
            score_style = {
                "label": f"{prefix}{score_name[:1].lower()}{score_name[1:]}",
                "color": colours[1 % len(colours)],
                "linestyle": "--",
            }
            score_style.update(score_kwargs or {})
            score_ax = ax.twinx()
            lines += score_ax.plot(epochs, scores, **score_style)
            score_ax.set_ylabel(score_name)

        # One legend for both axes; it lives on the loss axes.
        ax.legend(handles=lines, loc="best")
        self.ax_ = ax
        self.score_ax_ = score_ax
        self.figure_ = ax.figure
        self.lines_ = lines
        return self

    @classmethod
    def from_estimator(
        cls, estimator, *, ax=None, name=None, loss_kwargs=None, score_kwargs=None
    ):
        """Plot the curves recorded by a fitted estimator.

        Parameters
        ----------
        estimator : estimator or Pipeline
            A fitted model with ``loss_curve_`` (and ``validation_scores_``,
            ``None`` without early stopping); for a pipeline, its last step.
            The curves are those of the last call to ``fit`` or
            ``partial_fit``.

        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` creates a new figure.

        name : str or None, default=None
            Name in the legend; ``None`` uses the model's class name.

        loss_kwargs : dict, default=None
            Keyword arguments for ``ax.plot`` of the training loss.

        score_kwargs : dict, default=None
            Keyword arguments for ``ax.plot`` of the validation score.

        Returns
        -------
        display : LossCurveDisplay
            The display, already drawn.

        Raises
        ------
        NotFittedError
            If the estimator is not fitted.
        TypeError
            If the estimator records no loss curve.
        """
        _import_pyplot(f"{cls.__name__}.from_estimator")
        check_is_fitted(estimator)
        model = _final_estimator(estimator)
        check_is_fitted(model)
        if not hasattr(model, "loss_curve_"):
            raise TypeError(
                f"{cls.__name__} needs an estimator with a loss_curve_ attribute, "
                f"such as AdamStarNTKRegressor; {type(model).__name__} has none."
            )
        score_name = _score_name(model)
        display = cls(
            loss_curve=model.loss_curve_,
            validation_scores=getattr(model, "validation_scores_", None),
            name=type(model).__name__ if name is None else name,
            score_name=score_name,
        )
        return display.plot(ax=ax, loss_kwargs=loss_kwargs, score_kwargs=score_kwargs)


class ValidationPathDisplay:
    """Cross-validated score against the epoch, one line per learning rate.

    The picture of a search of :class:`~sklearn_adamntk.AdamStarNTKRegressorCV`
    or :class:`~sklearn_adamntk.AdamStarNTKClassifierCV`: for every learning
    rate, the mean held-out score over the folds after each epoch (a band of
    one standard deviation across the folds around it), on a logarithmic
    epoch axis, and a marker at the (rate, epoch) the search chose.

    Parameters
    ----------
    scores_path : array-like of shape (n_folds, n_rates, n_epochs)
        Held-out scores (an estimator's ``scores_path_``); NaN where a path
        had stopped.

    learning_rates : array-like of shape (n_rates,)
        The rates, for the legend.

    chosen : tuple of (int, int) or None, default=None
        Index of the chosen rate and the chosen epoch (1-based).

    name : str or None, default=None
        Name of the model, in the title.

    score_name : str or None, default=None
        Label of the score axis; ``None`` means ``"Mean held-out score"``.

    rates_are_factors : bool, default=False
        Label the rates as factors on the automatic rate.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    lines_ : list of matplotlib Line2D
        One mean line per rate.

    See Also
    --------
    LossCurveDisplay : The training loss of one fit.
    sklearn.model_selection.ValidationCurveDisplay : Scores against a
        hyper-parameter.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn_adamntk import AdamStarNTKRegressorCV, ValidationPathDisplay
    >>> X, y = load_diabetes(return_X_y=True)
    >>> search = AdamStarNTKRegressorCV(cv=3, max_iter=50).fit(X, y)
    >>> len(ValidationPathDisplay.from_estimator(search).lines_)
    3
    """

    def __init__(self, *, scores_path, learning_rates, chosen=None, name=None,
                 score_name=None, rates_are_factors=False):
        self.scores_path = scores_path
        self.learning_rates = learning_rates
        self.chosen = chosen
        self.name = name
        self.score_name = score_name
        self.rates_are_factors = rates_are_factors

    def plot(self, ax=None, *, name=None, line_kwargs=None):
        """Draw the mean score of every rate against the epoch.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            ``None`` creates a new figure.

        name : str or None, default=None
            Name in the title; ``None`` uses ``self.name``.

        line_kwargs : dict, default=None
            Keyword arguments for ``ax.plot`` of every mean line.

        Returns
        -------
        display : ValidationPathDisplay
            ``self``, with ``ax_``, ``figure_`` and ``lines_``.
        """
        plt = _import_pyplot(f"{type(self).__name__}.plot")
        if ax is None:
            _, ax = plt.subplots()
        scores = np.asarray(self.scores_path, dtype=float)
        rates = np.ravel(self.learning_rates)
        if scores.ndim != 3 or scores.shape[1] != rates.size:
            raise ValueError(
                f"scores_path must have shape (n_folds, {rates.size}, n_epochs), "
                f"got {scores.shape}."
            )
        epochs = np.arange(1, scores.shape[2] + 1)
        lines = []
        for index, rate in enumerate(rates):
            path = scores[:, index, :]
            complete = ~np.isnan(path).any(axis=0)  # every fold still running
            mean = path[:, complete].mean(axis=0)
            spread = path[:, complete].std(axis=0)
            label = f"rate {'x ' if self.rates_are_factors else ''}{rate:.3g}"
            style = {"label": label}
            style.update(line_kwargs or {})
            (line,) = ax.plot(epochs[complete], mean, **style)
            ax.fill_between(epochs[complete], mean - spread, mean + spread,
                            color=line.get_color(), alpha=0.15, linewidth=0)
            lines.append(line)
        if self.chosen is not None:
            index, epoch = self.chosen
            value = np.nanmean(scores[:, index, epoch - 1])
            ax.plot([epoch], [value], marker="o", color=lines[index].get_color(),
                    markersize=8, linestyle="none", label="chosen")
        ax.set_xscale("log")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(self.score_name or "Mean held-out score")
        title = self.name if name is None else name
        if title:
            ax.set_title(title)
        ax.legend(loc="best")
        self.ax_ = ax
        self.figure_ = ax.figure
        self.lines_ = lines
        return self

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, name=None, line_kwargs=None):
        """Plot the score paths of a fitted cross-validated estimator.

        Parameters
        ----------
        estimator : AdamStarNTKRegressorCV, AdamStarNTKClassifierCV or Pipeline
            Fitted; for a pipeline, its last step.

        ax : matplotlib Axes, default=None
            Axes to draw on; ``None`` creates a new figure.

        name : str or None, default=None
            Title; ``None`` uses the model's class name.

        line_kwargs : dict, default=None
            Keyword arguments for ``ax.plot`` of every mean line.

        Returns
        -------
        display : ValidationPathDisplay
            The display, already drawn.

        Raises
        ------
        TypeError
            If the estimator has no ``scores_path_``.
        """
        _import_pyplot(f"{cls.__name__}.from_estimator")
        check_is_fitted(estimator)
        model = _final_estimator(estimator)
        check_is_fitted(model)
        if not hasattr(model, "scores_path_"):
            raise TypeError(
                f"{cls.__name__} needs a cross-validated estimator with a "
                f"scores_path_ attribute, such as AdamStarNTKRegressorCV; "
                f"{type(model).__name__} has none."
            )
        gcv = getattr(model, "cv", 0) is None and model.scores_path_.shape[0] == 1
        display = cls(
            scores_path=model.scores_path_,
            learning_rates=model.learning_rates_,
            chosen=(model.best_index_, model.n_iter_),
            score_name="Minus GCV estimate" if gcv else None,
            name=type(model).__name__ if name is None else name,
            rates_are_factors=getattr(model, "rates_are_factors_", False),
        )
        return display.plot(ax=ax, line_kwargs=line_kwargs)
