"""Streamed primal training where the feature matrix would not fit (issue 13).

One fit of ``AdamStarNTKRegressor(kernel="nngp", width=1024,
solver="streamed")`` on N = 10^6 rows of d = 16 float32 features, 20
full-batch ADAM* epochs.  The feature matrix would be ``N x 1025`` float32,
4.1 GB; the streamed trainer recomputes the features of one block of rows at
a time.  Measured in a fresh process (after a small warm-up fit there):

- the peak resident memory that ``fit`` adds (target: under 1.5 GiB);
- ``fit`` time over its epochs, and one epoch (``StreamedTrainer.run_epoch``)
  against the floor of DESIGN 7's kind for the same shapes, in the same run,
  repeats interleaved (median of 3): for each block of rows, ``X_b @ W1``,
  the activation in place and ``H_b^T L_b`` (the block size of the trainer),
  target: the epoch within 3x of it.  The same floor on the whole ``N x
  width`` matrix at once (4 GB, timed once, after the fit's memory was
  measured) is printed next to it;
- the held-out R^2 on 10^4 more rows of the same target.

The data: ``X`` standard normal, ``y = x . beta / sqrt(d) + 0.5 sin(2 x_0)
+ 0.1 noise`` with a fixed random ``beta``, standardised by the estimator
(``normalize_y``).

Run ``python benchmarks/bench_streamed.py`` (about 3 minutes here;
``--quick`` for N = 20000, width 128, a few seconds, writing nothing).
``--blocks`` instead times one epoch against the blocked floor for several
block sizes (N = 10^5, the same network), the measurement behind
``_streamed.BLOCK_MIB``.
"""

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import (
    current_rss,
    fmt,
    machine_summary,
    markdown_table,
    median_times,
    peak_rss,
    reset_peak_rss,
)

FULL = dict(n=1_000_000, d=16, width=1024, epochs=20, n_test=10_000)
QUICK = dict(n=20_000, d=16, width=128, epochs=5, n_test=2_000)
LIMIT_S = 1800
_MIB = 2**20
_RESULT = "RESULT "
HEADERS = ["N", "d", "width", "dtype", "epochs", "block rows", "fit (s)",
           "fit / epoch (s)", "epoch (s)", "floor, blocked (s)", "epoch / floor",
           "floor, whole matrix (s)", "epoch / whole-matrix floor",
           "fit peak (MiB)", "feature matrix (MiB)", "held-out R^2"]


def make_data(n, d, n_test, seed=0):
    """``X`` (float32) and ``y`` for ``n`` training and ``n_test`` held-out rows."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n + n_test, d), dtype=np.float32)
    beta = rng.standard_normal(d)
    y = (X @ beta / np.sqrt(d) + 0.5 * np.sin(2.0 * X[:, 0])
         + 0.1 * rng.standard_normal(n + n_test))
    return X[:n], X[n:], y[:n], y[n:]


def _model(width, epochs):
    from sklearn_adamntk import AdamStarNTKRegressor

    # No held-out rows, tol=0 and a long patience: every one of the epochs
    # runs, on every row.
    return AdamStarNTKRegressor(kernel="nngp", width=width, solver="streamed",
                                max_iter=epochs, early_stopping=False, tol=0.0,
                                n_iter_no_change=epochs, random_state=0)


def _floor(X, W1, L, block_rows, activation):
    """One pass of ``X @ W1``, the activation and ``H^T L``, block by block."""
    G = np.zeros((W1.shape[1], L.shape[1]), dtype=X.dtype)
    for start in range(0, X.shape[0], block_rows):
        H = X[start:start + block_rows] @ W1
        activation(H)
        G += H.T @ L[start:start + block_rows]
    return G


def measure(config):
    """In this (fresh) process: the fit's peak memory and times, epoch vs floor."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import r2_score

    from sklearn_adamntk._optimizer import OptimizerSettings
    from sklearn_adamntk._streamed import FeatureMap, StreamedTrainer

    warnings.simplefilter("ignore", ConvergenceWarning)
    n, d, width, epochs = config["n"], config["d"], config["width"], config["epochs"]
    X, X_test, y, y_test = make_data(n, d, config["n_test"])
    _model(width, 2).fit(X[:2000], y[:2000]).predict(X_test[:100])  # compile, import
    gc.collect()

    measured = reset_peak_rss()
    before = current_rss()
    model = _model(width, epochs)
    start = time.perf_counter()
    model.fit(X, y)
    fit_s = time.perf_counter() - start
    fit_peak = peak_rss() - before if measured else None
    r2 = float(r2_score(y_test, model.predict(X_test)))

    # One more epoch of the same trainer, against the floor on the same shapes.
    features = FeatureMap(model.network_, kernel="nngp", activation="relu",
                          weight_variance=model.weight_variance,
                          bias_variance=model.bias_variance)
    Y = ((y - y.mean()) / y.std()).astype(np.float32)[:, None]
    settings = OptimizerSettings("adam*", learning_rate=model.learning_rate_)
    trainer = StreamedTrainer(X, features, Y, settings, "squared", coef=model.coef_,
                              state=model._model.state)
    block_rows = trainer._block_rows
    W1 = np.ascontiguousarray(model.network_.hidden_weights[0], dtype=np.float32)
    L = Y / np.float32(n)
    everything = [np.arange(n)]

    def relu(H):
        np.maximum(H, 0, out=H)

    epoch_s, floor_s = median_times(
        [lambda: trainer.run_epoch(everything),
         lambda: _floor(X, W1, L, block_rows, relu)], repeats=3)
    start = time.perf_counter()
    _floor(X, W1, L, n, relu)
    whole_s = time.perf_counter() - start
    return {"fit_s": fit_s, "n_iter": model.n_iter_, "solver": model.solver_,
            "fit_peak_bytes": fit_peak, "epoch_s": epoch_s, "floor_s": floor_s,
            "whole_floor_s": whole_s, "block_rows": block_rows, "r2": r2}


