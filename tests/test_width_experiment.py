"""The width experiment script runs end to end in a tiny mode and compares
rows that differ only where the experiment says they do."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "width_experiment.py"


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


def test_every_task_method_and_width_has_one_finite_record(experiment, tiny_records):
    expected = {
        (task, method, width)
        for task in experiment.TASKS
        for method, spec in experiment.METHODS.items()
        for width in (16, None)
        if not (width is None and spec["finite_only"])
    }
    found = [(r["task"], r["method"], r["width"]) for r in tiny_records]
    assert len(found) == len(set(found))
    assert set(found) == expected
    for record in tiny_records:
        for key in ("loss_mean", "loss_std", "score_mean", "score_std"):
            assert math.isfinite(record[key]), (record, key)
        assert record["loss_mean"] > 0.0
        assert len(record["rates"]) == 1
        assert record["rates"][0] in experiment.RATES[record["task"]][record["method"]]


def test_markdown_table_has_a_row_per_method_and_a_column_per_width(
    experiment, tiny_records
):
    table = experiment.markdown_table(tiny_records)
    for task in experiment.TASKS:
        assert f"#### {task}" in table
    headers = [line for line in table.splitlines() if line.startswith("| method |")]
    # A results table and a chosen-rate table per task.
    assert headers == ["| method | 16 | inf |"] * (2 * len(experiment.TASKS))
    for spec in experiment.METHODS.values():
        rows = [
            line for line in table.splitlines()
            if line.startswith(f"| {spec['label']} |")
        ]
        assert len(rows) == 2 * len(experiment.TASKS)
        for row in rows:
            cells = row.strip("|").split("|")[1:]
            assert len(cells) == 2
            # Finite-width-only methods have no infinite-width cell.
            assert (cells[1].strip() == "–") == spec["finite_only"]


def test_main_smoke_writes_the_report_and_the_plot(experiment, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert experiment.main(["--smoke", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| ADAM* (kernel) |" in out
    png = tmp_path / "width_experiment.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (tmp_path / "WIDTH.md").read_text()
    assert "--smoke" in report and "width_experiment.png" in report
    assert "| MLP, Adam (all layers) |" in report


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
    for method in experiment.METHODS:
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
    settings = {"seeds": (0,), "epochs": 3, "max_rows": 120}
    experiment.write_report(str(path), "new table", "cmd", settings, 1.0)
    text = path.read_text()
    assert "new table" in text and "old table" not in text
    assert reading in text
    experiment.write_report(
        str(path), "quick table", "cmd --quick", settings, 1.0, keep_reading=False
    )
    assert "What the data say" not in path.read_text()
