"""What the fork-safe threading layer costs: ``workqueue`` against ``omp``.

The package asks Numba for a fork-safe threading layer (README,
"Reliability"): TBB where it is installed, else ``workqueue``.  This script
times, in one fresh process per layer and in alternating rounds, a depth-3
NTK Gram matrix, a full-batch and a mini-batch dual fit, and four fits side
by side on joblib's threading backend (which ``workqueue`` runs one at a
time), and prints the medians and their ratio.

Run ``python benchmarks/bench_threading_layer.py`` (``--quick`` for small
sizes).  It prints and writes nothing.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from _common import machine_summary, markdown_table

LAYERS = ("omp", "workqueue")

_CHILD = """
import json, sys, time, warnings
import joblib, numba, numpy as np
warnings.simplefilter("ignore")
from sklearn_adamntk import AdamStarNTKRegressor, network_kernel

n_gram, n_fit, repeats = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.standard_normal((n_gram, 20))
y = X[:, 0] + np.sin(X[:, 1])
Xf, yf = X[:n_fit], y[:n_fit]
network_kernel(X[:10], depth=3)  # compile
AdamStarNTKRegressor(max_iter=2, batch_size=16).fit(Xf[:50], yf[:50])


def full():
    AdamStarNTKRegressor(max_iter=100, solver="dual", tol=0).fit(Xf, yf)


def minibatch():
    AdamStarNTKRegressor(max_iter=10, solver="dual", batch_size=64, tol=0).fit(Xf, yf)


def threaded():
    model = AdamStarNTKRegressor(max_iter=100, solver="dual", tol=0, n_jobs=1)
    with joblib.parallel_config(backend="threading"):
        joblib.Parallel(n_jobs=2)(joblib.delayed(model.fit)(Xf[: n_fit // 2],
                                                            yf[: n_fit // 2])
                                  for _ in range(4))


tasks = {"gram": lambda: network_kernel(X, depth=3), "full": full,
         "minibatch": minibatch, "threaded": threaded}
times = {}
for name, task in tasks.items():
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        samples.append(time.perf_counter() - start)
    times[name] = samples
print(json.dumps({"layer": numba.threading_layer(), "times": times}))
"""

ROWS = [
    ("gram", "depth-3 NTK Gram matrix, {n_gram} rows"),
    ("full", "dual fit, {n_fit} rows, 100 full-batch epochs"),
    ("minibatch", "dual fit, {n_fit} rows, 10 epochs of batches of 64"),
    ("threaded", "4 fits of {half} rows, 2 joblib threads, n_jobs=1"),
]


def measure(layer, sizes, repeats):
    """Times of every task in a fresh process on ``layer``."""
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps([*sizes, repeats])],
        env=env, capture_output=True, text=True, check=True, timeout=1800,
    )
    return json.loads(result.stdout.splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of one process per layer")
    args = parser.parse_args(argv)
    n_gram, n_fit = (800, 400) if args.quick else (4000, 2000)
    rounds = 1 if args.quick else args.rounds
    samples = {layer: {name: [] for name, _ in ROWS} for layer in LAYERS}
    for _ in range(rounds):
        for layer in LAYERS:
            result = measure(layer, (n_gram, n_fit), 1 if args.quick else 3)
            assert result["layer"] == layer, result["layer"]
            for name, times in result["times"].items():
                samples[layer][name].extend(times)
    rows = []
    for name, label in ROWS:
        omp, workqueue = (float(np.median(samples[layer][name])) for layer in LAYERS)
        rows.append([label.format(n_gram=n_gram, n_fit=n_fit, half=n_fit // 2),
                     f"{omp:.3f}", f"{workqueue:.3f}", f"{workqueue / omp:.2f}"])
    print(markdown_table(["task", "omp (s)", "workqueue (s)", "workqueue / omp"],
                         rows))
    print(f"\n(medians of {rounds} alternating round(s); {machine_summary()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
