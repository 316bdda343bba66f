"""One fit over rows that live on a Dask cluster (DESIGN 4.1).

Both forms of the model distribute without changing it: the rows stay where
they are, in chunks on the workers, and each full-batch epoch is one
map-reduce, with the small optimizer state on the client.

- Finite width (``"streamed"``): each chunk recomputes its rows' features
  and returns its loss and ``Psi_c^T L_c`` (:func:`._streamed.gradient_pass`,
  the pass of the in-process streamed trainer); the client sums them in
  chunk order and takes the ADAM* step of the ``(P, k)`` weights
  (:func:`._primal.readout_step`).  ``X`` is never gathered.
- Infinite width (``"dual"``): the training Gram matrix is built on the
  workers in row blocks (each block ``rows x N``, computed there with the
  fused kernel) and held there; each epoch is one distributed product
  ``K @ L``, and the coefficients ``A`` (``N x k``), ``M``, ``v`` and the
  outputs stay on the client, in :class:`._dual.DualTrainer`'s full-batch
  recursion.  ``X`` (``N x d``, what the kernel needs on every worker and
  what the fitted model predicts with) is gathered once.

Only full-batch training distributes (a mini-batch step would be a round
trip to the cluster per batch).  With a ``distributed.Client`` the chunks,
blocks and broadcasts are futures on its workers; without one, Dask's local
scheduler runs the same tasks in this process.  Dask is imported only here,
and only when a Dask array is given (``pip install "sklearn_adamntk[dask]"``).
No scikit-learn estimator machinery here (validation utilities only).
"""

import sys

import numpy as np
from sklearn.utils import check_array

from . import _backend
from ._batch import _BatchTrainer
from ._dual import DualTrainer
from ._model import gram
from ._pairwise import network_kernel_diag
from ._primal import readout_step
from ._spectral import top_eigenvalue
from ._streamed import FeatureMap, covariance_times, gradient_pass, streamed_outputs

_INSTALL = 'pip install "sklearn_adamntk[dask]"'


def _dask():
    """``dask`` and ``dask.array``, or an ImportError naming the extra."""
    try:
        import dask
        import dask.array
    except ImportError as exc:
        raise ImportError(
            f"Training on Dask arrays needs Dask; install it with {_INSTALL}."
        ) from exc
    return dask


def is_dask_array(X):
    """Whether ``X`` is a ``dask.array.Array`` (without importing Dask)."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(X, module.Array)


def is_distributed(X):
    """Whether ``X`` is training data validated by :func:`check_rows`."""
    return isinstance(X, ChunkedRows)


def to_numpy(value):
    """A Dask collection computed (``y`` and weights: ``O(N)``), anything else as is."""
    if value is not None and type(value).__module__.startswith("dask"):
        return np.asarray(value.compute())
    return value


# --------------------------------------------------------------------------
# Where the tasks run
# --------------------------------------------------------------------------


class _ClientExecutor:
    """Tasks on a ``distributed.Client``'s workers; handles are futures."""

    def __init__(self, client):
        self.client = client

    def workers(self):
        """``{address: {"nthreads", "memory_limit", "memory"}}`` of the workers."""
        try:
            info = self.client.scheduler_info(n_workers=-1)["workers"]
        except TypeError:  # distributed before 2025.4 lists every worker
            info = self.client.scheduler_info()["workers"]
        return {
            address: {
                "nthreads": worker.get("nthreads", 1),
                "memory_limit": worker.get("memory_limit") or 0,
                "memory": worker.get("metrics", {}).get("memory", 0),
            }
            for address, worker in info.items()
        }

    def compute(self, collections):
        return self.client.compute(collections)

    def locations(self, handles):
        who_has = self.client.who_has(handles)
        return [next(iter(who_has.get(handle.key, ())), None) for handle in handles]

    def put(self, value, worker=None, broadcast=False):
        workers = None if worker is None else [worker]
        return self.client.scatter(value, workers=workers, broadcast=broadcast,
                                   hash=False)

    def submit(self, function, *args, worker=None):
        if worker is None:
            return self.client.submit(function, *args, pure=False)
        return self.client.submit(function, *args, workers=[worker],
                                  allow_other_workers=False, pure=False)

    def keep(self, handles):
        return handles  # futures stay on their workers while referenced

    def gather(self, handles):
        return self.client.gather(handles)


