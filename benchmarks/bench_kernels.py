"""Gram matrix speed: ``network_kernel(X)`` against its floor ``X @ X.T``.

DESIGN 7: a Gram matrix is judged by the ratio of its time to that of the
BLAS product ``X @ X.T`` for the same shapes, both measured in the same run
(best of ``--repeats``, interleaved, so that load on a shared machine hits
both alike).  The table also gives the time of the fused elementwise pass
alone (on a ready product, through the private core), to show where the time
goes: what is left of the total is the product.  ``X @ Z.T`` (``Z`` a copy
of ``X``) is the same product through gemm, without NumPy's syrk shortcut and
its single-threaded symmetrisation, which make ``X @ X.T`` slow at large N.

Run::

    python benchmarks/bench_kernels.py            # the committed table
    python benchmarks/bench_kernels.py --quick    # a smoke run

and keep the printed table in ``benchmarks/RESULTS.md``.
"""

import argparse
import os
import platform
import time

import numba
import numpy as np

from sklearn_adamntk import _kernels
from sklearn_adamntk._pairwise import network_kernel

N_FEATURES = 64
# OpenBLAS's worker threads spin for a while after a call; a pause between
# timed calls keeps one measurement from slowing down the next.
PAUSE_S = 0.3


def _best_time(function, repeats):
    times = []
    for _ in range(repeats):
        time.sleep(PAUSE_S)
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def _fused_pass(X, params):
    """A callable running only the fused elementwise pass on a ready product."""
    kernel, activation, depth = params["kernel"], params["activation"], params["depth"]
    code, scale, sw2, sb2 = _kernels._network_args(X, kernel, activation, 2.0, 0.0)
    tables, sigma, theta = _kernels._tables(X, scale, sw2, sb2, depth, code, 0)
    coef = _kernels._coefficients(X.dtype, scale, sw2, sb2)
    codes = (depth, code, 0, kernel == "ntk")
    diag = theta if kernel == "ntk" else sigma
    product = X @ X.T
    out = np.empty_like(product)

    def run():
        out[...] = product
        _kernels._fused_lower(out, 0, X.shape[0], tables, diag, coef, codes)

    def copy_only():
        out[...] = product

    return run, copy_only


def _row(X, params, repeats):
    floor, gemm, kernel, fused, copy = [], [], [], [], []
    run_fused, copy_only = _fused_pass(X, params)
    Z = X.copy()
    for _ in range(repeats):
        floor.append(_best_time(lambda: X @ X.T, 1))
        gemm.append(_best_time(lambda: X @ Z.T, 1))
        kernel.append(_best_time(lambda: network_kernel(X, **params), 1))
        fused.append(_best_time(run_fused, 1))
        copy.append(_best_time(copy_only, 1))
    fused = max(min(fused) - min(copy), 0.0)
    return min(floor), min(gemm), min(kernel), fused


def _machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or model
    return (f"{os.cpu_count()} CPUs ({model}), numpy {np.__version__}, "
            f"numba {numba.__version__}, {numba.get_num_threads()} Numba threads")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many")
    args = parser.parse_args(argv)
    sizes = (1000, 2000) if args.quick else (2000, 4000, 8000)
    erf_size = sizes[-2]
    rng = np.random.default_rng(0)

    # Compile (or load from the cache) every specialisation before timing.
    for dtype in (np.float64, np.float32):
        warm = rng.standard_normal((300, N_FEATURES)).astype(dtype)
        for activation in ("relu", "erf"):
            network_kernel(warm, activation=activation)
        _fused_pass(warm, dict(kernel="ntk", activation="relu", depth=1))[0]()
        _fused_pass(warm, dict(kernel="ntk", activation="erf", depth=1))[0]()

    cases = []
    for dtype in (np.float64, np.float32):
        for depth in (1, 3):
            for n in sizes:
                cases.append((dtype, dict(kernel="ntk", activation="relu", depth=depth), n))
        cases.append((dtype, dict(kernel="ntk", activation="erf", depth=3), erf_size))

    print(f"Machine: {_machine()}")
    print(f"d = {N_FEATURES}, best of {args.repeats}, symmetric K(X, X)\n")
    print("| kernel | depth | dtype | N | X @ X.T (ms) | X @ Z.T (ms) "
          "| network_kernel (ms) | ratio to X @ X.T | ratio to X @ Z.T "
          "| fused pass (ms) | product + rest (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype, params, n in cases:
        X = rng.standard_normal((n, N_FEATURES)).astype(dtype)
        floor, gemm, total, fused = _row(X, params, args.repeats)
        name = f"{params['activation']} {params['kernel']}"
        print(f"| {name} | {params['depth']} | {np.dtype(dtype).name} | {n} "
              f"| {floor * 1e3:.1f} | {gemm * 1e3:.1f} | {total * 1e3:.1f} "
              f"| {total / floor:.2f} | {total / gemm:.2f} | {fused * 1e3:.1f} "
              f"| {max(total - fused, 0.0) * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
