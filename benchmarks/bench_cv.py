"""The cross-validated estimator against KernelRidge's alpha grid (issue 11).

``AdamStarNTKRegressorCV`` chooses the learning rate and the number of epochs
together, as ``RidgeCV`` chooses ``alpha``.  On Friedman #1 (the data and the
kernel of ``benchmarks/_worker.py``, N training rows and N/4 held out), its
fit is timed against ``GridSearchCV(KernelRidge(NetworkKernel(<same
kernel>)), 12 alphas, cv=3)`` and the plain estimator's default fit, each in
a fresh process after a warm-up on a few rows, and every model is scored on
the held-out rows.

Target: the CV estimator within 0.003 of KernelRidge's held-out R^2 in at
most half its time.

Run ``python benchmarks/bench_cv.py`` (``--quick``: N = 1000);
``python benchmarks/run.py --only cv`` runs it with the suite's header.
"""

import argparse

from _common import fmt, machine_summary, markdown_table
from _worker import measure

N_TRAIN = 5000
QUICK_N_TRAIN = 1000
LIMIT_S = 900
KRR_GRID = {"alpha": [float(a) for a in __import__("numpy").logspace(-6, 1, 12)]}
MODELS = {
    "KernelRidge, 12 alphas, cv=3": dict(task="grid", model="krr", grid=KRR_GRID,
                                         cv=3),
    "AdamStarNTKRegressorCV (cv=None: GCV)": dict(task="cv"),
    "AdamStarNTKRegressorCV (cv=None), float32": dict(task="cv", dtype="float32"),
    "AdamStarNTKRegressorCV (cv=3)": dict(task="cv", options={"cv": 3}),
    "AdamStarNTKRegressor (defaults)": dict(task="fit", model="adam"),
}
HEADERS = ["model", "fit (s)", "fit / KernelRidge grid's", "held-out R^2",
           "R^2 - KernelRidge's", "chosen"]


def run(n_train=N_TRAIN, limit=LIMIT_S, models=MODELS, log=print):
    """Time and score every model; returns ``(rows, results)``."""
    results = {}
    for label, config in models.items():
        config = dict(config, n_train=n_train, n_test=n_train // 4)
        results[label] = measure(config, timeout=limit)
        log(f"  cv N={n_train} {label}: {results[label]}")
    ridge = results[next(iter(models))]
    rows = []
    for label, result in results.items():
        if "fit_s" not in result:
            note = result.get("error") or f"stopped at the {result['timeout']} s limit"
            rows.append([label, note, None, None, None, None])
            continue
        chosen = ""
        if "learning_rate" in result:
            chosen = f"rate {result['learning_rate']:.3g}, {result['n_iter']} epochs"
        elif "best_params" in result:
            chosen = f"alpha {result['best_params']['alpha']:.3g}"
        elif result.get("n_iter") is not None:
            chosen = f"{result['n_iter']} epochs run ({result['solver']})"
        rows.append([
            label, fmt(result["fit_s"], 2),
            fmt(result["fit_s"] / ridge["fit_s"]) if "fit_s" in ridge else None,
            fmt(result["r2"], 4),
            fmt(result["r2"] - ridge["r2"], 4) if "r2" in ridge else None, chosen,
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
