"""The experiment behind the estimators' defaults.

``learning_rate_init``, ``max_iter``, ``bias_variance`` and ``normalize_y`` are
chosen here, on scikit-learn's bundled datasets, rather than guessed. For every
setting of the grid each dataset is cross-validated (standardised inputs,
5 folds, infinite width, the default ``"nngp"`` kernel, full batch ADAM*); one
fit per fold runs the longest schedule and ``staged_predict`` scores every
shorter one from the same path, so ``max_iter`` costs nothing extra to search.

Each setting gets, per dataset, its score divided by the best score any setting
reached on that dataset; the default is the setting with the best mean of these
relative scores (ties go to the fewer epochs). Run::

    python benchmarks/choose_defaults.py            # the committed table
    python benchmarks/choose_defaults.py --quick    # a smoke run

and the table it prints is kept in ``benchmarks/DEFAULTS.md``.
"""

import argparse
import itertools
import time

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_friedman1,
)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import StandardScaler

from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor


def _friedman1(return_X_y=True):
    return make_friedman1(n_samples=500, noise=1.0, random_state=0)


def _friedman1_in_thousandths(return_X_y=True):
    # The same task with its target in other units: a default must not depend
    # on the units a user's target happens to come in.
    X, y = _friedman1()
    return X, 1000.0 * y


DATASETS = {
    "diabetes": (load_diabetes, "regression"),
    "friedman1": (_friedman1, "regression"),
    "friedman1_x1000": (_friedman1_in_thousandths, "regression"),
    "breast_cancer": (load_breast_cancer, "classification"),
    "wine": (load_wine, "classification"),
    "digits": (load_digits, "classification"),
}
LEARNING_RATES = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]
EPOCHS = [50, 100, 200, 400, 800]
BIAS_VARIANCES = [0.0, 0.1, 1.0]
NORMALIZE_Y = [True, False]


def staged_scores(dataset, learning_rate, bias_variance, normalize_y, epochs, cv):
    """Mean CV score after each number of epochs in ``epochs`` for one setting."""
    loader, task = DATASETS[dataset]
    X, y = loader(return_X_y=True)
    if task == "regression":
        splitter = KFold(cv, shuffle=True, random_state=0)
        model = AdamStarNTKRegressor(normalize_y=normalize_y)
        score = r2_score
    else:
        splitter = StratifiedKFold(cv, shuffle=True, random_state=0)
        model = AdamStarNTKClassifier()
        score = accuracy_score
    model.set_params(
        learning_rate_init=learning_rate,
        bias_variance=bias_variance,
        max_iter=max(epochs),
        tol=0.0,
        n_iter_no_change=max(epochs) + 1,
    )
    per_fold = []
    for train, test in splitter.split(X, y):
        scaler = StandardScaler().fit(X[train])
        try:
            model.fit(scaler.transform(X[train]), y[train])
        except ValueError as error:  # the estimator's report of a diverged fit
            if "diverged" not in str(error):
                raise
            return np.full(len(epochs), -np.inf)
        stages = list(model.staged_predict(scaler.transform(X[test])))
        per_fold.append([score(y[test], stages[e - 1]) for e in epochs])
    return np.mean(per_fold, axis=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two datasets, 3 folds")
    args = parser.parse_args()
    datasets = ["diabetes", "breast_cancer"] if args.quick else list(DATASETS)
    cv = 3 if args.quick else 5

    # scores[(lr, bv, ny, epochs)][dataset]
    scores = {}
    start = time.perf_counter()
    for dataset in datasets:
        task = DATASETS[dataset][1]
        normalize_options = NORMALIZE_Y if task == "regression" else [None]
        for lr, bv, ny in itertools.product(
            LEARNING_RATES, BIAS_VARIANCES, normalize_options
        ):
            by_epoch = staged_scores(dataset, lr, bv, bool(ny), EPOCHS, cv)
            for epochs, value in zip(EPOCHS, by_epoch):
                # Classification ignores normalize_y: its score counts for both.
                for ny_key in NORMALIZE_Y if ny is None else [ny]:
                    scores.setdefault((lr, bv, ny_key, epochs), {})[dataset] = value

    best = {d: max(s[d] for s in scores.values()) for d in datasets}
    relative = {
        key: np.mean([by_dataset[d] / best[d] for d in datasets])
        for key, by_dataset in scores.items()
    }
    ranked = sorted(relative, key=lambda key: (-relative[key], key[3]))

    print(
        f"Mean CV score relative to the best setting per dataset "
        f"({cv} folds; {time.perf_counter() - start:.0f} s)\n"
    )
    header = "| learning_rate_init | bias_variance | normalize_y | max_iter | mean relative | "
    header += " | ".join(datasets) + " |"
    print(header)
    print("|" + "---:|" * (5 + len(datasets)))
    for key in ranked[:15]:
        lr, bv, ny, epochs = key
        cells = " | ".join(f"{scores[key][d]:.4f}" for d in datasets)
        print(f"| {lr} | {bv} | {ny} | {epochs} | {relative[key]:.4f} | {cells} |")
    lr, bv, ny, epochs = ranked[0]
    print(
        f"\nChosen defaults: learning_rate_init={lr}, bias_variance={bv}, "
        f"normalize_y={ny}, max_iter={epochs}"
    )


if __name__ == "__main__":
    main()
