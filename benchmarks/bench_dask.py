"""One fit on a Dask cluster: 1 against 2 worker processes, same data (issue 13).

Two fits of ``AdamStarNTKRegressor`` on a Dask array whose chunks are made on
the workers (``dask.array.random``, so the rows never pass through the
client), each on a fresh ``LocalCluster`` of 1 and then 2 worker processes of
1 thread (``n_jobs=1``), next to the same fit in this process on the same
rows (computed here):

- ``streamed``: ``width=512, kernel="nngp"``, float32, each epoch one
  map-reduce over the chunks (features recomputed there);
- ``dual``: infinite width, float64, the Gram matrix held in row blocks on
  the workers, each epoch one distributed ``K @ L``.  With 2 workers each
  worker's ``memory_limit`` is below the whole Gram matrix, so the fit runs
  only because each worker holds its half.

Each cluster first runs a tiny fit on every worker (compilation, imports).
The four ways (in this process with one thread, Numba's and BLAS's both, or
all of them; on 1 worker; on 2 workers) run in turn, twice, and each keeps
its faster round: on a shared machine the slower one measures the other
jobs.  Columns: fit time (with the Gram matrix or the first chunks'
features), its ratio to the in-process fit on one thread, the CPU time the
fit used (this process's, or the workers' summed: unlike the wall time, it
does not depend on how much of the cores other jobs leave), the largest
resident memory of any worker during the fit (sampled every 0.2 s,
including the worker's own baseline), and the largest relative difference
of the predictions from the in-process fit.

Run ``python benchmarks/bench_dask.py`` (about 8 minutes here; ``--quick``
for small sizes, under a minute, writing nothing).
"""

import argparse
import threading
import time
import warnings

import numpy as np

from _common import fmt, machine_summary, markdown_table

FULL = {
    "streamed": dict(n=400_000, d=16, chunk=50_000, epochs=10, dtype="float32",
                     options=dict(kernel="nngp", width=512)),
    "dual": dict(n=20_000, d=16, chunk=2_500, epochs=10, dtype="float64",
                 options=dict(), memory_limit={1: "6GiB", 2: "2.75GiB"}),
}
QUICK = {
    "streamed": dict(n=20_000, d=8, chunk=5_000, epochs=4, dtype="float32",
                     options=dict(kernel="nngp", width=64)),
    "dual": dict(n=1_500, d=8, chunk=500, epochs=4, dtype="float64", options=dict()),
}
_MIB = 2**20
HEADERS = ["fit", "N", "dtype", "where", "memory_limit per worker", "fit (s)",
           "time / in-process 1 thread", "CPU time (s)",
           "largest worker memory (MiB)", "Gram matrix (MiB)",
           "prediction difference"]


def _model(case, n_jobs):
    from sklearn_adamntk import AdamStarNTKRegressor

    # On a cluster "auto" stops on the training loss; the in-process fit it is
    # compared with must do the same, over every epoch.
    return AdamStarNTKRegressor(max_iter=case["epochs"], early_stopping=False,
                                tol=0.0, n_iter_no_change=case["epochs"],
                                random_state=0, n_jobs=n_jobs, **case["options"])


def _dask_data(case):
    """The rows and targets as Dask arrays, generated chunk by chunk where they run."""
    import dask.array as da

    rng = da.random.RandomState(0)
    X = rng.standard_normal((case["n"], case["d"]), chunks=(case["chunk"], -1))
    X = X.astype(case["dtype"])
    y = da.sin(2.0 * X[:, 0]) + X[:, 1:].sum(axis=1) / np.sqrt(case["d"])
    return X, y


def _warm_up(options, dtype):
    """A tiny fit of the same model and solver in this (worker) process."""
    from sklearn_adamntk import AdamStarNTKRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(dtype)
    # 64 rows would take the dual solver; the fit measured streams.
    solver = "streamed" if "width" in options else "dual"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        AdamStarNTKRegressor(max_iter=2, n_jobs=1, solver=solver, **options).fit(
            X, X[:, 0])


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


def _cpu_seconds():
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


