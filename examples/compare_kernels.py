"""ADAM* next to SVR and KernelRidge, on the same network kernel and on RBF.

``NetworkKernel`` is a scikit-learn kernel object, so ``SVR`` and
``KernelRidge`` can use exactly the kernel ``AdamStarNTKRegressor`` trains on.
On Friedman's synthetic regression problem (600 rows, 5 informative of 10
features) the script fits, inside a ``StandardScaler`` pipeline:

- ``AdamStarNTKRegressor`` with its defaults (ADAM* for 100 epochs),
- ``KernelRidge`` and ``SVR`` on the same ``NetworkKernel``,
- ``KernelRidge`` and ``SVR`` on an RBF kernel,

and prints each model's held-out R^2 and fit time (the fastest of three
fits). The baselines keep scikit-learn's defaults; their targets are
standardised as ADAM*'s are (``normalize_y``), with a
``TransformedTargetRegressor``. Run::

    python examples/compare_kernels.py                     # the table
    python examples/compare_kernels.py --save kernels.png  # and a bar chart
    python examples/compare_kernels.py --show              # the chart in a window
"""

import argparse
import time
import warnings

from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from sklearn_adamntk import AdamStarNTKRegressor, NetworkKernel


def make_models():
    """Display name to unfitted pipeline."""
    ntk = AdamStarNTKRegressor(random_state=0)
    # The model's network, so the baselines see the same kernel (the kernel's
    # get_params() also holds the bounds it would be tuned within by a GP).
    kernel = NetworkKernel(
        **{name: getattr(ntk, name) for name in (
            "kernel", "activation", "depth", "weight_variance", "bias_variance")}
    )

    def standardised(regressor):
        return TransformedTargetRegressor(
            regressor=regressor, transformer=StandardScaler()
        )

    models = {
        "AdamStarNTK": ntk,
        "KernelRidge\n(NetworkKernel)": standardised(KernelRidge(kernel=kernel)),
        "SVR\n(NetworkKernel)": standardised(SVR(kernel=kernel)),
        "KernelRidge\n(rbf)": standardised(KernelRidge(kernel="rbf")),
        "SVR\n(rbf)": standardised(SVR(kernel="rbf")),
    }
    return {
        name: make_pipeline(StandardScaler(), model) for name, model in models.items()
    }


def compare(X_train, X_test, y_train, y_test):
    """Held-out R^2 and fit time (s) of every model."""
    results = {}
    for name, model in make_models().items():
        # A first fit on a few rows keeps Numba's one-time compilation out of
        # the timing.
        model.fit(X_train[:20], y_train[:20])
        fit_time = float("inf")
        for _ in range(3):  # the fastest of three: less noise from a busy machine
            start = time.perf_counter()
            model.fit(X_train, y_train)
            fit_time = min(fit_time, time.perf_counter() - start)
        results[name] = (model.score(X_test, y_test), fit_time)
    return results


def plot(results, *, save=None, show=False):
    """Bar charts of held-out R^2 and fit time, side by side."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")  # write the file without opening a window
    import matplotlib.pyplot as plt

    names = list(results)
    scores, times = zip(*results.values())
    colours = ["C0"] + ["C1", "C1", "C2", "C2"]
    fig, (ax_score, ax_time) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax_score.bar(names, scores, color=colours)
    ax_score.set_ylabel("held-out R^2")
    ax_score.set_ylim(0, 1)
    ax_time.bar(names, times, color=colours)
    ax_time.set_ylabel("fit time (s)")
    for ax in (ax_score, ax_time):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("Friedman #1: same network kernel (orange) and RBF (green)")
    if save:
        fig.savefig(save)
        print(f"figure written to {save}")
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", metavar="PATH", help="write the bar chart to PATH")
    parser.add_argument("--show", action="store_true", help="show the bar chart")
    args = parser.parse_args(argv)

    X, y = make_friedman1(n_samples=600, n_features=10, noise=1.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    with warnings.catch_warnings():
        # ADAM*'s default is a fixed budget of 100 epochs; using all of it is
        # expected, not a failure to converge.
        warnings.simplefilter("ignore", ConvergenceWarning)
        results = compare(X_train, X_test, y_train, y_test)

    print(f"{'model':<30} {'R^2':>7} {'fit (s)':>8}")
    for name, (score, fit_time) in results.items():
        print(f"{name.replace(chr(10), ' '):<30} {score:>7.4f} {fit_time:>8.3f}")
    if args.save or args.show:
        plot(results, save=args.save, show=args.show)


if __name__ == "__main__":
    main()
