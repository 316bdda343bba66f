"""Fit and predict on ``make_friedman1``: AdamStarNTKRegressor against its peers.

DESIGN 7: a fit is judged against ``KernelRidge`` and ``SVR`` on the same
kernel and data, at equal or better held-out score.  Every model here uses
the NTK of ``benchmarks/_worker.py``'s ``KERNEL`` (the regressor through its
parameters, the peers through ``NetworkKernel``), and every (model, N) runs
in a fresh process (see ``_worker.py``): fit and predict are timed apart,
with the peak resident memory the fit added, next to the size of one
``N x N`` Gram matrix (``peak / Gram`` near 1 means no hidden copy).

The regressor runs with its defaults (``solver="auto"``) and with
``solver="eigen"``; when ``"auto"`` does not pick ``"dual"``, a
``solver="dual"`` row is added, so that the second table can say whether
``"auto"`` chose the faster solver at every N.

A model whose fit would take too long is capped: it is stopped at the time
limit (``--fit-limit``), and not run at a larger N when its last time,
scaled by ``(N / N_last)^3``, predicts more than the limit.

Run ``python benchmarks/bench_fit.py`` (``--quick`` for N = 1000, 2000);
``python benchmarks/run.py`` runs it with the other sections.
"""

import argparse

from _common import fmt, machine_summary, markdown_table
from _worker import measure

SIZES = (2000, 5000, 10000, 20000)
QUICK_SIZES = (1000, 2000)
FIT_LIMIT_S = 300
MODELS = {
    "AdamStarNTK auto": ("adam", {}),
    "AdamStarNTK eigen": ("adam", {"solver": "eigen"}),
    "KernelRidge": ("krr", {}),
    "SVR": ("svr", {}),
}
DUAL = ("AdamStarNTK dual", ("adam", {"solver": "dual"}))
HEADERS = ["N", "model", "solver", "fit (s)", "fit / KernelRidge fit",
           "predict (s)", "held-out R^2", "fit peak (MiB)", "peak / Gram"]
AUTO_HEADERS = ["N", "auto chose", "dual fit (s)", "eigen fit (s)", "faster",
                "auto right?"]
_MIB = 2**20


def _skip_reason(history, n, limit):
    """Why a model is not run at ``n`` (None: run it), from its earlier sizes."""
    if not history:
        return None
    last_n, last = history[-1]
    if "timeout" in last:
        return f"not run: > {last['timeout']} s at N = {last_n}"
    if "fit_s" not in last:
        return f"not run: failed at N = {last_n}"
    predicted = last["fit_s"] * (n / last_n) ** 3
    if predicted > limit:
        return f"not run: ~{predicted:.0f} s predicted"
    return None


def run(sizes=SIZES, limit=FIT_LIMIT_S, models=MODELS, log=print):
    """Fit every model at every N; returns ``(rows, auto_rows, results)``.

    ``results`` maps ``(label, N)`` to what the worker measured.
    """
    history = {label: [] for label in [*models, DUAL[0]]}
    results = {}

    def fit(label, spec, n):
        reason = _skip_reason(history[label], n, limit)
        if reason is not None:
            results[label, n] = {"skipped": reason}
            return
        name, options = spec
        config = dict(task="fit", model=name, options=options, n_train=n,
                      n_test=n // 4)
        result = measure(config, timeout=limit)
        history[label].append((n, result))
        results[label, n] = result
        log(f"  fit N={n} {label}: {result}")

    for n in sizes:
        for label, spec in models.items():
            fit(label, spec, n)
        auto = results.get(("AdamStarNTK auto", n), {})
        if auto.get("solver") not in (None, "dual"):
            fit(DUAL[0], DUAL[1], n)
    return _rows(sizes, results), _auto_rows(sizes, results), results


def _rows(sizes, results):
    rows = []
    for n in sizes:
        ridge = results.get(("KernelRidge", n), {}).get("fit_s")
        gram_bytes = n * n * 8
        for label in [*MODELS, DUAL[0]]:
            result = results.get((label, n))
            if result is None:
                continue
            if "fit_s" not in result:
                note = (result.get("skipped") or result.get("error")
                        or f"stopped at the {result['timeout']} s limit")
                rows.append([n, label, None, note, None, None, None, None, None])
                continue
            peak = result["fit_peak_bytes"]
            rows.append([
                n, label, result["solver"], fmt(result["fit_s"]),
                fmt(None if ridge is None else result["fit_s"] / ridge),
                fmt(result["predict_s"]), fmt(result["r2"], 4),
                fmt(None if peak is None else peak / _MIB, 0),
                fmt(None if peak is None else peak / gram_bytes),
            ])
    return rows


def _fit_time(result):
    if result is None:
        return None
    if "fit_s" in result:
        return result["fit_s"]
    if "timeout" in result:
        return float("inf")
    return None


def _auto_rows(sizes, results):
    """Whether ``solver="auto"`` picked the faster of dual and eigen."""
    rows = []
    for n in sizes:
        auto = results.get(("AdamStarNTK auto", n), {})
        chose = auto.get("solver")
        if chose is None:
            continue
        dual = _fit_time(auto if chose == "dual" else results.get((DUAL[0], n)))
        eigen_result = results.get(("AdamStarNTK eigen", n))
        eigen = _fit_time(auto if chose == "eigen" else eigen_result)
        if eigen is None and eigen_result is not None and "skipped" in eigen_result:
            eigen = float("inf")  # not run because predicted far slower
        if dual is None or eigen is None:
            rows.append([n, chose, fmt(dual), fmt(eigen), None, None])
            continue
        faster = "dual" if dual <= eigen else "eigen"
        shown = [None if t == float("inf") else fmt(t) for t in (dual, eigen)]
        if eigen == float("inf"):
            shown[1] = "not run (slower)"
        rows.append([n, chose, *shown, faster, "yes" if chose == faster else "NO"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1000, 2000 only")
    parser.add_argument("--fit-limit", type=float, default=FIT_LIMIT_S,
                        help="seconds after which one fit is stopped")
    args = parser.parse_args(argv)
    print(machine_summary())
    rows, auto_rows, _ = run(QUICK_SIZES if args.quick else SIZES,
                             limit=args.fit_limit)
    print()
    print(markdown_table(HEADERS, rows))
    print()
    print(markdown_table(AUTO_HEADERS, auto_rows))


if __name__ == "__main__":
    main()