BLOCK_SWEEP_MIB = (1, 2, 4, 8, 16, 32, 64)
BLOCK_HEADERS = ["block (MiB)", "block rows", "epoch (s)", "floor, blocked (s)",
                 "epoch / floor", "epoch / best epoch"]


def block_sweep(n=100_000, d=16, width=1024, mibs=BLOCK_SWEEP_MIB, repeats=5):
    """One epoch and its floor for each block size, repeats interleaved."""
    from sklearn_adamntk._optimizer import OptimizerSettings
    from sklearn_adamntk._random_network import draw_network
    from sklearn_adamntk._streamed import FeatureMap, StreamedTrainer

    X, _, y, _ = make_data(n, d, 0)
    Y = ((y - y.mean()) / y.std()).astype(np.float32)[:, None]
    features = FeatureMap(draw_network(d, width=width, depth=1, random_state=0),
                          kernel="nngp", activation="relu", weight_variance=2.0,
                          bias_variance=1.0)
    W1 = np.ascontiguousarray(features.network.hidden_weights[0], dtype=np.float32)
    L = Y / np.float32(n)
    everything = [np.arange(n)]

    def relu(H):
        np.maximum(H, 0, out=H)

    functions, blocks = [], []
    for mib in mibs:
        block_rows = features.block_rows(1, np.float32, mib)
        trainer = StreamedTrainer(X, features, Y, OptimizerSettings("adam*", 1.0),
                                  "squared", block_rows=block_rows)
        functions += [lambda trainer=trainer: trainer.run_epoch(everything),
                      lambda rows=block_rows: _floor(X, W1, L, rows, relu)]
        blocks.append(block_rows)
    times = median_times(functions, repeats=repeats)
    best = min(times[0::2])
    return [[mib, rows, fmt(epoch, 3), fmt(floor, 3), fmt(epoch / floor),
             fmt(epoch / best)]
            for mib, rows, epoch, floor in zip(mibs, blocks, times[0::2], times[1::2])]


def run(config, limit=LIMIT_S, log=print):
    """Measure ``config`` in a fresh process; returns ``(rows, result)``."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child",
               json.dumps(config)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return [[config["n"], None, None, None, f"stopped at {limit} s"]
                + [None] * (len(HEADERS) - 5)], {"timeout": limit}
    lines = [line for line in done.stdout.splitlines() if line.startswith(_RESULT)]
    if not lines:
        raise RuntimeError((done.stderr or done.stdout).strip()[-2000:])
    result = json.loads(lines[-1][len(_RESULT):])
    log(f"  streamed {config}: {result}")
    n, width = config["n"], config["width"]
    features_bytes = n * (width + 1) * 4
    peak = result["fit_peak_bytes"]
    row = [n, config["d"], width, "float32", result["n_iter"], result["block_rows"],
           fmt(result["fit_s"], 1), fmt(result["fit_s"] / result["n_iter"], 2),
           fmt(result["epoch_s"], 2), fmt(result["floor_s"], 2),
           fmt(result["epoch_s"] / result["floor_s"]),
           fmt(result["whole_floor_s"], 2),
           fmt(result["epoch_s"] / result["whole_floor_s"]),
           fmt(None if peak is None else peak / _MIB, 0),
           fmt(features_bytes / _MIB, 0), fmt(result["r2"], 3)]
    return [row], result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--blocks", action="store_true",
                        help="time an epoch for several block sizes instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(_RESULT + json.dumps(measure(json.loads(args.child))), flush=True)
        return
    print(machine_summary())
    if args.blocks:
        n = 20_000 if args.quick else 100_000
        print()
        print(markdown_table(BLOCK_HEADERS, block_sweep(n=n)))
        return
    rows, _ = run(QUICK if args.quick else FULL)
    print()
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
