"""The kernel engine (``_kernels``) against the slow references of ``naive.py``.

Arrays are tiny except where the chunked product and the tiled symmetric pass
need more than one chunk (600 rows).  The references are themselves checked
against Monte Carlo samples of the Gaussian expectations they stand for.
"""

import warnings

import numba
import numpy as np
import pytest
from numba import njit
from numpy.testing import assert_allclose, assert_array_equal

from naive import arccos_kernel as naive_arccos
from naive import network_kernel as naive_kernel
from naive_gradients import HYPERPARAMETERS
from naive_gradients import log_derivative
from naive_gradients import network_kernel_gradient as naive_gradient
from sklearn_adamntk import _kernels
from sklearn_adamntk._kernels import (
    arccos_matrix,
    kernel_diag,
    kernel_matrix,
    kernel_matrix_with_gradient,
)

KERNELS = ("nngp", "ntk")
ACTIVATIONS = ("relu", "erf")
VARIANCES = [(2.0, 0.0), (1.5, 0.3), (0.7, 1.1)]


def _params(kernel, activation, depth, variances):
    sw2, sb2 = variances
    return dict(kernel=kernel, activation=activation, depth=depth,
                weight_variance=sw2, bias_variance=sb2)


def _exact_diag(X, kernel, activation, depth, weight_variance=2.0, bias_variance=0.0):
    """The recursion at theta = 0, where the closed forms simplify."""
    sw2, sb2 = weight_variance, bias_variance
    s = sw2 * np.einsum("ij,ij->i", X, X) / X.shape[1] + sb2
    t = s
    for _ in range(depth):
        if activation == "relu":
            e_phi, e_dphi = s / 2, 0.5
        else:
            e_phi = (2 / np.pi) * np.arcsin(2 * s / (1 + 2 * s))
            e_dphi = (4 / np.pi) / np.sqrt(1 + 4 * s)
        s_next = sw2 * e_phi + sb2
        t = s_next + sw2 * e_dphi * t
        s = s_next
    return t if kernel == "ntk" else s


def _assert_close_to_reference(K, reference, rtol):
    """``rtol`` relative, with an absolute floor for entries that cancel."""
    scale = np.abs(reference).max()
    assert_allclose(K, reference, rtol=rtol, atol=rtol * 1e-3 * scale)


@pytest.mark.parametrize("variances", VARIANCES)
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_reference_float64(data, kernel, activation, depth, variances):
    X, Y = data
    params = _params(kernel, activation, depth, variances)
    K = kernel_matrix(X, Y, **params)
    assert K.dtype == np.float64 and K.shape == (7, 6)
    _assert_close_to_reference(K, naive_kernel(X, Y, **params), rtol=1e-10)

    K = kernel_matrix(X, **params)
    reference = naive_kernel(X, **params)
    off_diagonal = ~np.eye(7, dtype=bool)
    # The reference's own diagonal goes through arccos(1 - rounding), which
    # loses half the digits; the exact theta = 0 value is checked instead.
    _assert_close_to_reference(K[off_diagonal], reference[off_diagonal], rtol=1e-10)
    assert_allclose(np.diag(K), _exact_diag(X, **params), rtol=1e-14)


