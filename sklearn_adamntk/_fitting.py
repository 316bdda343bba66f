"""The fitting engine: a training problem in, a fitted model out.

The estimators validate and encode; everything about *how* the readout is
trained happens here, on plain data (DESIGN 6):

1. the device (:mod:`._backend`) and, with early stopping, the held-out split;
2. the solver (:func:`._solvers.resolve_solver`: the one asked for, or the
   cost model's choice, counting a cached eigendecomposition as paid);
3. whether ``warm_start`` or online training continues the previous model;
4. the random network (finite width) and the trainer
   (:func:`._solvers.build_trainer`: memory check, Gram matrix or features,
   eigen cache, resumed state, online growth of the support set);
5. the epoch loop (:func:`._epochs.run_epochs`: batches, stopping,
   divergence, callbacks);
6. the result, a :class:`._model.FittedModel`.

The path of ``X`` is estimator -> :func:`fit_model` -> trainer -> compiled
kernels, and never back.  No scikit-learn estimator machinery here
(validation utilities only).
"""

import copy
import dataclasses
from dataclasses import dataclass

import joblib
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from . import _backend, _eigen_cache, _solvers
from ._epochs import EpochPlan, Validation, run_epochs
from ._model import FittedModel, NetworkSpec
from ._optimizer import OptimizerSettings
from ._random_network import draw_network


@dataclass(frozen=True)
class Schedule:
    """How long and on which batches to train (``MLPRegressor``'s names).

    Attributes
    ----------
    max_iter : int
        Epochs at most.
    batch_size : int or None
        Rows per step; ``None``: full batch.
    shuffle : bool
    tol : float
    n_iter_no_change : int
    early_stopping : bool
    validation_fraction : float
    """

    max_iter: int = 100
    batch_size: int = None
    shuffle: bool = True
    tol: float = 1e-4
    n_iter_no_change: int = 10
    early_stopping: bool = False
    validation_fraction: float = 0.1


@dataclass
class Targets:
    """Targets encoded for a loss, and how held-out rows are scored.

    Attributes
    ----------
    Y : ndarray of shape (n_samples, k)
        Encoded targets (standardised values, 0/1 labels or one-hot rows).
    loss : {"squared", "logistic", "softmax"}
    attributes : dict
        The encoding, kept with the fitted model so that its predictions are
        decoded with it (e.g. ``classes_``, or the target mean and scale).
    score : callable
        ``score(F_val, val_rows)``: the validation score (higher is better)
        of outputs ``F_val`` on rows ``val_rows`` of the training data.
    stratify : ndarray or None
        Labels to stratify the early-stopping split by.
    """

    Y: object
    loss: str
    attributes: dict
    score: object = None
    stratify: object = None


@dataclass
class TrainingProblem:
    """Everything one fit needs, as plain data.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated training rows, or the training Gram matrix when
        ``spec.kernel == "precomputed"``.
    targets : Targets
    sample_weight : ndarray of shape (n_samples,)
    spec : NetworkSpec
    settings : OptimizerSettings
    schedule : Schedule
    solver : {"auto", "dual", "eigen", "primal", "streamed"}
    device : {"cpu", "cuda", "auto"}
    n_jobs : int or None
    random_state : int, RandomState or None
        Draws the network, the early-stopping split and the shuffles.
    warm_start : bool
        Continue the previous model when it is the same model on the same
        rows (see :func:`fit_model`).
    resume_targets : Targets or None
        The targets encoded as the previous model encoded them, when that
        encoding applies to these targets (same outputs or classes); used
        when ``warm_start`` continues the previous model.
    online : bool
        One epoch of online training (``partial_fit``).
    verbose : int
    callbacks : FitCallbacks or None
    name : str
        The estimator's name, for messages.
    """

    X: object
    targets: Targets
    sample_weight: object
    spec: NetworkSpec
    settings: OptimizerSettings
    schedule: Schedule = Schedule()
    solver: str = "auto"
    device: str = "cpu"
    n_jobs: int = None
    random_state: object = None
    warm_start: bool = False
    resume_targets: Targets = None
    online: bool = False
    verbose: int = 0
    callbacks: object = None
    name: str = "model"


