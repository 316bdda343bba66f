"""Every script in examples/ runs to the end, so the examples cannot rot.

A script that draws a figure does so only when asked (``--save PATH`` or
``--show``); here it is asked to save into a temporary folder with the Agg
backend, so the figure code runs too and nothing lands in the repository.
"""

import pathlib
import re
import runpy
import sys

import pytest

EXAMPLE_DIR = pathlib.Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLE_DIR.glob("*.py"))


def _draws(path):
    return "--save" in path.read_text()


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _run(path, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    runpy.run_path(str(path), run_name="__main__")


def _slope_near_minus_half(out):
    # The finite-width example shows what it claims: error ~ width^(-1/2).
    slope = float(re.search(r"log-log slope: (-?[0-9.]+)", out)[1])
    assert -0.65 < slope < -0.35, slope


def _gp_tuned_and_matched_by_kernel_ridge(out):
    # The tuned GP rose above its start, and kernel ridge on its tuned kernel
    # with alpha = noise level is its posterior mean.
    tuned, start = map(float, re.search(
        r"log-marginal likelihood: (-?[0-9.]+) \(at the start: (-?[0-9.]+)\)", out
    ).groups())
    assert tuned > start, (tuned, start)
    difference = float(re.search(r"KernelRidge\(tuned\)\|: ([0-9.e+-]+)", out)[1])
    assert difference < 1e-6, difference


# What an example claims, checked on what it printed.
CLAIMS = {"width_convergence.py": _slope_near_minus_half,
          "gp_tuning.py": _gp_tuned_and_matched_by_kernel_ridge}


def test_there_are_examples():
    assert EXAMPLES


WRITES = re.compile(r"savefig|write_text|write_bytes|open\([^)]*[\"'][wax]b?[\"']"
                    r"|np\.save|to_csv|tofile")
BENCHMARKS = sorted((EXAMPLE_DIR.parent / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", EXAMPLES + BENCHMARKS, ids=lambda path: path.name)
def test_scripts_write_files_only_where_told(path):
    # A smoke run of any script writes only to a temporary or explicitly
    # named place.  The scripts that write at all, and how that is tested:
    # the examples' figures (--save PATH, above) and the width experiment's
    # report (a temporary folder for --quick, test_width_experiment.py).
    # Everything else prints.
    allowed = {"width_experiment.py", *(p.name for p in EXAMPLES if _draws(p))}
    # /proc/self/clear_refs resets the peak-memory counter (benchmarks/_common).
    writes = [line for line in path.read_text().splitlines()
              if WRITES.search(line) and "/proc/self/clear_refs" not in line]
    assert not writes or path.name in allowed, writes


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(path, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # any stray file would land here, and be seen
    monkeypatch.setenv("MPLBACKEND", "Agg")
    plotting = _draws(path) and _has_matplotlib()
    argv = ["--save", "figure.png"] if plotting else []

    _run(path, argv, monkeypatch)

    out = capsys.readouterr().out
    assert out, f"{path.name} printed nothing"
    CLAIMS.get(path.name, lambda out: None)(out)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == (["figure.png"] if plotting else []), written
    if plotting:
        assert (tmp_path / "figure.png").stat().st_size > 0
    elif _draws(path):
        pytest.skip(
            f"matplotlib (the plot extra) is not installed: {path.name} ran "
            "without drawing its figure"
        )
