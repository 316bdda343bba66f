"""The fitting engine: a training problem in, a fitted model out.

The estimators validate and encode; everything about *how* the readout is
trained happens here, on plain data (DESIGN 6):

1. the device (:mod:`._backend`), the stopping rule and, when held-out rows
   decide when to stop, the split;
2. the solver (:func:`._solvers.resolve_solver`: the one asked for, or the
   cost model's choice, counting a cached eigendecomposition as paid);
3. whether ``warm_start`` or online training continues the previous model;
4. the random network (finite width) and the trainer
   (:func:`._solvers.build_trainer`: memory check, Gram matrix or features,
   eigen cache, resumed state, online growth of the support set), and the
   step size when it is chosen from the kernel's largest eigenvalue;
5. the epoch loop (:func:`._epochs.run_epochs`: batches, stopping,
   divergence, schedules, callbacks);
6. the result, a :class:`._model.FittedModel`, which records what it takes to
   run the same training again (:func:`staged_outputs` replays it rather than
   keeping every epoch's coefficients).

The path of ``X`` is estimator -> :func:`fit_model` -> trainer -> compiled
kernels, and never back.  No scikit-learn estimator machinery here
(validation utilities only).
"""

import copy
import dataclasses
import warnings
from dataclasses import dataclass

import joblib
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from . import _backend, _distributed, _eigen_cache, _solvers
from ._epochs import Diverged, EpochPlan, Validation, run_epochs
from ._losses import loss_and_gradient
from ._model import FittedModel, NetworkSpec, operator_rows
from ._optimizer import OptimizerSettings
from ._random_network import draw_network

STOPPING_RULES = ("loss", "validation", "gcv", "fixed")
SCHEDULES = ("constant", "invscaling", "adaptive")
# early_stopping="auto": the patience of the stopping rule grows with the
# epochs run, so that a slow, steady path is followed to its end.
AUTO_WINDOW = 0.1
# early_stopping="auto" holds rows out only when that leaves enough of them
# (and at least two per class) to score; smaller data stop on the training
# loss.
AUTO_MIN_VALIDATION_ROWS = 10
# early_stopping="auto" on the eigen solver: the epoch is chosen by robust GCV
# with this gamma (1 would be plain GCV).  Plain GCV stopped late on noisy,
# low-signal data, as it picks too small a ridge there (benchmarks/DEFAULTS.md).
GCV_GAMMA = 0.5
# learning_rate_init="auto": step sizes in units of the kernel's scale, with
# lambda the largest eigenvalue of the training kernel per unit of sample
# weight.  SGD and momentum take 1 / lambda, half the stability limit of
# full-batch SGD; Adam and ADAM* take AUTO_ADAM_STEP / sqrt(lambda), which makes
# ADAM*'s path exactly invariant to the kernel's scale (its steps are
# normalised by sqrt(v), which grows as sqrt(lambda)).  On standardised data
# the default kernel has lambda about 2.5, so that is a rate of about 0.08
# (benchmarks/choose_defaults.py, DEFAULTS.md).
AUTO_SGD_STEP = 1.0
AUTO_ADAM_STEP = 0.125
_FIXED_SPLIT_SEED = 0


