"""The solvers by name: the cost model that picks one, and how each is set up.

``"dual"`` (:mod:`._dual`), ``"eigen"`` (:mod:`._eigen` on a decomposition of
:mod:`._spectral`), ``"primal"`` (:mod:`._primal`) and ``"streamed"``
(:mod:`._streamed`, the primal form with features recomputed every epoch)
compute the same model (DESIGN 3).  :func:`choose_solver` picks the cheapest
for one fit; :func:`build_trainer` builds the chosen trainer for a training
problem of :mod:`._fitting`: the training Gram matrix (on the GPU for
``device="cuda"``) or the network's features, after a memory check that fails
fast; the eigendecomposition from the process's cache (:mod:`._eigen_cache`)
when it is there; the state of a resumed fit; the support set that online
training grows.  Training rows that live on a Dask cluster go to :mod:`._distributed`.
No scikit-learn estimator machinery here.
"""

import dataclasses
import functools
from dataclasses import dataclass

import joblib
import numpy as np

from . import _backend, _distributed, _eigen_cache
from ._dual import DualTrainer
from ._eigen import EigenTrainer
from ._losses import _check_loss
from ._model import gram
from ._optimizer import OPTIMIZERS
from ._primal import PrimalTrainer
from ._random_network import (
    forward_bytes,
    n_feature_columns,
    n_network_parameters,
    network_features,
)
from ._spectral import eigen_decomposition, krylov_decomposition, krylov_pays
from ._streamed import FeatureMap, StreamedOperator, StreamedTrainer

SOLVERS = ("dual", "eigen", "primal", "streamed")

# "auto" stores the features (or the Gram matrix) of a finite network only
# when they take at most this fraction of the available memory; beyond it,
# the streamed solver recomputes the features every epoch instead.
_STORED_MEMORY_FRACTION = 0.5

# Cost of a symmetric eigendecomposition in units of the flops of a
# matrix-vector product at the speed BLAS streams a Gram matrix: eigh(K) takes
# about _EIGH_COST * N^3 such flops, i.e. time(eigh) = _EIGH_COST * N / 2 times
# time(K @ g).  benchmarks/bench_training.py measured (numpy.linalg.eigh,
# OpenBLAS, 2 shared cores) between 0.8 and 5.6 over N = 2000-8000 and runs
# (eigh runs at BLAS-3 speed while K @ g is bound by memory, so the constant
# falls as N grows).  It was 4, erring towards the dual solver (no second
# N x N matrix); but since issue 11 a default fit's dual runs thousands of
# epochs, and the fit table of RESULTS.md (one core) measured the eigen fit
# 2.3x faster than the dual one at N = 5000, where 4 picked the dual: an
# effective constant of about 0.8 there.  2 still errs towards the dual.
_EIGH_COST = 2.0


def form_of(solver):
    """``"primal"`` (readout weights) or ``"dual"`` (coefficients over rows)."""
    return "primal" if solver in ("primal", "streamed") else "dual"


