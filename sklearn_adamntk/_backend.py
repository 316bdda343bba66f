"""Where and how the numeric core runs: device, Numba threads, memory, block sizes.

This is the one module that imports the CUDA backend (:mod:`._cuda` and
:mod:`._cuda_dual`), and only inside the functions that need it, so that
importing the package never touches CUDA: the kernel functions and the
fitting engine ask here for the device a computation runs on and for its GPU
counterpart.

The estimators and public functions call into the compiled core only through
:func:`numba_threads`, so that ``n_jobs`` is honoured per call and restored
afterwards.  Numba's thread count is local to the calling Python thread, which
is what makes joblib's threading backend safe: each worker sets its own count.

The package asks Numba for a fork-safe threading layer (:mod:`._jit`):
``tbb`` where it is installed, else ``workqueue``.  The ``workqueue`` layer
aborts the whole process when parallel regions are launched from two Python
threads at once, as thread-based joblib or Dask workers do.  Under that layer
:func:`numba_threads` therefore lets one thread at a time into the compiled
core; ``tbb`` and ``omp`` (the user's choice, not fork-safe) are thread-safe
and run concurrent calls side by side.  A process forked while another
thread holds that lock gets a fresh one.
"""

import os
import threading
from contextlib import contextmanager, nullcontext

import numba
import numpy as np

from ._jit import choose_threading_layer

_BYTES_PER_MIB = 2**20

DEVICES = ("cpu", "cuda", "auto")


def effective_n_threads(n_jobs):
    """Translate a scikit-learn style ``n_jobs`` into a Numba thread count.

    ``None`` means every thread Numba was started with, ``-1`` too, ``-2`` all
    but one, and a positive value is capped at what Numba has.
    """
    available = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        return available
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None, -1 or a positive int.")
    if n_jobs < 0:
        return max(1, available + 1 + n_jobs)
    return min(n_jobs, available)


# Re-entrant: the estimators call the public kernel functions, which enter
# numba_threads again in the same thread.
_WORKQUEUE_LOCK = threading.RLock()


def _fresh_lock_in_child():
    # A fork copies the lock in whatever state another thread left it.
    global _WORKQUEUE_LOCK
    _WORKQUEUE_LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


def _launch_guard():
    """The lock that serialises parallel launches, where the layer needs one."""
    # Numba may have reloaded its configuration since the import; the layer
    # is fixed by the call below, which starts it.
    choose_threading_layer()
    numba.get_num_threads()
    if numba.threading_layer() == "workqueue":
        return _WORKQUEUE_LOCK
    return nullcontext()


@contextmanager
def numba_threads(n_jobs):
    """Run the body with ``n_jobs`` Numba threads, restoring the old count after.

    Under Numba's ``workqueue`` threading layer the body also holds a
    process-wide lock (see the module docstring).
    """
    with _launch_guard():
        previous = numba.get_num_threads()
        numba.set_num_threads(effective_n_threads(n_jobs))
        try:
            yield
        finally:
            numba.set_num_threads(previous)


def available_memory_bytes():
    """Physical memory the machine can still hand out, or ``None`` if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_allocation(n_bytes, what, advice):
    """Fail fast, before any work, when ``n_bytes`` cannot be allocated.

    Parameters
    ----------
    n_bytes : int
        Size of the allocation about to be made.
    what : str
        What the memory is for, e.g. ``"the 50000 x 50000 training Gram matrix"``.
    advice : str
        What the user can change, e.g. ``"use width=..., or float32 input"``.
    """
    available = available_memory_bytes()
    if available is not None and n_bytes > available:
        raise MemoryError(
            f"{what} needs {n_bytes / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB of memory is available; {advice}."
        )


def block_rows(n_cols, dtype, working_memory_mib, n_temporaries=1):
    """Rows per block so that ``n_temporaries`` blocks fit in the working memory.

    Mirrors :func:`sklearn.utils.get_chunk_n_rows`: at least one row, even when
    one row alone exceeds the budget.
    """
    row_bytes = max(1, n_cols) * np.dtype(dtype).itemsize * n_temporaries
    return max(1, int(working_memory_mib * _BYTES_PER_MIB // row_bytes))


# --------------------------------------------------------------------------
# Device
# --------------------------------------------------------------------------


def _cuda():
    """The CUDA backend, imported on first use (it imports ``numba.cuda`` lazily)."""
    from . import _cuda as module

    return module


def resolve_device(device):
    """The device a computation runs on, ``"cpu"`` or ``"cuda"``.

    ``"cpu"`` never touches CUDA; ``"cuda"`` raises a RuntimeError saying why
    when no GPU can be used (there is no silent fallback); ``"auto"`` is the
    GPU when there is one.
    """
    if device == "cpu":
        return "cpu"
    return _cuda().resolve_device(device)


def cuda_available():
    """Whether a CUDA GPU (or Numba's CUDA simulator) can be used."""
    return _cuda().cuda_available()


def gpu_kernel_matrix(X, Y=None, *, keep_on_device=False, **kernel_params):
    """:func:`._kernels.kernel_matrix` on the GPU (kept there if ``keep_on_device``)."""
    return _cuda().kernel_matrix(X, Y, keep_on_device=keep_on_device, **kernel_params)


def gpu_dual_trainer(K, Y, settings, loss, **kwargs):
    """:class:`._dual.DualTrainer` with its state resident on the GPU."""
    from ._cuda_dual import DualTrainer

    return DualTrainer(K, Y, settings, loss, **kwargs)


def gpu_kernel_outputs(X_fit, coef, X, **kernel_params):
    """``K(X, X_fit) @ coef``, the kernel built and multiplied on the GPU in blocks."""
    return _cuda().predict(X_fit, coef, X, **kernel_params)


def gpu_product(K, coef):
    """``K @ coef`` for a host array ``K``, multiplied on the GPU in row blocks."""
    return _cuda().predict_precomputed(K, coef)
