"""The CUDA backend against the CPU core and the naive references.

Most tests need a CUDA device.  Without one, run them on Numba's CUDA
simulator, in a process of their own (the variable must be set before Numba
is imported)::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py

The simulator runs every GPU thread as a Python thread, so the inputs are
tiny and the launch sizes minimal (``TINY``), which also makes a 12-row
input span several tiles and blocks.  The tests of the main run (no GPU, no
simulator) check the errors and that nothing touches CUDA unasked.
"""

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import traceback

import numpy as np
import pytest
from naive import arccos_kernel as naive_arccos
from naive import network_kernel as naive_kernel
from naive_dynamics import dual_training

from sklearn_adamntk import (
    AdamStarNTKClassifier,
    AdamStarNTKRegressor,
    _cuda,
    _cuda_dual,
)
from sklearn_adamntk import _kernels, network_kernel
from sklearn_adamntk._dual import DualTrainer
from sklearn_adamntk._optimizer import OptimizerSettings

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
HOW_TO_RUN = (
    "needs a CUDA GPU or Numba's simulator: "
    "NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_cuda.py"
)
# Asked once, at collection: in the main run without a GPU this is False.
HAS_CUDA = _cuda.cuda_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason=HOW_TO_RUN)
needs_no_cuda = pytest.mark.skipif(
    HAS_CUDA, reason="checks the behaviour on a machine without CUDA"
)

TINY = _cuda.Launch(tile_threads=2, tile_per_thread=2, tile_depth=2, threads=4,
                    outputs=2)
RTOL = 1e-10
N, D = 12, 4
FULL = [np.arange(N)]
MINI = [
    [np.array([3, 0, 7, 9]), np.array([11, 1, 5]), np.array([2, 10, 4, 6, 8])],
    [np.array([8, 6, 4, 2, 0]), np.array([1, 3, 5, 7, 9]), np.array([10, 11])],
]
# Full batch first (F and U kept on the device), then mini-batches, then a
# full batch again (F and U rebuilt from A and M).
SCHEDULE = [FULL, MINI[0], FULL, MINI[1], FULL]


_SHARED_LOCK = threading.Lock()


def _shared_array(self, shape, dtype, alignment=None):
    """The simulator's ``cuda.shared.array``, with its first allocation locked.

    The simulator (numba-cuda 0.30) looks up and creates a block's shared
    array without a lock, so two threads can each make their own copy and a
    reduction then silently sums half the block.  Same lookup by the
    caller's file and line, made atomic.
    """
    from numba.np import numpy_support

    if alignment is not None or shape == 0:
        raise RuntimeError("not used by the CUDA backend")
    if not isinstance(dtype, np.dtype):
        dtype = numpy_support.as_dtype(dtype)
    caller = traceback.extract_stack(sys._getframe())[-2][0:2]
    with _SHARED_LOCK:
        array = self._allocations.get(caller)
        if array is None:
            array = self._allocations[caller] = np.empty(shape, dtype)
    return array


@pytest.fixture(autouse=True)
def _fast_simulator(monkeypatch):
    """Tiny launches everywhere; on the simulator, quick thread hand-over.

    The simulator's barriers wait on Python's thread switch interval (5 ms
    by default), which dominates its run time; a shorter interval also makes
    its shared-array race (see :func:`_shared_array`) frequent, hence the fix.
    """
    monkeypatch.setattr(_cuda, "DEFAULT_LAUNCH", TINY)
    if SIMULATOR:
        from numba.cuda.simulator import kernelapi

        monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", _shared_array)
        previous = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)
        yield
        sys.setswitchinterval(previous)
    else:
        yield


