"""The package in hostile surroundings: forks, read-only installs, threads, pickles.

Most checks run a script in a fresh Python process, because what they test is
fixed once per process: Numba's threading layer is chosen at the first
parallel call, and the decision to cache compiled code on disk at import.
"""

import os
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from sklearn.datasets import make_regression

import sklearn_adamntk
from sklearn_adamntk import AdamStarNTKRegressor, _jit

PACKAGE_DIR = os.path.dirname(sklearn_adamntk.__file__)
ROOT = os.path.dirname(PACKAGE_DIR)

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


def _run(script, *args, env=None, timeout=240, cwd=None):
    """Run ``script`` in a fresh interpreter; a hang is a failure, not a wait."""
    environment = dict(os.environ, PYTHONWARNINGS="ignore")
    environment.pop("NUMBA_THREADING_LAYER", None)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=environment, capture_output=True, text=True, timeout=timeout,
        cwd=cwd or ROOT,
    )


# --------------------------------------------------------------------------
# fork: a process that has fitted can fork children that use the package
# --------------------------------------------------------------------------

_FORK_SCRIPT = """
import multiprocessing, os, sys
import joblib, numba, numpy as np
from sklearn.datasets import make_regression
from sklearn_adamntk import AdamStarNTKRegressor

X, y = make_regression(n_samples=80, n_features=4, random_state=0)
model = AdamStarNTKRegressor(max_iter=20, random_state=0).fit(X, y)  # threads start
expected = model.predict(X)

def refit_and_predict(seed):
    refit = AdamStarNTKRegressor(max_iter=20, random_state=0).fit(X, y)
    return refit.predict(X), model.predict(X)

def same(results):
    return all(np.array_equal(a, expected) and np.array_equal(b, expected)
               for a, b in results)

how = sys.argv[1]
if how == "os.fork":
    pid = os.fork()
    if pid == 0:
        os._exit(0 if same([refit_and_predict(0)]) else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
elif how == "multiprocessing":
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert same(pool.map(refit_and_predict, range(3)))
elif how == "joblib":
    parallel = joblib.Parallel(n_jobs=2, backend="multiprocessing")
    assert same(parallel(joblib.delayed(refit_and_predict)(s) for s in range(3)))
print(numba.threading_layer())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing", "joblib"])
def test_a_fitted_process_can_fork_children_that_fit_and_predict(how):
    result = _run(_FORK_SCRIPT, how, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    # Numba's "forksafe" choice on a machine without TBB.
    assert result.stdout.split()[-1] in ("workqueue", "tbb")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GNU OpenMP")
def test_negative_control_gnu_openmp_kills_the_forked_child():
    # The user's explicit choice is respected, and shows what the default
    # avoids: the child dies as soon as it runs a parallel region.
    try:
        import numba.np.ufunc.omppool  # noqa: F401
    except ImportError:
        pytest.skip("Numba's OpenMP layer is not available")
    result = _run(_FORK_SCRIPT, "os.fork", env={"NUMBA_THREADING_LAYER": "omp"})
    assert result.returncode != 0
    assert "fork() called from a process already using GNU OpenMP" in result.stderr


def test_the_package_asks_for_a_fork_safe_layer_unless_told_otherwise():
    import numba

    assert _jit.THREADING_LAYER == "forksafe"
    script = """
    import numba, numpy as np
    from sklearn_adamntk import network_kernel
    network_kernel(np.ones((3, 2)))
    print(numba.threading_layer())
    """
    assert _run(script).stdout.split()[-1] in ("workqueue", "tbb")
    told = _run(script, env={"NUMBA_THREADING_LAYER": "workqueue"})
    assert told.stdout.split()[-1] == "workqueue", told.stderr[-2000:]
    # In this process too, unless the environment chose a layer.
    if not os.environ.get("NUMBA_THREADING_LAYER"):
        assert numba.config.THREADING_LAYER == "forksafe"


# --------------------------------------------------------------------------
# A read-only install with no writable cache directory
# --------------------------------------------------------------------------


def _read_only_copy(tmp_path):
    """The package copied where nothing can be written, even by root.

    File modes alone do not stop root, so every cache location Numba tries is
    made impossible to create: ``__pycache__`` is a plain file, and HOME,
    XDG_CACHE_HOME and NUMBA_CACHE_DIR lie below a plain file.
    """
    site = tmp_path / "site"
    shutil.copytree(PACKAGE_DIR, site / "sklearn_adamntk",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (site / "sklearn_adamntk" / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for path in sorted(site.rglob("*"), reverse=True) + [site]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    env = {"PYTHONPATH": str(site), "HOME": str(blocker / "home"),
           "NUMBA_CACHE_DIR": str(blocker / "cache"),
           "XDG_CACHE_HOME": str(blocker / "xdg"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return site, env


_READ_ONLY_SCRIPT = """
import numpy as np
import sklearn_adamntk
from sklearn_adamntk import AdamStarNTKRegressor, _jit
X = np.random.default_rng(0).standard_normal((30, 3))
model = AdamStarNTKRegressor(max_iter=5, random_state=0).fit(X, X[:, 0])
assert np.isfinite(model.predict(X)).all()
print(sklearn_adamntk.__file__, _jit.CACHE)
"""


def test_imports_and_fits_from_a_read_only_install(tmp_path):
    site, env = _read_only_copy(tmp_path)
    try:
        result = _run(_READ_ONLY_SCRIPT, env=env, cwd=str(tmp_path), timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        where, cache = result.stdout.split()[-2:]
        assert where.startswith(str(site)) and cache == "False"
    finally:
        for path in [site, *site.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_writable_cache_directory_is_used(tmp_path):
    # The positive control: the same copy with a writable NUMBA_CACHE_DIR.
    site, env = _read_only_copy(tmp_path)
    cache = tmp_path / "numba-cache"
    env["NUMBA_CACHE_DIR"] = str(cache)
    try:
        script = "from sklearn_adamntk import _jit; print(_jit.CACHE)"
        result = _run(script, env=env, cwd=str(tmp_path))
        assert result.stdout.split()[-1] == "True", result.stderr[-2000:]
    finally:
        for path in [site, *site.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


# --------------------------------------------------------------------------
# The fitted model: one object, swapped in one step, read once per predict
# --------------------------------------------------------------------------


def _fitted_state(model):
    return {key: value for key, value in vars(model).items()
            if key.endswith("_") and not key.startswith("_")}


def _assert_same_state(before, after):
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(after[key], value)
        else:
            assert after[key] == value or after[key] is value, key


@pytest.mark.parametrize("params", [dict(), dict(width=16, solver="primal"),
                                    dict(solver="eigen")])
def test_a_refit_that_fails_changes_nothing(params):
    X, y = make_regression(n_samples=40, n_features=3, noise=1.0, random_state=0)
    model = AdamStarNTKRegressor(max_iter=10, random_state=0, **params).fit(X, y)
    expected, state = model.predict(X), _fitted_state(model)

    # Rejected before any work: the kernel would overflow.
    model.set_params(weight_variance=1e300)
    with pytest.raises(ValueError, match="weight_variance=1e\\+300"):
        model.fit(X, y)
    np.testing.assert_array_equal(model.predict(X), expected)

    # Fails in the middle of training, with the network changed and new rows
    # of another width: the model keeps its own kernel, network and columns.
    from sklearn_adamntk import _fitting

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    model.set_params(weight_variance=2.0, depth=3)
    original = _fitting.run_epochs
    _fitting.run_epochs = broken
    try:
        with pytest.raises(RuntimeError, match="injected"):
            model.fit(np.hstack([X, X]), y)
    finally:
        _fitting.run_epochs = original
    np.testing.assert_array_equal(model.predict(X), expected)
    _assert_same_state(state, _fitted_state(model))
    assert model._model.spec.depth == 1


def test_predict_during_a_fit_on_another_thread_sees_one_model():
    # One thread refits the same estimator, in turn on 3-feature and on
    # 5-feature data; another predicts both kinds of rows meanwhile.  Each
    # prediction must be exactly the 3-feature or the 5-feature model's, or
    # the clear feature-count error of a model that has the other width:
    # never a mixture, another error, or the wrong check.
    Xa, ya = make_regression(n_samples=60, n_features=3, random_state=0)
    Xb, yb = make_regression(n_samples=60, n_features=5, random_state=1)
    fits = [(Xa, ya), (Xb, yb)]
    expected = [AdamStarNTKRegressor(max_iter=15).fit(X, y).predict(X)
                for X, y in fits]
    model = AdamStarNTKRegressor(max_iter=15).fit(Xa, ya)
    stop = threading.Event()
    errors, seen = [], set()

    def refit():
        try:
            for i in range(12):
                model.fit(*fits[(i + 1) % 2])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            stop.set()

    worker = threading.Thread(target=refit)
    worker.start()
    while not stop.is_set():
        for which, (X, _) in enumerate(fits):
            try:
                pred = model.predict(X)
            except ValueError as exc:
                assert "features" in str(exc), exc
                seen.add("other width")
                continue
            np.testing.assert_array_equal(pred, expected[which])
            seen.add(which)
    worker.join()
    assert not errors, errors
    assert {0, 1} <= seen


_PICKLE_SCRIPT = """
import pickle, sys
import numba, numpy as np
from sklearn.datasets import make_classification, make_regression
from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor

