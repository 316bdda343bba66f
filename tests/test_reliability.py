"""The package in hostile surroundings: forks, read-only installs, threads, pickles.

Most checks run a script in a fresh Python process, because what they test is
fixed once per process: Numba's threading layer is chosen at the first
parallel call, and the decision to cache compiled code on disk at import.
"""

import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from sklearn.datasets import make_regression

import sklearn_adamntk
from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor, _jit

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