@pytest.mark.parametrize("variances", VARIANCES[:2])
@pytest.mark.parametrize("depth", [1, 4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_reference_float32(data, kernel, activation, depth, variances):
    X, Y = data
    params = _params(kernel, activation, depth, variances)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    for K, reference in [
        (kernel_matrix(X32, Y32, **params), naive_kernel(X32, Y32, **params)),
        (kernel_matrix(X32, **params), naive_kernel(X32, **params)),
    ]:
        assert K.dtype == np.float32
        _assert_close_to_reference(K, reference, rtol=1e-5)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("degree", [0, 1, 2])
def test_arccos_matches_reference(data, degree, dtype, rtol):
    X, Y = (A.astype(dtype) for A in data)
    K = arccos_matrix(X, Y, degree=degree)
    assert K.dtype == dtype
    _assert_close_to_reference(K, naive_arccos(X, Y, degree=degree), rtol=rtol)
    K = arccos_matrix(X, degree=degree)
    off_diagonal = ~np.eye(7, dtype=bool)
    reference = naive_arccos(X, degree=degree)
    _assert_close_to_reference(K[off_diagonal], reference[off_diagonal], rtol=rtol)
    sq = np.einsum("ij,ij->i", X.astype(np.float64), X.astype(np.float64))
    assert_allclose(np.diag(K), sq**degree * (3 if degree == 2 else 1), rtol=rtol)


def test_reference_against_monte_carlo():
    """The closed forms in naive.py are the Gaussian expectations they claim."""
    rng = np.random.default_rng(2)
    x, y = np.array([[1.0, -0.4, 0.3]]), np.array([[0.2, 0.9, -0.5]])
    sw2, sb2, n = 1.7, 0.2, 400_000
    s = sw2 * np.vstack([x, y]) @ np.vstack([x, y]).T / 3 + sb2
    u, v = (rng.standard_normal((n, 2)) @ np.linalg.cholesky(s).T).T
    phis = {
        "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0).astype(float)),
        "erf": (lambda z: _erf(z), lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z)),
    }
    for activation, (phi, dphi) in phis.items():
        sigma = sw2 * np.mean(phi(u) * phi(v)) + sb2
        theta = sigma + sw2 * np.mean(dphi(u) * dphi(v)) * s[0, 1]
        params = dict(activation=activation, depth=1, weight_variance=sw2,
                      bias_variance=sb2)
        for kernel, sampled in [("nngp", sigma), ("ntk", theta)]:
            closed = naive_kernel(x, y, kernel=kernel, **params)[0, 0]
            engine = kernel_matrix(x, y, kernel=kernel, **params)[0, 0]
            assert_allclose(closed, sampled, rtol=1e-2)
            assert_allclose(engine, closed, rtol=1e-12)

    # k_n(x, y) = 2 E[step(w.x) step(w.y) (w.x)^n (w.y)^n], w standard normal.
    w = rng.standard_normal((n, 3))
    wx, wy = w @ x[0], w @ y[0]
    for degree in (0, 1, 2):
        sampled = 2 * np.mean((wx > 0) * (wy > 0) * (wx * wy) ** degree)
        closed = naive_arccos(x, y, degree=degree)[0, 0]
        assert_allclose(closed, sampled, rtol=2e-2)
        assert_allclose(arccos_matrix(x, y, degree=degree)[0, 0], closed, rtol=1e-12)


def _erf(z):
    from scipy.special import erf

    return erf(z)


@njit
def _arccos_pairs(c):
    theta = np.empty_like(c)
    rest = np.empty_like(c)
    asin = np.empty_like(c)
    for i in range(c.size):
        theta[i], rest[i] = _kernels._arccos_pair(c[i])
        asin[i] = _kernels._arcsin(c[i])
    return theta, rest, asin


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-15), (np.float32, 3e-7)])
def test_arccos_and_arcsin_polynomials(dtype, rtol):
    """The vectorisable arccos / arcsin against NumPy, densely over [-1, 1]."""
    tail = np.logspace(-16, 0, 400)
    c = np.concatenate([
        np.linspace(-1, 1, 400_001), 1 - tail, tail - 1, tail, -tail,
        [0.5, -0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0), 1e-300, -5e-324],
    ]).astype(dtype)
    c = np.clip(c, -1, 1)
    theta, rest, asin = _arccos_pairs(c)
    exact = c.astype(np.float64)
    assert_allclose(theta, np.arccos(exact), rtol=rtol, atol=0)
    assert_allclose(rest, np.arccos(-exact), rtol=rtol, atol=0)
    assert_allclose(asin, np.arcsin(exact), rtol=rtol, atol=0)
    ends = np.array([-1, 0, 1], dtype=dtype)
    theta, rest, asin = _arccos_pairs(ends)
    assert_array_equal(theta, np.array([np.pi, np.pi / 2, 0], dtype=dtype))
    assert_array_equal(rest, np.array([0, np.pi / 2, np.pi], dtype=dtype))
    assert_array_equal(asin, np.array([-np.pi / 2, 0, np.pi / 2], dtype=dtype))


