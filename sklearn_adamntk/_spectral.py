"""The spectrum the eigen trainer runs on: eigendecompositions and Krylov restrictions.

Full-batch squared-loss training decouples in the eigenbasis of
``W^1/2 K W^1/2`` (DESIGN 3.4).  :func:`eigen_decomposition` computes the
whole spectrum once (``O(N^3)``); :func:`krylov_decomposition` its
restriction to the subspace that ``T`` epochs from zero can reach, from
``T + 1`` products with ``K``.  Either is an :class:`EigenDecomposition` that
every optimizer setting on the same kernel, targets and weights reuses (the
estimators keep them in :mod:`._eigen_cache`).  NumPy and SciPy only.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from . import _backend
from ._inputs import _check_square
from ._losses import _check_sample_weight, _check_targets


@dataclass(frozen=True)
class EigenDecomposition:
    """``W^1/2 K W^1/2 = Q diag(lam) Q^T``, computed once, shared by trainers.

    Either the whole spectrum (:func:`eigen_decomposition`) or its
    restriction to the Krylov subspace the training dynamics of a few epochs
    cannot leave (:func:`krylov_decomposition`).

    Attributes
    ----------
    eigenvalues : ndarray of shape (r,)
        ``lam``, ascending, rounding negatives clipped to zero (``r = N``
        for the whole spectrum).
    eigenvectors : ndarray of shape (N, r)
        ``Q`` (orthonormal columns).
    sample_weight : ndarray of shape (N,)
        ``w`` (ones when none was given).
    sqrt_weight : ndarray of shape (N,)
        ``w^1/2``.
    weight_sum : float
        ``sum(w)``.
    krylov : bool, default=False
        Restricted to the Krylov subspace of its targets: exact only from
        zero coefficients, on those targets.
    max_epochs : int or None, default=None
        Epochs for which a Krylov restriction is exact (``None``: any
        number; the subspace is invariant, or the spectrum is whole).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    sample_weight: np.ndarray
    sqrt_weight: np.ndarray
    weight_sum: float
    krylov: bool = False
    max_epochs: int = None


def _eigh_driver(n, dtype):
    """``"evd"`` when its extra ``2 N^2`` workspace fits in half the free memory."""
    available = _backend.available_memory_bytes()
    workspace = 2 * n * n * np.dtype(dtype).itemsize
    return "evd" if available is not None and workspace < available / 2 else "evr"


def _eigh_drivers(n, dtype):
    """LAPACK drivers to try in turn: the preferred one, then MRRR, then QR."""
    first = _eigh_driver(n, dtype)
    return [first] + [driver for driver in ("evr", "ev") if driver != first]


def _failure(driver, exc=None):
    return f"{driver}: {exc if exc is not None else 'non-finite eigenvalues'}"