def choose_solver(*, n_samples, n_outputs, n_feature_columns, full_batch, loss,
                  optimizer, max_iter, eigen_cached=False, krylov=True,
                  memory_budget=None, itemsize=8):
    """Pick the cheapest exact solver for one fit.

    Cost model, in flops (a multiply-add counts 2), with ``N = n_samples``,
    ``k = n_outputs``, ``P = n_feature_columns``, ``T = max_iter``:

    - ``"dual"``: ``T * 2 N^2 k`` (every epoch streams the Gram once), plus
      ``2 N^2 P`` to build the empirical Gram at finite width.  Memory
      ``N^2``.
    - ``"eigen"`` (full batch, squared loss, not ``"adam"``): one ``eigh``,
      ``_EIGH_COST * N^3`` with ``_EIGH_COST = 2`` measured as
      ``time(eigh) / time(K @ g)`` in BLAS-streaming flops, or, when
      :func:`krylov_pays`, the Krylov restriction's ``(T + 1) k`` products
      with ``K`` and its orthogonalisation, ``2 N^2 (T + 1) k +
      4 N ((T + 1) k)^2`` (never below the dual cost: it pays only when
      reused); plus
      ``6 N^2 k`` to enter and leave the eigenbasis and ``T * 10 N k`` for
      the epochs; plus the Gram at finite width.  Memory ``2 N^2``.  When
      the decomposition is cached (``eigen_cached``, e.g. the previous
      setting of a grid search on the same rows), only ``6 N^2 k`` and the
      epochs remain, so eigen wins from a handful of epochs on.
    - ``"primal"`` (finite width only, and only when ``P <= N`` so that the
      features take no more memory than the Gram): ``T * 4 N P k``
      (``Psi w`` and ``Psi^T L`` every epoch).  Memory ``N P``.

    ``optimizer="adam"`` has no kernel form and always gives ``"primal"``
    (or ``"streamed"``, below).

    - ``"streamed"`` (finite width only): the primal model with each epoch's
      features recomputed from ``X``, ``T * (4 N P k + the forward pass)``,
      memory ``O(block P)``.  Never cheaper than ``"primal"``; chosen when
      the array of the cheapest stored solver (``N P`` features, one or two
      ``N x N`` matrices) exceeds ``memory_budget``.

    Parameters
    ----------
    n_samples, n_outputs : int
    n_feature_columns : int or None
        ``P`` of a finite-width network; ``None`` at infinite width or for a
        precomputed kernel (no primal form).
    full_batch : bool
    loss : {"squared", "logistic", "softmax"}
    optimizer : {"adam*", "sgd", "momentum", "adam"}
    max_iter : int
        Planned number of epochs.
    eigen_cached : bool, default=False
        Whether the eigendecomposition of this training Gram matrix is
        already available.
    memory_budget : float or None, default=None
        Bytes a finite network's stored solver may hold; ``None``: no limit.
    itemsize : int, default=8
        Bytes per entry (4 for float32 data).

    Returns
    -------
    solver : {"dual", "eigen", "primal", "streamed"}
    """
    _check_loss(loss)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}.")
    if optimizer == "adam":
        return _within_budget("primal", n_samples, n_feature_columns, memory_budget,
                              itemsize)
    n, k, epochs = float(n_samples), float(n_outputs), float(max_iter)
    gram = 0.0 if n_feature_columns is None else 2.0 * n * n * float(n_feature_columns)
    costs = {"dual": gram + epochs * 2.0 * n * n * k}
    if full_batch and loss == "squared":
        eigensolve = _EIGH_COST * n**3
        if krylov and krylov_pays(n_samples, n_outputs, max_iter):
            directions = (epochs + 1.0) * k
            eigensolve = min(eigensolve, directions * 2.0 * n * n
                             + 4.0 * n * directions**2)
        setup = 0.0 if eigen_cached else gram + eigensolve
        costs["eigen"] = setup + 6.0 * n * n * k + epochs * 10.0 * n * k
    if n_feature_columns is not None and n_feature_columns <= n_samples:
        costs["primal"] = epochs * 4.0 * n * float(n_feature_columns) * k
    return _within_budget(min(costs, key=costs.get), n_samples, n_feature_columns,
                          memory_budget, itemsize)


def _within_budget(solver, n_samples, n_feature_columns, memory_budget, itemsize):
    """``solver``, or ``"streamed"`` when a finite network's stored array is too big."""
    if n_feature_columns is None or memory_budget is None:
        return solver
    n = float(n_samples)
    held = {"primal": n * n_feature_columns, "dual": n * n, "eigen": 2.0 * n * n}
    if held[solver] * itemsize > memory_budget:
        return "streamed"
    return solver


# --------------------------------------------------------------------------
# Setting a solver up for one training problem
# --------------------------------------------------------------------------