class _LocalExecutor:
    """Dask's local scheduler in this process; handles are delayed objects.

    A chunk of rows is recomputed from its source at every epoch, so Dask
    arrays larger than memory (read from disk, say) stream through.
    """

    def __init__(self, dask):
        self.dask = dask

    def workers(self):
        return {None: {"nthreads": 1, "memory_limit": 0, "memory": 0}}

    def compute(self, collections):
        return list(collections)

    def locations(self, handles):
        return [None] * len(handles)

    def put(self, value, worker=None, broadcast=False):
        return self.dask.delayed(value, traverse=False)

    def submit(self, function, *args, worker=None):
        return self.dask.delayed(function, pure=False)(*args)

    def keep(self, handles):
        return list(self.dask.persist(*handles))

    def gather(self, handles):
        return list(self.dask.compute(*handles))


def _executor(dask):
    distributed = sys.modules.get("distributed")
    if distributed is not None:
        try:
            return _ClientExecutor(distributed.Client.current())
        except ValueError:  # no client: Dask's local scheduler
            pass
    return _LocalExecutor(dask)


# --------------------------------------------------------------------------
# The training rows, validated chunk by chunk where they live
# --------------------------------------------------------------------------


class ChunkedRows:
    """Validated training rows: chunks of a Dask array, on the cluster.

    Attributes
    ----------
    executor : where the chunks live and the tasks run
    chunks : list of handles
        The validated chunks (float32 or float64, C-contiguous), in row order.
    offsets : ndarray of int
        Row ``offsets[c]`` is the first of chunk ``c``.
    shape : tuple
    dtype : numpy dtype
    """

    ndim = 2

    def __init__(self, executor, chunks, counts, n_features, dtype):
        self.executor = executor
        self.chunks = chunks
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
        self.shape = (int(self.offsets[-1]), int(n_features))
        self.dtype = np.dtype(dtype)

    def gather(self):
        """Every row, in this process."""
        return np.concatenate(self.executor.gather(self.chunks))

    def __array__(self, dtype=None, copy=None):
        X = self.gather()
        return X if dtype is None else X.astype(dtype, copy=False)


def _checked_chunk(chunk, name):
    """One chunk through the checks of ``validate_data`` (same errors)."""
    return check_array(chunk, dtype=[np.float64, np.float32], order="C",
                       estimator=name, input_name="X", ensure_min_samples=0)


def _n_rows(chunk):
    return chunk.shape[0]


def check_rows(X, name):
    """Validate a Dask array of training rows where its chunks live.

    Each chunk is checked on its worker as ``validate_data`` checks an array
    in this process (finite, numeric, converted to float64 unless float32;
    the same errors) and kept there; chunks of columns are joined first.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
    name : str
        The estimator's name, for messages.

    Returns
    -------
    ChunkedRows
    """
    dask = _dask()
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead: {name} trains on a "
            "Dask array of rows, shape (n_samples, n_features)."
        )
    if X.shape[1] == 0:  # sklearn's message (an n x 0 array holds nothing)
        n_rows = X.shape[0] if np.isfinite(X.shape[0]) else 1
        check_array(np.empty((int(n_rows), 0)), estimator=name)
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    # Unoptimised, so that the chunks keep the keys (and tasks) that other
    # computations on X, such as its targets, submit to the same cluster.
    checked = [dask.delayed(_checked_chunk, pure=True)(part, name)
               for part in X.to_delayed(optimize_graph=False).ravel()]
    executor = _executor(dask)
    chunks = executor.compute(checked)
    counts = executor.gather([executor.submit(_n_rows, chunk) for chunk in chunks])
    if sum(counts) == 0:
        check_array(np.empty((0, X.shape[1])), estimator=name)  # sklearn's message
    return ChunkedRows(executor, chunks, counts, X.shape[1], dtype)


def map_rows(function, X):
    """``function`` on each chunk of rows of a Dask array, as a Dask array.

    The output's shape (one value or one row per input row) and dtype are
    read from ``function`` on one row of zeros.
    """
    _dask()
    if X.ndim != 2:
        raise ValueError(f"Expected 2D array, got {X.ndim}D array instead.")
    if X.numblocks[1] > 1:
        X = X.rechunk({1: -1})
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    sample = np.asarray(function(np.zeros((1, X.shape[1]), dtype=dtype)))
    meta = np.empty((0,) * sample.ndim, dtype=sample.dtype)
    if sample.ndim == 1:
        return X.map_blocks(function, dtype=sample.dtype, drop_axis=1, meta=meta)
    return X.map_blocks(function, dtype=sample.dtype, meta=meta,
                        chunks=(X.chunks[0], (sample.shape[1],)))


