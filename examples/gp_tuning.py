"""Tuning the network kernel's variances by a Gaussian process's marginal likelihood.

``NetworkKernel``'s ``weight_variance`` and ``bias_variance`` are
hyper-parameters with analytic gradients, so ``GaussianProcessRegressor``
tunes them as it tunes the length scale of ``RBF``: by maximising the
log-marginal likelihood (LML). On Friedman's synthetic regression problem
(400 rows, 5 informative of 10 standardised features, noise of variance 1)
the script fits

    GaussianProcessRegressor(ConstantKernel() * NetworkKernel() + WhiteKernel())

(the NNGP of a one-hidden-layer ReLU network, the estimators' kernel) and
prints the tuned kernel and its held-out R^2 next to ``KernelRidge`` on the
same ``NetworkKernel``:

- with the default variances and ``alpha`` chosen by 5-fold cross-validation,
  the usual way to fit a kernel ridge;
- with the GP's tuned kernel and ``alpha`` its tuned noise level, which is the
  GP's posterior mean exactly (the script prints the largest difference).

With ``--save`` or ``--show`` it draws the LML over the two variances (the
constant and the noise level held at their tuned values) as a contour plot,
the optimum marked. Run::

    python examples/gp_tuning.py                # the table
    python examples/gp_tuning.py --save gp.png  # and the LML surface
"""

import argparse

import numpy as np
from sklearn.datasets import make_friedman1
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import NetworkKernel

# The LML surface: this many points per axis, over this many decades either
# side of the tuned variances.
GRID_POINTS = 17
GRID_DECADES = 1.5


def load_data():
    """Standardised features; the target as it comes (mean about 14)."""
    X, y = make_friedman1(n_samples=400, noise=1.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def fit_models(X_train, y_train):
    """The tuned GP and the two kernel ridges, fitted."""
    kernel = ConstantKernel() * NetworkKernel() + WhiteKernel()
    gp = GaussianProcessRegressor(kernel=kernel, random_state=0).fit(X_train, y_train)
    default_ridge = GridSearchCV(
        KernelRidge(kernel=NetworkKernel()), {"alpha": np.logspace(-3, 1, 9)}, cv=5
    ).fit(X_train, y_train)
    # k1 = ConstantKernel * NetworkKernel, k2 = WhiteKernel: kernel ridge with
    # alpha = noise level solves the GP's own linear system.
    tuned_ridge = KernelRidge(
        kernel=gp.kernel_.k1, alpha=gp.kernel_.k2.noise_level
    ).fit(X_train, y_train)
    return gp, default_ridge, tuned_ridge


def lml_surface(gp):
    """LML over a grid of (weight_variance, bias_variance), the rest as tuned."""
    names = [h.name for h in gp.kernel_.hyperparameters if not h.fixed]
    i_weight = names.index("k1__k2__weight_variance")
    i_bias = names.index("k1__k2__bias_variance")
    theta = gp.kernel_.theta.copy()
    span = GRID_DECADES * np.log(10)
    log_weight = theta[i_weight] + np.linspace(-span, span, GRID_POINTS)
    log_bias = theta[i_bias] + np.linspace(-span, span, GRID_POINTS)
    lml = np.empty((GRID_POINTS, GRID_POINTS))
    for row, b in enumerate(log_bias):
        for column, w in enumerate(log_weight):
            theta[i_weight], theta[i_bias] = w, b
            lml[row, column] = gp.log_marginal_likelihood(theta)
    return np.exp(log_weight), np.exp(log_bias), lml


def plot(gp, *, save=None, show=False):
    """Contours of the LML over the two variances, the optimum marked."""
    import matplotlib

    if not show:
        matplotlib.use("Agg")  # write the file without opening a window
    import matplotlib.pyplot as plt

    weights, biases, lml = lml_surface(gp)
    tuned = gp.kernel_.k1.k2
    best = lml.max()
    # Levels below the best value, denser near it, where the optimum sits.
    levels = best - np.geomspace(0.5, max(1.0, best - lml.min()), 12)[::-1]
    fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
    contours = ax.contourf(weights, biases, lml, levels=levels, extend="min",
                           cmap="viridis")
    ax.contour(weights, biases, lml, levels=levels, colors="k", linewidths=0.4)
    fig.colorbar(contours, ax=ax, label="log-marginal likelihood")
    ax.plot(tuned.weight_variance, tuned.bias_variance, "r*", markersize=12,
            label=f"tuned: LML {gp.log_marginal_likelihood_value_:.1f}")
    ax.plot(2.0, 1.0, "wo", label="defaults (2, 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight_variance")
    ax.set_ylabel("bias_variance")
    ax.set_title("GP on Friedman #1: constant and noise at their tuned values",
                 fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    if save:
        fig.savefig(save)
        print(f"figure written to {save}")
    if show:
        plt.show()
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", metavar="PATH", help="write the contour plot to PATH")
    parser.add_argument("--show", action="store_true", help="show the contour plot")
    args = parser.parse_args(argv)

    X_train, X_test, y_train, y_test = load_data()
    gp, default_ridge, tuned_ridge = fit_models(X_train, y_train)

    print(f"tuned kernel: {gp.kernel_}")
    print(f"log-marginal likelihood: {gp.log_marginal_likelihood_value_:.2f} "
          f"(at the start: {gp.log_marginal_likelihood(gp.kernel.theta):.2f})")
    print(f"noise level: {gp.kernel_.k2.noise_level:.3f} (the data's: 1)\n")
    rows = [
        ("GP, variances tuned by LML", gp.score(X_test, y_test)),
        ("KernelRidge, default variances, "
         f"alpha={default_ridge.best_params_['alpha']:.3g} (5-fold CV)",
         default_ridge.score(X_test, y_test)),
        ("KernelRidge, GP's tuned kernel and noise", tuned_ridge.score(X_test, y_test)),
    ]
    print(f"{'model':<62} {'held-out R^2':>12}")
    for name, score in rows:
        print(f"{name:<62} {score:>12.4f}")
    difference = np.abs(gp.predict(X_test) - tuned_ridge.predict(X_test)).max()
    print(f"\nlargest |GP mean - KernelRidge(tuned)|: {difference:.1e}")
    if args.save or args.show:
        plot(gp, save=args.save, show=args.show)


if __name__ == "__main__":
    main()