def eigen_decomposition(K, sample_weight=None, *, overwrite_K=False):
    """Eigendecomposition of ``W^1/2 K W^1/2`` for :class:`EigenTrainer`.

    One ``O(N^3)`` symmetric eigensolve that every optimizer setting on the
    same kernel and weights can reuse.  Rows with zero weight give zero rows
    and columns: their directions get eigenvalue zero and never move, which
    is how the pseudo-inverse ``W^-1/2`` is taken.

    LAPACK's divide-and-conquer driver (``syevd``, about 25% faster) is used
    when its ``2 N^2`` numbers of workspace are free; otherwise its MRRR
    driver (``syevr``), whose workspace is ``O(N)``, so that the peak is the
    weighted matrix plus the eigenvectors, ``2 N^2`` numbers
    (``numpy.linalg.eigh`` would also copy its input).

    LAPACK can fail to converge on some ill-conditioned matrices; the other
    drivers are then tried in turn (MRRR, then QR iteration), each on a fresh
    copy of the weighted matrix, unless ``K`` was decomposed in place.

    Parameters
    ----------
    K : ndarray of shape (N, N)
        Symmetric positive semi-definite training Gram matrix.
    sample_weight : ndarray of shape (N,), default=None
    overwrite_K : bool, default=False
        Weight and decompose ``K`` in place (its contents are destroyed),
        saving one ``N x N`` array when the caller no longer needs it.

    Returns
    -------
    EigenDecomposition

    Raises
    ------
    numpy.linalg.LinAlgError
        When every driver failed (or the one in-place attempt did: ``K`` is
        then destroyed, and the caller may recompute it and try again).
    """
    K = _check_square(K)
    weight = _check_sample_weight(sample_weight, K.shape[0], K.dtype)
    sqrt_weight = np.sqrt(weight)
    in_place = overwrite_K and K.flags.writeable
    drivers = _eigh_drivers(K.shape[0], K.dtype)
    failures = []
    for driver in drivers[:1] if in_place else drivers:
        if in_place:
            weighted = K
            weighted *= sqrt_weight[:, None]
        else:
            weighted = K * sqrt_weight[:, None]
        weighted *= sqrt_weight[None, :]
        # LAPACK works in column-major order: the transpose of the symmetric
        # matrix is the same matrix, and lets LAPACK overwrite it without a
        # copy.
        try:
            eigenvalues, eigenvectors = scipy.linalg.eigh(
                weighted.T, overwrite_a=True, check_finite=False, driver=driver)
        except np.linalg.LinAlgError as exc:
            failures.append(_failure(driver, exc))
            continue
        finally:
            del weighted
        if np.all(np.isfinite(eigenvalues)):
            break
        failures.append(_failure(driver))
    else:
        raise np.linalg.LinAlgError(
            "The eigendecomposition of the training Gram matrix failed ("
            + "; ".join(failures) + ")" + ("; K was overwritten" if in_place else ""))
    np.maximum(eigenvalues, 0, out=eigenvalues)
    return EigenDecomposition(
        eigenvalues=eigenvalues,
        # LAPACK's column-major Q is kept as it is (a C-order copy would be a
        # third N x N array); every use of it is a BLAS product.
        eigenvectors=eigenvectors,
        sample_weight=weight,
        sqrt_weight=sqrt_weight,
        weight_sum=float(weight.sum()),
    )


def krylov_pays(n_samples, n_outputs, n_epochs):
    """Whether a Krylov restriction beats an eigensolve for ``n_epochs`` epochs.

    It needs ``(n_epochs + 1) k`` directions, each a product with ``K``, and
    pays while they are a small part (a quarter) of the ``N`` dimensions.
    """
    return 4 * (n_epochs + 1) * n_outputs <= n_samples


