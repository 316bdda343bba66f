"""Peak memory of fit and predict, against the one array the solver must hold.

Each configuration runs in a fresh process (``benchmarks/_worker.py``): the
peak resident memory that ``fit`` adds to the process (data made and code
compiled beforehand) is printed next to the one array the solver cannot do
without, so that their ratio shows hidden copies:

- ``"dual"``: the training Gram matrix, ``N^2 * itemsize`` (target: the Gram
  plus ``O(N)``, a ratio near 1);
- ``"eigen"``: the same Gram matrix (its documented peak is two ``N x N``
  arrays, the weighted Gram and the eigenvectors);
- ``"primal"`` at finite ``width``: the feature matrix, ``N * P * itemsize``
  with ``P = width + 1`` for ``kernel="nngp"`` (target: ``O(N * width)``).

``predict`` on ``N / 4`` held-out rows is measured the same way, against the
array that an unblocked prediction would hold: the ``n_test x N`` kernel
matrix (dual and eigen), or the test rows' features (primal).  Target:
blocks of at most scikit-learn's ``working_memory`` (1 GiB by default), so a
ratio below 1 once that array is larger.  Memory does not depend on how many epochs
run, so ``max_iter=5`` keeps the large fits short.  The issue's targets:
N = 40000 in float32 on this 24 GiB machine, and N = 200000 with
``width=256, kernel="nngp", solver="primal"``.

Run ``python benchmarks/bench_memory.py`` (``--quick`` for small sizes);
``python benchmarks/run.py`` runs it with the other sections.
"""

import argparse

import numpy as np

from _common import fmt, machine_summary, markdown_table
from _worker import measure

MEMORY_LIMIT_S = 600
WIDTH = 256
_MIB = 2**20
HEADERS = ["N", "dtype", "model", "solver", "fit (s)", "fit peak (MiB)",
           "reference (MiB)", "fit peak / reference", "predict rows",
           "predict peak (MiB)", "predict reference (MiB)",
           "predict peak / reference"]


def cases(quick=False):
    """``(N, dtype, label, options)`` of every configuration."""
    short = {"max_iter": 5}
    primal = {**short, "kernel": "nngp", "width": WIDTH, "solver": "primal"}
    if quick:
        return [(1000, "float64", "default", short),
                (1000, "float64", "eigen", {**short, "solver": "eigen"}),
                (5000, "float32", "default", short),
                (20000, "float64", f"width={WIDTH} nngp", primal)]
    return [(2000, "float64", "default", short),
            (5000, "float64", "default", short),
            (10000, "float64", "default", short),
            (20000, "float64", "default", short),
            (2000, "float64", "eigen", {**short, "solver": "eigen"}),
            (40000, "float32", "default", short),
            (200000, "float64", f"width={WIDTH} nngp", primal)]


def reference_bytes(n, dtype, solver, options, n_rows=None):
    """Size of the one array the solver must hold (module docstring).

    For ``n_rows`` rows against ``n`` training rows (``None``: ``n``): the
    kernel matrix, or at finite width the rows' features.
    """
    itemsize = np.dtype(dtype).itemsize
    n_rows = n if n_rows is None else n_rows
    if solver == "primal":
        if options.get("kernel") != "nngp":
            raise ValueError("the feature count is written out for 'nngp' only")
        return n_rows * (options["width"] + 1) * itemsize
    return n_rows * n * itemsize


def run(configurations, limit=MEMORY_LIMIT_S, log=print):
    """Measure every configuration; returns ``(rows, results)``."""
    rows, results = [], {}
    for n, dtype, label, options in configurations:
        config = dict(task="fit", model="adam", options=options, n_train=n,
                      n_test=n // 4, dtype=dtype)
        result = measure(config, timeout=limit)
        results[n, dtype, label] = result
        log(f"  memory N={n} {dtype} {label}: {result}")
        if "fit_s" not in result:
            note = result.get("error") or f"stopped at the {result['timeout']} s limit"
            rows.append([n, dtype, label, None, note] + [None] * 7)
            continue
        reference = reference_bytes(n, dtype, result["solver"], options)
        predict_reference = reference_bytes(n, dtype, result["solver"], options,
                                            n_rows=n // 4)
        fit_peak, predict_peak = result["fit_peak_bytes"], result["predict_peak_bytes"]
        rows.append([
            n, dtype, label, result["solver"], fmt(result["fit_s"], 1),
            fmt(None if fit_peak is None else fit_peak / _MIB, 0),
            fmt(reference / _MIB, 0),
            fmt(None if fit_peak is None else fit_peak / reference),
            n // 4,
            fmt(None if predict_peak is None else predict_peak / _MIB, 0),
            fmt(predict_reference / _MIB, 0),
            fmt(None if predict_peak is None else predict_peak / predict_reference),
        ])
    return rows, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args(argv)
    print(machine_summary())
    rows, _ = run(cases(args.quick))
    print()
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