def _relative(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    X[4] = 0.0  # a zero row: the kernels take their limit value there
    X[7] = X[2]  # a repeated row: c = 1 exactly off the diagonal
    return X, rng.standard_normal((7, D))


# --------------------------------------------------------------------------
# Without CUDA (the main run)
# --------------------------------------------------------------------------


def test_import_touches_no_cuda():
    code = ("import sys, sklearn_adamntk; "
            "print(any(m.startswith('numba.cuda') for m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, env=env, check=True)
    assert result.stdout.strip() == "False"


def test_resolve_device():
    assert _cuda.resolve_device("cpu") == "cpu"
    assert _cuda.resolve_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        _cuda.resolve_device("gpu")


@needs_no_cuda
def test_cuda_without_a_device_is_a_clear_error(points):
    X, _ = points
    y = X[:, 0]
    with pytest.raises(RuntimeError, match="no CUDA GPU is available.*device='cpu'"):
        _cuda.resolve_device("cuda")
    for make in (AdamStarNTKRegressor, AdamStarNTKClassifier):
        est = make(device="cuda", max_iter=2)
        with pytest.raises(RuntimeError, match="device='cuda'"):
            est.fit(X, y if make is AdamStarNTKRegressor else y > 0)
        assert not hasattr(est, "device_")
    with pytest.raises(RuntimeError, match="device='cuda'"):
        network_kernel(X, device="cuda")


@needs_no_cuda
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_auto_without_a_device_is_the_cpu(points):
    X, _ = points
    y = X[:, 0]
    auto = AdamStarNTKRegressor(device="auto", max_iter=3, tol=0).fit(X, y)
    cpu = AdamStarNTKRegressor(device="cpu", max_iter=3, tol=0).fit(X, y)
    assert auto.device_ == cpu.device_ == "cpu"
    np.testing.assert_array_equal(auto.predict(X), cpu.predict(X))
    np.testing.assert_array_equal(network_kernel(X, device="auto"), network_kernel(X))


def test_launch_validation():
    with pytest.raises(ValueError, match="power of two"):
        _cuda.Launch(threads=6)
    with pytest.raises(ValueError, match="1024"):
        _cuda.Launch(tile_threads=64)
    with pytest.raises(TypeError, match="int"):
        _cuda.Launch(outputs=2.0)
    assert _cuda.Launch(tile_threads=4, tile_per_thread=3).tile == 12


# --------------------------------------------------------------------------
# Gram matrices
# --------------------------------------------------------------------------

NETWORKS = [
    dict(kernel="ntk", activation="relu", depth=2, bias_variance=0.0),
    dict(kernel="nngp", activation="relu", depth=1, bias_variance=0.5),
    dict(kernel="ntk", activation="erf", depth=2, bias_variance=0.3),
    dict(kernel="nngp", activation="erf", depth=1, bias_variance=0.0),
]


@needs_cuda
@pytest.mark.parametrize("params", NETWORKS)
def test_kernel_matrix_matches_cpu(points, params):
    X, Y = points
    cpu = _kernels.kernel_matrix(X, **params)
    gpu = _cuda.kernel_matrix(X, **params)
    assert gpu.dtype == np.float64
    assert _relative(gpu, cpu) < RTOL
    assert _relative(gpu, naive_kernel(X, **params)) < RTOL
    # Exactly symmetric, with the exact theta = 0 diagonal.
    np.testing.assert_array_equal(gpu, gpu.T)
    np.testing.assert_array_equal(np.diag(gpu), _cuda.kernel_diag(X, **params))
    # Row blocks (each evaluating both triangles) change no bit.
    np.testing.assert_array_equal(_cuda.kernel_matrix(X, **params, block_rows=3), gpu)
    rect = _cuda.kernel_matrix(X, Y, **params, block_rows=5)
    assert _relative(rect, _kernels.kernel_matrix(X, Y, **params)) < RTOL
    assert _relative(rect, naive_kernel(X, Y, **params)) < RTOL


@needs_cuda
@pytest.mark.parametrize("params", NETWORKS[::2])
def test_kernel_matrix_float32(points, params):
    X, Y = (a.astype(np.float32) for a in points)
    gpu = _cuda.kernel_matrix(X, Y, **params)
    assert gpu.dtype == np.float32
    assert _relative(gpu, _kernels.kernel_matrix(X, Y, **params)) < 1e-5


@needs_cuda
def test_kernel_matrix_on_device_and_empty(points):
    X, _ = points
    d_K = _cuda.kernel_matrix(X, keep_on_device=True)
    np.testing.assert_array_equal(d_K.copy_to_host(), _cuda.kernel_matrix(X))
    assert _cuda.kernel_matrix(X[:0], X).shape == (0, N)


@needs_cuda
@pytest.mark.parametrize("degree", [0, 1, 2])
def test_arccos_matrix_matches_cpu(points, degree):
    X, Y = points
    gpu = _cuda.arccos_matrix(X, degree=degree)
    assert _relative(gpu, _kernels.arccos_matrix(X, degree=degree)) < RTOL
    assert _relative(gpu, naive_arccos(X, degree=degree)) < RTOL
    np.testing.assert_array_equal(gpu, gpu.T)
    rect = _cuda.arccos_matrix(X, Y, degree=degree)
    assert _relative(rect, naive_arccos(X, Y, degree=degree)) < RTOL


@needs_cuda
def test_predict_in_blocks(points):
    X, Y = points
    params = NETWORKS[0]
    coef = np.random.default_rng(1).standard_normal((N, 3))
    expected = naive_kernel(Y, X, **params) @ coef
    got = _cuda.predict(X, coef, Y, **params, block_rows=3)
    assert _relative(got, expected) < RTOL
    # float32 rows against float64 support rows: computed in float64.
    Y32 = Y.astype(np.float32)
    got = _cuda.predict(X, coef, Y32, **params)
    expected = naive_kernel(Y32.astype(np.float64), X, **params) @ coef
    assert got.dtype == np.float64
    assert _relative(got, expected) < RTOL
    K = naive_kernel(Y, X, **params)
    assert _relative(_cuda.predict_precomputed(K, coef, block_rows=2), K @ coef) < RTOL


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def _problem(loss, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    K = _kernels.kernel_matrix(X, kernel="ntk", depth=2, bias_variance=0.5)
    if loss == "squared":
        Y = rng.standard_normal((N, 2))
    elif loss == "logistic":
        Y = (rng.uniform(size=(N, 1)) > 0.5).astype(float)
    else:
        Y = np.eye(3)[rng.integers(0, 3, N)]
    weight = rng.uniform(0.5, 2.0, N)
    weight[5] = 0.0  # a row that carries no loss
    return K, Y, weight


CASES = [
    ("squared", "adam*"),
    ("squared", "sgd"),
    ("squared", "momentum"),
    ("logistic", "adam*"),
    ("softmax", "adam*"),
]


@needs_cuda
@pytest.mark.parametrize("loss, optimizer", CASES)
def test_trainer_matches_cpu_and_reference(loss, optimizer):
    K, Y, weight = _problem(loss)
    settings = OptimizerSettings(optimizer, learning_rate=0.1, weight_decay=0.01)
    cpu = DualTrainer(K, Y, settings, loss, sample_weight=weight)
    gpu = _cuda_dual.DualTrainer(K, Y, settings, loss, sample_weight=weight)
    for batches in SCHEDULE:
        assert abs(gpu.run_epoch(batches) / cpu.run_epoch(batches) - 1) < RTOL
    reference = dual_training(K, Y, SCHEDULE, optimizer=optimizer, loss=loss,
                              learning_rate=0.1, weight_decay=0.01,
                              sample_weight=weight)
    assert _relative(gpu.coef, cpu.coef) < RTOL
    assert _relative(gpu.coef, reference["coef"]) < RTOL
    state, expected = gpu.state, cpu.state
    assert state.t == expected.t == reference["t"]
    if optimizer != "sgd":
        assert _relative(state.momentum_buffer, expected.momentum_buffer) < RTOL
    if optimizer == "adam*":
        assert _relative(state.second_moment, reference["second_moment"]) < RTOL
    assert state.second_moment.shape == expected.second_moment.shape
    assert _relative(gpu.train_predictions(), K @ reference["coef"]) < RTOL


@needs_cuda
def test_trainer_resumes_and_takes_a_device_gram():
    K, Y, weight = _problem("squared", seed=1)
    settings = OptimizerSettings("adam*", learning_rate=0.1)
    cpu = DualTrainer(K, Y, settings, "squared", sample_weight=weight)
    cpu.run_epoch(FULL)
    cpu.run_epoch(MINI[0])
    d_K = _cuda.cuda.to_device(K)
    gpu = _cuda_dual.DualTrainer(d_K, Y, settings, "squared", sample_weight=weight,
                            coef=cpu.coef, state=cpu.state)
    for batches in (MINI[1], FULL):
        assert abs(gpu.run_epoch(batches) / cpu.run_epoch(batches) - 1) < RTOL
    assert _relative(gpu.coef, cpu.coef) < RTOL
    assert gpu.state.t == cpu.state.t == 1 + 3 + 3 + 1


@needs_cuda
def test_trainer_float32():
    K, Y, weight = _problem("softmax", seed=2)
    K32, Y32 = K.astype(np.float32), Y.astype(np.float32)
    settings = OptimizerSettings("adam*", learning_rate=0.1)
    gpu = _cuda_dual.DualTrainer(K32, Y32, settings, "softmax", sample_weight=weight)
    losses = [gpu.run_epoch(batches) for batches in (FULL, MINI[0])]
    reference = dual_training(K32, Y32, [FULL, MINI[0]], optimizer="adam*",
                              loss="softmax", learning_rate=0.1, sample_weight=weight)
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-5)
    assert gpu.coef.dtype == np.float32
    assert _relative(gpu.coef, reference["coef"]) < 1e-4


@needs_cuda
# The simulator computes with NumPy scalars, which warn on overflow in the
# GPU's threads (where no errstate reaches); a GPU does not warn.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("batches", [FULL, MINI[0]], ids=["full", "mini"])
def test_trainer_divergence(batches):
    K, Y, _ = _problem("squared")
    settings = OptimizerSettings("sgd", learning_rate=1e200)
    cpu = DualTrainer(K, Y, settings, "squared")
    gpu = _cuda_dual.DualTrainer(K, Y, settings, "squared")
    for trainer in (cpu, gpu):
        with pytest.raises(FloatingPointError, match="diverged"):
            for _ in range(5):
                trainer.run_epoch(batches)
    assert gpu.state.t == cpu.state.t


@needs_cuda
def test_trainer_refuses_what_it_cannot_run():
    K, Y, _ = _problem("squared")
    with pytest.raises(ValueError, match="no dual form"):
        _cuda_dual.DualTrainer(K, Y, OptimizerSettings("adam", learning_rate=0.1),
                          "squared")
    gpu = _cuda_dual.DualTrainer(K, Y, OptimizerSettings("sgd", learning_rate=0.1),
                            "squared")
    with pytest.raises(ValueError, match="must not share rows"):
        gpu.run_epoch([np.array([0, 1]), np.array([1, 2])])
    with pytest.raises(ValueError, match="lie in"):
        gpu.run_epoch([np.array([0, N])])


# --------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------


def _data(classes=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    y = X @ rng.standard_normal(D) + 0.1 * rng.standard_normal(N)
    if classes is not None:
        y = np.digitize(y, np.quantile(y, np.linspace(0, 1, classes + 1)[1:-1]))
    return X, y


def _pair(make, **params):
    params = {"max_iter": 4, "tol": 0, "random_state": 0, "solver": "dual",
              "learning_rate_init": 0.1, **params}
    return make(device="cpu", **params), make(device="cuda", **params)


@needs_cuda
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regressor_on_cuda_matches_cpu():
    X, y = _data()
    cpu, gpu = _pair(AdamStarNTKRegressor, kernel="ntk", depth=2, batch_size=5)
    cpu.fit(X, y)
    gpu.fit(X, y)
    assert gpu.device_ == "cuda" and cpu.device_ == "cpu"
    assert isinstance(gpu.dual_coef_, np.ndarray)
    assert _relative(gpu.dual_coef_, cpu.dual_coef_) < RTOL
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=RTOL)
    # New rows: at a training row the NTK's angle is ~1e-8 after rounding,
    # which no two evaluations of the product get to 1e-10.
    X_new = _data(seed=5)[0][:5]
    assert _relative(gpu.predict(X_new), cpu.predict(X_new)) < RTOL
    # The GPU's prediction of its own coefficients, against the reference.
    K = naive_kernel(X_new, X, kernel="ntk", depth=2, bias_variance=1.0)
    raw = K @ gpu.dual_coef_[:, 0]
    assert _relative(gpu.predict(X_new), raw * gpu._y_std + gpu._y_mean) < RTOL
    stages = list(zip(gpu.staged_predict(X_new), cpu.staged_predict(X_new)))
    assert len(stages) == 4
    for got, expected in stages:
        assert _relative(got, expected) < RTOL
    # Online: the new rows join the support set, on the device too.
    gpu.partial_fit(X[:4], y[:4])
    cpu.partial_fit(X[:4], y[:4])
    assert _relative(gpu.dual_coef_, cpu.dual_coef_) < RTOL
    assert _relative(gpu.predict(X_new), cpu.predict(X_new)) < RTOL


@needs_cuda
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_on_cuda_matches_cpu(n_classes):
    X, y = _data(classes=n_classes)
    cpu, gpu = _pair(AdamStarNTKClassifier, learning_rate_init=0.5)
    cpu.fit(X, y)
    gpu.fit(X, y)
    assert _relative(gpu.predict_proba(X), cpu.predict_proba(X)) < RTOL
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
    stages = list(gpu.staged_predict(X))
    assert len(stages) == gpu.n_iter_ == 4
    np.testing.assert_array_equal(stages[-1], gpu.predict(X))


@needs_cuda
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_precomputed_and_early_stopping_on_cuda():
    X, y = _data(seed=1)
    K = naive_kernel(X, kernel="nngp", bias_variance=1.0)
    cpu, gpu = _pair(AdamStarNTKRegressor, kernel="precomputed")
    assert _relative(gpu.fit(K, y).predict(K[:3]), cpu.fit(K, y).predict(K[:3])) < RTOL
    cpu, gpu = _pair(AdamStarNTKRegressor, early_stopping=True,
                     validation_fraction=0.25)
    gpu.fit(X, y)
    cpu.fit(X, y)
    assert _relative(gpu.dual_coef_, cpu.dual_coef_) < RTOL
    np.testing.assert_allclose(gpu.validation_scores_, cpu.validation_scores_,
                               rtol=RTOL)


@needs_cuda
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_cuda_refuses_what_it_does_not_run():
    X, y = _data()
    for params, match in [
        (dict(solver="eigen"), "solver='eigen'"),
        (dict(width=8), "width"),
        (dict(solver="primal", width=8), "width"),
    ]:
        with pytest.raises(ValueError, match=match):
            AdamStarNTKRegressor(device="cuda", **params).fit(X, y)
    # "auto" picks the dual solver on the GPU.
    est = AdamStarNTKRegressor(device="cuda", max_iter=2, tol=0)
    est.fit(X, y)
    assert est.solver_ == "dual"


@needs_cuda
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fitted_on_cuda_pickles_and_predicts_without_cuda(tmp_path):
    X, y = _data(classes=3)
    gpu = AdamStarNTKClassifier(device="cuda", max_iter=3, tol=0).fit(X, y)
    expected = gpu.predict_proba(X)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(gpu))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "expected.npy", expected)
    # A fresh process with neither the simulator nor a GPU (when there is
    # none here): the fitted state is plain NumPy.
    code = textwrap.dedent(f"""
        import pickle, numpy as np
        model = pickle.loads(open({str(path)!r}, "rb").read())
        X = np.load({str(tmp_path / "X.npy")!r})
        expected = np.load({str(tmp_path / "expected.npy")!r})
        # device is still "cuda": without a GPU, prediction runs on the CPU.
        got = model.predict_proba(X)
        assert np.max(np.abs(got - expected)) < 1e-10, np.max(np.abs(got - expected))
        print(model.device_, "ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cuda", "ok"]