@dataclass(frozen=True)
class Schedule:
    """How long, on which batches and at which step sizes to train (MLP's names).

    Attributes
    ----------
    max_iter : int
        Epochs at most.
    batch_size : int or None
        Rows per step; ``None``: full batch.
    shuffle : bool
    tol : float
    n_iter_no_change : int
    early_stopping : {"auto", True, False}
        ``"auto"``: the epoch is chosen on the path, by generalised
        cross-validation when the solver has the whole spectrum, else by the
        loss of held-out rows; ``True``: MLP's early stopping on the held-out
        score; ``False``: MLP's rule on the training loss.
    validation_fraction : float
    learning_rate : {"constant", "invscaling", "adaptive"}
        The step-size schedule (DESIGN 3.6).
    power_t : float
        Exponent of ``"invscaling"``.
    """

    max_iter: int = 100
    batch_size: int = None
    shuffle: bool = True
    tol: float = 1e-4
    n_iter_no_change: int = 10
    early_stopping: object = False
    validation_fraction: float = 0.1
    learning_rate: str = "constant"
    power_t: float = 0.5


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
    score : callable or None
        ``score(F_val, val_rows)``: the estimator's score (R^2, accuracy) of
        outputs ``F_val`` on rows ``val_rows`` of the training data, used by
        ``early_stopping=True``.
    stratify : ndarray or None
        Labels to stratify the held-out split by.
    raw : ndarray or None
        The targets as given (for a scorer of held-out rows).
    """

    Y: object
    loss: str
    attributes: dict
    score: object = None
    stratify: object = None
    raw: object = None


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
        Draws the network, the held-out split and the shuffles.
    warm_start : bool
        Continue the previous model when it is the same model on the same
        rows (see :func:`fit_model`).
    resume_targets : Targets or None
        The targets encoded as the previous model encoded them, when that
        encoding applies to these targets (same outputs or classes); used
        when ``warm_start`` continues the previous model.
    online : bool
        One epoch of online training (``partial_fit``).
    learning_rate_auto : bool
        Replace ``settings.learning_rate`` by a step size in units of the
        training kernel's scale: ``AUTO_SGD_STEP / lambda`` for SGD and
        momentum, ``AUTO_ADAM_STEP / sqrt(lambda)`` for Adam and ADAM*, with
        ``lambda`` the kernel's largest eigenvalue per unit of sample weight.
    learning_rate_scale : float
        A factor on the automatic step size (the cross-validated estimators
        try several).
    split : (ndarray, ndarray) or None
        Training and held-out rows given by the caller (a cross-validation
        fold): the stopping rule then scores the held-out rows.
    validation_score : callable or None
        ``validation_score(F_val, val_rows)``, the held-out score to use
        instead of the default of ``schedule.early_stopping``.
    verbose : int
    callbacks : FitCallbacks or None
    name : str
        The estimator's name, for messages.
    stopping : {"loss", "validation", "gcv", "fixed"} or None
        Set by the engine from ``schedule.early_stopping``, unless given:
        ``"fixed"`` runs exactly ``max_iter`` epochs.
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
    learning_rate_auto: bool = False
    learning_rate_scale: float = 1.0
    split: tuple = None
    validation_score: object = None
    verbose: int = 0
    callbacks: object = None
    name: str = "model"
    stopping: str = None


@dataclass(frozen=True)
class TrainingRecord:
    """What it takes to run one fit again, epoch for epoch (:func:`staged_outputs`).

    The data (the training input as the engine received it, the encoded
    targets, the weights), the resolved settings, the held-out split, the
    shuffling stream as it was at the start, and the model the fit
    continued (its coefficients, state and rows only).
    """

    X: np.ndarray
    Y: np.ndarray
    loss: str
    sample_weight: np.ndarray
    settings: OptimizerSettings
    schedule: Schedule
    split: tuple
    shuffle_rng: object
    start: FittedModel = None
    continuing: bool = False


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
    if _distributed.is_distributed(problem.X):
        # The workers compute, each under its own thread count; a client
        # holding the workqueue layer's lock would deadlock a worker thread
        # of this same process (a threads-based cluster).
        return _fit(problem, previous)
    with _backend.numba_threads(problem.n_jobs):
        return _fit(problem, previous)


def _fit(problem, previous):
    continuing = problem.online and previous is not None
    # The held-out split and the shuffles come from one fresh stream of
    # random_state; the network (finite width) from another, so that an int
    # seed gives the same network whatever else is set.
    rng = check_random_state(problem.random_state)
    problem, solver, split, cache_key = _plan_solver(problem, previous, rng)
    train_rows, val_rows = split
    targets = problem.targets
    resume = previous if continuing else _resumable(problem, previous, solver,
                                                    train_rows)
    if resume is not None and not continuing:
        # The coefficients live in the previous target encoding.
        targets = problem.resume_targets
    form = _solvers.form_of(solver)
    if not continuing:  # every large array, before the network is drawn
        _solvers.check_fit_memory(problem, solver,
                                  _n_train(problem.X.shape[0], split), resume,
                                  cache_key)
    network = _network(problem, resume)
    # A resumed fit continues the previous shuffling stream (a copy, so that
    # a failed fit leaves the previous model exactly as it was).
    shuffle_rng = rng if resume is None else copy.deepcopy(resume.shuffle_rng)
    record = TrainingRecord(
        X=problem.X, Y=targets.Y, loss=targets.loss,
        sample_weight=problem.sample_weight, settings=problem.settings,
        schedule=problem.schedule, split=split,
        shuffle_rng=copy.deepcopy(shuffle_rng), start=_start_of(resume),
        continuing=continuing,
    )
    setup = _solvers.build_trainer(problem, solver, targets, split, resume, network,
                                   continuing=continuing, cache_key=cache_key)
    if setup.solver is not None and problem.stopping == "gcv":
        # Every LAPACK driver failed and the dual solver trains instead: it
        # has no spectrum to cross-validate the path with.
        problem = dataclasses.replace(problem, stopping="loss")
    learning_rate = _resolve_learning_rate(problem, setup.trainer, resume)
    record = dataclasses.replace(
        record, settings=dataclasses.replace(problem.settings,
                                             learning_rate=learning_rate))
    base = FittedModel(spec=problem.spec, form=form, solver=form,
                       device=problem.device, coef=None, X_fit=setup.X_fit,
                       network=network, targets=targets.attributes)
    plan = _epoch_plan(problem, targets, train_rows, setup.rows, shuffle_rng)
    try:
        history = run_epochs(
            setup.trainer,
            plan,
            validation=_validation(problem, targets, setup, val_rows),
            expand=_expander(form, train_rows, setup.n_support),
            callbacks=problem.callbacks,
            reconstruct=base.with_coef,
            name=problem.name,
            verbose=problem.verbose,
        )
    except Diverged as diverged:
        raise _divergence_error(problem, diverged, learning_rate) from None
    state = setup.trainer.state
    if form == "dual":
        state = _solvers.expand_state(state, train_rows, setup.n_support)
    X_key = setup.X_fit if setup.X_fit is not None else problem.X
    return dataclasses.replace(
        base,
        solver=setup.solver or solver,
        state=state,
        learning_rate=learning_rate,
        stopping=problem.stopping,
        shuffle_rng=shuffle_rng,
        model_key=_model_key(problem, X_key, form),
        train_rows=train_rows,
        fit_digest=_fit_digest(problem, form),
        # Rows on a Dask cluster live only as long as its futures: a replay
        # could not find them, and they do not pickle.
        record=None if _distributed.is_distributed(problem.X) else record,
        **_history_fields(history),
    )


def _plan_solver(problem, previous, rng):
    """The stopping rule, the solver and the held-out split of this fit.

    Returns ``(problem, solver, (train_rows, val_rows), cache_key)``, the
    problem with its ``stopping`` rule set.  ``early_stopping="auto"`` stops
    by GCV when the solver turns out to be the eigen solver (which has the
    spectrum), else by the loss of held-out rows.
    """
    schedule = problem.schedule
    n_rows = problem.X.shape[0]
    if problem.stopping == "fixed":
        pass
    elif problem.online or _distributed.is_distributed(problem.X):
        # Online, and on a Dask cluster (whose chunks are not split into
        # held-out rows), the training loss is the rule.
        problem = dataclasses.replace(problem, stopping="loss")
    elif problem.split is not None:
        problem = dataclasses.replace(problem, stopping="validation")
    elif schedule.early_stopping == "auto":
        # GCV needs the whole spectrum: no Krylov restriction.
        problem = dataclasses.replace(problem, stopping="gcv")
    elif schedule.early_stopping and not _enough_to_hold_out(problem, minimum=2):
        warnings.warn(
            f"{problem.name}: early_stopping=True holds out too few rows here "
            f"({n_rows} rows, validation_fraction="
            f"{schedule.validation_fraction}, at least 2 per class needed); "
            "stopping on the training loss instead."
        )
        problem = dataclasses.replace(problem, stopping="loss")
    else:
        rule = "validation" if schedule.early_stopping else "loss"
        problem = dataclasses.replace(problem, stopping=rule)
    split = (None, None)
    if problem.split is not None:
        split = tuple(np.sort(np.asarray(rows)) for rows in problem.split)
    elif problem.stopping == "validation":
        split = _split(problem, rng)
    full_batch = _batch_size(schedule, _n_train(n_rows, split)) >= _n_train(n_rows,
                                                                             split)
    cache_key = _early_cache_key(problem, split[0], full_batch)
    if problem.online and previous is not None:
        solver = previous.solver if previous.form == "primal" else "dual"
    else:
        solver = _solvers.resolve_solver(problem, _n_train(n_rows, split),
                                         problem.targets.Y.shape[1],
                                         problem.targets.loss, full_batch, cache_key)
    if problem.stopping == "gcv" and solver != "eigen":
        cache_key = None
        if _enough_to_hold_out(problem):
            problem = dataclasses.replace(problem, stopping="validation")
            # A default fit is reproducible, as SVR's or KernelRidge's is:
            # with random_state=None its held-out rows come from a fixed seed.
            split_rng = rng if problem.random_state is not None else _FIXED_SPLIT_SEED
            split = _split(problem, check_random_state(split_rng))
        else:
            problem = dataclasses.replace(problem, stopping="loss")
    return problem, solver, split, cache_key


def _enough_to_hold_out(problem, minimum=AUTO_MIN_VALIDATION_ROWS):
    """Whether ``validation_fraction`` of the rows is enough to score.

    At least ``minimum`` held-out rows, two training rows, and (classifier)
    two rows of every class, so that a stratified split can be made.
    """
    n_rows = problem.X.shape[0]
    n_held_out = int(np.ceil(problem.schedule.validation_fraction * n_rows))
    if n_held_out < minimum or n_rows - n_held_out < 2:
        return False
    labels = problem.targets.stratify
    if labels is None:
        return True
    counts = np.bincount(np.asarray(labels))
    counts = counts[counts > 0]
    return n_held_out >= 2 * counts.size and counts.min() >= 2


def _n_train(n_rows, split):
    return n_rows if split[0] is None else split[0].size


def _batch_size(schedule, n_train):
    return n_train if schedule.batch_size is None else min(schedule.batch_size,
                                                           n_train)


def _epoch_plan(problem, targets, train_rows, rows, shuffle_rng):
    schedule = problem.schedule
    n_train = problem.X.shape[0] if train_rows is None else train_rows.size
    batch_size = _batch_size(schedule, n_train)
    return EpochPlan(
        max_iter=1 if problem.online else schedule.max_iter,
        n_rows=n_train,
        batch_size=batch_size,
        full_batch=batch_size >= n_train,
        shuffle=schedule.shuffle,
        rng=shuffle_rng,
        tol=schedule.tol,
        n_iter_no_change=schedule.n_iter_no_change,
        online=problem.online,
        rows=rows,
        stopping=problem.stopping,
        window=(AUTO_WINDOW if schedule.early_stopping == "auto"
                or problem.split is not None else 0.0),
        schedule=schedule.learning_rate,
        reference_loss=_zero_model_loss(targets, problem.sample_weight, train_rows),
        gcv_gamma=GCV_GAMMA,
    )


def _zero_model_loss(targets, sample_weight, rows):
    """Mean training loss of the zero model, where a fit from scratch starts."""
    rows = slice(None) if rows is None else rows
    Y, weight = targets.Y[rows], sample_weight[rows]
    per_row, _ = loss_and_gradient(np.zeros_like(Y, dtype=np.float64), Y,
                                   targets.loss)
    return float(np.sum(weight * per_row) / np.sum(weight))


def _validation(problem, targets, setup, val_rows):
    """The held-out rows and their score, for the validation stopping rule."""
    if val_rows is None:
        return None
    if problem.validation_score is not None:
        def score(F_val):
            return problem.validation_score(F_val, val_rows)
    elif problem.schedule.early_stopping == "auto":
        # Minus the held-out loss: finer than accuracy, the same ranking as
        # R^2 (DESIGN 3.7: validation scores are the general rule).
        Y_val = targets.Y[val_rows]
        weight = problem.sample_weight[val_rows]

        def score(F_val):
            per_row, _ = loss_and_gradient(F_val, Y_val, targets.loss)
            return -float(np.sum(weight * per_row) / np.sum(weight))
    else:
        def score(F_val):
            return targets.score(F_val, val_rows)
    return Validation(setup.validation_operator, score)


def _expander(form, train_rows, n_support):
    """Trainer coefficients -> fitted coefficients over the whole support set."""
    if form == "primal":
        return np.array

    def expand(coef):
        return _solvers.expand_coef(coef, train_rows, n_support)

    return expand


def _resolve_learning_rate(problem, trainer, resume):
    """The base step size: as given, or in units of the kernel's scale ("auto")."""
    settings = problem.settings
    if not problem.learning_rate_auto:
        return settings.learning_rate
    if resume is not None and resume.learning_rate is not None:
        learning_rate = resume.learning_rate
    else:
        curvature = trainer.curvature()
        if not (np.isfinite(curvature) and curvature > 0):
            raise ValueError(
                f"{problem.name}: the training kernel is zero or not finite "
                f"(largest eigenvalue {curvature!r}), so no step size can be "
                "derived from it; check the inputs and the kernel's variances."
            )
        if settings.optimizer in ("sgd", "momentum"):
            learning_rate = AUTO_SGD_STEP / curvature
        else:
            learning_rate = AUTO_ADAM_STEP / np.sqrt(curvature)
        learning_rate *= problem.learning_rate_scale
        if learning_rate * settings.weight_decay >= 1:
            raise ValueError(
                f"{problem.name}: learning_rate_init='auto' chose "
                f"{learning_rate:.3g} from the kernel's scale, and with "
                f"weight_decay={settings.weight_decay!r} every step would "
                "multiply the coefficients by 1 - learning_rate * weight_decay "
                "<= 0. Lower weight_decay or set learning_rate_init.")
    trainer.set_learning_rate(float(learning_rate))
    return float(learning_rate)


