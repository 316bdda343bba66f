"""Smoke tests of the benchmark suite at toy sizes, so that the scripts cannot rot.

They run every section's code path on tiny inputs (the fit, grid and memory
sections in-process, and one real child process), and check the parts whose
mistakes would make a table lie: interleaved timing, the peak-memory reset,
the solver verdict, the caps, and neural-tangents' kernel against ours when
it is installed.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import _common  # noqa: E402
import _neural_tangents  # noqa: E402
import _worker  # noqa: E402
import bench_dask  # noqa: E402
import bench_fit  # noqa: E402
import bench_grid  # noqa: E402
import bench_kernel_gradient  # noqa: E402
import bench_kernels  # noqa: E402
import bench_memory  # noqa: E402
import bench_streamed  # noqa: E402
import bench_training  # noqa: E402
import run  # noqa: E402

TINY = dict(n_train=80, n_test=20)
# The tiny fits stop at max_iter on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


def _in_process(config, timeout=None):
    """What the child process of ``_worker.measure`` would return."""
    return _worker.TASKS[config["task"]](config)


def _numbers(row, columns):
    return [float(row[i]) for i in columns]


def test_median_times_interleaves_and_skips_the_warmup():
    calls = []
    times = _common.median_times(
        [lambda: calls.append("a"), lambda: calls.append("b")], repeats=3)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert len(times) == 2 and all(t >= 0 for t in times)


def test_markdown_table_shape():
    table = _common.markdown_table(["x", "y"], [[1, None], ["a", 2.5]])
    assert table.splitlines() == ["| x | y |", "|---|---|", "| 1 | – |", "| a | 2.5 |"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_rss_sees_an_allocation_after_a_reset():
    assert _common.reset_peak_rss()
    before = _common.current_rss()
    block = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
    assert _common.peak_rss() - before >= 30 * 2**20
    del block
    assert _common.reset_peak_rss()
    assert _common.peak_rss() - _common.current_rss() < 30 * 2**20


def test_kernel_section_rows():
    rows = bench_kernels.run(sizes=(64,), depths=(1, 3), dtypes=(np.float32,),
                             repeats=1, with_neural_tangents=False, pause=0)
    assert len(rows) == 2
    for row in rows:
        assert len(row) == len(bench_kernels.HEADERS)
        assert all(value >= 0 for value in _numbers(row, [4, 5, 6]))
        assert all(value > 0 for value in _numbers(row, [7, 8]))
        assert row[9] is None and row[10] is None


def test_gradient_section_rows():
    rows = bench_kernel_gradient.run(sizes=(64,), kernels=("ntk",), depths=(1, 3),
                                     dtypes=(np.float32,), repeats=1, pause=0)
    assert len(rows) == 4
    for row in rows:
        assert len(row) == len(bench_kernel_gradient.HEADERS)
        assert all(value >= 0 for value in _numbers(row, [5, 6, 7]))
        assert all(value > 0 for value in _numbers(row, [8, 9]))
        assert float(row[10]) >= 0
        assert row[-1] in ("yes", "NO")


def test_gradient_section_times_wall_and_cpu():
    calls = []
    wall, cpu = bench_kernel_gradient.median_wall_and_cpu_times(
        [lambda: calls.append("a"), lambda: sum(range(10**5))], repeats=3,
        before=lambda: calls.append("before"))
    # A warm-up call, then the repeats, each after the untimed ``before``.
    assert calls == ["a"] + ["before", "a", "before"] * 3
    assert len(wall) == len(cpu) == 2 and all(t >= 0 for t in wall + cpu)
    assert cpu[1] > 0


def test_neural_tangents_kernel_is_ours():
    if _neural_tangents.import_error() is not None:
        pytest.skip("neural-tangents is an optional benchmark dependency")
    for depth in (1, 3):
        params = dict(kernel="ntk", activation="relu", depth=depth,
                      weight_variance=2.0, bias_variance=0.5)
        gram = _neural_tangents.kernel_function(params, np.float64, check_size=30)
        assert gram(np.ones((3, 64))).shape == (3, 3)


def test_neural_tangents_check_catches_another_kernel(monkeypatch):
    if _neural_tangents.import_error() is not None:
        pytest.skip("neural-tangents is an optional benchmark dependency")
    build = _neural_tangents._stax_kernel_fn
    # Biases of variance 1e-6 instead of 0 are enough to fail the check.
    monkeypatch.setattr(_neural_tangents, "_stax_kernel_fn",
                        lambda params: build({**params, "bias_variance": 1e-6}))
    with pytest.raises(AssertionError, match="differs from network_kernel"):
        _neural_tangents.kernel_function(dict(depth=1), np.float64, check_size=30)


def test_training_section_rows():
    rows = bench_training.run(sizes=(60,), repeats=1)
    assert len(rows) == 1 and len(rows[0]) == len(bench_training.HEADERS)
    assert all(value >= 0 for value in _numbers(rows[0], [2, 3, 6, 8]))
    assert all(value > 0 for value in _numbers(rows[0], [4, 5]))


def test_worker_fit_measures_a_fit():
    result = _worker.run_fit(dict(task="fit", model="adam", **TINY,
                                  options={"max_iter": 20}))
    assert result["solver"] == "dual" and result["n_iter"] == 20
    assert result["fit_s"] > 0 and result["predict_s"] > 0
    assert 0.0 < result["r2"] <= 1.0


def test_worker_runs_the_peers_on_the_same_kernel():
    def network(kernel):  # get_params() also holds the GP tuning bounds
        return {key: kernel.get_params()[key] for key in _worker.KERNEL}

    ridge = _worker.make_model("krr")
    assert network(ridge.kernel) == _worker.KERNEL
    assert network(_worker.make_model("svr").kernel) == _worker.KERNEL
    ours = _worker.make_model("adam", {"solver": "eigen"})
    assert {key: ours.get_params()[key] for key in _worker.KERNEL} == _worker.KERNEL
    X_train, X_test, y_train, y_test = _worker.friedman(50, 10)
    assert abs(X_train.mean()) < 1e-12 and abs(y_train.std() - 1) < 1e-12


def test_worker_child_process_and_time_limit():
    config = dict(task="fit", model="adam", **TINY, options={"max_iter": 5})
    result = _worker.measure(config, timeout=120)
    assert result["solver"] == "dual" and result["fit_s"] > 0
    assert _worker.measure(config, timeout=0.01) == {"timeout": 0.01}
    failed = _worker.measure({**config, "task": "nonexistent"}, timeout=120)
    assert "KeyError" in failed["error"]


def test_fit_section_tables(monkeypatch):
    monkeypatch.setattr(bench_fit, "measure", _in_process)
    models = {label: (name, {**options, "max_iter": 10} if name == "adam" else options)
              for label, (name, options) in bench_fit.MODELS.items()}
    rows, auto_rows, results = bench_fit.run((60,), limit=60, models=models,
                                             log=lambda line: None)
    assert len(rows) == 4 and len(auto_rows) == 1
    assert {row[1] for row in rows} == set(bench_fit.MODELS)
    ridge_rows = [row for row in rows if row[1] == "KernelRidge"]
    assert all(row[4] == "1.00" for row in ridge_rows)
    assert all(row[-1] in ("yes", "NO") for row in auto_rows)


def test_auto_verdict_and_caps():
    def fit(seconds, solver=None):
        return {"fit_s": seconds, "solver": solver}

    results = {("AdamStarNTK auto", 10): fit(1.0, "dual"),
               ("AdamStarNTK eigen", 10): fit(0.5, "eigen"),
               ("AdamStarNTK auto", 20): fit(1.0, "dual"),
               ("AdamStarNTK eigen", 20): {"skipped": "not run"},
               ("AdamStarNTK auto", 30): fit(2.0, "eigen"),
               ("AdamStarNTK dual", 30): {"timeout": 5}}
    verdicts = [row[-1] for row in bench_fit._auto_rows((10, 20, 30), results)]
    assert verdicts == ["NO", "yes", "yes"]

    assert bench_fit._skip_reason([], 10, limit=1) is None
    assert bench_fit._skip_reason([(10, fit(1.0))], 20, limit=10) is None
    assert "predicted" in bench_fit._skip_reason([(10, fit(1.0))], 30, limit=10)
    assert "> 5 s" in bench_fit._skip_reason([(10, {"timeout": 5})], 20, limit=99)


def test_grid_section_rows(monkeypatch):
    monkeypatch.setattr(bench_grid, "measure", _in_process)
    searches = {
        "AdamStarNTK eigen": ("adam", {"solver": "eigen", "max_iter": 10},
                              {"beta_1": [0.8, 0.9]}),
        "KernelRidge": ("krr", {}, {"alpha": [1e-3, 1e-1]}),
    }
    rows, results = bench_grid.run(n_train=60, cv=2, searches=searches,
                                   log=lambda line: None)
    assert [row[0] for row in rows] == list(searches)
    assert all(row[1] == 2 for row in rows)
    assert results["KernelRidge"]["best_params"]["alpha"] in (1e-3, 1e-1)
    assert len(bench_grid.ADAM_GRID["beta_1"]) * len(bench_grid.ADAM_GRID["beta_2"]) \
        * len(bench_grid.ADAM_GRID["learning_rate_init"]) >= 12


def test_memory_section_rows(monkeypatch):
    monkeypatch.setattr(bench_memory, "measure", _in_process)
    configurations = [(80, "float32", "default", {"max_iter": 3}),
                      (120, "float64", "width=16 nngp",
                       {"max_iter": 3, "kernel": "nngp", "width": 16,
                        "solver": "primal"})]
    rows, _ = bench_memory.run(configurations, log=lambda line: None)
    assert [row[3] for row in rows] == ["dual", "primal"]
    assert all(len(row) == len(bench_memory.HEADERS) for row in rows)
    # reference sizes: the float32 Gram, then the N x (width + 1) features
    assert bench_memory.reference_bytes(80, "float32", "dual", {}) == 80 * 80 * 4
    assert bench_memory.reference_bytes(
        120, "float64", "primal", configurations[1][3]) == 120 * 17 * 8
    assert bench_memory.reference_bytes(80, "float32", "dual", {}, n_rows=20) \
        == 20 * 80 * 4
    full = bench_memory.cases()
    assert (40000, "float32") in [(n, dtype) for n, dtype, _, _ in full]
    assert any(n == 200000 and options.get("solver") == "primal"
               for n, _, _, options in full)


def test_streamed_section_in_a_child_process():
    config = dict(n=3000, d=4, width=16, epochs=2, n_test=300)
    rows, result = bench_streamed.run(config, limit=300, log=lambda line: None)
    assert result["solver"] == "streamed" and result["n_iter"] == 2
    assert len(rows) == 1 and len(rows[0]) == len(bench_streamed.HEADERS)
    assert all(result[key] > 0 for key in ("fit_s", "epoch_s", "floor_s",
                                           "whole_floor_s"))
    full = bench_streamed.FULL
    shape = (full["n"], full["d"], full["width"], full["epochs"])
    assert shape == (10**6, 16, 1024, 20)


def test_streamed_block_sweep_rows():
    rows = bench_streamed.block_sweep(n=2000, d=4, width=32, mibs=(1, 2), repeats=1)
    assert [row[0] for row in rows] == [1, 2]
    assert all(len(row) == len(bench_streamed.BLOCK_HEADERS) for row in rows)
    assert min(float(row[-1]) for row in rows) == 1.0


def test_dask_section_rows():
    pytest.importorskip("distributed")
    cases = {"dual": dict(n=120, d=3, chunk=50, epochs=2, dtype="float64",
                          options={})}
    rows = bench_dask.run(cases, log=lambda line: None, processes=False, rounds=1)
    assert [row[3] for row in rows] == ["this process, 1 thread",
                                        "this process, all threads",
                                        "Dask, 1 worker", "Dask, 2 workers"]
    assert all(len(row) == len(bench_dask.HEADERS) for row in rows)
    assert all(float(row[-1]) < 1e-10 for row in rows[2:])
    # With 2 workers, each memory_limit is below the whole Gram matrix.
    dual = bench_dask.FULL["dual"]
    limit_bytes = 2.75 * 2**30
    assert dual["memory_limit"][2] == "2.75GiB"
    assert limit_bytes < dual["n"] ** 2 * 8


def test_run_prints_the_tables(monkeypatch, capsys):
    monkeypatch.setattr(bench_training, "QUICK_SIZES", (50,))
    run.main(["--quick", "--only", "training", "--quiet"])
    out = capsys.readouterr().out
    assert "python benchmarks/run.py --quick --only training" in out
    assert "| N | k | K @ G (ms)" in out and "| 50 | 1 |" in out
    with pytest.raises(SystemExit):
        run.main(["--only", "kernels"])
