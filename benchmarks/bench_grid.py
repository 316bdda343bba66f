"""A hyper-parameter search: GridSearchCV over ADAM* settings against KernelRidge's.

The optimizer's settings are the regulariser of an early-stopped kernel
machine, as ``alpha`` is KernelRidge's.  So the regressor (kernel and data of
``benchmarks/_worker.py``) is searched over ``beta_1`` x ``beta_2`` x
``learning_rate_init`` (18 settings) with ``solver="eigen"``, whose one
eigendecomposition per training fold every setting could share, and with
its default solver; ``KernelRidge`` is searched over 12 values of ``alpha``.
Each search is ``GridSearchCV(cv=3, scoring="r2")`` in a fresh process
(``n_jobs=None``: the compiled code and BLAS use the cores), then refit on
all training rows and scored on held-out rows.

Target (issue 4): the ``solver="eigen"`` search faster than KernelRidge's at
equal or better best R^2.

Run ``python benchmarks/bench_grid.py`` (``--quick`` for N = 1000);
``python benchmarks/run.py`` runs it with the other sections.
"""

import argparse

import numpy as np

from _common import fmt, machine_summary, markdown_table
from _worker import measure

N_TRAIN = 5000
QUICK_N_TRAIN = 1000
CV = 3
GRID_LIMIT_S = 900
# Around the defaults (0.9, 0.999, and a rate of about 0.08: "auto" on this
# kernel and data); every fit stops by the default rule, robust GCV.
ADAM_GRID = {
    "beta_1": [0.5, 0.9, 0.99],
    "beta_2": [0.99, 0.999],
    "learning_rate_init": [0.03, 0.1, 0.3],
}
KRR_GRID = {"alpha": [float(a) for a in np.logspace(-6, 1, 12)]}
SEARCHES = {
    "AdamStarNTK eigen": ("adam", {"solver": "eigen"}, ADAM_GRID),
    "AdamStarNTK auto": ("adam", {}, ADAM_GRID),
    "KernelRidge": ("krr", {}, KRR_GRID),
}
HEADERS = ["search", "settings", "time (s)", "time / KernelRidge's",
           "mean fit (s)", "refit (s)", "best CV R^2", "held-out R^2",
           "best setting"]


def run(n_train=N_TRAIN, cv=CV, limit=GRID_LIMIT_S, searches=SEARCHES, log=print):
    """Run every search; returns ``(rows, results)``."""
    results = {}
    for label, (name, options, grid) in searches.items():
        config = dict(task="grid", model=name, options=options, grid=grid,
                      cv=cv, n_train=n_train, n_test=n_train // 4)
        results[label] = measure(config, timeout=limit)
        log(f"  grid N={n_train} {label}: {results[label]}")
    ridge = results.get("KernelRidge", {}).get("fit_s")
    rows = []
    for label, result in results.items():
        if "fit_s" not in result:
            note = result.get("error") or f"stopped at the {result['timeout']} s limit"
            rows.append([label, None, note, None, None, None, None, None, None])
            continue
        setting = ", ".join(f"{key}={value:g}" for key, value
                            in result["best_params"].items())
        rows.append([
            label, result["n_settings"], fmt(result["fit_s"], 1),
            fmt(None if ridge is None else result["fit_s"] / ridge),
            fmt(result["mean_fit_s"]), fmt(result["refit_s"]),
            fmt(result["best_cv_r2"], 4), fmt(result["r2"], 4), setting,
        ])
    return rows, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_N_TRAIN}")
    args = parser.parse_args(argv)
    print(machine_summary())
    rows, _ = run(QUICK_N_TRAIN if args.quick else N_TRAIN)
    print()
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
