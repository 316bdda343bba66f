"""Quickstart: an infinite-width network trained with ADAM*, in a scikit-learn pipeline.

Fits ``AdamStarNTKRegressor`` on the diabetes data and compares it, on the same
split, with ``KernelRidge`` on the very same network kernel. Run::

    python examples/quickstart.py [--seed SEED]
"""

import argparse

from sklearn.datasets import load_diabetes
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import AdamStarNTKRegressor, NetworkKernel


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the train/test split (default 0)")
    args = parser.parse_args(argv)
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=args.seed)

    ntk = make_pipeline(StandardScaler(), AdamStarNTKRegressor(random_state=0))
    ntk.fit(X_train, y_train)
    model = ntk[-1]
    print(
        f"AdamStarNTKRegressor: held-out R^2 = {ntk.score(X_test, y_test):.3f}; "
        f"it kept epoch {model.best_iteration_} of {model.n_iter_} "
        f"({model.solver_} solver, learning rate {model.learning_rate_:.3g})"
    )

    # The same kernel the network model trained on, for a fair baseline.
    kernel = NetworkKernel(
        **{name: getattr(model, name) for name in (
            "kernel", "activation", "depth", "weight_variance", "bias_variance")}
    )
    ridge = make_pipeline(StandardScaler(), KernelRidge(kernel=kernel, alpha=1.0))
    ridge.fit(X_train, y_train - y_train.mean())
    score = ridge.score(X_test, y_test - y_train.mean())
    print(f"KernelRidge, same kernel: held-out R^2 = {score:.3f}")


if __name__ == "__main__":
    main()
