"""How the package sets Numba up: on-disk caching where possible, a fork-safe layer.

Two decisions are taken once, when the package is imported:

- :data:`CACHE`, passed as ``cache=CACHE`` to every compiled function.  With
  ``cache=True`` Numba raises at decoration time ("cannot cache function
  ...: no locator available") when it finds no directory it can write for
  the package: ``NUMBA_CACHE_DIR``, the ``__pycache__`` beside the sources,
  or the user-wide cache (``~/.cache/numba``).  That is the case of a
  read-only install (system site-packages, a container image) run by a user
  without a writable home.  A probe function of this module is decorated
  the same way: where it can be cached, so can the package, whose modules
  all live in this directory; otherwise the package compiles in memory at
  every start instead of failing to import.

- The threading layer.  Numba's default picks ``omp`` when it is there, and
  GNU OpenMP (Linux) is not fork-safe: after a parallel call in a process, a
  ``fork()``-ed child that makes one dies ("fork() called from a process
  already using GNU OpenMP, this is unsafe") and ``multiprocessing.Pool`` or
  joblib's ``multiprocessing`` backend hang.  Unless the user chose a layer
  (``NUMBA_THREADING_LAYER``, a ``.numba_config.yaml``, or
  ``numba.config.THREADING_LAYER`` set before the first parallel call), the
  package asks Numba for ``"forksafe"``: ``tbb`` where it is installed
  (fork- and thread-safe), else ``workqueue`` (fork-safe; :mod:`._backend`
  serialises its launches from several threads).  It is asked for before
  Numba starts its threads (here, and again by :mod:`._backend` just before
  the first parallel call, in case Numba reloaded its configuration); once
  the threads run, the layer cannot change and is left as it is.

Numba only.
"""

import os

import numba

# What the package asks for when the user has not chosen a threading layer.
THREADING_LAYER = "forksafe"


def _probe():  # pragma: no cover - decorated, never called
    return 0


def _can_cache():
    """Whether Numba finds a writable cache directory for this package."""
    try:
        numba.njit(cache=True)(_probe)
    except RuntimeError:  # no cache locator available
        return False
    return True


CACHE = _can_cache()


def threads_started():
    """Whether Numba has started its threading layer in this process."""
    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


def choose_threading_layer():
    """Ask for a fork-safe layer, unless the user chose one or it is too late."""
    user_choice = (
        os.environ.get("NUMBA_THREADING_LAYER")
        or numba.config.THREADING_LAYER not in ("default", THREADING_LAYER)
    )
    if user_choice or threads_started():
        return
    numba.config.THREADING_LAYER = THREADING_LAYER


choose_threading_layer()