@dataclass
class TrainerSetup:
    """A trainer and what the epoch loop needs around it.

    Attributes
    ----------
    trainer : DualTrainer, EigenTrainer, PrimalTrainer or the CUDA trainer
    validation_operator : ndarray or None
        Maps the trainer's coefficients to the held-out rows' outputs.
    X_fit : ndarray or None
        Support rows of the dual coefficients (``None``: primal form, or a
        precomputed kernel).
    n_support : int or None
        Rows of the fitted dual coefficients (held-out rows included).
    rows : ndarray of int or None
        The trainer's rows the batches draw from (online training: this
        call's samples in the support set); ``None``: every row.
    solver : str or None
        The solver that runs, where it is not the one asked for: ``"dual"``
        when every LAPACK driver failed on the eigen solver's Gram matrix.
    """

    trainer: object
    validation_operator: np.ndarray = None
    X_fit: np.ndarray = None
    n_support: int = None
    rows: np.ndarray = None
    solver: str = None


def feature_columns(problem):
    """Columns of the finite network's features, or None at infinite width."""
    spec = problem.spec
    if spec.width is None:
        return None
    return n_feature_columns(problem.X.shape[1], width=spec.width, depth=spec.depth,
                             kernel=spec.kernel)


def resolve_solver(problem, n_train, n_outputs, loss, full_batch, eigen_key):
    """The solver of this fit: the one asked for, or the cost model's choice."""
    if problem.online:
        # Online training keeps adding rows: the weights of a finite network
        # do not grow with them, the dual coefficients do.
        if problem.spec.width is not None and problem.solver == "streamed":
            return "streamed"
        if problem.spec.width is not None and problem.solver in ("auto", "primal"):
            return "primal"
        return "dual"
    if problem.device == "cuda":
        return "dual"  # the one solver of the CUDA backend
    if problem.solver != "auto":
        return problem.solver
    available = _backend.available_memory_bytes()
    return choose_solver(
        n_samples=n_train,
        n_outputs=n_outputs,
        n_feature_columns=feature_columns(problem),
        full_batch=full_batch,
        loss=loss,
        optimizer=problem.settings.optimizer,
        max_iter=problem.schedule.max_iter,
        eigen_cached=eigen_key is not None and _eigen_cache.get(eigen_key) is not None,
        krylov=problem.stopping != "gcv",
        memory_budget=(None if available is None
                       else _STORED_MEMORY_FRACTION * available),
        itemsize=problem.X.dtype.itemsize,
    )


def krylov_epochs(problem, n_train, n_outputs, fresh):
    """Epochs of a Krylov restriction for this fit, or None for a full eigh.

    From zero coefficients, ``max_iter`` epochs need ``(max_iter + 1) k``
    directions and as many products with ``K`` (about one dual fit) instead
    of an ``O(N^3)`` eigensolve.  Stopping by GCV needs the whole spectrum.
    """
    max_iter = problem.schedule.max_iter
    if problem.stopping == "gcv":
        return None
    if fresh and krylov_pays(n_train, n_outputs, max_iter):
        return max_iter
    return None


def eigen_key(problem, train_rows, network, Y, *, fresh):
    """Digest of what the training spectrum (or its restriction) depends on."""
    X = problem.X
    n_train = X.shape[0] if train_rows is None else train_rows.size
    return _eigen_cache.cache_key(
        problem.spec.kernel_params(),
        problem.spec.depth,
        network,
        X,
        train_rows,
        problem.sample_weight,
        Y,
        krylov_epochs(problem, n_train, Y.shape[1], fresh),
    )


def check_memory(problem, solver, n_train, *, cached=False, network=False,
                 resuming=False):
    """Fail fast, with what to change, when the fit's arrays cannot fit.

    Counts every large array of :func:`fit_allocations` against the memory
    available now; called before the random network is drawn
    (``network=True``: its weights are still to come) and again, knowing
    whether the eigendecomposition is cached, before the trainer is built.
    Cached decompositions are dropped before giving up.
    """
    options = dict(cached=cached, network=network, resuming=resuming)
    try:
        _check_allocations(problem, solver, n_train, options)
    except MemoryError:
        if not _eigen_cache.nbytes():
            raise
        _eigen_cache.clear()
        _check_allocations(problem, solver, n_train, options)