def check_options(name, *, kernel, solver, device, early_stopping, online):
    """Refuse, before any work, what a fit on a Dask array cannot do."""
    if online:
        raise ValueError(
            f"{name}: partial_fit does not take Dask arrays; call fit, or pass "
            "NumPy blocks of rows to partial_fit."
        )
    if kernel == "precomputed":
        raise ValueError(
            f"{name}: kernel='precomputed' does not take a Dask array; the Gram "
            "matrix of a Dask fit is built on the workers from the rows of X."
        )
    if device == "cuda":
        raise ValueError(f"{name}: device='cuda' does not take a Dask array.")
    if early_stopping is True:  # "auto" stops on the training loss here
        raise ValueError(
            f"{name}: early_stopping=True is not supported with a Dask array; "
            "hold out rows yourself and score them with predict, or keep "
            "early_stopping='auto' (the training loss's tol rule on a cluster)."
        )
    if solver in ("primal", "eigen"):
        raise ValueError(
            f"{name}: solver={solver!r} holds the whole feature or Gram matrix in "
            "this process; a Dask array trains with solver='streamed' (finite "
            "width), 'dual' or 'auto'."
        )


def check_batch_size(name, batch_size, n_samples):
    """Only full batches distribute: one map-reduce per epoch."""
    if batch_size is not None and batch_size < n_samples:
        raise ValueError(
            f"{name}: a fit on a Dask array takes full-batch steps (each epoch "
            f"is one map-reduce over the chunks), but batch_size={batch_size} < "
            f"{n_samples} rows; use batch_size=None, or NumPy input."
        )


def solver_for(solver, width):
    """The solver of a Dask fit: ``"streamed"`` at finite width, else ``"dual"``."""
    if width is None or solver == "dual":
        return "dual"
    return "streamed"


def build_trainer(problem, solver, targets, resume, network):
    """The distributed trainer of ``solver`` and the rows its model keeps.

    Returns
    -------
    trainer : DaskStreamedTrainer or DaskDualTrainer
    X_fit : ndarray or None
        The gathered rows (dual form), ``None`` (primal form).
    """
    rows = problem.X
    Y = np.ascontiguousarray(targets.Y, dtype=rows.dtype)
    coef = None if resume is None else resume.coef
    state = None if resume is None else resume.state
    options = dict(sample_weight=problem.sample_weight, coef=coef, state=state)
    if solver == "streamed":
        features = FeatureMap(network, **problem.spec.kernel_params())
        trainer = DaskStreamedTrainer(rows, features, Y, problem.settings,
                                      targets.loss, n_jobs=problem.n_jobs, **options)
        return trainer, None
    if solver == "dual":
        X = rows.gather()
        K = GramBlocks(rows.executor, X, problem.spec, network, n_jobs=problem.n_jobs)
        return DaskDualTrainer(K, Y, problem.settings, targets.loss, **options), X
    raise ValueError(
        f"solver={solver!r} does not run on Dask; use 'streamed' or 'dual'."
    )


# --------------------------------------------------------------------------
# Finite width: the streamed primal fit, one map-reduce per epoch
# --------------------------------------------------------------------------


def _chunk_gradient(X, Y, weight, features, coef, weight_total, loss, n_jobs):
    with _backend.numba_threads(n_jobs):
        return gradient_pass(features, X, Y, weight, weight_total, coef, loss)


def _chunk_covariance_times(X, weight, features, v, n_jobs):
    with _backend.numba_threads(n_jobs):
        return covariance_times(features, X, weight, v)


def _chunk_outputs(X, features, coef, n_jobs):
    with _backend.numba_threads(n_jobs):
        return streamed_outputs(features, X, coef)


def _full_batch_only(name):
    return ValueError(
        f"The {name} trains on Dask with full batches only: pass every row as "
        "one batch."
    )


