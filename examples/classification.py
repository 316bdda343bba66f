"""Class probabilities of an infinite-width network: decision boundary, calibration.

``AdamStarNTKClassifier`` trains the infinite-width network on the softmax
cross-entropy with ADAM*, so ``predict_proba`` gives the network's own class
probabilities. On scikit-learn's two noisy interleaving half-moons the script
prints held-out accuracy, log loss and Brier score of the default model (one
hidden layer, only the readout trains: ``kernel="nngp"``, ``depth=1``) and of
a deeper linearised network (``kernel="ntk"``, ``depth=3``), next to an RBF
``SVC`` calibrated by Platt scaling, and the predicted probabilities of a few
test points. Here the default network draws an almost straight boundary and
stops early (its training loss stops improving); the deeper NTK bends the
boundary around the moons and gives sharper, still calibrated probabilities.

With ``--save`` or ``--show`` it draws both networks' probability of the
second class over the plane, with the test points, and the reliability diagram
(fraction of positives against mean predicted probability, per bin) of all
three models. Run::

    python examples/classification.py
    python examples/classification.py --save moons.png
"""

import argparse
import warnings

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from sklearn_adamntk import AdamStarNTKClassifier


def plot(models, X_test, y_test, *, save=None, show=False):
    """Probability maps of the ADAM* models, and every model's reliability diagram."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")  # write the file without opening a window
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.inspection import DecisionBoundaryDisplay

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
    ntk_names = [name for name in models if name.startswith("AdamStarNTK")]
    for ax, name in zip(axes, ntk_names):
        DecisionBoundaryDisplay.from_estimator(
            models[name],
            X_test,
            response_method="predict_proba",
            cmap="RdBu",
            alpha=0.7,
            vmin=0,
            vmax=1,
            ax=ax,
        )
        ax.scatter(*X_test.T, c=y_test, cmap="RdBu", edgecolors="k", s=20)
        ax.set_title(f"{name}: P(class 1)")
    for name, model in models.items():
        CalibrationDisplay.from_estimator(
            model, X_test, y_test, n_bins=6, strategy="quantile", name=name, ax=axes[2]
        )
    axes[2].set_title("Reliability on the test rows")
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

    X, y = make_moons(n_samples=1000, noise=0.3, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, random_state=0
    )
    def scaled(model):
        return make_pipeline(StandardScaler(), model)

    models = {
        "AdamStarNTK (default)": scaled(AdamStarNTKClassifier(random_state=0)),
        "AdamStarNTK (ntk, depth 3)": scaled(
            AdamStarNTKClassifier(kernel="ntk", depth=3, random_state=0)
        ),
        "SVC (rbf) + Platt": scaled(CalibratedClassifierCV(SVC(), ensemble=False)),
    }
    with warnings.catch_warnings():
        # ADAM*'s default is a fixed budget of 100 epochs; using all of it is
        # expected, not a failure to converge.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for model in models.values():
            model.fit(X_train, y_train)

    print(f"{'model':<27} {'accuracy':>8} {'log loss':>8} {'Brier':>6}")
    for name, model in models.items():
        proba = model.predict_proba(X_test)
        print(
            f"{name:<27} {accuracy_score(y_test, model.predict(X_test)):>8.3f} "
            f"{log_loss(y_test, proba):>8.3f} "
            f"{brier_score_loss(y_test, proba[:, 1]):>6.3f}"
        )
    for name in ("AdamStarNTK (default)", "AdamStarNTK (ntk, depth 3)"):
        proba = models[name].predict_proba(X_test[:4])
        with np.printoptions(precision=3, suppress=True):
            print(f"{name}: predict_proba(first 4 test rows) =\n{proba}")
    if args.save or args.show:
        plot(models, X_test, y_test, save=args.save, show=args.show)


if __name__ == "__main__":
    main()
