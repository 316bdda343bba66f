"""Gram matrix speed: ``network_kernel(X)`` against ``X @ X.T`` and neural-tangents.

DESIGN 7: a Gram matrix is judged by the ratio of its time to that of the
BLAS product ``X @ X.T`` for the same shapes (the floor), and to that of
neural-tangents' ``kernel_fn`` for the same kernel on the CPU (the peer),
every time measured in the same run: the median of interleaved repeats,
after one warm-up call of each.  ``X @ Z.T`` (``Z`` a copy of ``X``) is the
same product through plain gemm: NumPy sends ``X @ X.T`` to syrk and then
symmetrises the result on one thread, which makes it slow at large N.

neural-tangents is optional (``pip install ".[bench]"``); without it its
columns are left empty.  Its kernel is checked against ours before it is
timed (``benchmarks/_neural_tangents.py``).

Run ``python benchmarks/bench_kernels.py`` (``--quick`` for small sizes);
``python benchmarks/run.py`` runs it with the other sections.
"""

import argparse

import numpy as np

from _common import fmt, machine_summary, markdown_table, median_times
from _neural_tangents import import_error, kernel_function
from sklearn_adamntk import network_kernel

N_FEATURES = 64
SIZES = (2000, 4000, 8000)
QUICK_SIZES = (1000, 2000)
# BLAS and OpenMP workers spin for a while after a call; a pause between
# timed calls keeps one measurement from slowing the next.
PAUSE_S = 0.2
HEADERS = ["kernel", "depth", "dtype", "N", "X @ X.T (ms)", "X @ Z.T (ms)",
           "network_kernel (ms)", "ours / X @ X.T", "ours / X @ Z.T",
           "neural-tangents (ms)", "neural-tangents / ours"]


def _time_case(X, params, theirs, repeats, pause):
    """Times of ``X @ X.T``, ``X @ Z.T``, ours and neural-tangents' (or None)."""
    Z = X.copy()
    functions = [lambda: X @ X.T, lambda: X @ Z.T,
                 lambda: network_kernel(X, **params)]
    if theirs is not None:
        functions.append(lambda: theirs(X))
    times = median_times(functions, repeats=repeats, pause=pause)
    return (*times[:3], times[3] if theirs is not None else None)


def run(sizes=SIZES, depths=(1, 3), dtypes=(np.float64, np.float32), repeats=3,
        with_neural_tangents=True, pause=PAUSE_S, log=print):
    """Time every (dtype, depth, N); returns the table's rows.

    The ReLU NTK with ``weight_variance=2`` and ``bias_variance=0`` on
    standard normal inputs with ``N_FEATURES`` columns.
    """
    missing = import_error() if with_neural_tangents else "not asked for"
    if missing is not None and with_neural_tangents:
        log(f"neural-tangents not installed ({missing}); its columns are empty. "
            'Install it with: pip install ".[bench]"')
    rng = np.random.default_rng(0)
    rows = []
    for dtype in dtypes:
        for depth in depths:
            params = dict(kernel="ntk", activation="relu", depth=depth,
                          weight_variance=2.0, bias_variance=0.0)
            theirs = None if missing else kernel_function(params, dtype)
            for n in sizes:
                X = rng.standard_normal((n, N_FEATURES)).astype(dtype)
                floor, gemm, ours, peer = _time_case(X, params, theirs, repeats, pause)
                rows.append([
                    "relu ntk", depth, np.dtype(dtype).name, n,
                    fmt(floor * 1e3, 1), fmt(gemm * 1e3, 1), fmt(ours * 1e3, 1),
                    fmt(ours / floor), fmt(ours / gemm),
                    fmt(None if peer is None else peer * 1e3, 1),
                    fmt(None if peer is None else peer / ours, 1),
                ])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many")
    args = parser.parse_args(argv)
    print(machine_summary())
    print(f"\nd = {N_FEATURES}, median of {args.repeats} interleaved repeats\n")
    rows = run(QUICK_SIZES if args.quick else SIZES, repeats=args.repeats)
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