class _MemorySampler:
    """The largest resident memory of each worker, sampled in a thread."""

    def __init__(self, client, every=0.2):
        self.client, self.every = client, every
        self.peak = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for worker, rss in self.client.run(_rss).items():
                self.peak[worker] = max(self.peak.get(worker, 0), rss)
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _on_cluster(case, n_workers, X_test, reference, processes=True):
    from distributed import Client, LocalCluster

    limit = case.get("memory_limit", {}).get(n_workers, "auto")
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=processes,
                      memory_limit=limit, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        client.run(_warm_up, case["options"], case["dtype"])
        X, y = _dask_data(case)
        model = _model(case, n_jobs=1)
        cpu_before = client.run(_cpu_seconds)
        with _MemorySampler(client) as memory, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model.fit(X, y)
            seconds = time.perf_counter() - start
        cpu = sum(client.run(_cpu_seconds).values()) - sum(cpu_before.values())
        limits = {worker["memory_limit"]
                  for worker in client.scheduler_info()["workers"].values()}
    difference = np.max(np.abs(model.predict(X_test) - reference)) / np.max(
        np.abs(reference))
    return seconds, max(memory.peak.values()), limits.pop(), difference, cpu


def _in_process(case, name, X, y, n_jobs):
    """The same fit in this process; ``n_jobs=1`` also holds BLAS to one thread."""
    from threadpoolctl import threadpool_limits

    local = _model(case, n_jobs).set_params(
        solver="streamed" if name == "streamed" else "dual")
    with threadpool_limits(limits=1 if n_jobs == 1 else None, user_api="blas"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start, cpu = time.perf_counter(), time.process_time()
        local.fit(X, y)
        return time.perf_counter() - start, time.process_time() - cpu, local


def run(cases, log=print, processes=True, rounds=2):
    """Every fit of ``cases`` in this process and on 1 and 2 workers; table rows.

    ``processes=False`` (threaded workers) is for the smoke test only.
    """
    import dask

    rows = []
    for name, case in cases.items():
        X, y = dask.compute(*_dask_data(case), scheduler="threads")
        X_test = X[: min(2000, case["n"])]
        _in_process(dict(case, epochs=2), name, X[:200], y[:200], 1)  # compile
        local, cluster, times, cpu = {}, {}, {}, {}
        for _ in range(rounds):
            for n_jobs in (1, None):
                seconds, used, local[n_jobs] = _in_process(case, name, X, y, n_jobs)
                if seconds < times.get(n_jobs, np.inf):
                    times[n_jobs], cpu[n_jobs] = seconds, used
            reference = local[1].predict(X_test)
            for n_workers in (1, 2):
                result = _on_cluster(case, n_workers, X_test, reference, processes)
                log(f"  dask {name} {n_workers} worker(s): {result[0]:.1f} s, peak "
                    f"{result[1] / _MIB:.0f} MiB, limit {result[2]}, "
                    f"diff {result[3]:.1e}, cpu {result[4]:.1f} s")
                if n_workers not in cluster or result[0] < cluster[n_workers][0]:
                    cluster[n_workers] = result
        gram = case["n"] ** 2 * np.dtype(case["dtype"]).itemsize if name == "dual" \
            else None
        gram_mib = fmt(None if gram is None else gram / _MIB, 0)
        base = [name, case["n"], case["dtype"]]
        for n_jobs, label in ((1, "this process, 1 thread"),
                              (None, "this process, all threads")):
            rows.append(base + [label, None, fmt(times[n_jobs], 1),
                                fmt(times[n_jobs] / times[1]), fmt(cpu[n_jobs], 1),
                                None, gram_mib, None])
        for n_workers, result in sorted(cluster.items()):
            seconds, peak, limit, difference, used = result
            rows.append(base + [
                f"Dask, {n_workers} worker{'s' if n_workers > 1 else ''}",
                fmt(limit / _MIB, 0) + " MiB", fmt(seconds, 1),
                fmt(seconds / times[1]), fmt(used, 1), fmt(peak / _MIB, 0),
                gram_mib, f"{difference:.1e}",
            ])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args(argv)
    print(machine_summary())
    rows = run(QUICK if args.quick else FULL)
    print()
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
