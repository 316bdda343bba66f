"""Training loss and validation score per epoch, drawn with ``LossCurveDisplay``.

Fits the same infinite-width network with ADAM* and with plain SGD (kernel
gradient descent, the classic NTK dynamics), both in mini-batches of 32 rows
with early stopping on 10% of the rows, on Friedman's synthetic regression
problem, and prints how many epochs each ran and its best validation R^2.
With ``--save`` or ``--show`` it draws each model's ``loss_curve_`` (left
axis) and ``validation_scores_`` (right axis) with
``LossCurveDisplay.from_estimator(model, ax=...)``, one panel per optimizer.
Run::

    python examples/loss_curve.py
    python examples/loss_curve.py --save loss_curves.png
"""

import argparse

from sklearn.datasets import make_friedman1
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import AdamStarNTKRegressor


def plot(models, *, save=None, show=False):
    """One LossCurveDisplay per model, side by side."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")  # write the file without opening a window
    import matplotlib.pyplot as plt

    from sklearn_adamntk import LossCurveDisplay

    fig, axes = plt.subplots(1, len(models), figsize=(11, 4), layout="constrained")
    for ax, (name, model) in zip(axes, models.items()):
        display = LossCurveDisplay.from_estimator(model, ax=ax, name=name)
        # The display's axes are ordinary matplotlib axes, free to restyle.
        display.ax_.legend(handles=display.lines_, loc="center right")
        ax.set_title(name)
    if save:
        fig.savefig(save)
        print(f"figure written to {save}")
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", metavar="PATH", help="write the figure to PATH")
    parser.add_argument("--show", action="store_true", help="show the figure")
    args = parser.parse_args(argv)

    X, y = make_friedman1(n_samples=500, n_features=10, noise=1.0, random_state=0)
    schedule = dict(batch_size=32, early_stopping=True, max_iter=200, random_state=0)
    models = {
        # A smaller step than the full-batch default: mini-batch steps are noisier.
        "ADAM*": AdamStarNTKRegressor(learning_rate_init=0.1, **schedule),
        # Kernel gradient descent needs a step below 2 / lambda_max(K / n).
        "SGD": AdamStarNTKRegressor(
            optimizer="sgd", learning_rate_init=0.5, **schedule
        ),
    }
    for name, model in models.items():
        make_pipeline(StandardScaler(), model).fit(X, y)
        print(
            f"{name:<6} {model.n_iter_:>4} epochs, best validation R^2 "
            f"{model.best_validation_score_:.4f}, last training loss "
            f"{model.loss_curve_[-1]:.4f}"
        )
    if args.save or args.show:
        plot(models, save=args.save, show=args.show)


if __name__ == "__main__":
    main()