def _history_fields(history):
    """The :class:`FittedModel` fields of :func:`._epochs.run_epochs`' history."""
    return {
        "coef": history["coef"],
        "n_iter": history["n_iter"],
        "best_iteration": history["best_iteration"],
        "loss_curve": history["loss_curve"],
        "validation_scores": history["validation_scores"],
        "best_validation_score": history["best_validation_score"],
        "best_loss": history["best_loss"],
    }


def _start_of(resume):
    """The part of a resumed model a replay needs: coefficients, state, rows."""
    if resume is None:
        return None
    return FittedModel(spec=resume.spec, form=resume.form, solver=resume.solver,
                       device=resume.device, coef=resume.coef, X_fit=resume.X_fit,
                       network=resume.network, state=resume.state,
                       learning_rate=resume.learning_rate,
                       train_rows=resume.train_rows)


def staged_outputs(model, X, *, device="cpu", n_jobs=None, working_memory=1024):
    """Outputs on ``X`` after each epoch of the fit that made ``model``.

    The fit is run again from its record, epoch for epoch (the same data,
    step sizes, batches and start), so no epoch's coefficients need to be
    kept with the model; this costs about as much as the fit did.

    Returns
    -------
    stages : list of ndarray of shape (n, k)
    """
    record = model.record
    if model.n_iter == 0:
        return []
    if record is None:
        raise ValueError(
            "Staged predictions replay the fit on its training rows, which a "
            "fit on a Dask array does not keep; use predict, or fit on a NumPy "
            "array to follow the epochs."
        )
    schedule = dataclasses.replace(record.schedule, max_iter=model.n_iter)
    problem = TrainingProblem(
        X=record.X,
        targets=Targets(Y=record.Y, loss=record.loss, attributes=model.targets),
        sample_weight=record.sample_weight, spec=model.spec, settings=record.settings,
        schedule=schedule, solver=model.solver, device=device, n_jobs=n_jobs,
        online=record.continuing, name="replay", stopping="fixed",
    )
    stages = []
    with _backend.numba_threads(n_jobs), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup = _solvers.build_trainer(problem, model.solver, problem.targets,
                                       record.split, record.start, model.network,
                                       continuing=record.continuing)
        operator = operator_rows(model, X, n_jobs, device)

        class Recorder(FitCallbacks):
            def begin(self, max_iter):
                return True

            def begin_epoch(self, context):
                return True

            def end_epoch(self, epoch_context, current):
                stages.append(operator @ current().coef)
                return False

        plan = _epoch_plan(problem, problem.targets, record.split[0], setup.rows,
                           copy.deepcopy(record.shuffle_rng))
        run_epochs(setup.trainer, plan,
                   expand=_expander(model.form, record.split[0], setup.n_support),
                   callbacks=Recorder(), reconstruct=model.with_coef, name="replay")
    return stages


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
    for rows, part in ((train_rows, "training"), (val_rows, "validation")):
        if not np.sum(problem.sample_weight[rows]) > 0:
            raise ValueError(
                f"{problem.name}: the {part} rows of the early-stopping split "
                "have no positive sample_weight. Give more rows a positive "
                "weight, or set early_stopping=False."
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


def _divergence_error(problem, diverged, learning_rate):
    """The estimator's error for a fit that diverged: what, where, what to change."""
    return ValueError(
        f"{problem.name}: training diverged at epoch {diverged.epoch}: "
        f"{diverged.reason}. Lower learning_rate_init (it is {learning_rate!r}"
        + (", chosen from the kernel's largest eigenvalue" if problem.learning_rate_auto
           and problem.settings.optimizer in ("sgd", "momentum") else "")
        + "); if the inputs are not standardised, standardise them (e.g. "
        "StandardScaler in a pipeline); for optimizer='sgd' or 'momentum' the "
        "kernel's scale (weight_variance, bias_variance) matters too. The "
        "previous fit, if any, is left as it was."
    )
