"""LossCurveDisplay draws exactly the fitted curves, on the axes it is given."""

import sys

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.kernel_ridge import KernelRidge
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import (
    AdamStarNTKClassifier,
    AdamStarNTKRegressor,
    LossCurveDisplay,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)


@pytest.fixture
def plt():
    """pyplot on the Agg backend (drawing tests skip without the plot extra)."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


@pytest.fixture(scope="module")
def regression():
    return make_regression(n_samples=60, n_features=3, noise=5.0, random_state=0)


def _ydata(line):
    return np.asarray(line.get_ydata(), dtype=float)


def test_lines_are_the_fitted_curves(regression, plt):
    X, y = regression
    reg = AdamStarNTKRegressor(
        early_stopping=True, validation_fraction=0.2, max_iter=15, random_state=0
    ).fit(X, y)
    assert reg.validation_scores_ is not None  # the fixture must exercise both

    display = LossCurveDisplay.from_estimator(reg)

    loss_line, score_line = display.lines_
    np.testing.assert_array_equal(_ydata(loss_line), reg.loss_curve_)
    np.testing.assert_array_equal(_ydata(score_line), reg.validation_scores_)
    epochs = np.arange(1, reg.n_iter_ + 1)
    np.testing.assert_array_equal(loss_line.get_xdata(), epochs)
    np.testing.assert_array_equal(score_line.get_xdata(), epochs)
    # Two scales: the loss on the left axes, the score on their twin.
    assert loss_line.axes is display.ax_
    assert score_line.axes is display.score_ax_
    assert display.score_ax_ is not display.ax_
    assert display.figure_ is display.ax_.figure
    assert display.ax_.get_xlabel() == "Epoch"
    assert display.score_ax_.get_ylabel() == "Validation R^2"
    legend = [text.get_text() for text in display.ax_.get_legend().get_texts()]
    assert legend == [
        "AdamStarNTKRegressor: training loss",
        "AdamStarNTKRegressor: validation R^2",
    ]


def test_without_early_stopping_only_the_loss(regression, plt):
    X, y = regression
    reg = AdamStarNTKRegressor(max_iter=10).fit(X, y)
    assert reg.validation_scores_ is None

    display = LossCurveDisplay.from_estimator(reg)

    (loss_line,) = display.lines_
    np.testing.assert_array_equal(_ydata(loss_line), reg.loss_curve_)
    assert display.score_ax_ is None
    assert len(display.figure_.axes) == 1


def test_draws_on_the_given_axes(regression, plt):
    X, y = regression
    reg = AdamStarNTKRegressor(
        early_stopping=True, validation_fraction=0.2, max_iter=10, random_state=0
    ).fit(X, y)
    fig, (left, right) = plt.subplots(1, 2)

    display = LossCurveDisplay.from_estimator(
        reg, ax=right, name="mine", loss_kwargs={"color": "black"}
    )

    assert display.ax_ is right
    assert display.figure_ is fig
    assert not left.lines
    assert display.lines_[0] in right.lines
    assert display.lines_[0].get_color() == "black"
    assert display.lines_[0].get_label() == "mine: training loss"
    # The twin shares the x-axis of the given axes and lives in the same figure.
    assert display.score_ax_.get_shared_x_axes().joined(display.score_ax_, right)
    assert display.score_ax_.figure is fig


def test_classifier_in_a_pipeline(plt):
    X, y = make_classification(n_samples=80, n_features=4, random_state=0)
    pipe = make_pipeline(
        StandardScaler(),
        AdamStarNTKClassifier(early_stopping=True, max_iter=10, random_state=0),
    ).fit(X, y)
    clf = pipe[-1]

    display = LossCurveDisplay.from_estimator(pipe)

    np.testing.assert_array_equal(_ydata(display.lines_[0]), clf.loss_curve_)
    np.testing.assert_array_equal(_ydata(display.lines_[1]), clf.validation_scores_)
    assert display.score_ax_.get_ylabel() == "Validation accuracy"
    assert display.name == "AdamStarNTKClassifier"


def test_scikit_learn_mlp_also_works(regression, plt):
    X, y = regression
    mlp = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    display = LossCurveDisplay.from_estimator(mlp)
    np.testing.assert_array_equal(_ydata(display.lines_[0]), mlp.loss_curve_)


def test_constructor_then_plot(plt):
    display = LossCurveDisplay(
        loss_curve=[3.0, 2.0, 1.5], validation_scores=[0.1, 0.4, 0.5]
    )
    assert not hasattr(display, "ax_")  # nothing is drawn before plot

    returned = display.plot(name="stored")

    assert returned is display
    np.testing.assert_array_equal(_ydata(display.lines_[1]), [0.1, 0.4, 0.5])
    assert display.score_ax_.get_ylabel() == "Validation score"
    assert display.lines_[0].get_label() == "stored: training loss"


def test_mismatched_lengths_are_refused(plt):
    display = LossCurveDisplay(loss_curve=[3.0, 2.0], validation_scores=[0.1])
    with pytest.raises(ValueError, match="one value per epoch"):
        display.plot()


def test_unfitted_estimator_raises(plt):
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(AdamStarNTKRegressor())
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(
            make_pipeline(StandardScaler(), AdamStarNTKRegressor())
        )


def test_estimator_without_loss_curve_raises(regression, plt):
    X, y = regression
    with pytest.raises(TypeError, match="loss_curve_"):
        LossCurveDisplay.from_estimator(KernelRidge().fit(X, y))


def test_missing_matplotlib_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes `import matplotlib` raise ImportError,
    # as when the plot extra is not installed.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)

    display = LossCurveDisplay(loss_curve=[1.0, 0.5])
    with pytest.raises(ImportError, match=r'pip install "sklearn_adamntk\[plot\]"'):
        display.plot()
    with pytest.raises(ImportError, match="LossCurveDisplay.from_estimator requires"):
        LossCurveDisplay.from_estimator(AdamStarNTKRegressor())
