"""Eigendecompositions of training Gram matrices, kept for the next fit.

The eigen solver (DESIGN 3.4) pays one ``O(N^3)`` eigensolve, after which an
epoch costs ``O(N k)``.  Every optimizer setting on the same kernel, training
rows and sample weights shares that decomposition, so a grid search over
``beta_1``, ``beta_2`` and ``learning_rate_init`` (or a ``warm_start`` refit)
need only pay for it once.  This module keeps the most recently used
decompositions of this process, under a memory budget, keyed by a digest of
everything the Gram matrix depends on.

The cache belongs to the process: ``GridSearchCV(n_jobs=1)`` and the threading
backend share it; each loky or Dask worker process has its own.  It holds at
most :data:`DEFAULT_MAX_BYTES` (512 MiB) unless :func:`set_eigen_cache_size`
says otherwise, and never more than :data:`MAX_FRACTION` of the memory
available when an entry is stored.  :func:`clear_eigen_cache` (or the
estimators' memory check, before it fails) empties it, and
:func:`eigen_cache_info` tells what it holds; these three are public.
NumPy and joblib only.
"""

import numbers
import os
import threading
from collections import OrderedDict

import joblib

from . import _backend

# Largest share of the currently available memory the cache may occupy.
MAX_FRACTION = 0.25
# The default size limit.  A Krylov restriction (solver="eigen" with few
# epochs) takes N (T + 1) k numbers, 4 MB at N = 5000, T = 100, k = 1; a
# whole spectrum takes N^2, 200 MB at N = 5000 in float64, so a 5-fold
# search that needs whole spectra at that size wants set_eigen_cache_size(2**30).
DEFAULT_MAX_BYTES = 512 * 2**20
# What the budget assumes is available where the system does not say.
_UNKNOWN_MEMORY = 4 * 2**30

_entries = OrderedDict()  # key -> EigenDecomposition, least recently used first
_lock = threading.Lock()
_max_bytes = DEFAULT_MAX_BYTES


def _nbytes(decomposition):
    return sum(
        getattr(decomposition, name).nbytes
        for name in ("eigenvalues", "eigenvectors", "sample_weight", "sqrt_weight")
    )


def cache_key(*parts):
    """Digest of everything a training Gram matrix and its weights depend on.

    Parameters
    ----------
    *parts : picklable objects
        Kernel parameters, the training rows (or the precomputed Gram
        matrix), the sample weights, the network weights at finite width.

    Returns
    -------
    key : str
    """
    return joblib.hash(parts)


def get(key):
    """The decomposition stored under ``key``, or None."""
    with _lock:
        decomposition = _entries.get(key)
        if decomposition is not None:
            _entries.move_to_end(key)
        return decomposition


def put(key, decomposition):
    """Keep ``decomposition``, evicting the least recently used entries.

    Nothing is stored when the decomposition alone exceeds the budget.
    """
    size = _nbytes(decomposition)
    available = _backend.available_memory_bytes()
    budget = MAX_FRACTION * (available if available is not None else _UNKNOWN_MEMORY)
    budget = min(budget, _max_bytes)
    with _lock:
        _entries.pop(key, None)
        if size > budget:
            return
        while _entries and sum(map(_nbytes, _entries.values())) + size > budget:
            _entries.popitem(last=False)
        _entries[key] = decomposition


def clear():
    """Drop every stored decomposition (their memory is freed when unused)."""
    with _lock:
        _entries.clear()


def nbytes():
    """Bytes held by the cache."""
    with _lock:
        return sum(map(_nbytes, _entries.values()))


def _fresh_lock_in_child():
    # A fork copies the lock in whatever state another thread left it.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


# --------------------------------------------------------------------------
# The public face (re-exported by the package)
# --------------------------------------------------------------------------


def set_eigen_cache_size(max_bytes):
    """Limit the memory that ``solver="eigen"`` keeps for later fits.

    The eigen solver keeps each eigendecomposition (or Krylov restriction)
    of a training Gram matrix in the process, so that the next fit on the
    same kernel, rows and sample weights (another optimizer setting of a
    grid search, a ``warm_start`` refit) skips the ``O(N^3)`` eigensolve.
    Least recently used entries are dropped beyond the limit, and the cache
    never takes more than a quarter of the memory available when an entry
    is stored.

    Parameters
    ----------
    max_bytes : int or None
        The limit in bytes; ``0`` disables the cache, ``None`` restores the
        default (512 MiB).  Entries beyond a lower limit are dropped now.

    Returns
    -------
    previous : int
        The limit before the call (to restore it later).

    See Also
    --------
    eigen_cache_info : What the cache holds.
    clear_eigen_cache : Drop every entry.

    Examples
    --------
    >>> from sklearn_adamntk import set_eigen_cache_size
    >>> previous = set_eigen_cache_size(2**30)  # 1 GiB for a large search
    >>> _ = set_eigen_cache_size(previous)
    """
    global _max_bytes
    if max_bytes is None:
        max_bytes = DEFAULT_MAX_BYTES
    if (isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral)
            or max_bytes < 0):
        raise ValueError(
            f"max_bytes must be a non-negative int or None; got {max_bytes!r}.")
    with _lock:
        previous, _max_bytes = _max_bytes, int(max_bytes)
        while _entries and sum(map(_nbytes, _entries.values())) > _max_bytes:
            _entries.popitem(last=False)
    return previous


def eigen_cache_info():
    """What the eigen solver's cache holds in this process.

    Returns
    -------
    info : dict
        ``"entries"`` (number of decompositions kept), ``"nbytes"`` (their
        memory) and ``"max_bytes"`` (the limit of :func:`set_eigen_cache_size`).
    """
    with _lock:
        return {"entries": len(_entries),
                "nbytes": sum(map(_nbytes, _entries.values())),
                "max_bytes": _max_bytes}


def clear_eigen_cache():
    """Drop every decomposition the eigen solver kept (their memory is freed)."""
    clear()
