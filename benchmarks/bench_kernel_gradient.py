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

Besides wall time, the table gives the ratio of the process's CPU time (all
its threads, ``time.process_time``), measured on the same calls: on a machine
shared with other jobs a longer call is also preempted longer, which
inflates the wall-time ratio, while the CPU-time ratio counts only our work.

Memory temperature.  On the virtual machine of ``RESULTS.md``, memory that a
process freed a second or more ago costs several milliseconds per 2 MiB page
to touch again (the host has taken it back), against a fraction of a
millisecond for memory freed just before; the gradient's two extra N x N
matrices are the largest allocation of a round and always come from cold
memory, the Gram matrix's from the product's just freed.  So by default every
timed call, the floor's included, is preceded by writing and freeing as much
memory as the gradient call allocates (untimed): every function then starts
from warm memory, as in a Gaussian process's optimizer, which calls the
kernel in a loop.  ``--cold`` leaves that out.

Run ``python benchmarks/bench_kernel_gradient.py`` (``--quick`` for small
sizes); ``python benchmarks/run.py --only gradient`` runs it as a section of
the suite.
"""

import argparse
import statistics
import time

import numpy as np

from _common import fmt, machine_summary, markdown_table
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
           "same, CPU time", f"within {TARGET:g}x?"]


def median_wall_and_cpu_times(functions, repeats=3, pause=0.0, before=None):
    """Median wall and CPU time of each callable, repeats interleaved.

    As :func:`_common.median_times` (one untimed warm-up call of each, then
    ``repeats`` rounds, a ``pause`` before each call), timing each call both
    by the clock and by the process's CPU time; ``before``, if given, is
    called (untimed) right before each timed call.  Returns two lists of
    seconds, in the order of ``functions``.
    """
    for function in functions:
        function()
    wall = [[] for _ in functions]
    cpu = [[] for _ in functions]
    for _ in range(repeats):
        for function, wall_record, cpu_record in zip(functions, wall, cpu):
            if pause:
                time.sleep(pause)
            if before is not None:
                before()
            start_cpu = time.process_time()
            start = time.perf_counter()
            function()
            wall_record.append(time.perf_counter() - start)
            cpu_record.append(time.process_time() - start_cpu)
    return ([statistics.median(record) for record in wall],
            [statistics.median(record) for record in cpu])


def _warm_memory(n_bytes):
    """Write and free ``n_bytes``, so that the next allocations find warm pages."""
    def warm():
        np.ones(n_bytes // 8)
    return warm


def run(sizes=SIZES, kernels=("nngp", "ntk"), activations=("relu", "erf"),
        depths=(1, 3), dtypes=(np.float64, np.float32), repeats=3, pause=PAUSE_S,
        warm_memory=True):
    """Time every case; returns the table's rows.

    ``weight_variance=2``, ``bias_variance=1`` (NetworkKernel's defaults), both
    free, on standard normal inputs with ``N_FEATURES`` columns.  With
    ``warm_memory``, each timed call starts from warm memory (module
    docstring).
    """
    rng = np.random.default_rng(0)
    rows = []
    for dtype in dtypes:
        for n in sizes:
            X = rng.standard_normal((n, N_FEATURES)).astype(dtype)
            Z = X.copy()
            # The gradient call's output: the matrix and two derivatives.
            before = _warm_memory(3 * n * n * X.itemsize) if warm_memory else None
            for kernel in kernels:
                for activation in activations:
                    for depth in depths:
                        network = NetworkKernel(kernel=kernel, activation=activation,
                                                depth=depth)
                        wall, cpu = median_wall_and_cpu_times(
                            [lambda: X @ Z.T, lambda: network(X),
                             lambda: network(X, eval_gradient=True)],
                            repeats=repeats, pause=pause, before=before)
                        gemm, alone, both = wall
                        rows.append([
                            kernel, activation, depth, np.dtype(dtype).name, n,
                            fmt(gemm * 1e3, 1), fmt(alone * 1e3, 1),
                            fmt(both * 1e3, 1), fmt(alone / gemm), fmt(both / alone),
                            fmt(cpu[2] / cpu[1]),
                            "yes" if both <= TARGET * alone else "NO",
                        ])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="median of this many")
    parser.add_argument("--cold", action="store_true",
                        help="do not warm the memory before each timed call")
    args = parser.parse_args(argv)
    print(machine_summary())
    memory = "cold" if args.cold else "warm"
    print(f"\nd = {N_FEATURES}, median of {args.repeats} interleaved repeats, "
          f"{memory} memory\n")
    rows = run(QUICK_SIZES if args.quick else SIZES, repeats=args.repeats,
               warm_memory=not args.cold)
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