class FitCallbacks:
    """What the engine tells an observer of the fit (scikit-learn's callbacks).

    ``begin(max_iter)`` returns a context; ``begin_epoch(context)`` an epoch
    context; ``end_epoch(epoch_context, model)`` is told of each finished
    epoch and returns True to stop; ``end(context, model)`` closes the fit.
    ``model`` is a function returning the :class:`FittedModel` of that
    moment.  This base observes nothing.
    """

    def begin(self, max_iter):
        return None

    def begin_epoch(self, context):
        return None

    def end_epoch(self, epoch_context, model):
        return False

    def end(self, context, model):
        return None


def fit_model(problem, previous=None):
    """Train the readout of ``problem`` and return the fitted model.

    Parameters
    ----------
    problem : TrainingProblem
    previous : FittedModel or None
        The model fitted before on the same estimator.  Online training
        continues it with the new rows; with ``warm_start`` a fit continues
        it when the network, optimizer, targets and (dual form) training
        rows are unchanged; otherwise it is ignored.

    Returns
    -------
    FittedModel

    Raises
    ------
    ValueError
        For a device that cannot run this model, a validation split too
        small, or training that diverges (which names the epoch and what to
        change); ``previous`` is never modified.
    """
    problem = dataclasses.replace(problem, device=_fit_device(problem))
    with _backend.numba_threads(problem.n_jobs):
        return _fit(problem, previous)


def _fit(problem, previous):
    continuing = problem.online and previous is not None
    targets = problem.targets
    schedule = problem.schedule
    # The early-stopping split and the shuffles come from one fresh stream of
    # random_state; the network (finite width) from another, so that an int
    # seed gives the same network whatever else is set.
    rng = check_random_state(problem.random_state)
    train_rows = val_rows = None
    if schedule.early_stopping and not problem.online:
        train_rows, val_rows = _split(problem, rng)
    n_train = problem.X.shape[0] if train_rows is None else train_rows.size
    batch_size = n_train if schedule.batch_size is None else min(schedule.batch_size,
                                                                 n_train)
    full_batch = batch_size >= n_train

    cache_key = _early_cache_key(problem, train_rows, full_batch)
    if continuing:
        resume = previous
        solver = previous.solver if previous.form == "primal" else "dual"
    else:
        solver = _solvers.resolve_solver(problem, n_train, targets.Y.shape[1],
                                         targets.loss, full_batch, cache_key)
        resume = _resumable(problem, previous, solver, train_rows)
        if resume is not None:
            # The coefficients live in the previous target encoding.
            targets = problem.resume_targets
    form = _solvers.form_of(solver)
    network = _network(problem, resume)
    # A resumed fit continues the previous shuffling stream (a copy, so that
    # a failed fit leaves the previous model exactly as it was).
    shuffle_rng = rng if resume is None else copy.deepcopy(resume.shuffle_rng)

    setup = _solvers.build_trainer(problem, solver, targets, (train_rows, val_rows),
                                   resume, network, continuing=continuing,
                                   cache_key=cache_key)
    base = FittedModel(
        spec=problem.spec,
        form=form,
        solver=form,
        device=problem.device,
        coef=None,
        X_fit=setup.X_fit,
        network=network,
        targets=targets.attributes,
    )
    if form == "primal":
        expand = _copy
    else:
        def expand(coef):  # training rows -> every row of the support set
            return _solvers.expand_coef(coef, train_rows, setup.n_support)

    plan = EpochPlan(
        max_iter=1 if problem.online else schedule.max_iter,
        n_rows=n_train,
        batch_size=batch_size,
        full_batch=batch_size >= n_train,
        shuffle=schedule.shuffle,
        rng=shuffle_rng,
        tol=schedule.tol,
        n_iter_no_change=schedule.n_iter_no_change,
        online=problem.online,
        offset=setup.offset,
    )
    validation = None
    if val_rows is not None:
        validation = Validation(setup.validation_operator,
                                lambda F_val: targets.score(F_val, val_rows))
    history = run_epochs(
        setup.trainer,
        plan,
        validation=validation,
        expand=expand,
        callbacks=problem.callbacks,
        reconstruct=base.with_coef,
        name=problem.name,
        verbose=problem.verbose,
        diverged=lambda epoch: _diverged(problem, epoch),
    )
    state = setup.trainer.state
    if form == "dual":
        state = _solvers.expand_state(state, train_rows, setup.n_support)
    X_key = setup.X_fit if setup.X_fit is not None else problem.X
    return dataclasses.replace(
        base,
        solver=solver,
        state=state,
        shuffle_rng=shuffle_rng,
        model_key=_model_key(problem, X_key, form),
        train_rows=train_rows,
        fit_digest=_fit_digest(problem, form),
        **_history_fields(history),
    )


