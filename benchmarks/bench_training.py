"""Cost of one full-batch training epoch against its floor, one ``K @ G``.

DESIGN 7: a full-batch step must stream the Gram matrix once, so its floor is
the time of one ``K @ G`` product (``G`` of shape ``(N, k)``) on the same
matrix, measured in the same run.  For each ``N`` this script prints

- ``dual / (K @ G)``: one ADAM* epoch of ``DualTrainer`` (squared loss, full
  batch) divided by the floor (target: within 1.3x);
- ``mini / (K @ G)``: one ADAM* epoch in mini-batches of 200 (shuffled), which
  also streams the Gram matrix about once;
- the ``EigenTrainer`` epoch time (``O(N k)``) and its ratio to the floor,
  and the one-off ``eigh`` it pays, in units of the floor (``eigh/(K@G)``:
  the number of epochs after which the eigen solver wins).

Times are the best of 5 repeats (``--repeats``), interleaved with those of
the floor so that both see the same machine load.
Run ``python benchmarks/bench_training.py`` (``--quick`` for N = 1000, 2000).
"""

import argparse
import os
import platform
import time

import numba
import numpy as np

from sklearn_adamntk._optimizers import (
    DualTrainer,
    EigenTrainer,
    OptimizerSettings,
    eigen_decomposition,
)


def best_times(functions, repeats=5):
    """Best time of each function, the repeats interleaved so that both see
    the same machine load (the measurement that makes the ratio fair)."""
    best = [np.inf] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def gram_matrix(n_samples, n_features=16, seed=0):
    """A Gaussian-kernel Gram matrix (positive definite) of random inputs."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    sq_norms = np.einsum("ij,ij->i", X, X)
    distances = sq_norms[:, None] + sq_norms[None, :] - 2 * X @ X.T
    K = np.exp(-distances / (2 * n_features))
    y = np.sin(X[:, :1]) + 0.1 * rng.standard_normal((n_samples, 1))
    return K, y


def cpu_model():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1000, 2000 only")
    parser.add_argument("--sizes", type=int, nargs="+", help="override the N values")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many")
    args = parser.parse_args()
    sizes = [1000, 2000] if args.quick else [2000, 4000, 8000]
    sizes = args.sizes or sizes
    settings = OptimizerSettings("adam*", learning_rate=0.01)

    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; numpy {np.__version__}, "
          f"numba {numba.__version__}, numba threads {numba.get_num_threads()}")
    print()
    print("| N | k | K @ G (ms) | dual epoch (ms) | dual / (K @ G) | mini / (K @ G) "
          "| eigen epoch (ms) | eigen / (K @ G) | eigh (s) | eigh / (K @ G) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        K, y = gram_matrix(n)
        G = np.ones((n, 1))
        dual = DualTrainer(K, y, settings, "squared")
        full = [np.arange(n)]
        dual.run_epoch(full)  # compile, and fill the F = K A cache
        mini = DualTrainer(K, y, settings, "squared")
        order = np.random.default_rng(1).permutation(n)
        batches = [order[i:i + 200] for i in range(0, n, 200)]
        mini.run_epoch(batches)
        floor, t_dual = best_times([lambda: K @ G, lambda: dual.run_epoch(full)],
                                   repeats=args.repeats)
        # Timed apart: Numba's OpenMP workers spin for a while after a
        # parallel region and would slow the BLAS call timed next to them.
        (t_mini,) = best_times([lambda: mini.run_epoch(batches)], repeats=args.repeats)

        start = time.perf_counter()
        decomposition = eigen_decomposition(K)
        t_eigh = time.perf_counter() - start
        eigen = EigenTrainer(decomposition, K, y, settings)
        eigen.run_epoch()
        (t_eigen,) = best_times([eigen.run_epoch], repeats=4 * args.repeats)

        print(f"| {n} | 1 | {floor * 1e3:.2f} | {t_dual * 1e3:.2f} "
              f"| {t_dual / floor:.2f} | {t_mini / floor:.2f} "
              f"| {t_eigen * 1e3:.3f} | {t_eigen / floor:.4f} | {t_eigh:.2f} "
              f"| {t_eigh / floor:.0f} |", flush=True)
        del K, dual, mini, eigen, decomposition


if __name__ == "__main__":
    main()