class DaskStreamedTrainer(_BatchTrainer):
    """The streamed primal trainer over the chunks of a Dask array.

    Each full-batch step sends the ``(P, k)`` weights to the workers; every
    chunk returns its loss and ``Psi_c^T L_c`` (its features recomputed in
    blocks, where the chunk lives); the client adds them in chunk order and
    steps, exactly as :class:`._streamed.StreamedTrainer` does in one process.

    Parameters
    ----------
    rows : ChunkedRows
    features : FeatureMap
    Y : ndarray of shape (N, k) or (N,)
        Targets; scattered once, each chunk's rows next to that chunk.
    settings, loss, sample_weight, coef, state
        As :class:`._streamed.StreamedTrainer`.
    n_jobs : int or None
        Numba threads of each task.
    """

    def __init__(self, rows, features, Y, settings, loss, sample_weight=None, coef=None,
                 state=None, n_jobs=None):
        self._rows = rows
        self._setup(rows, features.n_columns, Y, settings, loss, sample_weight, coef,
                    state)
        self._weight_sum = float(self._weight.sum())
        self._n_jobs = n_jobs
        executor = rows.executor
        self._features = executor.put(features, broadcast=True)
        offsets = rows.offsets
        self._parts = []
        for c, (chunk, worker) in enumerate(zip(rows.chunks,
                                                executor.locations(rows.chunks))):
            block = slice(offsets[c], offsets[c + 1])
            self._parts.append((chunk, executor.put(self._Y[block], worker),
                                executor.put(self._weight[block], worker), worker))

    def train_predictions(self):
        """Current outputs ``F = Psi w`` on the training rows (gathered), (N, k)."""
        executor = self._rows.executor
        coef = executor.put(self._coef, broadcast=True)
        tasks = [executor.submit(_chunk_outputs, chunk, self._features, coef,
                                 self._n_jobs, worker=worker)
                 for chunk, _, _, worker in self._parts]
        return np.concatenate(executor.gather(tasks))

    def curvature(self):
        """``lambda_max(Psi^T W Psi) / sum(w)``: one map-reduce per iteration."""
        executor = self._rows.executor

        def times(v):
            v = executor.put(v, broadcast=True)
            tasks = [executor.submit(_chunk_covariance_times, chunk, weight,
                                     self._features, v, self._n_jobs, worker=worker)
                     for chunk, _, weight, worker in self._parts]
            return np.sum(executor.gather(tasks), axis=0)  # in chunk order

        return top_eigenvalue(times, self._coef.shape[0], self._coef.dtype) / (
            self._weight_sum)

    def _full_batch_step(self):
        executor = self._rows.executor
        coef = executor.put(self._coef, broadcast=True)
        tasks = [executor.submit(_chunk_gradient, chunk, Y, weight, self._features,
                                 coef, self._weight_sum, self._loss, self._n_jobs,
                                 worker=worker)
                 for chunk, Y, weight, worker in self._parts]
        loss_sum, G = 0.0, np.zeros_like(self._coef)
        for chunk_loss, chunk_G in executor.gather(tasks):  # in chunk order
            loss_sum += chunk_loss
            G += chunk_G
        if not np.isfinite(loss_sum):
            return loss_sum, self._weight_sum, True
        self._t += 1
        n_bad = readout_step(self._settings, self._coef, self._moment, self._second, G,
                             self._t)
        return loss_sum, self._weight_sum, n_bad > 0

    def _minibatch_epoch(self, order, offsets):
        raise _full_batch_only("streamed solver")


# --------------------------------------------------------------------------
# Infinite width: the dual fit on a Gram matrix held in row blocks
# --------------------------------------------------------------------------


def _gram_block(X, start, stop, spec, network, n_jobs):
    """Rows ``start:stop`` of the training Gram matrix, built where it is kept."""
    _backend.check_allocation(
        (stop - start) * X.shape[0] * X.dtype.itemsize,
        f"the {stop - start} x {X.shape[0]} block of the training Gram matrix",
        "spread the fit over more Dask workers, or use width=... (a finite "
        "network, solver='streamed')",
    )
    with _backend.numba_threads(n_jobs):
        K = gram(spec, X[start:stop], X, network=network, n_jobs=n_jobs)
        if spec.width is None:
            # The diagonal of the symmetric Gram matrix: the exact theta = 0
            # value, where the rectangular pass sees an angle of rounding size.
            np.fill_diagonal(K[:, start:stop], network_kernel_diag(
                X[start:stop], depth=spec.depth, **spec.kernel_params()))
    return K


