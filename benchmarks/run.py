"""The benchmark suite: every table of ``benchmarks/RESULTS.md`` in one run.

Run::

    python benchmarks/run.py                 # the recorded tables (~25 min on 2 cores)
    python benchmarks/run.py --quick         # small sizes, a few minutes
    python benchmarks/run.py --only kernel,fit

Sections (DESIGN 7: every time is a ratio to another time of the same run):

- ``kernel``: Gram matrix time / ``X @ X.T``, and neural-tangents' jitted
  ``kernel_fn`` / ours (neural-tangents is optional: ``pip install ".[bench]"``);
- ``gradient``: ``NetworkKernel`` with its gradient (what a Gaussian process
  asks for) / without;
- ``training``: one full-batch ADAM* epoch / one ``K @ G``;
- ``fit``: fit and predict on ``make_friedman1`` against ``KernelRidge`` and
  ``SVR`` on the same kernel, with held-out R^2 and peak memory, and whether
  ``solver="auto"`` chose the faster solver;
- ``grid``: ``GridSearchCV`` over ADAM* settings against KernelRidge's;
- ``cv``: ``AdamStarNTKRegressorCV`` against KernelRidge's alpha grid;
- ``memory``: peak memory of fit and predict against the Gram matrix (or
  feature matrix) size, up to N = 40000 in float32 and N = 200000 primal;
- ``streamed``: the streamed primal fit on 10^6 rows, width 1024: peak
  memory, and one epoch / its floor (``X @ W1``, activation, ``Phi^T L``);
- ``dask``: one fit on a Dask cluster of 1 and 2 worker processes (streamed
  and dual), against the same fit in this process.

The output is Markdown: paste it into ``benchmarks/RESULTS.md`` with a
reading of each table.
"""

import argparse
import sys
import time

import bench_cv
import bench_dask
import bench_fit
import bench_grid
import bench_kernel_gradient
import bench_kernels
import bench_memory
import bench_streamed
import bench_training
from _common import machine_summary, markdown_table
from _neural_tangents import import_error

SECTIONS = ("kernel", "gradient", "training", "fit", "grid", "cv", "memory",
            "streamed", "dask")


def _kernel(quick, log):
    sizes = bench_kernels.QUICK_SIZES if quick else bench_kernels.SIZES
    rows = bench_kernels.run(sizes, log=log)
    title = "Gram matrix: ReLU NTK, d = 64, median of 3 interleaved repeats"
    missing = import_error()
    if missing is not None:
        title += f" (neural-tangents not installed: {missing}; its columns are empty)"
    return [(title, bench_kernels.HEADERS, rows)]


def _gradient(quick, log):
    sizes = bench_kernel_gradient.QUICK_SIZES if quick else bench_kernel_gradient.SIZES
    rows = bench_kernel_gradient.run(sizes)
    return [("Gram matrix and its gradient: NetworkKernel, both variances free, "
             "d = 64, median of 3 interleaved repeats",
             bench_kernel_gradient.HEADERS, rows)]


def _training(quick, log):
    sizes = bench_training.QUICK_SIZES if quick else bench_training.SIZES
    rows = bench_training.run(sizes)
    return [("Training epoch: float64, k = 1, median of 5 interleaved repeats",
             bench_training.HEADERS, rows)]


def _fit(quick, log):
    sizes = bench_fit.QUICK_SIZES if quick else bench_fit.SIZES
    limit = 120 if quick else bench_fit.FIT_LIMIT_S
    rows, auto_rows, _ = bench_fit.run(sizes, limit=limit, log=log)
    return [(f"Fit and predict: make_friedman1, N train + N/4 held out, float64, "
             f"fit limit {limit:g} s", bench_fit.HEADERS, rows),
            ('solver="auto" against the measured dual and eigen fits',
             bench_fit.AUTO_HEADERS, auto_rows)]


def _grid(quick, log):
    n_train = bench_grid.QUICK_N_TRAIN if quick else bench_grid.N_TRAIN
    rows, _ = bench_grid.run(n_train, log=log)
    return [(f"GridSearchCV(cv={bench_grid.CV}): N = {n_train} training rows, "
             f"{n_train // 4} held out", bench_grid.HEADERS, rows)]


def _cv(quick, log):
    n_train = bench_cv.QUICK_N_TRAIN if quick else bench_cv.N_TRAIN
    rows, _ = bench_cv.run(n_train, log=log)
    return [(f"Learning rate and epochs cross-validated: N = {n_train} training rows, "
             f"{n_train // 4} held out", bench_cv.HEADERS, rows)]


def _memory(quick, log):
    rows, _ = bench_memory.run(bench_memory.cases(quick), log=log)
    return [("Peak memory added by fit and predict (resident set, fresh process "
             "per row), max_iter=5", bench_memory.HEADERS, rows)]


def _streamed(quick, log):
    config = bench_streamed.QUICK if quick else bench_streamed.FULL
    rows, _ = bench_streamed.run(config, log=log)
    return [(f"Streamed primal fit: N = {config['n']}, d = {config['d']}, "
             f"width = {config['width']} (kernel='nngp'), float32, "
             f"{config['epochs']} full-batch ADAM* epochs, fresh process",
             bench_streamed.HEADERS, rows)]


def _dask(quick, log):
    cases = bench_dask.QUICK if quick else bench_dask.FULL
    return [("One fit on a Dask LocalCluster (worker processes of 1 thread) and "
             "in this process, same rows", bench_dask.HEADERS,
             bench_dask.run(cases, log=log))]


RUNNERS = {"kernel": _kernel, "gradient": _gradient, "training": _training,
           "fit": _fit, "grid": _grid, "cv": _cv, "memory": _memory,
           "streamed": _streamed, "dask": _dask}


def _sections(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown)}; "
            f"choose from {', '.join(SECTIONS)}")
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small sizes: a smoke run of every section")
    parser.add_argument("--only", type=_sections, default=list(SECTIONS),
                        help=f"comma-separated sections, from {','.join(SECTIONS)}")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the tables, not each measurement")
    args = parser.parse_args(argv)

    def log(line):
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    if args.only != list(SECTIONS):
        command += " --only " + ",".join(args.only)
    print(f"Command: `{command}`\n")
    print(f"Machine: {machine_summary()}\n", flush=True)
    start = time.perf_counter()
    for name in args.only:
        section_start = time.perf_counter()
        log(f"[{name}]")
        for title, headers, rows in RUNNERS[name](args.quick, log):
            print(f"### {title}\n")
            print(markdown_table(headers, rows) + "\n", flush=True)
        print(f"({name}: {time.perf_counter() - section_start:.0f} s)\n", flush=True)
    print(f"Total: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
