"""The package's main job: compare ADAM* NTK models with the usual kernel machines.

Run ``python -m sklearn_adamntk`` (or the ``adamntk`` console script). For each
bundled scikit-learn dataset it cross-validates, each inside a
``StandardScaler`` pipeline:

- ``AdamStarNTK*`` with ``optimizer="adam*"`` (the package's defaults),
- the same model with ``optimizer="sgd"`` and every other parameter at its
  default (the step size is then chosen from the kernel's largest eigenvalue,
  and the number of epochs by the same stopping rule),
- ``KernelRidge`` and ``SVR`` / ``SVC`` on the same :class:`NetworkKernel`,
- ``KernelRidge`` and ``SVR`` / ``SVC`` on an RBF kernel,

and prints a table of mean cross-validated score (R^2 or accuracy) and mean fit
time. Every baseline keeps scikit-learn's default hyper-parameters; regressors'
targets are standardised for all models alike (``normalize_y`` for ours, a
``TransformedTargetRegressor`` for the others).
"""

import argparse
import sys
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler
from sklearn.svm import SVC, SVR

from ._estimators import AdamStarNTKClassifier, AdamStarNTKRegressor
from ._kernel_objects import NetworkKernel

DATASETS = {
    "diabetes": (load_diabetes, "regression"),
    "breast_cancer": (load_breast_cancer, "classification"),
    "digits": (load_digits, "classification"),
}

