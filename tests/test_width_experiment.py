"""The width experiment script runs end to end in a tiny mode and compares
rows that differ only where the experiment says they do; its converged mode
chooses every (rate, epoch) on the validation rows, never the test rows."""

import importlib.util
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "width_experiment.py"
sys.path.insert(0, str(SCRIPT.parent))  # mup_mlp, beside the script


@pytest.fixture(scope="module")
def experiment():
    spec = importlib.util.spec_from_file_location("width_experiment", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_records(experiment):
    return experiment.run(
        widths=(16, None), seeds=(0,), epochs=3, max_rows=120, verbose=False
    )


@pytest.fixture(scope="module")
def tiny_converged(experiment):
    return experiment.run_converged(
        widths=(16, None), seeds=(0,), max_epochs=12, max_rows=120, verbose=False
    )


def _expected(experiment, methods):
    return {
        (task, method, width)
        for task in experiment.TASKS
        for method in methods
        for width in (16, None)
        if not (width is None and experiment.METHODS[method]["finite_only"])
    }


def _check_records(records, expected, rates):
    found = [(r["task"], r["method"], r["width"]) for r in records]
    assert len(found) == len(set(found))
    assert set(found) == expected
    for record in records:
        for key in ("loss_mean", "loss_std", "score_mean", "score_std"):
            assert math.isfinite(record[key]), (record, key)
        assert record["loss_mean"] > 0.0
        assert len(record["rates"]) == 1
        assert record["rates"][0] in rates[record["task"]][record["method"]]


def test_every_task_method_and_width_has_one_finite_record(experiment, tiny_records):
    _check_records(tiny_records, _expected(experiment, experiment.FIXED_METHODS),
                   experiment.RATES)
    assert {r["mode"] for r in tiny_records} == {"fixed"}


def test_converged_mode_has_one_finite_record_with_its_epochs(
    experiment, tiny_converged
):
    _check_records(tiny_converged,
                   _expected(experiment, experiment.CONVERGED_METHODS),
                   experiment.CONVERGED_RATES)
    for record in tiny_converged:
        assert record["mode"] == "converged" and record["max_epochs"] == 12
        grid = experiment.CONVERGED_RATES[record["task"]][record["method"]]
        (epoch,), (runs,) = record["epochs"], record["epochs_run"]
        assert len(runs) == len(grid) and max(runs) <= 12
        # The chosen epoch lies on the chosen rate's path.
        assert 1 <= epoch <= runs[grid.index(record["rates"][0])]


def test_markdown_table_has_a_row_per_method_and_a_column_per_width(
    experiment, tiny_records, tiny_converged
):
    table = experiment.markdown_table(tiny_records + tiny_converged)
    lines = table.splitlines()
    titles = [line for line in lines if line.startswith("#### ")]
    # Per task, the fixed mode then the converged mode.
    assert [title.split(":")[0] for title in titles] == [
        f"#### {task}, {mode}"
        for task in experiment.TASKS
        for mode in ("fixed steps", "trained to convergence")
    ]
    headers = [line for line in lines if line.startswith("| method |")]
    # A results table and a table of choices per task and mode.
    assert headers == ["| method | 16 | inf |"] * (4 * len(experiment.TASKS))
    for method, spec in experiment.METHODS.items():
        rows = [line for line in lines if line.startswith(f"| {spec['label']} |")]
        modes = 2 if method in experiment.FIXED_METHODS else 1
        assert len(rows) == 2 * modes * len(experiment.TASKS)
        for row in rows:
            cells = row.strip("|").split("|")[1:]
            assert len(cells) == 2
            # Finite-width-only methods have no infinite-width cell.
            assert (cells[1].strip() == "–") == spec["finite_only"]
    # The converged mode's choices: "rate @ epoch".
    label = experiment.METHODS["adam*"]["label"]
    chosen = [line for line in lines if line.startswith(f"| {label} |") and "@" in line]
    assert len(chosen) == len(experiment.TASKS)


def test_main_quick_runs_both_modes_and_writes_only_to_a_temporary_folder(
    experiment, tmp_path, monkeypatch, capsys
):
    # A --quick run used to overwrite benchmarks/WIDTH.md (and its written
    # reading) and the figure README shows; the working directory must not
    # matter either.
    pytest.importorskip("matplotlib")
    committed = [SCRIPT.parent / "WIDTH.md", SCRIPT.parent / "width_experiment.png"]
    before = [path.read_bytes() for path in committed]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert experiment.main(["--quick"]) == 0
    assert [path.read_bytes() for path in committed] == before
    (out,) = tmp_path.glob("width_experiment_*")
    assert sorted(p.name for p in out.iterdir()) == ["WIDTH.md",
                                                      "width_experiment.png"]
    assert f"in {out}" in capsys.readouterr().out
    png = out / "width_experiment.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "WIDTH.md").read_text()
    assert "--quick" in report and "width_experiment.png" in report
    assert "**Fixed steps**" in report and "**Trained to convergence**" in report
    assert "| muP MLP, Adam (all layers) |" in report
    assert "<!-- reading -->" not in report


def test_one_mode_runs_alone(experiment, tmp_path):
    pytest.importorskip("matplotlib")
    assert experiment.main(["--quick", "--converged", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "WIDTH.md").read_text()
    assert "--quick --converged" in report
    assert "trained to convergence" in report and "fixed steps" not in report


def test_kernel_rows_share_the_network_and_differ_only_in_the_optimizer(experiment):
    # The frozen-Adam, SGD and ADAM* rows must train the same random network
    # on the same kernel for a given seed, so that the rows differ only in
    # their update rule.
    for task in experiment.TASKS:
        params = {}
        for method in ("frozen_adam", "sgd", "adam*"):
            model = experiment.make_model(task, method, 256, 0.1, 7, 3, 50)
            estimator = [
                value for name, value in model.get_params().items()
                if name.endswith("adamstarntkregressor")
                or name.endswith("adamstarntkclassifier")
            ]
            assert len(estimator) == 1
            params[method] = estimator[0].get_params()
        optimizers = {method: p.pop("optimizer") for method, p in params.items()}
        assert optimizers == {"frozen_adam": "adam", "sgd": "sgd", "adam*": "adam*"}
        assert params["frozen_adam"] == params["sgd"] == params["adam*"]
        assert params["sgd"]["kernel"] == "nngp"
        assert params["sgd"]["width"] == 256
        assert params["sgd"]["random_state"] == 3
        assert params["sgd"]["batch_size"] is None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_every_method_runs_the_same_number_of_full_batch_steps(experiment):
    # Enough rows that the package's default stopping rule would hold some
    # out and keep its best epoch: the fixed mode must switch it off.
    X, y = experiment.load_task("friedman1", max_rows=200)
    for method in experiment.FIXED_METHODS:
        model = experiment.make_model("friedman1", method, 32, 1e-3, 5, 0, len(y))
        model.fit(X, y)
        estimator = model.regressor_[-1]
        assert estimator.n_iter_ == 5
        if method != "mlp_adam":
            # The last epoch is the model, and no rows were scored.
            assert estimator.best_iteration_ == 5
            assert estimator.validation_scores_ is None
        # Full batch: one step per epoch (an MLP's t_ counts samples instead).
        if method == "mlp_adam":
            assert estimator.batch_size == len(y) and estimator.t_ == 5 * len(y)
        else:
            assert estimator.t_ == 5


def test_a_diverging_rate_gets_an_infinite_loss_and_is_not_chosen(experiment):
    X, y = experiment.load_task("friedman1", max_rows=120)
    rates = (0.1, 1e6)  # kernel SGD on the squared loss diverges at 1e6
    loss, score, rate = experiment.one_run("friedman1", "sgd", None, X, y, 0, 20, rates)
    assert rate == 0.1
    assert np.isfinite(loss) and np.isfinite(score)
    # Long enough for the coefficients to overflow: the package then raises.
    diverged = experiment.make_model("friedman1", "sgd", None, 1e6, 200, 0, 120)
    loss, score = experiment.held_out_loss("friedman1", diverged, X, y, X, y)
    assert loss == math.inf and math.isnan(score)


def test_a_rate_that_diverges_only_on_refit_gives_way_to_the_next_best(
    experiment, monkeypatch
):
    X, y = experiment.load_task("friedman1", max_rows=120)
    n_fit = 45  # three quarters of the 60 training rows choose the rate

    def fake_held_out_loss(task, model, X_train, y_train, X_test, y_test):
        rate = model.regressor[-1].learning_rate_init
        if len(y_train) == n_fit:
            return {0.1: 0.5, 0.2: 0.3, 0.4: 0.2}[rate], 0.0
        return (math.inf, math.nan) if rate == 0.4 else (rate, 1.0)

    monkeypatch.setattr(experiment, "held_out_loss", fake_held_out_loss)
    loss, score, rate = experiment.one_run(
        "friedman1", "sgd", None, X, y, 0, 5, (0.1, 0.2, 0.4)
    )
    assert (loss, score, rate) == (0.2, 1.0, 0.2)


def test_a_full_rerun_keeps_the_written_reading_and_a_quick_run_drops_it(
    experiment, tmp_path
):
    path = tmp_path / "WIDTH.md"
    reading = "<!-- reading -->\nWhat the data say.\n<!-- /reading -->"
    path.write_text("# Width experiment\n\nold table\n\n" + reading + "\n")
    settings = {"seeds": (0,), "epochs": 3, "max_rows": 120, "max_epochs": 9,
                "modes": ("fixed", "converged")}
    experiment.write_report(str(path), "new table", "cmd", settings, 1.0)
    text = path.read_text()
    assert "new table" in text and "old table" not in text
    assert reading in text
    experiment.write_report(
        str(path), "quick table", "cmd --quick", settings, 1.0, keep_reading=False
    )
    assert "What the data say" not in path.read_text()


# ----------------------------------------------------------------------
# The converged mode's choices
# ----------------------------------------------------------------------
def test_the_path_rule_is_the_package_rule(experiment):
    # The networks stop by the rule the package's early_stopping="auto" uses
    # for the kernel readouts: same constants, same stopping epoch.
    from sklearn.utils import check_random_state

    from sklearn_adamntk import AdamStarNTKRegressorCV, _epochs, _fitting

    assert experiment.PATH_MIN_PATIENCE == _epochs.PATH_MIN_PATIENCE
    assert experiment.PATH_WINDOW == _fitting.AUTO_WINDOW
    assert experiment.PATH_TOL == AdamStarNTKRegressorCV().tol
    rng = np.random.default_rng(0)
    for _ in range(5):
        # Noisy losses that fall, flatten and rise again.
        epochs = np.arange(1, 3001)
        losses = (1.0 / epochs + 1e-7 * (epochs - 800.0) ** 2 / 1e3
                  + 1e-3 * rng.standard_normal(epochs.size))
        plan = _epochs.EpochPlan(
            max_iter=losses.size, n_rows=1, batch_size=1, full_batch=True,
            shuffle=False, rng=check_random_state(0), tol=experiment.PATH_TOL,
            n_iter_no_change=10, online=False, stopping="validation",
            window=_fitting.AUTO_WINDOW,
        )
        progress = _epochs._PathProgress(plan)
        package_stop = next(
            epoch for epoch, loss in enumerate(losses, 1)
            if (progress.update(epoch, -loss), progress.exhausted(epoch))[1]
        )
        best = np.minimum.accumulate(losses)
        script_stop = next(
            epoch for epoch in range(1, losses.size + 1)
            if experiment.path_exhausted(list(best[:epoch]))
        )
        assert script_stop == package_stop


class _Scripted:
    """A stand-in network whose held-out predictions follow a script."""

    def __init__(self, predictions):
        self.predictions = iter(predictions)

    def start(self, X, y, classes=None):
        return self

    def step(self):
        self.current = next(self.predictions)

    def predict(self, X):
        return self.current


def test_validation_path_stops_by_the_rule_and_drops_a_diverged_path(experiment):
    y_val = np.zeros(4)
    # The loss falls for 50 epochs, then stays: the rule waits 100 more.
    flat = [np.full(4, max(1.0 - 0.01 * epoch, 0.5)) for epoch in range(1, 400)]
    path = experiment.validation_path("friedman1", _Scripted(flat), (None, None),
                                      (None, y_val), 1000)
    assert len(path) == 150 and np.argmin(path) + 1 == 50
    capped = experiment.validation_path("friedman1", _Scripted(flat), (None, None),
                                        (None, y_val), 30)
    assert len(capped) == 30
    diverging = [np.ones(4), np.full(4, np.inf)]
    assert experiment.validation_path("friedman1", _Scripted(diverging),
                                      (None, None), (None, y_val), 10) is None


def test_best_on_paths_ties_go_to_the_smaller_rate_then_the_earlier_epoch(experiment):
    paths = [np.array([3.0, 2.0, 2.0]), None, np.array([4.0, 2.0]),
             np.array([5.0, 1.0, 1.0, 0.5])]
    assert experiment.best_on_paths(paths) == (3, 4)
    assert experiment.best_on_paths(paths[:3]) == (0, 2)
    with pytest.raises(ValueError, match="diverged"):
        experiment.best_on_paths([None, None])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("task", ["friedman1", "digits"])
def test_sklearn_mlp_stepped_epoch_by_epoch_is_the_fixed_mode_mlp(experiment, task):
    X, y = experiment.load_task(task, max_rows=90)
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-12)
    classes = None if task == "friedman1" else np.unique(y)
    network = experiment.make_network(task, "mlp_adam", 24, 0.01, 3)
    network.start(X, y, classes)
    for _ in range(7):
        network.step()
    fitted = experiment.mlp(task, 24, 0.01, 7, 3, len(y)).fit(
        experiment._as_float32(X), y)
    expected = (fitted.predict if classes is None else fitted.predict_proba)(
        experiment._as_float32(X))
    np.testing.assert_allclose(network.predict(X), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_kernel_search_is_a_brute_force_choice_on_the_validation_rows(experiment):
    # With a cap below the rule's patience every path runs to the cap: the
    # search must pick the (rate, epoch) of least validation loss over
    # separate fits on the fit rows, and refit that on all training rows.
    from sklearn_adamntk import AdamStarNTKRegressor

    X, y = experiment.load_task("friedman1", max_rows=120)
    data = experiment._standardised("friedman1",
                                    *experiment.split("friedman1", X, y, 2))
    n_fit, rates, cap = data["n_fit"], (0.3, 1.0, 3.0), 20
    X_train, y_train = data["X_train"], data["y_train"]

    def plain(rate, epochs):
        return AdamStarNTKRegressor(
            width=32, optimizer="adam*", learning_rate_init=rate, max_iter=epochs,
            early_stopping=False, tol=0.0, n_iter_no_change=epochs + 1,
            random_state=2, normalize_y=False)

    losses = np.array([
        [np.mean((predicted - y_train[n_fit:]) ** 2)
         for predicted in plain(rate, cap).fit(X_train[:n_fit], y_train[:n_fit])
         .staged_predict(X_train[n_fit:])]
        for rate in rates
    ])
    index, epoch = np.unravel_index(np.argmin(losses), losses.shape)
    result = experiment._kernel_search("friedman1", "adam*", 32, data, 2, rates, cap)
    assert (result["rate"], result["epoch"]) == (rates[index], epoch + 1)
    assert result["epochs_run"] == [cap] * len(rates)
    refit = plain(rates[index], epoch + 1).fit(X_train, y_train)
    expected = np.mean((refit.predict(data["X_test"]) - data["y_test"]) ** 2)
    assert result["loss"] == pytest.approx(expected, rel=1e-8)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("task, method", [("friedman1", "sgd"), ("digits", "mup")])
def test_converged_choices_never_see_the_test_rows(experiment, monkeypatch, task,
                                                   method):
    X, y = experiment.load_task(task, max_rows=120)
    rates = experiment.CONVERGED_RATES[task][method]
    honest = experiment.converged_run(task, method, 16, X, y, 1, rates, 25)
    split = experiment.split

    def scrambled(task, X, y, seed):
        train, (X_test, y_test), fit, validation = split(task, X, y, seed)
        return train, (X_test, np.roll(y_test, 1)), fit, validation

    monkeypatch.setattr(experiment, "split", scrambled)
    shuffled = experiment.converged_run(task, method, 16, X, y, 1, rates, 25)
    for key in ("rate", "epoch", "epochs_run"):
        assert shuffled[key] == honest[key]
    assert shuffled["loss"] != honest["loss"]


def test_the_rate_of_a_diverged_refit_is_read_from_the_package_error(experiment):
    from sklearn_adamntk import AdamStarNTKRegressor

    X, y = experiment.load_task("friedman1", max_rows=120)
    diverging = AdamStarNTKRegressor(optimizer="sgd", learning_rate_init=1e6,
                                     max_iter=200, early_stopping=False)
    with pytest.raises(ValueError, match="diverged") as error:
        diverging.fit(X, y)
    assert experiment._refit_rate(error.value) == 1e6
    assert experiment._refit_rate(ValueError("Input contains NaN")) is None


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("method", ["adam*", "mup"])
def test_a_rate_whose_refit_diverges_is_dropped_and_the_next_best_chosen(
    experiment, monkeypatch, method
):
    X, y = experiment.load_task("friedman1", max_rows=120)
    rates = experiment.CONVERGED_RATES["friedman1"][method]
    honest = experiment.converged_run("friedman1", method, 16, X, y, 0, rates, 15)
    assert honest["dropped"] == []
    bad = honest["rate"]
    n_train = 60
    if method == "mup":
        real = experiment.make_network

        class Diverging:
            def __init__(self, network, rate):
                self.network, self.rate = network, rate

            def start(self, X, y, classes=None):
                self.refit = len(y) == n_train
                return self.network.start(X, y, classes)

            def step(self):
                self.network.step()

            def predict(self, X):
                if self.refit and self.rate == bad:
                    return np.full(len(X), np.nan)
                return self.network.predict(X)

        monkeypatch.setattr(
            experiment, "make_network",
            lambda task, method, width, rate, seed: Diverging(
                real(task, method, width, rate, seed), rate))
    else:
        real = experiment._package_search

        def package_search(task, method, width, data, seed, rates, max_epochs):
            search = real(task, method, width, data, seed, rates, max_epochs)
            if search.learning_rate_ == bad:
                raise ValueError(
                    "AdamStarNTKRegressorCV: training diverged at epoch 3: the "
                    f"loss grew. Lower learning_rate_init (it is {bad!r}); ...")
            return search

        monkeypatch.setattr(experiment, "_package_search", package_search)
    fallback = experiment.converged_run("friedman1", method, 16, X, y, 0, rates, 15)
    assert fallback["dropped"] == [bad] and fallback["rate"] != bad
    assert fallback["epochs_run"][list(rates).index(bad)] == 0
    assert math.isfinite(fallback["loss"])
