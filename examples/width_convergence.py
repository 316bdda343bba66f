"""Finite-width networks converge to the infinite-width model as 1/sqrt(width).

With ``width=None`` the regressor is the exact infinite-width network; with an
int it is a random network of that width, trained with the same optimizer and
hyper-parameters. This script fits both on the same data and measures the
root-mean-square difference of their test predictions, relative to the
infinite-width predictions' own RMS, averaged over random networks (seeds), for
widths 64 to 4096; it fits a line to log(difference) against log(width) and
prints the slope, which should be near -1/2.

It uses ``kernel="nngp"`` (the default): at finite width only the readout of
the random network trains, so the finite model is the same ADAM* recursion on
a Monte Carlo estimate of the kernel whose entries err by O(width^-1/2), and
so do the trained predictions. ``kernel="ntk"`` at finite width (the
linearised network, every layer training) converges too, but its larger
higher-order terms make the slope shallower over these widths. Run::

    python examples/width_convergence.py                   # the table and slope
    python examples/width_convergence.py --save width.png  # and a log-log plot
"""

import argparse
import warnings

import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import AdamStarNTKRegressor

WIDTHS = [64, 128, 256, 512, 1024, 2048, 4096]
N_SEEDS = 6


def relative_differences(X_train, y_train, X_test):
    """Relative RMS prediction difference to infinite width: (widths, seeds) array."""
    # One fixed schedule for every width: the same dynamics, compared epoch
    # for epoch (a stopping rule could stop each model at another epoch).
    schedule = dict(learning_rate_init=1.0, max_iter=100, early_stopping=False)
    infinite = AdamStarNTKRegressor(**schedule).fit(X_train, y_train).predict(X_test)
    scale = np.sqrt(np.mean(infinite**2))
    differences = np.empty((len(WIDTHS), N_SEEDS))
    for i, width in enumerate(WIDTHS):
        for seed in range(N_SEEDS):
            finite = AdamStarNTKRegressor(width=width, random_state=seed, **schedule)
            finite_pred = finite.fit(X_train, y_train).predict(X_test)
            rms = np.sqrt(np.mean((finite_pred - infinite) ** 2))
            differences[i, seed] = rms / scale
    return differences


def plot(mean_difference, slope, intercept, *, save=None, show=False):
    """The differences against width on log-log axes, with the fitted line."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")  # write the file without opening a window
    import matplotlib.pyplot as plt

    widths = np.asarray(WIDTHS, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    ax.loglog(widths, mean_difference, "o", label=f"mean over {N_SEEDS} networks")
    ax.loglog(
        widths,
        np.exp(intercept) * widths**slope,
        "--",
        label=f"fit: slope {slope:.2f}",
    )
    ax.set_xlabel("width")
    ax.set_ylabel("relative RMS difference to infinite width")
    ax.legend()
    if save:
        fig.savefig(save)
        print(f"figure written to {save}")
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", metavar="PATH", help="write the plot to PATH")
    parser.add_argument("--show", action="store_true", help="show the plot")
    args = parser.parse_args(argv)

    X, y = make_friedman1(n_samples=200, n_features=5, noise=0.5, random_state=0)
    X = StandardScaler().fit_transform(X)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=50, random_state=0)
    with warnings.catch_warnings():
        # Every model runs the same fixed budget of epochs on purpose.
        warnings.simplefilter("ignore", ConvergenceWarning)
        differences = relative_differences(X_train, y_train, X_test)

    mean_difference = differences.mean(axis=1)
    slope, intercept = np.polyfit(np.log(WIDTHS), np.log(mean_difference), 1)
    print(f"{'width':>6} {'relative RMS difference':>24} {'std over seeds':>15}")
    for width, row in zip(WIDTHS, differences):
        print(f"{width:>6} {row.mean():>24.4f} {row.std():>15.4f}")
    print(f"log-log slope: {slope:.3f} (1/sqrt(width) convergence gives -0.5)")
    if args.save or args.show:
        plot(mean_difference, slope, intercept, save=args.save, show=args.show)


if __name__ == "__main__":
    main()
