"""Scale-out on Dask: model selection through joblib's Dask backend, and
prediction over the chunks of a Dask array, on threaded and process clusters.

The threaded and the process cluster (2 workers of 1 thread each) are
started once for the module; the workqueue check starts its own in a fresh
interpreter.
"""

import os
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate

from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor

distributed = pytest.importorskip(
    "distributed", reason="the dask extra (dask[array,distributed]) is not installed"
)
da = pytest.importorskip(
    "dask.array", reason="the dask extra (dask[array,distributed]) is not installed"
)

GRID = {"beta_1": [0.8, 0.9], "learning_rate_init": [0.1, 1.0]}

# Few epochs on purpose: the tests compare runs, not converged models.
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)


def _cluster(processes):
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=processes,
        # Any free port: two clusters are up at once in this module.
        dashboard_address=":0",
    )


@pytest.fixture(scope="module")
def thread_client():
    with _cluster(processes=False) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def process_client():
    with _cluster(processes=True) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(params=["threads", "processes"])
def client(request):
    """Each test that takes ``client`` runs on both clusters."""
    name = {"threads": "thread_client", "processes": "process_client"}[request.param]
    return request.getfixturevalue(name)


@pytest.fixture(scope="module")
def regression():
    return make_regression(n_samples=60, n_features=4, noise=5.0, random_state=0)


@pytest.fixture(scope="module")
def classification():
    return make_classification(
        n_samples=60, n_features=4, n_informative=3, n_redundant=0, n_classes=3,
        random_state=0,
    )


def _on_dask(client, run):
    """``run()`` under joblib's Dask backend, and how many tasks the cluster ran."""
    with client.as_current(), distributed.get_task_stream(client) as stream:
        with joblib.parallel_config(backend="dask"):
            result = run()
    return result, len(stream.data)


def test_grid_search_on_dask_matches_plain_joblib(client, regression):
    X, y = regression

    def search(n_jobs):
        model = AdamStarNTKRegressor(max_iter=20, n_jobs=1)
        return GridSearchCV(model, GRID, cv=3, n_jobs=n_jobs).fit(X, y)

    local = search(n_jobs=None)
    remote, n_tasks = _on_dask(client, lambda: search(n_jobs=-1))

    assert n_tasks > 0, "the search did not run on the Dask cluster"
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
        rtol=1e-10,
    )
    np.testing.assert_allclose(remote.predict(X), local.predict(X), rtol=1e-10)


def test_cross_validate_on_dask_returns_working_models(client, classification):
    X, y = classification
    cv = KFold(3, shuffle=True, random_state=0)

    def run():
        model = AdamStarNTKClassifier(max_iter=20, n_jobs=1)
        return cross_validate(model, X, y, cv=cv, n_jobs=-1, return_estimator=True)

    local = run()
    remote, n_tasks = _on_dask(client, run)

    assert n_tasks > 0, "cross_validate did not run on the Dask cluster"
    np.testing.assert_allclose(remote["test_score"], local["test_score"], rtol=1e-10)
    # The fitted models came back from the workers (pickled, with processes)
    # and predict like the ones fitted here.
    for theirs, ours in zip(remote["estimator"], local["estimator"]):
        np.testing.assert_allclose(
            theirs.predict_proba(X), ours.predict_proba(X), rtol=1e-10, atol=1e-12
        )


def test_worker_process_numba_threads_follow_n_jobs(process_client):
    # Defined here, not at module level, so that it is pickled by value: the
    # worker processes cannot import this test module.
    def numba_in_worker(n_jobs):
        import os

        import numba

        from sklearn_adamntk._backend import numba_threads

        before = numba.get_num_threads()
        with numba_threads(n_jobs):
            inside = numba.get_num_threads()
        return {
            "pid": os.getpid(),
            "inside": inside,
            "restored": numba.get_num_threads() == before,
            "available": numba.config.NUMBA_NUM_THREADS,
        }

    workers = list(process_client.scheduler_info()["workers"])
    assert len(workers) == 2
    for worker in workers:
        for n_jobs in [1, None, -1]:
            report = process_client.submit(
                numba_in_worker, n_jobs, workers=[worker], pure=False
            ).result()
            assert report["pid"] != os.getpid()
            assert report["restored"]
            expected = 1 if n_jobs == 1 else report["available"]
            assert report["inside"] == expected


def test_fitted_model_pickles_back_from_a_worker_process(process_client, regression):
    X, y = regression
    model = AdamStarNTKRegressor(max_iter=20, n_jobs=1)
    remote = process_client.submit(model.fit, X, y, pure=False).result()
    local = AdamStarNTKRegressor(max_iter=20, n_jobs=1).fit(X, y)
    np.testing.assert_allclose(remote.dual_coef_, local.dual_coef_, rtol=1e-10)
    np.testing.assert_allclose(remote.predict(X), local.predict(X), rtol=1e-10)


def test_predict_maps_over_dask_array_chunks(client, classification):
    X, y = classification
    model = AdamStarNTKClassifier(max_iter=20, n_jobs=1).fit(X, y)
    X_dask = da.from_array(X, chunks=(16, -1))

    # The pattern README documents: one predict call per block of rows.
    labels = X_dask.map_blocks(model.predict, dtype=y.dtype, drop_axis=1)
    proba = X_dask.map_blocks(
        model.predict_proba,
        dtype=np.float64,
        chunks=(X_dask.chunks[0], (len(model.classes_),)),
    )
    with distributed.get_task_stream(client) as stream:
        labels, proba = client.compute([labels, proba], sync=True)

    assert len(stream.data) >= X_dask.numblocks[0]
    np.testing.assert_array_equal(labels, model.predict(X))
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-10, atol=1e-12)


# The layer is fixed at Numba's first parallel launch, hence a fresh process.
_WORKQUEUE_SCRIPT = textwrap.dedent(
    """
    import joblib
    import numba
    from distributed import Client, LocalCluster
    from sklearn.datasets import make_regression
    from sklearn.model_selection import GridSearchCV
    from sklearn_adamntk import AdamStarNTKRegressor

    X, y = make_regression(n_samples=120, n_features=4, random_state=0)
    grid = {"beta_1": [0.8, 0.9], "learning_rate_init": [0.1, 0.3, 1.0]}
    model = AdamStarNTKRegressor(max_iter=30, n_jobs=1)
    local = GridSearchCV(model, grid, cv=3).fit(X, y)
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster):
        with joblib.parallel_config(backend="dask"):
            remote = GridSearchCV(model, grid, cv=3, n_jobs=-1).fit(X, y)
    assert remote.best_params_ == local.best_params_
    print(numba.threading_layer())
    """
)


def test_threaded_workers_do_not_abort_under_workqueue_layer():
    # Numba's workqueue layer aborts the process when two threads launch
    # parallel regions at once (without _backend's lock this script dies
    # with SIGABRT); _backend serialises the launches under that layer.
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    result = subprocess.run(
        [sys.executable, "-c", _WORKQUEUE_SCRIPT],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == "workqueue"