def check_fit_memory(problem, solver, n_train, resume, cache_key):
    """:func:`check_memory` before anything large is made, the network included.

    At infinite width the eigen cache can already be consulted
    (``cache_key``); at finite width its key needs the network, so only the
    network is counted for the eigen solver until :func:`build_trainer`
    checks again.
    """
    cached = solver == "eigen" and (
        cache_key is not None and _eigen_cache.get(cache_key) is not None
        or (None if problem.spec.width is not None else False))
    check_memory(problem, solver, n_train, cached=cached, network=resume is None,
                 resuming=resume is not None)


def fit_allocations(problem, solver, n_train, *, cached=False, network=False,
                    resuming=False):
    """The large arrays one fit allocates: a list of ``(n_bytes, what)``.

    ``cached``: the eigendecomposition is cached (no ``N x N`` array), or
    ``None`` when that is not known yet (finite width, before the network
    that its key hashes is drawn): only the network is then counted for the
    eigen solver.  ``network``: the random network is still to be drawn.
    ``resuming``: a ``warm_start`` fit continues a model (the eigen solver
    then keeps the Gram matrix and decomposes a weighted copy).
    Arrays of ``O(N k)`` numbers (targets, coefficients, optimizer state)
    and the per-epoch coefficient path are not counted.
    """
    X, spec = problem.X, problem.spec
    n_rows, n_features = X.shape
    itemsize = X.dtype.itemsize
    parts = []
    if network and spec.width is not None:
        n_params = n_network_parameters(n_features, width=spec.width, depth=spec.depth)
        parts.append((8 * n_params, f"the random network's {n_params} weights"))
    if solver == "streamed":
        return parts  # one block of features at a time: a few MiB
    if spec.width is not None:
        temporaries = forward_bytes(n_rows, n_features, width=spec.width,
                                    depth=spec.depth, kernel=spec.kernel,
                                    itemsize=itemsize, features=solver == "primal")
    if solver == "primal":
        n_columns = feature_columns(problem)
        features = n_rows * n_columns * itemsize
        parts.append((features, f"the {n_rows} x {n_columns} feature matrix of the "
                                "network"))
        if spec.kernel == "ntk":
            temporaries += features  # the per-layer blocks, before they are stacked
        parts.append((temporaries, "the network's activations while computing it"))
        return parts
    if solver == "eigen" and (cached or (cached is None and spec.width is not None)):
        return parts
    square = n_train * n_train * itemsize
    own_gram = not (spec.precomputed and n_train == n_rows)  # else X itself
    parts.append((square if own_gram else 0,
                  f"the {n_train} x {n_train} training Gram matrix"))
    if spec.width is not None:
        if spec.kernel == "ntk":
            temporaries += 2 * square  # two Gram-sized products per layer
        parts.append((temporaries, "the network's activations while computing it"))
    if solver == "eigen":
        n_epochs = krylov_epochs(problem, n_train, problem.targets.Y.shape[1],
                                 fresh=not resuming)
        if n_epochs is not None:
            directions = (n_epochs + 1) * problem.targets.Y.shape[1]
            parts.append((3 * n_train * directions * itemsize,
                          "its Krylov basis for solver='eigen'"))
        else:
            # K is decomposed in place, unless it is X or a resumed fit needs it.
            weighted = square if resuming or not own_gram else 0
            parts.append((square + weighted,
                          "its eigenvectors for solver='eigen'"))
    n_val = n_rows - n_train
    if n_val:
        parts.append((n_val * n_train * itemsize,
                      f"the {n_val} x {n_train} validation kernel"))
    return parts


def _check_allocations(problem, solver, n_train, options):
    parts = [(n_bytes, what) for n_bytes, what in
             fit_allocations(problem, solver, n_train, **options) if n_bytes]
    if not parts:
        return
    total = sum(n_bytes for n_bytes, _ in parts)
    what = " + ".join(f"{what} ({n_bytes / 2**30:.2g} GiB)" for n_bytes, what in parts)
    if solver == "primal":
        advice = ("use solver='streamed' (the features recomputed every epoch), a "
                  "smaller width, kernel='nngp' (width + 1 features), or float32 "
                  "input")
    elif problem.spec.width is not None and options["network"] and len(parts) == 1:
        advice = "use a smaller width or depth"
    else:
        advice = ("use width=... with solver='primal' (a finite network, memory "
                  "linear in the rows), float32 input, or fewer rows")
    _backend.check_allocation(total, what, advice)


