"""Benchmark of the CUDA backend: Gram matrix and full fit, GPU against CPU and the floor.

Run on a machine with an NVIDIA GPU (``pip install ".[cuda]"``)::

    python benchmarks/bench_cuda.py                 # N doubling up to what fits
    python benchmarks/bench_cuda.py --sizes 4000 16000 --dtype float32

The floor (DESIGN 7) is measured on the card: a device-to-device copy gives
its memory bandwidth, and the floor of a Gram matrix is the time to write its
``N^2`` entries once at that bandwidth; the floor of one full-batch epoch is
the time to read them once.  Every number in a row comes from the same run;
the table (markdown) is what goes into ``benchmarks/RESULTS.md`` with the
card's name.  Without a GPU (or on Numba's simulator) the script says so and
exits.
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

from sklearn_adamntk import AdamStarNTKRegressor, _cuda, _kernels


def _best(fn, repeat):
    """Fastest of ``repeat`` runs (after one warm-up run that compiles)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _copy_bandwidth(cuda, n_bytes):
    """Bytes per second of a device-to-device copy (read + write counted)."""
    src = cuda.device_array(n_bytes // 8, dtype=np.float64)
    dst = cuda.device_array_like(src)

    def copy():
        dst.copy_to_device(src)
        cuda.synchronize()

    return 2 * src.nbytes / _best(copy, 3)


def _data(n, d, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    w = rng.standard_normal(d) / np.sqrt(d)
    y = np.sin(X @ w) + 0.1 * rng.standard_normal(n)
    return X, y


def _fit_time(device, X, y, X_test, y_test, params):
    model = AdamStarNTKRegressor(device=device, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X, y)
        elapsed = time.perf_counter() - start
    return elapsed, model.score(X_test, y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=None,
                        help="training rows N (default: doubling up to what fits)")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cpu-max", type=int, default=16000,
                        help="largest N also timed on the CPU")
    args = parser.parse_args(argv)

    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not _cuda.cuda_available():
        print("No CUDA GPU here (or only Numba's simulator): nothing to benchmark.")
        return 0
    cuda = _cuda._import_cuda()
    dtype = np.dtype(args.dtype)
    card = cuda.get_current_device().name
    card = card.decode() if isinstance(card, bytes) else card
    free = _cuda._free_device_bytes()
    # The Gram matrix plus the trainer's O(N) buffers must fit.
    n_max = int(np.sqrt(0.7 * free / dtype.itemsize))
    sizes = args.sizes or [n for n in (2000, 4000, 8000, 16000, 32000, 64000)
                           if n < n_max] + [n_max]
    bandwidth = _copy_bandwidth(cuda, min(int(0.25 * free), 2**31))
    params = dict(kernel="ntk", depth=args.depth, max_iter=args.epochs, tol=0,
                  solver="dual", learning_rate_init=0.5, random_state=0)
    kernel = dict(kernel="ntk", activation="relu", depth=args.depth,
                  bias_variance=1.0)

    print(f"Card: {card}; copy bandwidth {bandwidth / 1e9:.0f} GB/s; "
          f"d = {args.features}, depth = {args.depth}, {args.dtype}, "
          f"{args.epochs} full-batch epochs\n")
    print("| N | Gram GPU (s) | / floor | CPU / GPU | fit GPU (s) | epoch / floor "
          "| CPU fit / GPU fit | R2 GPU | R2 CPU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        X, y = _data(n, args.features, dtype)
        X_test, y_test = _data(2000, args.features, dtype, seed=1)
        gram_bytes = n * n * dtype.itemsize
        floor = gram_bytes / bandwidth

        def gpu_gram():
            _cuda.kernel_matrix(X, keep_on_device=True, **kernel)
            cuda.synchronize()

        t_gram = _best(gpu_gram, 2)
        t_fit, r2_gpu = _fit_time("cuda", X, y, X_test, y_test, params)
        # One epoch streams K once; the fit also builds K once.
        epoch = max(t_fit - t_gram, 0.0) / args.epochs
        cpu_gram = cpu_fit = "-"
        r2_cpu = "-"
        if n <= args.cpu_max:
            t_cpu = _best(lambda: _kernels.kernel_matrix(X, **kernel), 1)
            cpu_gram = f"{t_cpu / t_gram:.1f}"
            t_cpu_fit, r2 = _fit_time("cpu", X, y, X_test, y_test, params)
            cpu_fit = f"{t_cpu_fit / t_fit:.1f}"
            r2_cpu = f"{r2:.3f}"
        print(f"| {n} | {t_gram:.3f} | {t_gram / floor:.1f} | {cpu_gram} | "
              f"{t_fit:.2f} | {epoch / floor:.1f} | {cpu_fit} | {r2_gpu:.3f} | "
              f"{r2_cpu} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