def krylov_decomposition(K, Y, n_epochs, sample_weight=None):
    """Restriction of ``W^1/2 K W^1/2`` to the subspace ``n_epochs`` steps can reach.

    Full-batch squared-loss training from zero coefficients keeps every
    vector of the eigenbasis form (``W^1/2 (F - Y)``, the momentum, ``W^-1/2 A``)
    in the block Krylov subspace spanned by ``S^j W^1/2 Y``, ``j <= t``, with
    ``S = W^1/2 K W^1/2``: each step multiplies by ``S`` once.  The
    eigenpairs of ``S`` restricted to the subspace for ``j <= n_epochs``
    (Ritz pairs) therefore drive :class:`EigenTrainer` through ``n_epochs``
    epochs exactly as the whole spectrum would, at the cost of
    ``n_epochs + 1`` products with ``K``, about one dual fit, instead of an
    ``O(N^3)`` eigensolve; every optimizer setting on the same kernel,
    targets and weights can then reuse it.

    The basis is built one block at a time and orthogonalised twice against
    everything before it (classical Gram-Schmidt, twice: orthonormal to
    rounding); a direction that is already in the span to rounding is
    dropped, as is everything after the subspace stops growing (it is then
    invariant, and exact for any number of epochs).

    Parameters
    ----------
    K : ndarray of shape (N, N)
        Symmetric positive semi-definite training Gram matrix.
    Y : ndarray of shape (N, k) or (N,)
        Targets (squared loss).
    n_epochs : int
        Epochs the restriction must be exact for.
    sample_weight : ndarray of shape (N,), default=None

    Returns
    -------
    EigenDecomposition
        With at most ``(n_epochs + 1) k`` eigenpairs and ``max_epochs`` set.
    """
    K = _check_square(K)
    n = K.shape[0]
    dtype = K.dtype
    weight = _check_sample_weight(sample_weight, n, dtype)
    sqrt_weight = np.sqrt(weight)
    Y = _check_targets(Y, n, dtype, "squared")
    # Below this fraction of its length before orthogonalisation, a new
    # direction is rounding noise: it is dropped rather than normalised.
    tolerance = 64 * np.finfo(dtype).eps
    blocks, images = [], []
    block = sqrt_weight[:, None] * Y
    invariant = False
    for _ in range(n_epochs + 1):
        block = _orthonormal_block(block, blocks, tolerance)
        if block.shape[1] == 0:
            invariant = True
            break
        blocks.append(block)
        block = sqrt_weight[:, None] * (K @ (sqrt_weight[:, None] * block))
        images.append(block.copy())
    V = np.hstack(blocks) if blocks else np.zeros((n, 0), dtype=dtype)
    projected = V.T @ (np.hstack(images) if images else np.zeros_like(V))
    projected = 0.5 * (projected + projected.T)
    failures = []
    for driver in ("evd", "evr", "ev"):
        try:
            eigenvalues, rotation = scipy.linalg.eigh(projected, driver=driver,
                                                      check_finite=False)
        except np.linalg.LinAlgError as exc:
            failures.append(_failure(driver, exc))
            continue
        if np.all(np.isfinite(eigenvalues)):
            break
        failures.append(_failure(driver))
    else:
        raise np.linalg.LinAlgError(
            "The eigendecomposition of the Krylov restriction failed ("
            + "; ".join(failures) + ")")
    np.maximum(eigenvalues, 0, out=eigenvalues)
    return EigenDecomposition(
        eigenvalues=eigenvalues,
        eigenvectors=V @ rotation,
        sample_weight=weight,
        sqrt_weight=sqrt_weight,
        weight_sum=float(weight.sum()),
        krylov=True,
        max_epochs=None if invariant else n_epochs,
    )


def _orthonormal_block(block, basis, tolerance):
    """Columns of ``block`` made orthonormal to ``basis`` and to each other.

    Directions whose remaining length falls below ``tolerance`` times their
    length before orthogonalisation are dropped.
    """
    kept = []
    for c in range(block.shape[1]):
        v = block[:, c].copy()
        length = np.linalg.norm(v)
        for _ in range(2):
            for B in basis:
                v -= B @ (B.T @ v)
            for u in kept:
                v -= u * (u @ v)
        remaining = np.linalg.norm(v)
        if length > 0 and remaining > tolerance * length:
            kept.append(v / remaining)
    if not kept:
        return np.zeros((block.shape[0], 0), dtype=block.dtype)
    return np.column_stack(kept)


def top_eigenvalue(matvec, n, dtype=np.float64, *, max_iter=300, rtol=1e-12):
    """Largest eigenvalue of a symmetric positive semi-definite operator, by power iteration.

    Each iteration is one product; it stops when the Rayleigh quotient moves
    by less than ``rtol``.  Kernel matrices have a well separated top
    eigenvalue (their constant mode), and the Rayleigh quotient of a
    symmetric matrix converges at twice the rate of the vector, so a few
    dozen products give it to rounding: every solver then derives the same
    step size from it (the eigen solver reads it off its spectrum), and they
    still agree to rounding.

    Parameters
    ----------
    matvec : callable
        ``matvec(v)`` for a vector of shape ``(n,)``.
    n : int
    dtype : dtype, default=np.float64
    max_iter : int, default=300
    rtol : float, default=1e-12

    Returns
    -------
    lambda_max : float
        0.0 for the zero operator.
    """
    # A fixed start, so that the estimate, and a step size made from it, is
    # the same at every fit.
    v = np.random.default_rng(0).uniform(0.5, 1.5, n).astype(dtype)
    v /= np.linalg.norm(v)
    estimate = 0.0
    for _ in range(max_iter):
        w = matvec(v)
        previous, estimate = estimate, float(v @ w)
        norm = np.linalg.norm(w)
        if norm == 0 or not np.isfinite(norm):
            return estimate if np.isfinite(estimate) else np.inf
        v = w / norm
        if abs(estimate - previous) <= rtol * abs(estimate):
            break
    return max(estimate, 0.0)