X, y = make_regression(n_samples=60, n_features=4, random_state=0)
Xc, yc = make_classification(n_samples=60, n_features=4, random_state=0)
models = [AdamStarNTKRegressor(max_iter=10, solver="dual").fit(X, y),
          AdamStarNTKRegressor(max_iter=10, solver="eigen").fit(X, y),
          AdamStarNTKRegressor(max_iter=10, width=32, solver="primal",
                               random_state=0).fit(X, y),
          AdamStarNTKClassifier(max_iter=10, batch_size=16, random_state=0).fit(Xc, yc)]
inputs = [X, X, X, Xc]
predictions = [m.predict(x) for m, x in zip(models, inputs)]
path = sys.argv[1]
if sys.argv[2] == "write":
    with open(path, "wb") as handle:
        pickle.dump((models, predictions), handle)
else:
    with open(path, "rb") as handle:
        loaded, written = pickle.load(handle)
    for model, x, here, there in zip(loaded, inputs, predictions, written):
        # Bit for bit: across the layers, and after the round trip.
        assert np.array_equal(here, there)
        assert np.array_equal(model.predict(x), there)
        assert np.array_equal(pickle.loads(pickle.dumps(model)).predict(x), there)
print(numba.threading_layer())
"""


def test_pickles_round_trip_between_threading_layers(tmp_path):
    try:
        import numba.np.ufunc.omppool  # noqa: F401
        layers = ["omp", "workqueue"]
    except ImportError:  # pragma: no cover - depends on the Numba build
        layers = ["workqueue", "workqueue"]
    path = str(tmp_path / "models.pkl")
    for layer, mode in zip(layers, ["write", "read"]):
        result = _run(_PICKLE_SCRIPT, path, mode,
                      env={"NUMBA_THREADING_LAYER": layer})
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.split()[-1] == layer


@pytest.mark.skipif(os.environ.get("NUMBA_THREADING_LAYER") == "omp",
                    reason="this is the run under omp")
def test_threads_under_the_omp_layer():
    # The concurrency test above runs under the package's default layer
    # (workqueue here, which serialises launches); under omp the compiled
    # code of a fit and of a prediction really run side by side.
    try:
        import numba.np.ufunc.omppool  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the Numba build
        pytest.skip("Numba's OpenMP layer is not available")
    env = dict(os.environ, NUMBA_THREADING_LAYER="omp")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::test_predict_during_a_fit_on_another_thread_sees_one_model",
         f"{__file__}::test_a_refit_that_fails_changes_nothing"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout
