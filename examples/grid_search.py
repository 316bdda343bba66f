"""Tune ADAM*'s moment decays and the network's width with ``GridSearchCV``.

``beta_1``, ``beta_2`` and ``width`` are ordinary hyper-parameters, so the
model goes into a ``Pipeline`` and a ``GridSearchCV`` like any scikit-learn
regressor; ``width=None`` is the infinite-width network (the analytic kernel)
and an int a random finite network of that width. Prints every candidate's
cross-validated R^2 on the diabetes data, best first. Run::

    python examples/grid_search.py [--folds FOLDS]

(For the learning rate and the number of epochs there is a dedicated
estimator, ``AdamStarNTKRegressorCV``.)
"""

import argparse
import warnings

from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import AdamStarNTKRegressor


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=3,
                        help="cross-validation folds (default 3)")
    args = parser.parse_args(argv)
    X, y = load_diabetes(return_X_y=True)
    # solver="eigen": each fold's training Gram matrix is decomposed once and
    # reused by every (beta_1, beta_2) setting of the same width, so those
    # settings cost O(N) per epoch instead of a pass over the Gram matrix.
    model = make_pipeline(
        StandardScaler(), AdamStarNTKRegressor(solver="eigen", random_state=0)
    )
    grid = {
        "adamstarntkregressor__beta_1": [0.8, 0.9],
        "adamstarntkregressor__beta_2": [0.99, 0.999],
        "adamstarntkregressor__width": [None, 256, 1024],  # None: infinite width
    }
    folds = KFold(args.folds, shuffle=True, random_state=0)
    search = GridSearchCV(model, grid, cv=folds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # One fit per width on data of a fold's size first, so that Numba's
        # one-time compilation of the same code paths is not counted in the
        # first candidate's fit time.
        rows = next(folds.split(X))[0]
        for width in grid["adamstarntkregressor__width"]:
            model.set_params(adamstarntkregressor__width=width).fit(X[rows], y[rows])
        search.fit(X, y)

    results = search.cv_results_
    header = ("beta_1", "beta_2", "width", "mean R^2", "std", "fit (s)")
    print("{:>6} {:>6} {:>8} {:>9} {:>6} {:>8}".format(*header))
    for i in results["rank_test_score"].argsort():
        params = results["params"][i]
        width = params["adamstarntkregressor__width"]
        print(
            f"{params['adamstarntkregressor__beta_1']:>6} "
            f"{params['adamstarntkregressor__beta_2']:>6} "
            f"{'inf' if width is None else width:>8} "
            f"{results['mean_test_score'][i]:>9.4f} "
            f"{results['std_test_score'][i]:>6.3f} "
            f"{results['mean_fit_time'][i]:>8.3f}"
        )
    best = {key.split("__")[1]: value for key, value in search.best_params_.items()}
    print(f"best: {best}, mean CV R^2 = {search.best_score_:.4f}")


if __name__ == "__main__":
    main()