def gram_defect(K, *, n_steps=10):
    """Why ``K`` is clearly not a symmetric positive semi-definite Gram matrix, or None.

    Cheap next to training on ``K``: one blocked pass compares ``K`` with its
    transpose, the diagonal must not be negative, and ``n_steps`` products
    with ``K`` build a Krylov subspace (Lanczos, from a fixed start) whose
    smallest Ritz value bounds the smallest eigenvalue from above: a clearly
    negative one proves that ``K`` is not positive semi-definite.  "Clearly"
    means below ``-rtol`` times the largest eigenvalue seen (``rtol = 1e-6``
    in float64, ``1.2e-3`` in float32), far beyond rounding; a matrix that
    passes may still have small negative eigenvalues, which the trainers
    treat as zero (eigen) or barely move along (dual).

    Parameters
    ----------
    K : ndarray of shape (N, N)
        Finite.
    n_steps : int, default=10
        Products with ``K`` (the cost of as many dual epochs).

    Returns
    -------
    defect : str or None
    """
    n = K.shape[0]
    if n == 0:
        return None
    rtol = max(1e-6, 1e4 * float(np.finfo(K.dtype).eps))
    scale = max(float(K.max()), -float(K.min()))
    if scale == 0.0:
        return None
    step = _backend.block_rows(n, K.dtype, 4)  # 4 MiB blocks
    asymmetry = 0.0
    for start in range(0, n, step):
        rows = slice(start, start + step)
        difference = K[rows] - K[:, rows].T
        asymmetry = max(asymmetry, float(np.max(np.abs(difference, out=difference))))
    if asymmetry > rtol * scale:
        return (f"it is not symmetric (|K - K.T| reaches {asymmetry:.3g}, "
                f"|K| {scale:.3g})")
    diagonal = np.diagonal(K)
    row = int(np.argmin(diagonal))
    if diagonal[row] < -rtol * scale:
        return (f"its diagonal has a negative entry (K[{row}, {row}] = "
                f"{float(diagonal[row]):.3g}), so it has a negative eigenvalue")
    smallest, largest = _ritz_extremes(K, min(n_steps, n))
    if smallest < -rtol * max(largest, float(np.max(diagonal))):
        return (f"it has an eigenvalue at or below {smallest:.3g} (the largest "
                f"is at least {largest:.3g})")
    return None


def _ritz_extremes(K, n_steps):
    """Smallest and largest Ritz values of ``K`` on an ``n_steps`` Krylov subspace."""
    rng = np.random.RandomState(0)
    basis, images = [], []
    v = rng.standard_normal(K.shape[0])
    for _ in range(n_steps):
        for _ in range(2):  # orthogonalise twice: orthonormal to rounding
            for u in basis:
                v -= u * (u @ v)
        length = np.linalg.norm(v)
        if length == 0.0 or (basis and length < 1e-10 * np.linalg.norm(images[-1])):
            break  # the subspace is invariant: its Ritz values are eigenvalues
        v /= length
        basis.append(v)
        images.append(np.asarray(K @ v.astype(K.dtype, copy=False), dtype=np.float64))
        v = images[-1].copy()
    V, W = np.array(basis), np.array(images)
    projected = V @ W.T
    ritz = np.linalg.eigvalsh(0.5 * (projected + projected.T))
    return float(ritz[0]), float(ritz[-1])