class KernelRidgeClassifier(ClassifierMixin, BaseEstimator):
    """Least-squares classification with :class:`~sklearn.kernel_ridge.KernelRidge`.

    Regresses the one-vs-rest indicator matrix (targets in {-1, 1}) and predicts
    the class of the largest output, the kernel analogue of
    :class:`~sklearn.linear_model.RidgeClassifier`. Used only for the
    comparison table; scikit-learn has no kernel ridge classifier.

    Parameters
    ----------
    kernel : str or callable, default="rbf"
        Passed to ``KernelRidge``.
    alpha : float, default=1.0
        Passed to ``KernelRidge``.
    """

    def __init__(self, kernel="rbf", alpha=1.0):
        self.kernel = kernel
        self.alpha = alpha

    def fit(self, X, y):
        self._binarizer = LabelBinarizer(pos_label=1, neg_label=-1)
        targets = self._binarizer.fit_transform(y)
        self.classes_ = self._binarizer.classes_
        self.ridge_ = KernelRidge(kernel=self.kernel, alpha=self.alpha).fit(X, targets)
        return self

    def predict(self, X):
        scores = self.ridge_.predict(X)
        if scores.ndim == 1 or scores.shape[1] == 1:
            return self.classes_[(scores.ravel() > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def _standardised_target(regressor):
    return TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler())


def make_models(task, *, max_iter=None):
    """The models compared on one task, each in a ``StandardScaler`` pipeline.

    Parameters
    ----------
    task : {"regression", "classification"}
        Which family of models to build.
    max_iter : int or None, default=None
        The most epochs of both NTK models (``None`` keeps the package
        default).

    Returns
    -------
    models : dict of str to estimator
        Display name to unfitted pipeline.
    """
    if task == "regression":
        ntk = AdamStarNTKRegressor(random_state=0)
        ridge, svm = KernelRidge, SVR
        wrap = _standardised_target
    else:
        ntk = AdamStarNTKClassifier(random_state=0)
        ridge, svm = KernelRidgeClassifier, SVC
        wrap = lambda estimator: estimator  # noqa: E731 (labels need no scaling)
    if max_iter is not None:
        ntk.set_params(max_iter=max_iter)
    # The baselines get exactly the kernel our model trains on.
    network_kernel = NetworkKernel(
        **{name: getattr(ntk, name) for name in (
            "kernel", "activation", "depth", "weight_variance", "bias_variance")}
    )
    # SGD with its own defaults: its step size from the kernel's scale, and
    # the same stopping rule; the only difference is the update.
    sgd = clone(ntk).set_params(optimizer="sgd")
    models = {
        "AdamStarNTK (adam*)": ntk,
        "AdamStarNTK (sgd)": sgd,
        f"{ridge.__name__} (NetworkKernel)": wrap(ridge(kernel=network_kernel)),
        f"{svm.__name__} (NetworkKernel)": wrap(svm(kernel=network_kernel)),
        f"{ridge.__name__} (rbf)": wrap(ridge(kernel="rbf")),
        f"{svm.__name__} (rbf)": wrap(svm(kernel="rbf")),
    }
    return {name: make_pipeline(StandardScaler(), model) for name, model in models.items()}


def compare(dataset, *, cv=5, max_iter=None, n_samples=None, random_state=0,
            progress=None):
    """Cross-validate every model of :func:`make_models` on one bundled dataset.

    Parameters
    ----------
    dataset : str
        A key of :data:`DATASETS`.
    cv : int, default=5
        Number of folds (stratified for classification).
    max_iter : int or None, default=None
        Epochs for the NTK models; ``None`` keeps the default.
    n_samples : int or None, default=None
        Use only this many rows (a random subset), for a quick run.
    random_state : int, default=0
        Seed of the folds and of the subset.
    progress : callable or None, default=None
        Called with each model's row as soon as it is cross-validated.

    Returns
    -------
    rows : list of dict
        One dict per model with keys ``model``, ``score``, ``score_std`` and
        ``fit_time`` (mean seconds per fold).
    """
    loader, task = DATASETS[dataset]
    X, y = loader(return_X_y=True)
    rng = np.random.RandomState(random_state)
    if n_samples is not None and n_samples < len(y):
        rows = rng.permutation(len(y))[:n_samples]
        X, y = X[rows], y[rows]
    splitter = (KFold if task == "regression" else StratifiedKFold)(
        n_splits=cv, shuffle=True, random_state=random_state
    )
    scoring = "r2" if task == "regression" else "accuracy"
    results = []
    for name, model in make_models(task, max_iter=max_iter).items():
        with warnings.catch_warnings():
            # A fold that reaches max_iter warns once per fold; the table's
            # comparison does not depend on it.
            warnings.simplefilter("ignore", ConvergenceWarning)
            if name.startswith("AdamStarNTK"):
                # A short fit first, so that Numba's one-time compilation
                # (cached on disk after the first run) is billed to no fold.
                estimator = model.steps[-1][0]
                clone(model).set_params(**{f"{estimator}__max_iter": 2}).fit(X, y)
            scores = cross_validate(model, X, y, cv=splitter, scoring=scoring)
        row = {
            "model": name,
            "score": float(np.mean(scores["test_score"])),
            "score_std": float(np.std(scores["test_score"])),
            "fit_time": float(np.mean(scores["fit_time"])),
            "total_time": float(np.sum(scores["fit_time"] + scores["score_time"])),
        }
        results.append(row)
        if progress is not None:
            progress(row)
    return results


def format_table(dataset, rows, scoring):
    """A Markdown table of one dataset's comparison."""
    lines = [
        f"### {dataset}",
        "",
        f"| model | mean CV {scoring} | std | fit time (s) |",
        "|---|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['score']:.4f} | {row['score_std']:.4f} "
            f"| {row['fit_time']:.3f} |"
        )
    return "\n".join(lines)


def _folds(text):
    """argparse type of --cv: an int of at least 2."""
    try:
        folds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int, got {text!r}") from None
    if folds < 2:
        raise argparse.ArgumentTypeError(
            f"cross-validation needs at least 2 folds, got {folds}")
    return folds


NOTE = (
    "KernelRidgeClassifier: scikit-learn has no kernel ridge classifier, so the\n"
    "classification tables use a one-vs-rest least-squares one on KernelRidge\n"
    "(sklearn_adamntk.__main__.KernelRidgeClassifier), RidgeClassifier's kernel\n"
    "analogue. Times: mean seconds per fold; Numba's one-time compilation is\n"
    "left out (each NTK model is fitted once before its folds)."
)


def main(argv=None):
    """Entry point of ``python -m sklearn_adamntk`` and of ``adamntk``."""
    parser = argparse.ArgumentParser(
        prog="adamntk",
        description="Compare ADAM* and SGD NTK models with KernelRidge and SVR/SVC "
        "on scikit-learn's bundled datasets (cross-validated).",
    )
    parser.add_argument(
        "--dataset",
        choices=[*DATASETS, "all"],
        default="all",
        help="dataset to run (default: all)",
    )
    parser.add_argument("--cv", type=_folds, default=5,
                        help="number of folds, at least 2 (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 folds and at most 300 rows per dataset: a smoke run in seconds",
    )
    args = parser.parse_args(argv)

    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    cv, max_iter, n_samples = args.cv, None, None
    if args.quick:
        cv, n_samples = 3, 300
    print(NOTE + "\n", flush=True)
    for name in names:
        scoring = "R^2" if DATASETS[name][1] == "regression" else "accuracy"
        print(f"{name}: {cv}-fold CV of {len(make_models(DATASETS[name][1]))} models",
              flush=True)

        def progress(row):
            print(f"  {row['model']}: {scoring} {row['score']:.4f} "
                  f"({row['fit_time']:.3f} s a fit)", flush=True)

        rows = compare(name, cv=cv, max_iter=max_iter, n_samples=n_samples,
                       progress=progress)
        total = sum(row["total_time"] for row in rows)
        print()
        print(format_table(name, rows, scoring))
        print(f"\n({cv}-fold CV, {total:.1f} s of fitting and scoring in all, "
              "compilation left out)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