def build_trainer(problem, solver, targets, split, resume, network, *, continuing,
                  cache_key=None):
    """The trainer of ``solver`` for this problem, resumed from ``resume``.

    Parameters
    ----------
    problem : TrainingProblem
    solver : {"dual", "eigen", "primal", "streamed"}
    targets : Targets
        The encoded targets this fit trains on.
    split : (train_rows, val_rows)
        Index arrays (early stopping), or ``(None, None)``.
    resume : FittedModel or None
        The model to continue (``warm_start`` or online training).
    network : RandomNetwork or None
    continuing : bool
        Online training after a fit: the new rows join the support set.
    cache_key : str or None
        Cache key of the training Gram matrix, when the solver choice already
        needed it.

    Returns
    -------
    TrainerSetup
    """
    if _distributed.is_distributed(problem.X):
        trainer, X_fit = _distributed.build_trainer(problem, solver, targets, resume,
                                                    network)
        return TrainerSetup(trainer, None, X_fit, problem.X.shape[0])
    X = problem.X
    train_rows, val_rows = split
    Y = np.ascontiguousarray(targets.Y, dtype=X.dtype)
    rows = slice(None) if train_rows is None else train_rows
    n_train = X.shape[0] if train_rows is None else train_rows.size
    if solver == "eigen" and (cache_key is None or resume is not None):
        cache_key = eigen_key(problem, train_rows, network, targets.Y,
                              fresh=resume is None)
    if not continuing:
        cached = solver == "eigen" and _eigen_cache.get(cache_key) is not None
        check_memory(problem, solver, n_train, cached=cached,  # the network is drawn
                     resuming=resume is not None)

    if solver in ("primal", "streamed"):
        return _primal_setup(problem, Y, targets.loss, rows, val_rows, resume,
                             network, streamed=solver == "streamed")
    if continuing:
        return _online_dual_setup(problem, resume, Y, targets.loss, network)
    coef = state = None
    if resume is not None:
        coef = resume.coef[rows]
        state = _restrict_state(resume.state, train_rows)
    Y_train, sw_train = Y[rows], problem.sample_weight[rows]
    if solver == "eigen":
        trainer = _eigen_trainer(problem, cache_key, train_rows, network, Y_train,
                                 sw_train, coef, state)
    else:
        trainer = _dual_trainer(problem, _train_gram(problem, train_rows, network),
                                Y_train, problem.settings, targets.loss,
                                sample_weight=sw_train,
                                coef=coef, state=state)
    validation_operator = None
    if val_rows is not None:
        if problem.spec.precomputed:
            validation_operator = np.ascontiguousarray(X[np.ix_(val_rows, train_rows)])
        else:
            validation_operator = gram(problem.spec, X[val_rows], X[train_rows],
                                       network=network, n_jobs=problem.n_jobs,
                                       device=problem.device)
    X_fit = None if problem.spec.precomputed else X
    fell_back = solver == "eigen" and not isinstance(trainer, EigenTrainer)
    return TrainerSetup(trainer, validation_operator, X_fit, X.shape[0],
                        solver="dual" if fell_back else None)


def _features(problem, X, network):
    return network_features(network, X, **problem.spec.kernel_params())