def _block_times(K_block, M):
    return K_block @ M


class GramBlocks:
    """The training Gram matrix in row blocks on the workers; ``K @ M`` a task each.

    The rows are split into one contiguous block per worker thread, each
    built and kept on its worker, so a worker holds only its share of the
    ``N x N`` matrix (and a step's products run on every thread).  Before
    anything is built, a worker whose share would not fit below Dask's pause
    threshold of its ``memory_limit`` fails the fit with a MemoryError.

    Parameters
    ----------
    executor : where the blocks live
    X : ndarray of shape (N, n_features)
        The training rows (sent once to every worker).
    spec : NetworkSpec
    network : RandomNetwork or None
    n_jobs : int or None
        Numba threads of each task.
    """

    ndim = 2

    def __init__(self, executor, X, spec, network, n_jobs=None):
        self._executor = executor
        n = X.shape[0]
        self.shape = (n, n)
        self.dtype = X.dtype
        workers = executor.workers()
        slots = [address for address, worker in workers.items()
                 for _ in range(max(1, worker["nthreads"]))]
        bounds = np.linspace(0, n, len(slots) + 1).round().astype(np.intp)
        _check_shares(workers, slots, bounds, n * X.dtype.itemsize)
        placed = [(start, stop, worker)
                  for start, stop, worker in zip(bounds[:-1], bounds[1:], slots)
                  if stop > start]
        X_handle = executor.put(X, broadcast=True)
        self._blocks = executor.keep([
            executor.submit(_gram_block, X_handle, start, stop, spec, network, n_jobs,
                            worker=worker)
            for start, stop, worker in placed
        ])
        self._placement = [worker for _, _, worker in placed]
        # Built before the first step, so that a failure shows here.
        executor.gather([executor.submit(_n_rows, block, worker=worker)
                         for block, worker in zip(self._blocks, self._placement)])

    def __matmul__(self, M):
        executor = self._executor
        M_handle = executor.put(np.ascontiguousarray(M), broadcast=True)
        tasks = [executor.submit(_block_times, block, M_handle, worker=worker)
                 for block, worker in zip(self._blocks, self._placement)]
        return np.concatenate(executor.gather(tasks))


def _check_shares(workers, placement, bounds, row_bytes):
    """Fail fast when a worker's blocks would not fit in its memory limit."""
    share = {}
    for b, address in enumerate(placement):
        n_rows = int(bounds[b + 1] - bounds[b])
        share[address] = share.get(address, 0) + n_rows * row_bytes
    if list(share) == [None]:
        _backend.check_allocation(share[None], "the training Gram matrix",
                                  "use width=... (a finite network, "
                                  "solver='streamed'), float32 input, or a Dask "
                                  "cluster")
        return
    pause = _pause_fraction()
    for address, n_bytes in share.items():
        limit = workers[address]["memory_limit"]
        if limit and workers[address]["memory"] + n_bytes > pause * limit:
            raise MemoryError(
                f"The training Gram matrix's blocks on Dask worker {address} need "
                f"{n_bytes / 2**30:.2f} GiB, beyond {pause:.0%} of its memory_limit "
                f"({limit / 2**30:.2f} GiB, where Dask pauses the worker) with "
                f"{workers[address]['memory'] / 2**30:.2f} GiB in use; add workers, "
                "raise their memory_limit, or use width=... (solver='streamed')."
            )


def _pause_fraction():
    fraction = _dask().config.get("distributed.worker.memory.pause", 0.8)
    return 1.0 if fraction is False else float(fraction)


class DaskDualTrainer(DualTrainer):
    """:class:`._dual.DualTrainer`'s full-batch steps on a :class:`GramBlocks` matrix.

    ``A``, ``M``, ``v`` and the outputs ``F = K A``, ``U = K M`` (all
    ``N x k``) stay on the client; each step's one product ``K @ L`` is
    computed block by block on the workers.
    """

    @staticmethod
    def _checked_gram(K):
        return K  # GramBlocks: square by construction, held on the workers

    def _minibatch_epoch(self, order, offsets):
        raise _full_batch_only("dual solver")