def _history_fields(history):
    """The :class:`FittedModel` fields of :func:`._epochs.run_epochs`' history."""
    return {
        "coef": history["coef"],
        "n_iter": history["n_iter"],
        "loss_curve": history["loss_curve"],
        "validation_scores": history["validation_scores"],
        "best_validation_score": history["best_validation_score"],
        "best_loss": history["best_loss"],
        "coef_path": history["path"],
    }


def _copy(coef):
    return coef.copy()


def _fit_device(problem):
    """Where this fit runs; ``"cuda"`` for a model the GPU cannot train is an error."""
    unsupported = None
    if problem.spec.width is not None:
        unsupported = (
            "the CUDA backend computes infinite-width kernels only; set width=None"
        )
    elif problem.solver in ("eigen", "primal"):
        unsupported = (
            f"the CUDA backend trains with solver='dual' (or 'auto'), not "
            f"solver={problem.solver!r}"
        )
    if unsupported is not None:
        if problem.device == "cuda":
            raise ValueError(
                f"{problem.name}: device='cuda': {unsupported}, or use device='cpu'."
            )
        return "cpu"
    return _backend.resolve_device(problem.device)


def _split(problem, rng):
    train_rows, val_rows = train_test_split(
        np.arange(problem.X.shape[0]),
        test_size=problem.schedule.validation_fraction,
        random_state=rng,
        stratify=problem.targets.stratify,
    )
    if val_rows.size < 2:
        raise ValueError(
            f"{problem.name}: the validation set is too small "
            f"({val_rows.size} rows). Increase validation_fraction or the "
            "size of the data, or set early_stopping=False."
        )
    # Sorted, so that the coefficients keep the order of the rows of X.
    return np.sort(train_rows), np.sort(val_rows)


def _early_cache_key(problem, train_rows, full_batch):
    """The eigen cache key, when the solver choice needs it before anything is drawn.

    Without a network to draw, the cache can be consulted before the solver
    is chosen, so that "auto" knows the eigensolve is paid.  The key hashes
    the data (all of a precomputed Gram matrix): "auto" pays for that only
    when something is cached.
    """
    wanted = problem.solver == "eigen" or (
        problem.solver == "auto" and _eigen_cache.nbytes() > 0
    )
    if problem.online or problem.spec.width is not None or not full_batch or not wanted:
        return None
    return _solvers.eigen_key(problem, train_rows, None, problem.targets.Y, fresh=True)


def _model_key(problem, X, form):
    """What must not change for ``warm_start`` to resume a model."""
    return (problem.spec, problem.settings.optimizer, form, X.shape[1])


def _resumable(problem, previous, solver, train_rows):
    """The previous model, if ``warm_start`` may continue it, else None."""
    if not problem.warm_start or previous is None or problem.resume_targets is None:
        return None
    form = _solvers.form_of(solver)
    if previous.model_key != _model_key(problem, problem.X, form):
        return None
    # Weights of a finite network continue on any rows; dual coefficients
    # only on the rows they belong to.
    if form == "dual" and not _solvers.same_training_rows(
        previous, problem.X, train_rows, problem.spec.precomputed
    ):
        return None
    return previous


def _network(problem, resume):
    spec = problem.spec
    if spec.width is None:
        return None
    if resume is not None:
        return resume.network
    return draw_network(problem.X.shape[1], width=spec.width, depth=spec.depth,
                        random_state=check_random_state(problem.random_state))


def _fit_digest(problem, form):
    """Enough to recognise the same precomputed Gram matrix at the next fit."""
    if form == "dual" and problem.spec.precomputed and problem.warm_start:
        return joblib.hash(problem.X)
    return None


def _diverged(problem, epoch):
    return ValueError(
        f"{problem.name}: training diverged at epoch {epoch}: the loss "
        "or the coefficients became NaN or infinite. Lower learning_rate_init "
        f"(it is {problem.settings.learning_rate!r}) or, for optimizer='sgd' or "
        "'momentum', scale the kernel down (weight_variance, bias_variance). "
        "The previous fit, if any, is left as it was."
    )
