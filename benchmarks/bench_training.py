"""Cost of one full-batch training epoch against its floor, one ``K @ G``.

DESIGN 7: a full-batch step must stream the Gram matrix once, so its floor is
the time of one ``K @ G`` product (``G`` of shape ``(N, k)``) on the same
matrix, measured in the same run.  For each ``N`` this prints

- ``dual / (K @ G)``: one ADAM* epoch of ``DualTrainer`` (squared loss, full
  batch) divided by the floor (target: within 1.3x);
- ``mini / (K @ G)``: one ADAM* epoch in shuffled mini-batches of 200, which
  also streams the Gram matrix about once;
- the ``EigenTrainer`` epoch time (``O(N k)``) and its ratio to the floor,
  and the one-off eigendecomposition it pays, in units of the floor
  (``eigh / (K @ G)``: the number of epochs after which the eigen solver
  wins), up to N = ``EIGEN_MAX_N``.

Times are medians of interleaved repeats after a warm-up call (which also
compiles, and fills the trainer's ``F = K A`` cache).  The trainers are the
private core the estimators drive: one estimator epoch is one ``run_epoch``.

Run ``python benchmarks/bench_training.py`` (``--quick`` for N = 1000, 2000);
``python benchmarks/run.py`` runs it with the other sections.
"""

import argparse
import time

import numpy as np

from _common import fmt, machine_summary, markdown_table, median_times
from sklearn_adamntk._dual import DualTrainer
from sklearn_adamntk._eigen import EigenTrainer
from sklearn_adamntk._optimizer import OptimizerSettings
from sklearn_adamntk._spectral import eigen_decomposition

SIZES = (2000, 4000, 8000)
QUICK_SIZES = (1000, 2000)
# The eigendecomposition is O(N^3): over a minute at N = 8000 on 2 cores.
EIGEN_MAX_N = 4000
BATCH_SIZE = 200
HEADERS = ["N", "k", "K @ G (ms)", "dual epoch (ms)", "dual / (K @ G)",
           "mini / (K @ G)", "eigen epoch (ms)", "eigen / (K @ G)", "eigh (s)",
           "eigh / (K @ G)"]


def gram_matrix(n_samples, n_features=16, seed=0):
    """A Gaussian-kernel Gram matrix (positive definite) of random inputs,
    and targets."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    sq_norms = np.einsum("ij,ij->i", X, X)
    distances = sq_norms[:, None] + sq_norms[None, :] - 2 * X @ X.T
    K = np.exp(-distances / (2 * n_features))
    y = np.sin(X[:, :1]) + 0.1 * rng.standard_normal((n_samples, 1))
    return K, y


def run(sizes=SIZES, repeats=5, eigen_max_n=EIGEN_MAX_N):
    """Time the epochs at every N (the eigen columns up to ``eigen_max_n``);
    returns the table's rows."""
    settings = OptimizerSettings("adam*", learning_rate=0.01)
    return [_row(n, settings, repeats, n <= eigen_max_n) for n in sizes]


def _row(n, settings, repeats, with_eigen):
    K, y = gram_matrix(n)
    G = np.ones((n, 1))
    full = [np.arange(n)]
    dual = DualTrainer(K, y, settings, "squared")
    floor, t_dual = median_times([lambda: K @ G, lambda: dual.run_epoch(full)],
                                 repeats=repeats)
    # Timed apart: Numba's OpenMP workers spin for a while after a parallel
    # region and would slow the BLAS call timed next to them.
    mini = DualTrainer(K, y, settings, "squared")
    order = np.random.default_rng(1).permutation(n)
    batches = [order[i:i + BATCH_SIZE] for i in range(0, n, BATCH_SIZE)]
    (t_mini,) = median_times([lambda: mini.run_epoch(batches)], repeats=repeats)

    t_eigen = t_eigh = None
    if with_eigen:
        start = time.perf_counter()
        decomposition = eigen_decomposition(K)
        t_eigh = time.perf_counter() - start
        eigen = EigenTrainer(decomposition, K, y, settings)
        (t_eigen,) = median_times([eigen.run_epoch], repeats=4 * repeats)
    return [
        n, 1, fmt(floor * 1e3), fmt(t_dual * 1e3), fmt(t_dual / floor),
        fmt(t_mini / floor),
        fmt(None if t_eigen is None else t_eigen * 1e3, 3),
        fmt(None if t_eigen is None else t_eigen / floor, 4),
        fmt(t_eigh), fmt(None if t_eigh is None else t_eigh / floor, 0),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1000, 2000 only")
    parser.add_argument("--sizes", type=int, nargs="+", help="override the N values")
    parser.add_argument("--repeats", type=int, default=5, help="median of this many")
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    print(machine_summary())
    print(f"\nfloat64, median of {args.repeats} interleaved repeats\n")
    print(markdown_table(HEADERS, run(sizes, repeats=args.repeats)))


if __name__ == "__main__":
    main()
