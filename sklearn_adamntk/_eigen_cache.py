"""Eigendecompositions of training Gram matrices, kept for the next fit.

The eigen solver (DESIGN 3.4) pays one ``O(N^3)`` eigensolve, after which an
epoch costs ``O(N k)``.  Every optimizer setting on the same kernel, training
rows and sample weights shares that decomposition, so a grid search over
``beta_1``, ``beta_2`` and ``learning_rate_init`` (or a ``warm_start`` refit)
need only pay for it once.  This module keeps the most recently used
decompositions of this process, under a memory budget, keyed by a digest of
everything the Gram matrix depends on.

The cache belongs to the process: ``GridSearchCV(n_jobs=1)`` and the threading
backend share it; each loky or Dask worker process has its own.  It never
holds more than :data:`MAX_FRACTION` of the memory available when an entry is
stored, and :func:`clear` (or the estimators' memory check, before it fails)
empties it.  NumPy and joblib only.
"""

import threading
from collections import OrderedDict

import joblib

from . import _backend

# Largest share of the currently available memory the cache may occupy.  A
# 5-fold search at N = 5000 in float64 needs 5 entries of about 130 MB each.
MAX_FRACTION = 0.25
# What the budget assumes is available where the system does not say.
_UNKNOWN_MEMORY = 4 * 2**30

_entries = OrderedDict()  # key -> EigenDecomposition, least recently used first
_lock = threading.Lock()


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