def _primal_setup(problem, Y, loss, rows, val_rows, resume, network, streamed):
    """The readout's trainer: the features stored, or recomputed block by block."""
    if streamed:
        features = FeatureMap(network, **problem.spec.kernel_params())
        trainer_on = functools.partial(StreamedTrainer, problem.X[rows], features)

        def held_out(X):
            return StreamedOperator(features, X)
    else:
        trainer_on = functools.partial(
            PrimalTrainer, _features(problem, problem.X[rows], network))

        def held_out(X):
            return _features(problem, X, network)
    trainer = trainer_on(
        Y[rows],
        problem.settings,
        loss,
        sample_weight=problem.sample_weight[rows],
        coef=None if resume is None else resume.coef,
        state=None if resume is None else resume.state,
    )
    validation_operator = None if val_rows is None else held_out(problem.X[val_rows])
    return TrainerSetup(trainer, validation_operator)


def _train_gram(problem, train_rows, network):
    """Gram matrix among the training rows (on the GPU, it stays there)."""
    X, spec = problem.X, problem.spec
    if spec.precomputed:
        K = X if train_rows is None else X[np.ix_(train_rows, train_rows)]
        return np.ascontiguousarray(K)
    rows = slice(None) if train_rows is None else train_rows
    if problem.device == "cuda":
        return _backend.gpu_kernel_matrix(X[rows], depth=spec.depth,
                                          keep_on_device=True, **spec.kernel_params())
    return gram(spec, X[rows], network=network, n_jobs=problem.n_jobs,
                device=problem.device)


def _dual_trainer(problem, K, *args, **kwargs):
    """The dual trainer of the device this fit runs on (same interface)."""
    if problem.device == "cuda":
        return _backend.gpu_dual_trainer(K, *args, **kwargs)
    return DualTrainer(K, *args, **kwargs)


def _eigen_trainer(problem, key, train_rows, network, Y, sample_weight, coef, state):
    """An :class:`EigenTrainer`, on a cached eigendecomposition when possible.

    The Gram matrix is computed only when the decomposition is not cached or
    a resumed model needs it, and is decomposed in place when nothing else
    needs it afterwards.  Where LAPACK fails on it (every driver), the same
    model is trained by a :class:`DualTrainer` instead (recorded as the
    fitted model's solver).
    """
    decomposition = _eigen_cache.get(key)
    resuming = coef is not None
    K = None
    if decomposition is None or resuming:
        K = _train_gram(problem, train_rows, network)
    n_epochs = krylov_epochs(problem, Y.shape[0], Y.shape[1],
                             not resuming)
    if decomposition is None:
        in_place = n_epochs is None and not resuming and K is not problem.X
        try:
            if n_epochs is not None:
                decomposition = krylov_decomposition(K, Y, n_epochs,
                                                     sample_weight=sample_weight)
            else:
                decomposition = eigen_decomposition(K, sample_weight=sample_weight,
                                                    overwrite_K=in_place)
        except np.linalg.LinAlgError:
            if in_place:  # K was destroyed by the failed attempt
                K = _train_gram(problem, train_rows, network)
            try:
                decomposition = eigen_decomposition(K, sample_weight=sample_weight)
            except np.linalg.LinAlgError:
                return DualTrainer(K, Y, problem.settings, "squared",
                                   sample_weight=sample_weight, coef=coef,
                                   state=state)
        else:
            if in_place or n_epochs is not None:
                K = None
        _eigen_cache.put(key, decomposition)
    return EigenTrainer(decomposition, K, Y, problem.settings,
                        sample_weight=sample_weight, coef=coef, state=state)


