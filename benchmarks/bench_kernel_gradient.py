"""Gram matrix with its gradient against the Gram matrix alone (NetworkKernel).

``NetworkKernel()(X, eval_gradient=True)`` against ``NetworkKernel()(X)``.
Issue 16's target: the Gram matrix together with its gradient with respect to
both variances (what ``GaussianProcessRegressor`` asks for at every step of
its optimizer) within 2x the time of the Gram matrix alone.  DESIGN 7: both
times, and the floor ``X @ Z.T`` (``Z`` a copy of ``X``: BLAS gemm for the same
shapes), are measured in the same run, as the median of interleaved repeats
after one warm-up call of each.  The gradient is the analytic one, computed in
the Gram matrix's fused pass: it writes three N x N matrices where the Gram
matrix alone writes one.

Run ``python benchmarks/bench_kernel_gradient.py`` (``--quick`` for small
sizes); ``python benchmarks/run.py --only gradient`` runs it as a section of
the suite.
"""

import argparse

import numpy as np

from _common import fmt, machine_summary, markdown_table, median_times
from sklearn_adamntk import NetworkKernel

N_FEATURES = 64
SIZES = (2000, 4000)
QUICK_SIZES = (500, 1000)
TARGET = 2.0
# BLAS and OpenMP workers spin for a while after a call; a pause between
# timed calls keeps one measurement from slowing the next.
PAUSE_S = 0.2
HEADERS = ["kernel", "activation", "depth", "dtype", "N", "X @ Z.T (ms)", "K (ms)",
           "K and gradient (ms)", "K / X @ Z.T", "(K and gradient) / K",
           f"within {TARGET:g}x?"]


def run(sizes=SIZES, kernels=("nngp", "ntk"), activations=("relu", "erf"),
        depths=(1, 3), dtypes=(np.float64, np.float32), repeats=3, pause=PAUSE_S):
    """Time every case; returns the table's rows.

    ``weight_variance=2``, ``bias_variance=1`` (NetworkKernel's defaults), both
    free, on standard normal inputs with ``N_FEATURES`` columns.
    """
    rng = np.random.default_rng(0)
    rows = []
    for dtype in dtypes:
        for n in sizes:
            X = rng.standard_normal((n, N_FEATURES)).astype(dtype)
            Z = X.copy()
            for kernel in kernels:
                for activation in activations:
                    for depth in depths:
                        network = NetworkKernel(kernel=kernel, activation=activation,
                                                depth=depth)
                        gemm, alone, both = median_times(
                            [lambda: X @ Z.T, lambda: network(X),
                             lambda: network(X, eval_gradient=True)],
                            repeats=repeats, pause=pause)
                        rows.append([
                            kernel, activation, depth, np.dtype(dtype).name, n,
                            fmt(gemm * 1e3, 1), fmt(alone * 1e3, 1),
                            fmt(both * 1e3, 1), fmt(alone / gemm), fmt(both / alone),
                            "yes" if both <= TARGET * alone else "NO",
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