@pytest.mark.parametrize("bias_variance", [0.0, 0.5])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_symmetric_and_positive_semidefinite(kernel, activation, bias_variance):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 5)) * rng.uniform(0.1, 3, (40, 1))
    X[7] = X[2]
    X[11] = 0
    K = kernel_matrix(X, kernel=kernel, activation=activation, depth=3,
                      bias_variance=bias_variance)
    assert_array_equal(K, K.T)
    eigenvalues = np.linalg.eigvalsh(K)
    assert eigenvalues.min() >= -1e-10 * eigenvalues.max()
    assert_allclose(K, kernel_matrix(X, X, kernel=kernel, activation=activation,
                                     depth=3, bias_variance=bias_variance),
                    rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_blocked_equals_unblocked(large, activation, dtype):
    X, Y = (A.astype(dtype) for A in large)
    params = dict(kernel="ntk", activation=activation, depth=2, bias_variance=0.1)
    for other in (None, Y):
        whole = kernel_matrix(X, other, **params)
        for block_rows in (1, 255, 256, 300, 10**6):
            assert_array_equal(kernel_matrix(X, other, block_rows=block_rows, **params),
                               whole)
    assert_array_equal(arccos_matrix(X, degree=1, block_rows=1), arccos_matrix(X))


def test_large_symmetric_matches_reference(large):
    """Every chunk and tile of the symmetric pass, against the reference."""
    X, Y = large
    params = dict(kernel="ntk", activation="relu", depth=2, bias_variance=0.1)
    K = kernel_matrix(X, **params)
    reference = naive_kernel(X, **params)
    off_diagonal = ~np.eye(len(X), dtype=bool)
    _assert_close_to_reference(K[off_diagonal], reference[off_diagonal], rtol=1e-10)
    assert_array_equal(np.diag(K), kernel_diag(X, **params))
    _assert_close_to_reference(kernel_matrix(X, Y, **params),
                               naive_kernel(X, Y, **params), rtol=1e-10)


def test_threads_do_not_change_bits(large):
    X, Y = large
    results = []
    previous = numba.get_num_threads()
    try:
        for n_threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n_threads)
            results.append([kernel_matrix(X, depth=3), kernel_matrix(X, Y, depth=3)])
    finally:
        numba.set_num_threads(previous)
    for result in results[1:]:
        assert_array_equal(result[0], results[0][0])
        assert_array_equal(result[1], results[0][1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_diag_is_matrix_diagonal_bitwise(data, kernel, activation, depth, dtype):
    X = data[0].astype(dtype)
    X[3] = 0
    params = dict(kernel=kernel, activation=activation, depth=depth,
                  bias_variance=0.2)
    diag = kernel_diag(X, **params)
    assert diag.dtype == dtype
    assert_array_equal(diag, np.diag(kernel_matrix(X, **params)))


@pytest.mark.parametrize("bias_variance", [0.0, 0.4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_zero_rows(data, kernel, activation, bias_variance):
    """A zero row has no angle: the limit value, no NaN, no warning."""
    X, Y = (A.copy() for A in data)
    X[[0, 3]] = 0
    Y[2] = 0
    params = dict(kernel=kernel, activation=activation, depth=3,
                  bias_variance=bias_variance)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K_xy = kernel_matrix(X, Y, **params)
        K_xx = kernel_matrix(X, **params)
    # Zero row against zero row: parallel inputs, where c = 1 - rounding costs
    # half the digits (the reference happens to get c = 1 exactly there).
    zero_pairs = np.zeros(K_xy.shape, dtype=bool)
    zero_pairs[[0, 3], 2] = True
    reference = naive_kernel(X, Y, **params)
    _assert_close_to_reference(K_xy[~zero_pairs], reference[~zero_pairs], rtol=1e-10)
    assert_allclose(K_xy[zero_pairs], reference[zero_pairs], rtol=1e-7)
    reference = naive_kernel(X, **params)
    zero_pairs = np.zeros(K_xx.shape, dtype=bool)
    zero_pairs[0, 3] = zero_pairs[3, 0] = True
    generic = ~np.eye(len(X), dtype=bool) & ~zero_pairs
    _assert_close_to_reference(K_xx[generic], reference[generic], rtol=1e-10)
    assert_allclose(K_xx[zero_pairs], reference[zero_pairs], rtol=1e-7)
    assert_allclose(np.diag(K_xx), _exact_diag(X, **params), rtol=1e-14)
    if activation == "relu" and bias_variance == 0:
        assert np.all(K_xy[[0, 3]] == 0) and np.all(K_xy[:, 2] == 0)


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_arccos_zero_rows(data, degree):
    X, Y = (A.copy() for A in data)
    X[1] = 0
    Y[4] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K = arccos_matrix(X, Y, degree=degree)
        K_xx = arccos_matrix(X, degree=degree)
    _assert_close_to_reference(K, naive_arccos(X, Y, degree=degree), rtol=1e-12)
    assert K[1, 4] == (1.0 if degree == 0 else 0.0)
    assert K_xx[1, 1] == (1.0 if degree == 0 else 0.0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_duplicated_rows(data, kernel, activation):
    """Parallel rows sit where arccos is ill-conditioned; still no NaN."""
    X, Y = (A.copy() for A in data)
    X[5] = X[1]
    Y[0] = X[2]
    params = dict(kernel=kernel, activation=activation, depth=3, bias_variance=0.1)
    K_xx = kernel_matrix(X, **params)
    K_xy = kernel_matrix(X, Y, **params)
    diag = kernel_diag(X, **params)
    # c = 1 - rounding costs half the digits of theta, and of the NTK's
    # derivative term, at such entries.
    assert_allclose(K_xx[1, 5], diag[1], rtol=1e-6)
    assert_allclose(K_xy[2, 0], diag[2], rtol=1e-6)
    _assert_close_to_reference(K_xy, naive_kernel(X, Y, **params), rtol=1e-6)


@pytest.mark.parametrize("dtype, scales, rtol",
                         [(np.float64, (1e150, 1e-150), 1e-12),
                          (np.float32, (1e15, 1e-15), 1e-5)])
@pytest.mark.parametrize("kernel", KERNELS)
def test_relu_extreme_norms_are_homogeneous(data, kernel, dtype, scales, rtol):
    """With sb2 = 0, ReLU kernels scale as |x| |y|; the reference over/underflows."""
    X, Y = (A.astype(dtype) for A in data)
    params = dict(kernel=kernel, activation="relu", depth=3)
    for scale in scales:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            K_xx = kernel_matrix(X * dtype(scale), **params)
            K_xy = kernel_matrix(X * dtype(scale), Y * dtype(scale), **params)
        factor = np.float64(scale) ** 2
        assert_allclose(K_xx / factor, kernel_matrix(X, **params), rtol=rtol)
        assert_allclose(K_xy / factor, kernel_matrix(X, Y, **params), rtol=rtol)


@pytest.mark.parametrize("kernel", KERNELS)
def test_erf_extreme_norms(data, kernel):
    X, Y = data
    params = dict(kernel=kernel, activation="erf", depth=2, bias_variance=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = kernel_matrix(X * 1e-150, Y * 1e-150, **params)
        tiny_reference = naive_kernel(X * 1e-150, Y * 1e-150, **params)
        huge = kernel_matrix(X * 1e150, **params), kernel_matrix(X * 1e150, Y * 1e150,
                                                                 **params)
    _assert_close_to_reference(tiny, tiny_reference, rtol=1e-10)
    for K in huge:
        assert np.all(np.isfinite(K))
    # At infinite norm one erf layer sees only the angle.
    sw2, sb2 = 2.0, 0.3
    cos = (X @ Y.T) / np.outer(np.linalg.norm(X, axis=1), np.linalg.norm(Y, axis=1))
    limit = sw2 * (2 / np.pi) * np.arcsin(cos) + sb2
    one_layer = kernel_matrix(X * 1e150, Y * 1e150, kernel="nngp", activation="erf",
                              bias_variance=sb2)
    _assert_close_to_reference(one_layer, limit, rtol=1e-10)


def test_unknown_names_raise(data):
    X = data[0]
    with pytest.raises(ValueError, match="kernel must be one of"):
        kernel_matrix(X, kernel="rbf")
    with pytest.raises(ValueError, match="activation must be one of"):
        kernel_diag(X, activation="tanh")
    with pytest.raises(ValueError, match="degree must be one of"):
        arccos_matrix(X, degree=3)


@pytest.mark.parametrize("dtype, tiny", [(np.float64, 1e-320), (np.float32, 1e-40)])
def test_subnormal_rows_stay_finite(data, dtype, tiny):
    X = data[0].astype(dtype)
    X[2] = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [kernel_matrix(X, activation=activation, kernel=kernel, depth=2)
                   for activation in ACTIVATIONS for kernel in KERNELS]
        results += [arccos_matrix(X, X[::-1].copy(), degree=degree)
                    for degree in (0, 1, 2)]
    for K in results:
        assert np.all(np.isfinite(K))


# ------------------------------------------------------------ gradients


def _assert_gradient_close(gradient, reference, rtol):
    """Per hyper-parameter, ``rtol`` relative with an absolute floor."""
    for p in range(reference.shape[-1]):
        _assert_close_to_reference(gradient[..., p], reference[..., p], rtol)


def test_gradient_order_is_the_references():
    assert _kernels.HYPERPARAMETERS == HYPERPARAMETERS


@pytest.mark.parametrize("variances", VARIANCES)
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradient_matches_reference(data, kernel, activation, depth, variances):
    """Analytic log-derivatives against finite differences of the naive kernel.

    The diagonal is included: the reference's is exact (angle zero), so is
    the engine's.  A zero row is included (the limit values with sb2 = 0).
    """
    X = data[0].copy()
    X[3] = 0
    params = _params(kernel, activation, depth, variances)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K, K_gradient = kernel_matrix_with_gradient(X, **params)
    reference, reference_gradient = naive_gradient(X, **params)
    assert K_gradient.shape == (7, 7, 2) and K_gradient.dtype == np.float64
    # Central differences of order 8 agree with the closed forms to ~1e-12.
    _assert_gradient_close(K_gradient, reference_gradient, rtol=1e-9)
    # The values are kernel_matrix's to rounding, the diagonal exactly.
    assert_allclose(K, kernel_matrix(X, **params), rtol=1e-14, atol=0)
    assert_array_equal(np.diag(K), kernel_diag(X, **params))
    # Symmetric, like K, exactly.
    assert_array_equal(K_gradient, K_gradient.transpose(1, 0, 2))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradient_diagonal_is_the_derivative_of_kernel_diag(data, kernel, activation):
    """The gradient's diagonal, from the theta = 0 recursion, against kernel_diag."""
    X = data[0]
    params = _params(kernel, activation, 3, (1.5, 0.3))
    _, K_gradient = kernel_matrix_with_gradient(X, **params)
    for p, name in enumerate(HYPERPARAMETERS):
        expected = log_derivative(
            lambda value: kernel_diag(X, **{**params, name: value}), params[name])
        assert_allclose(np.diag(K_gradient[..., p]), expected, rtol=1e-10)


def test_gradient_without_bias(data):
    """sb2 = 0: the log-derivative in sb2 vanishes; the weight's is the degree."""
    X = data[0]
    for activation in ACTIVATIONS:
        params = _params("ntk", activation, 2, (2.0, 0.0))
        K, K_gradient = kernel_matrix_with_gradient(X, **params)
        assert np.all(K_gradient[..., 0] == 0)
        if activation == "relu":
            # Without biases the ReLU NTK of depth L is homogeneous of degree
            # L + 1 in sw2: sw2 dK/dsw2 = (L + 1) K.
            assert_allclose(K_gradient[..., 1], 3 * K, rtol=1e-12)


def test_gradient_wrt_picks_bitwise_identical_columns(data):
    X = data[0]
    params = _params("ntk", "erf", 2, (1.5, 0.3))
    K, both = kernel_matrix_with_gradient(X, **params)
    for wrt in [("weight_variance",), ("bias_variance",),
                ("weight_variance", "bias_variance")]:
        K_wrt, gradient = kernel_matrix_with_gradient(X, wrt=wrt, **params)
        assert gradient.shape == (7, 7, len(wrt))
        assert_array_equal(K_wrt, K)
        for o, name in enumerate(wrt):
            assert_array_equal(gradient[..., o], both[..., HYPERPARAMETERS.index(name)])
    K_none, none = kernel_matrix_with_gradient(X, wrt=(), **params)
    assert none.shape == (7, 7, 0)
    assert_array_equal(K_none, K)
    with pytest.raises(ValueError, match="wrt must name"):
        kernel_matrix_with_gradient(X, wrt=("depth",), **params)
    K_empty, empty = kernel_matrix_with_gradient(X[:0], **params)
    assert K_empty.shape == (0, 0) and empty.shape == (0, 0, 2)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_blocks_and_threads_do_not_change_bits(large, activation):
    X = large[0]
    params = dict(kernel="ntk", activation=activation, depth=2, bias_variance=0.1)
    whole, whole_gradient = kernel_matrix_with_gradient(X, **params)
    for block_rows in (1, 255, 300):
        K, gradient = kernel_matrix_with_gradient(X, block_rows=block_rows, **params)
        assert_array_equal(K, whole)
        assert_array_equal(gradient, whole_gradient)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        K, gradient = kernel_matrix_with_gradient(X, **params)
    finally:
        numba.set_num_threads(previous)
    assert_array_equal(K, whole)
    assert_array_equal(gradient, whole_gradient)


def test_large_gradient_matches_reference(large):
    """Every chunk and tile of the gradient pass, and its mirror, checked."""
    X = large[0][:300]
    params = dict(kernel="ntk", activation="relu", depth=2, bias_variance=0.1)
    _, K_gradient = kernel_matrix_with_gradient(X, **params)
    _assert_gradient_close(K_gradient, naive_gradient(X, **params)[1], rtol=1e-9)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 2e-4)])
@pytest.mark.parametrize("bias_variance", [0.0, 0.4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradient_zero_rows(data, kernel, activation, bias_variance, dtype, rtol):
    """Zero rows: the limit values of the derivatives, no NaN, no warning."""
    X = data[0].astype(dtype)
    X[[0, 3]] = 0
    params = dict(kernel=kernel, activation=activation, depth=3,
                  bias_variance=bias_variance)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        K, K_gradient = kernel_matrix_with_gradient(X, **params)
    assert K.dtype == K_gradient.dtype == dtype
    reference = naive_gradient(X, **params)[1]
    # Two zero rows are parallel, where c = 1 - rounding costs half the digits.
    pair = np.zeros((7, 7), dtype=bool)
    pair[0, 3] = pair[3, 0] = True
    _assert_gradient_close(K_gradient[~pair], reference[~pair], rtol=rtol)
    assert_allclose(K_gradient[pair], reference[pair], rtol=max(rtol, 1e-7))
    if activation == "relu" and bias_variance == 0:
        assert np.all(K_gradient[[0, 3]] == 0) and np.all(K_gradient[:, [0, 3]] == 0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradient_duplicated_and_opposite_rows(data, kernel, activation):
    """Angles of 0 and pi, where dtheta is a 0 / 0 limit: finite and right."""
    X = data[0].copy()
    X[5] = X[1]
    X[6] = -X[2]
    params = dict(kernel=kernel, activation=activation, depth=3, bias_variance=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, K_gradient = kernel_matrix_with_gradient(X, **params)
    reference = naive_gradient(X, **params)[1]
    # c = 1 - rounding costs half the digits of theta at the duplicated pair.
    _assert_gradient_close(K_gradient, reference, rtol=1e-6)
    assert_allclose(K_gradient[1, 5], K_gradient[1, 1], rtol=1e-6)


@pytest.mark.parametrize("dtype, scales, rtol",
                         [(np.float64, (1e150, 1e-150), 1e-12),
                          (np.float32, (1e15, 1e-15), 1e-5)])
@pytest.mark.parametrize("kernel", KERNELS)
def test_relu_gradient_extreme_norms_are_homogeneous(data, kernel, dtype, scales, rtol):
    """sb2 = 0: the ReLU kernel's derivatives scale as |x| |y| too."""
    X = data[0].astype(dtype)
    params = dict(kernel=kernel, activation="relu", depth=3)
    unit = kernel_matrix_with_gradient(X, **params)[1]
    for scale in scales:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gradient = kernel_matrix_with_gradient(X * dtype(scale), **params)[1]
        assert_allclose(gradient / np.float64(scale) ** 2, unit, rtol=rtol, atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_erf_gradient_extreme_norms(data, kernel):
    X = data[0]
    params = dict(kernel=kernel, activation="erf", depth=2, bias_variance=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = kernel_matrix_with_gradient(X * 1e-150, **params)[1]
        huge = kernel_matrix_with_gradient(X * 1e150, **params)[1]
    _assert_gradient_close(tiny, naive_gradient(X * 1e-150, **params)[1], rtol=1e-9)
    assert np.all(np.isfinite(huge))


@pytest.mark.parametrize("dtype, tiny", [(np.float64, 1e-320), (np.float32, 1e-40)])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradient_subnormal_rows_stay_finite(data, activation, dtype, tiny):
    X = data[0].astype(dtype)
    X[2] = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for kernel in KERNELS:
            K, K_gradient = kernel_matrix_with_gradient(X, kernel=kernel,
                                                        activation=activation, depth=2)
            assert np.all(np.isfinite(K)) and np.all(np.isfinite(K_gradient))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradient_float32(data, kernel, activation):
    X = data[0]
    params = _params(kernel, activation, 3, (1.5, 0.3))
    K32, gradient32 = kernel_matrix_with_gradient(X.astype(np.float32), **params)
    assert K32.dtype == gradient32.dtype == np.float32
    _, gradient = kernel_matrix_with_gradient(X, **params)
    _assert_gradient_close(gradient32, gradient, rtol=1e-5)