def _online_dual_setup(problem, previous, Y_new, loss, network):
    """One online epoch over this call's samples, in the support set.

    A sample whose row is already in the support set (the usual loop of
    ``partial_fit`` over the same data) trains that row's coefficients: the
    model is the same as with the row appended again (its kernel row is the
    same), and the support set stays as large as the data.  The other rows
    are appended.  Only the kernel between this call's rows and the support
    set is computed: the other rows never form a batch, so the trainer never
    reads the kernel among them (those rows of K are left zero).
    """
    X_new = problem.X.astype(previous.X_fit.dtype, copy=False)
    rows, appended = _support_rows(previous.X_fit, X_new)
    X_fit = np.concatenate([previous.X_fit, X_new[appended]])
    n_fit, n_appended = X_fit.shape[0], appended.size
    K_rows = gram(problem.spec, X_new, X_fit, network=network, n_jobs=problem.n_jobs,
                  device=problem.device)
    dtype = K_rows.dtype
    # Mini-batch steps read only the batch rows of K, so only those rows are
    # written: the untouched zero pages of the rest are never materialised.
    K = np.zeros((n_fit, n_fit), dtype=dtype)
    K[rows] = K_rows
    Y = np.zeros((n_fit, Y_new.shape[1]), dtype=dtype)
    Y[rows] = Y_new
    sample_weight = np.zeros(n_fit, dtype=dtype)
    sample_weight[rows] = problem.sample_weight
    coef = np.concatenate([previous.coef.astype(dtype, copy=False),
                           np.zeros((n_appended, Y.shape[1]), dtype=dtype)])
    state = previous.state.with_new_rows(n_appended)
    trainer = _dual_trainer(problem, K, Y, problem.settings, loss,
                            sample_weight=sample_weight, coef=coef, state=state)
    return TrainerSetup(trainer, None, X_fit, n_fit, rows)


def _support_rows(X_old, X_new):
    """Where each new sample sits in the support set: an equal old row, or appended.

    Returns ``(rows, appended)``: the support row of each sample, and the
    samples to append.  Equal samples within ``X_new`` take distinct old rows
    while there are, so that every sample of a batch has a row of its own.
    """
    free = {}
    for index, row in enumerate(X_old):
        free.setdefault(row.tobytes(), []).append(index)
    rows = np.empty(X_new.shape[0], dtype=np.intp)
    appended = []
    for index, row in enumerate(X_new):
        matches = free.get(row.tobytes())
        if matches:
            rows[index] = matches.pop(0)
        else:
            rows[index] = X_old.shape[0] + len(appended)
            appended.append(index)
    return rows, np.asarray(appended, dtype=np.intp)


def same_training_rows(previous, X, train_rows, precomputed):
    """True when the previous dual coefficients refer to these very rows."""
    prev_rows = previous.train_rows
    if (prev_rows is None) != (train_rows is None):
        return False
    if prev_rows is not None and not np.array_equal(prev_rows, train_rows):
        return False
    if precomputed:
        return previous.fit_digest == joblib.hash(X)
    X_fit = previous.X_fit
    return (
        X_fit is not None
        and X_fit.shape == X.shape
        and X_fit.dtype == X.dtype
        and np.array_equal(X_fit, X)
    )


# --------------------------------------------------------------------------
# Optimizer state over the training rows and over the whole support set
# --------------------------------------------------------------------------


def _full_rows(array, rows, n_rows):
    """``array`` (a row per training row) written into ``n_rows`` rows, zero elsewhere.

    ``rows=None`` means every row trains: a copy.
    """
    if rows is None:
        return np.array(array, copy=True)
    full = np.zeros((n_rows,) + array.shape[1:], dtype=array.dtype)
    full[rows] = array
    return full


def expand_state(state, train_rows, n_rows):
    """Optimizer state over the training rows -> over the whole support set.

    Held-out rows (early stopping) never received a gradient, so their
    momentum is zero; only the per-row buffers change shape.
    """
    if train_rows is None:
        return state
    return _map_row_buffers(state, train_rows.size,
                            lambda a: _full_rows(a, train_rows, n_rows))


def _restrict_state(state, train_rows):
    """The inverse of :func:`expand_state`, for a resumed fit."""
    if train_rows is None:
        return state
    n_rows = state.momentum_buffer.shape[0]
    return _map_row_buffers(state, n_rows, lambda a: a[train_rows])


def _map_row_buffers(state, n_rows, func):
    changes = {}
    for field in dataclasses.fields(state):
        value = getattr(state, field.name)
        rows_first = isinstance(value, np.ndarray) and value.ndim == 2
        if rows_first and value.shape[0] == n_rows:
            changes[field.name] = func(value)
    return dataclasses.replace(state, **changes)


def expand_coef(coef, train_rows, n_support):
    """Training rows' coefficients -> every row of the support set."""
    return _full_rows(coef, train_rows, n_support)
