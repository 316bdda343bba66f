"""The command-line comparison (the package's main job) runs and reports every model."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import make_classification

from sklearn_adamntk import NetworkKernel
from sklearn_adamntk.__main__ import KernelRidgeClassifier, compare, main, make_models


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_baselines_use_the_kernel_our_model_trains_on(task):
    models = make_models(task)
    ours = models["AdamStarNTK (adam*)"][-1]
    sgd = models["AdamStarNTK (sgd)"][-1]
    assert sgd.optimizer == "sgd"
    # Same schedule: the comparison is about the update rule alone.
    for name in ("max_iter", "batch_size", "tol", "n_iter_no_change", "kernel"):
        assert getattr(sgd, name) == getattr(ours, name)
    network_kernels = [
        value
        for model in models.values()
        for value in model.get_params().values()
        if isinstance(value, NetworkKernel)
    ]
    assert len(network_kernels) == 2
    for kernel in network_kernels:
        for name, value in kernel.get_params().items():
            if name.endswith("_bounds"):
                continue  # only a GP tunes within the bounds
            assert getattr(ours, name) == value


@pytest.mark.parametrize("n_classes", [2, 3])
def test_kernel_ridge_classifier_separates_easy_classes(n_classes):
    X, y = make_classification(
        n_samples=90, n_features=4, n_informative=3, n_redundant=0,
        n_classes=n_classes, class_sep=3.0, random_state=0,
    )
    labels = np.array(["a", "b", "c"])[y]
    model = KernelRidgeClassifier(kernel="rbf", alpha=0.1).fit(X, labels)
    assert set(model.predict(X)) <= set(labels)
    assert model.score(X, labels) > 0.9


def test_compare_reports_every_model_with_finite_scores():
    rows = compare("breast_cancer", cv=2, max_iter=5, n_samples=80)
    assert [row["model"] for row in rows] == list(make_models("classification"))
    for row in rows:
        assert np.isfinite(row["score"]) and 0.0 <= row["score"] <= 1.0
        assert row["fit_time"] > 0.0


def test_main_prints_one_table_per_dataset(capsys):
    assert main(["--dataset", "diabetes", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "### diabetes" in out and "### digits" not in out
    assert out.count("| AdamStarNTK") == 2
    assert "KernelRidge (NetworkKernel)" in out and "SVR (rbf)" in out


def test_module_entry_point_answers_help():
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_adamntk", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "--dataset" in result.stdout and "--quick" in result.stdout
