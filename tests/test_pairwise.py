"""The public kernel functions: validation, dtypes, blocks and threads."""

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_info

from naive import arccos_kernel as naive_arccos
from naive import network_kernel as naive_kernel
from sklearn_adamntk._pairwise import (
    _network_kernel_with_gradient,
    arccos_kernel,
    network_kernel,
    network_kernel_diag,
)


@pytest.mark.parametrize("params", [
    dict(),
    dict(kernel="nngp", activation="erf", depth=3, weight_variance=1.3,
         bias_variance=0.2),
    dict(kernel="ntk", activation="relu", depth=2, bias_variance=0.5),
])
def test_network_kernel_matches_reference(data, params):
    X, Y = data
    assert_allclose(network_kernel(X, Y, **params), naive_kernel(X, Y, **params),
                    rtol=1e-10)
    K = network_kernel(X.tolist(), **params)
    assert_array_equal(np.diag(K), network_kernel_diag(X, **params))
    off_diagonal = ~np.eye(len(X), dtype=bool)
    assert_allclose(K[off_diagonal], naive_kernel(X, **params)[off_diagonal],
                    rtol=1e-10)


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_arccos_kernel_matches_reference(data, degree):
    X, Y = data
    assert_allclose(arccos_kernel(X, Y, degree=degree),
                    naive_arccos(X, Y, degree=degree), rtol=1e-12)


def test_dtypes(data):
    X, Y = data
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    assert network_kernel(X32).dtype == np.float32
    assert network_kernel(X32, Y32).dtype == np.float32
    assert network_kernel_diag(X32).dtype == np.float32
    assert arccos_kernel(X32, Y32).dtype == np.float32
    # Mixed precision is computed in float64, like integers and lists.
    assert_array_equal(network_kernel(X32, Y), network_kernel(X32.astype(float), Y))
    assert network_kernel(X.round().astype(int)).dtype == np.float64
    assert_array_equal(network_kernel(np.asfortranarray(X), Y), network_kernel(X, Y))


def test_read_only_input(data):
    X, Y = (A.copy() for A in data)
    X.setflags(write=False)
    Y.setflags(write=False)
    assert_array_equal(network_kernel(X, Y), network_kernel(X.copy(), Y.copy()))
    assert_array_equal(network_kernel_diag(X), network_kernel_diag(X.copy()))


@pytest.mark.parametrize("X, Y, error, match", [
    (np.array([[1.0, np.nan]]), None, ValueError, "NaN"),
    (np.ones((3, 2)), np.array([[1.0, np.inf]]), ValueError, "infinity"),
    (np.ones(4), None, ValueError, "Expected 2D array"),
    (np.ones((3, 5)), np.ones((2, 4)), ValueError, "X has 5 features but Y has 4"),
    (np.ones((0, 5)), None, ValueError, "0 sample"),
    (np.ones((3, 5)), np.ones((0, 5)), ValueError, "0 sample"),
    (np.ones((3, 0)), None, ValueError, "0 feature"),
    (sp.csr_matrix(np.eye(3)), None, TypeError, "Sparse data"),
    (np.eye(3), sp.csr_matrix(np.eye(3)), TypeError, "Sparse data"),
    (np.array([["a", "b"]]), None, ValueError, "convert"),
])
def test_bad_input(X, Y, error, match):
    with pytest.raises(error, match=match):
        network_kernel(X, Y)
    with pytest.raises(error, match=match):
        arccos_kernel(X, Y)
    if Y is None:
        with pytest.raises(error, match=match):
            network_kernel_diag(X)


@pytest.mark.parametrize("params, match", [
    (dict(depth=0), "'depth' parameter"),
    (dict(depth=1.5), "'depth' parameter"),
    (dict(weight_variance=0.0), "'weight_variance' parameter"),
    (dict(weight_variance=-1.0), "'weight_variance' parameter"),
    (dict(bias_variance=-0.1), "'bias_variance' parameter"),
    (dict(activation="tanh"), "'activation' parameter"),
    (dict(kernel="rbf"), "'kernel' parameter"),
    (dict(n_jobs="all"), "'n_jobs' parameter"),
])
def test_bad_parameters(data, params, match):
    X = data[0]
    with pytest.raises(ValueError, match=match):
        network_kernel(X, **params)
    with pytest.raises(ValueError, match=match):
        network_kernel_diag(X, **params)


def test_bad_runtime_parameters(data):
    X = data[0]
    with pytest.raises(ValueError, match="'working_memory' parameter"):
        network_kernel(X, working_memory=0)
    with pytest.raises(ValueError, match="n_jobs == 0"):
        network_kernel(X, n_jobs=0)
    with pytest.raises(ValueError, match="'degree' parameter"):
        arccos_kernel(X, degree=3)
    with pytest.raises(ValueError, match="'degree' parameter"):
        arccos_kernel(X, degree=-1)


def test_too_large_fails_before_any_work():
    with pytest.raises(MemoryError, match="kernel matrix needs"):
        network_kernel(np.zeros((400_000, 1)))


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_blocks_and_threads_do_not_change_bits(large, activation):
    X, Y = large
    for other in (None, Y):
        whole = network_kernel(X, other, activation=activation, depth=2, n_jobs=1)
        for options in (dict(n_jobs=2), dict(n_jobs=None), dict(n_jobs=-1),
                        dict(working_memory=1e-3), dict(working_memory=1e-3, n_jobs=2)):
            assert_array_equal(
                network_kernel(X, other, activation=activation, depth=2, **options),
                whole)
    assert_array_equal(arccos_kernel(X, degree=2, n_jobs=1),
                       arccos_kernel(X, degree=2, n_jobs=2, working_memory=1e-3))


def test_blas_threads_are_restored(large):
    """The product runs BLAS single-threaded; the user's setting comes back."""
    before = [(info["filepath"], info["num_threads"]) for info in threadpool_info()]
    network_kernel(large[0])
    after = [(info["filepath"], info["num_threads"]) for info in threadpool_info()]
    assert after == before


def test_gradient_helper_checks_memory_and_keeps_bits(large, monkeypatch):
    """The gradient's adapter: validated arrays, the whole output's size, threads."""
    X = large[0]
    params = dict(kernel="ntk", activation="erf", depth=2, weight_variance=1.5,
                  bias_variance=0.2)
    K, K_gradient = _network_kernel_with_gradient(X, **params, n_jobs=1)
    assert K_gradient.shape == (600, 600, 2)
    # The same formulas compiled with their derivatives: equal to rounding.
    reference = network_kernel(X, **params)
    assert_allclose(K, reference, rtol=1e-13, atol=1e-14 * np.abs(reference).max())
    for options in (dict(n_jobs=2), dict(working_memory=1e-3)):
        K_other, gradient_other = _network_kernel_with_gradient(X, **params, **options)
        assert_array_equal(K_other, K)
        assert_array_equal(gradient_other, K_gradient)
    _, weight_only = _network_kernel_with_gradient(X.tolist(), **params,
                                                   wrt=("weight_variance",))
    assert_array_equal(weight_only[..., 0], K_gradient[..., 1])
    with pytest.raises(MemoryError, match=r"kernel matrix and its gradient \(2 more"):
        _network_kernel_with_gradient(np.zeros((200_000, 1)), **params)
    with pytest.raises(ValueError, match="NaN"):
        _network_kernel_with_gradient(np.array([[np.nan, 1.0]]), **params)
