"""ADAM* infinite-width networks as scikit-learn regressors and classifiers.

The estimators here are adapters (DESIGN 6): they validate and encode the data,
build the training kernel (or, at finite width, the random network's
features), run the Python epoch loop (batches, ``loss_curve_``, early
stopping, verbose lines, warnings, callbacks) and hand every optimizer step to
the trainers of :mod:`._optimizers`, which know nothing of scikit-learn.

Every call into the compiled core runs inside
:func:`._backend.numba_threads`, so ``n_jobs`` is honoured per call and
joblib workers do not oversubscribe the machine.
"""

import copy
import dataclasses
import warnings
from numbers import Integral, Real

import joblib
import numpy as np
from scipy.special import expit, log_softmax, softmax
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, gen_batches
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from . import _backend, _cuda, _eigen_cache
from ._optimizers import (
    DualTrainer,
    EigenTrainer,
    OptimizerSettings,
    PrimalTrainer,
    choose_solver,
    eigen_decomposition,
    krylov_decomposition,
    krylov_pays,
)
from ._pairwise import network_kernel
from ._random_network import (
    draw_network,
    empirical_kernel,
    n_feature_columns,
    network_features,
)

try:  # scikit-learn >= 1.9: progress bars and other fit callbacks.
    from sklearn.callback import CallbackSupportMixin

    _HAS_CALLBACKS = True
except ImportError:  # pragma: no cover - depends on the installed scikit-learn

    class CallbackSupportMixin:
        """Stand-in for scikit-learn < 1.9, which has no callback API."""

    _HAS_CALLBACKS = False

__all__ = ["AdamStarNTKClassifier", "AdamStarNTKRegressor"]

# The four defaults chosen by benchmarks/choose_defaults.py (its table is in
# benchmarks/DEFAULTS.md); the signatures below read them from here, so a new
# result is changed in one place (and in the "default=" of the docstrings).
DEFAULT_LEARNING_RATE_INIT = 1.0
DEFAULT_MAX_ITER = 100
DEFAULT_BIAS_VARIANCE = 1.0
DEFAULT_NORMALIZE_Y = True


def _full_rows(array, rows, n_rows):
    """``array`` (a row per training row) written into ``n_rows`` rows, zero elsewhere.

    ``rows=None`` means every row trains: a copy.
    """
    if rows is None:
        return np.array(array, copy=True)
    full = np.zeros((n_rows,) + array.shape[1:], dtype=array.dtype)
    full[rows] = array
    return full


def _expand_state(state, train_rows, n_rows):
    """Optimizer state over the training rows -> over the whole support set.

    Held-out rows (early stopping) never received a gradient, so their
    momentum is zero; only the per-row buffers change shape.
    """
    if train_rows is None:
        return state
    return _map_row_buffers(
        state, train_rows.size, lambda a: _full_rows(a, train_rows, n_rows)
    )


def _restrict_state(state, train_rows):
    """The inverse of :func:`_expand_state`, for a resumed fit."""
    if train_rows is None:
        return state
    n_rows = state.momentum_buffer.shape[0]
    return _map_row_buffers(state, n_rows, lambda a: a[train_rows])


def _map_row_buffers(state, n_rows, func):
    changes = {}
    for field in dataclasses.fields(state):
        value = getattr(state, field.name)
        if (
            isinstance(value, np.ndarray)
            and value.ndim == 2
            and value.shape[0] == n_rows
        ):
            changes[field.name] = func(value)
    return dataclasses.replace(state, **changes)


class _BaseAdamStarNTK(CallbackSupportMixin, BaseEstimator):
    """Shared parameters, validation, epoch loop and prediction.

    Subclasses say how targets are validated, encoded and scored, and how raw
    outputs become predictions.
    """

    _parameter_constraints: dict = {
        "kernel": [StrOptions({"nngp", "ntk", "precomputed"})],
        "activation": [StrOptions({"relu", "erf"})],
        "depth": [Interval(Integral, 1, None, closed="left")],
        "weight_variance": [Interval(Real, 0, None, closed="neither")],
        "bias_variance": [Interval(Real, 0, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left"), None],
        "optimizer": [StrOptions({"adam*", "sgd", "momentum", "adam"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "solver": [StrOptions({"auto", "dual", "eigen", "primal"})],
        # "cuda" without a GPU is an error: there is no silent fallback.
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "n_jobs": [Integral, None],
    }

    # Set by the subclasses: the loss a regressor or classifier trains with
    # (the classifier refines "logistic" to "softmax" for 3+ classes).
    _squared_loss = False

    def __init__(
        self,
        *,
        kernel="nngp",
        activation="relu",
        depth=1,
        weight_variance=2.0,
        bias_variance=DEFAULT_BIAS_VARIANCE,
        width=None,
        optimizer="adam*",
        learning_rate_init=DEFAULT_LEARNING_RATE_INIT,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        momentum=0.9,
        weight_decay=0.0,
        batch_size=None,
        max_iter=DEFAULT_MAX_ITER,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        verbose=0,
        solver="auto",
        device="cpu",
        n_jobs=None,
    ):
        self.kernel = kernel
        self.activation = activation
        self.depth = depth
        self.weight_variance = weight_variance
        self.bias_variance = bias_variance
        self.width = width
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.solver = solver
        self.device = device
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------
    # Validation
    # ------------------------------------------------------------------
    def _check_params(self, n_train=None, *, online=False):
        """Every rule that ties two hyper-parameters together, in one place.

        Single-parameter rules live in ``_parameter_constraints``. Called
        before any work, once the number of training rows is known.
        """
        name = type(self).__name__
        if self.kernel == "precomputed" and self.width is not None:
            raise ValueError(
                f"{name}: kernel='precomputed' takes the Gram matrix as X, so "
                f"there is no network to draw; width must be None, got "
                f"{self.width!r}."
            )
        if self.optimizer == "adam" and self.width is None:
            raise ValueError(
                f"{name}: optimizer='adam' (per-weight second moment) has no "
                "infinite-width or kernel form; set an int width (a finite "
                "random network) or use optimizer='adam*'."
            )
        if self.optimizer == "adam" and self.solver in ("dual", "eigen"):
            raise ValueError(
                f"{name}: optimizer='adam' trains the weights themselves and "
                f"needs solver='primal' or 'auto', got solver={self.solver!r}."
            )
        if self.solver == "primal" and self.width is None:
            raise ValueError(
                f"{name}: solver='primal' trains the weights of a finite "
                "network; set an int width, or use solver='dual' or 'eigen'."
            )
        if self.solver == "eigen":
            if not self._squared_loss:
                raise ValueError(
                    f"{name}: solver='eigen' needs the squared loss "
                    "(AdamStarNTKRegressor); use solver='dual' or 'auto'."
                )
            if online:
                raise ValueError(
                    f"{name}: solver='eigen' needs the whole training set in "
                    "every step, so it cannot train online; use "
                    "solver='dual' or 'auto' with partial_fit."
                )
            if (
                self.batch_size is not None
                and n_train is not None
                and self.batch_size < n_train
            ):
                raise ValueError(
                    f"{name}: solver='eigen' needs full-batch training, but "
                    f"batch_size={self.batch_size} < {n_train} training rows; "
                    "use batch_size=None or solver='dual'."
                )
        if online and self.early_stopping:
            raise ValueError(
                f"{name}: partial_fit does not support early_stopping=True "
                "(there is no held-out set in online training)."
            )

    def _check_precomputed_square(self, X):
        if self.kernel == "precomputed" and X.shape[0] != X.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: with kernel='precomputed', X at fit "
                "is the Gram matrix of the training rows and must be square "
                f"(n_train, n_train); got shape {X.shape}."
            )

    def _validate_X_predict(self, X):
        check_is_fitted(self)
        return validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32], order="C"
        )

    # ------------------------------------------------------------------
    # Kernels and features
    # ------------------------------------------------------------------
    def _kernel_params(self):
        return {
            "kernel": self.kernel,
            "activation": self.activation,
            "weight_variance": self.weight_variance,
            "bias_variance": self.bias_variance,
        }

    def _gram(self, X, Y=None, network=None):
        """Kernel between rows of ``X`` and ``Y`` (``Y=None``: of ``X`` with itself)."""
        if self.width is None:
            return network_kernel(
                X,
                Y,
                depth=self.depth,
                n_jobs=self.n_jobs,
                device=self._device(),
                **self._kernel_params(),
            )
        return empirical_kernel(network, X, Y, **self._kernel_params())

    def _features(self, X, network):
        return network_features(network, X, **self._kernel_params())

    def _model_identity(self, X, solver_form):
        """What must not change for ``warm_start`` to resume the previous model."""
        return (
            self.kernel,
            self.activation,
            self.depth,
            float(self.weight_variance),
            float(self.bias_variance),
            self.width,
            self.optimizer,
            solver_form,
            X.shape[1],
        )

    # ------------------------------------------------------------------
    # Fitting
    # ------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, *, online, classes=None):
        # Fit into local variables and assign at the end; if anything fails
        # (bad input, divergence) the previous model is put back as it was.
        # The callback machinery's own attributes are left alone: scikit-learn
        # tears the callbacks down after this returns.
        snapshot = {
            key: value
            for key, value in self.__dict__.items()
            if not key.startswith(("_callback", "_skl_callbacks"))
        }
        try:
            with _backend.numba_threads(self.n_jobs):
                fitted = self._fit_model(X, y, sample_weight, online, classes)
        except BaseException:
            for key in list(self.__dict__):
                if key not in snapshot and not key.startswith(
                    ("_callback", "_skl_callbacks")
                ):
                    del self.__dict__[key]
            self.__dict__.update(snapshot)
            raise
        for key in ("dual_coef_", "X_fit_", "coef_", "network_", "_fit_digest"):
            self.__dict__.pop(key, None)
        self.__dict__.update(fitted)
        return self

    def _fit_model(self, X, y, sample_weight, online, classes):
        """Fit or continue the model; returns the fitted attributes as a dict."""
        fitted_before = _is_fitted_model(self)
        previous = dict(self.__dict__) if fitted_before else None
        continuing = online and fitted_before

        X, y, sample_weight = self._validate_fit_inputs(
            X, y, sample_weight, online=online, continuing=continuing
        )
        device = self._device(fitting=True)
        targets = self._encode_targets(
            y, sample_weight, classes=classes, previous=previous if continuing else None
        )

        # The early-stopping split and the shuffles come from one fresh stream
        # of random_state; the network (finite width) from another, so that an
        # int seed gives the same network whatever else is set.
        rng = check_random_state(self.random_state)
        train_rows = val_rows = None
        if self.early_stopping and not online:
            train_rows, val_rows = self._split(X.shape[0], targets, rng)
        n_train = X.shape[0] if train_rows is None else train_rows.size
        batch_size = (
            n_train if self.batch_size is None else min(self.batch_size, n_train)
        )
        full_batch = batch_size >= n_train

        # Without a network to draw, the eigen cache can be consulted before
        # the solver is chosen, so that "auto" knows the eigensolve is paid.
        # The key hashes the data (all of a precomputed Gram matrix): "auto"
        # pays for that only when something is cached.
        eigen_key = None
        if (
            not online
            and self.width is None
            and (
                self.solver == "eigen"
                or (self.solver == "auto" and _eigen_cache.nbytes() > 0)
            )
            and full_batch
        ):
            eigen_key = self._eigen_key(
                X, train_rows, sample_weight, None, targets["Y"], fresh=True
            )
        if continuing:
            resume = previous
            solver = "primal" if previous["solver_"] == "primal" else "dual"
        else:
            solver = self._resolve_solver(
                X,
                n_train,
                targets["Y"].shape[1],
                targets["loss"],
                full_batch,
                online,
                eigen_key,
            )
            resume = self._resumable(previous, X, solver, targets, train_rows)
            if resume is not None:
                # The coefficients live in the previous target scaling.
                targets = self._encode_targets(
                    y, sample_weight, classes=classes, previous=resume
                )
        form = "primal" if solver == "primal" else "dual"

        if self.width is None:
            network = None
        elif resume is not None:
            network = resume["network_"]
        else:
            network = draw_network(
                X.shape[1],
                width=self.width,
                depth=self.depth,
                random_state=check_random_state(self.random_state),
            )
        # A resumed fit continues the previous shuffling stream (a copy, so
        # that a failed fit leaves the previous model exactly as it was).
        shuffle_rng = rng if resume is None else copy.deepcopy(resume["_shuffle_rng"])

        trainer, val_operator, X_fit, n_support, batch_offset = self._make_trainer(
            solver,
            X,
            targets,
            sample_weight,
            train_rows,
            val_rows,
            resume,
            network,
            continuing,
            eigen_key,
        )

        if form == "primal":
            expand = np.array
        else:

            def expand(coef):  # training rows -> every row of the support set
                return _full_rows(coef, train_rows, n_support)

        history = self._run_epochs(
            trainer,
            max_iter=1 if online else self.max_iter,
            online=online,
            n_batch_rows=n_train,
            batch_offset=batch_offset,
            batch_size=batch_size,
            full_batch=full_batch,
            shuffle_rng=shuffle_rng,
            val_operator=val_operator,
            val_targets=None
            if val_rows is None
            else self._val_targets(targets, val_rows, sample_weight),
            expand=expand,
            reconstruction=lambda coef: self._reconstruction(
                coef, form, network, X_fit, targets
            ),
            X=X,
            y=y,
            sample_weight=sample_weight,
        )

        fitted = {
            "device_": device,
            "solver_": solver,
            "n_outputs_": targets["Y"].shape[1],
            "n_iter_": history["n_iter"],
            "t_": int(trainer.state.t),
            "loss_curve_": history["loss_curve"],
            "validation_scores_": history["validation_scores"],
            "best_validation_score_": history["best_validation_score"],
            "best_loss_": history["best_loss"],
            "_coef_path": history["path"],
            "_shuffle_rng": shuffle_rng,
            "_model_key": self._model_identity(X_fit if X_fit is not None else X, form),
            "_train_rows": train_rows,
        }
        if form == "primal":
            fitted["coef_"] = history["coef"]
            fitted["_state"] = trainer.state
        else:
            fitted["dual_coef_"] = history["coef"]
            fitted["X_fit_"] = X_fit
            fitted["_state"] = _expand_state(trainer.state, train_rows, n_support)
            if self.kernel == "precomputed" and self.warm_start:
                # Enough to recognise the same Gram matrix at the next fit.
                fitted["_fit_digest"] = joblib.hash(X)
        if network is not None:
            fitted["network_"] = network
        fitted.update(targets["attributes"])
        return fitted

    def _validate_fit_inputs(self, X, y, sample_weight, *, online, continuing):
        """Validate data and hyper-parameters together, before any work."""
        X, y = self._validate_Xy_fit(X, y, reset=not continuing)
        self._check_params(X.shape[0], online=online)
        if not continuing:
            self._check_precomputed_square(X)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=X.dtype, ensure_non_negative=True
        )
        if not np.sum(sample_weight) > 0:
            raise ValueError(
                f"{type(self).__name__}: sample_weight must have a positive sum."
            )
        return X, y, sample_weight

    def _check_memory(self, solver, n_train, X, *, cached=False):
        """Fail fast, with what to change, when the training operator cannot fit.

        ``cached``: the eigendecomposition is cached, so no ``N x N`` array is
        allocated.  Cached decompositions are dropped before giving up.
        """
        if cached:
            return
        try:
            self._check_allocations(solver, n_train, X)
        except MemoryError:
            if not _eigen_cache.nbytes():
                raise
            _eigen_cache.clear()
            self._check_allocations(solver, n_train, X)

    def _check_allocations(self, solver, n_train, X):
        itemsize = X.dtype.itemsize
        if solver == "primal":
            n_columns = n_feature_columns(
                X.shape[1], width=self.width, depth=self.depth, kernel=self.kernel
            )
            _backend.check_allocation(
                n_train * n_columns * itemsize,
                f"the {n_train} x {n_columns} feature matrix of the network",
                "use a smaller width, kernel='nngp' (width + 1 features), or "
                "float32 input",
            )
            return
        # eigen weights the Gram matrix in place and adds the eigenvectors.
        copies = 2 if solver == "eigen" else 1
        _backend.check_allocation(
            copies * n_train * n_train * itemsize,
            f"the {n_train} x {n_train} training Gram matrix"
            + (" (and its eigenvectors for solver='eigen')" if copies > 1 else ""),
            "use width=... with solver='primal' (a finite network, memory "
            "linear in the rows), float32 input, or fewer rows",
        )

    def _resumable(self, previous, X, solver, targets, train_rows):
        """The previous model, if ``warm_start`` may continue it, else None."""
        if not self.warm_start or previous is None:
            return None
        form = "primal" if solver == "primal" else "dual"
        if previous["_model_key"] != self._model_identity(X, form):
            return None
        if not self._same_targets(previous, targets):
            return None
        # Weights of a finite network continue on any rows; dual coefficients
        # only on the rows they belong to.
        if form == "dual" and not self._same_training_rows(previous, X, train_rows):
            return None
        return previous

    def _make_trainer(
        self,
        solver,
        X,
        targets,
        sample_weight,
        train_rows,
        val_rows,
        resume,
        network,
        continuing,
        eigen_key,
    ):
        """The trainer, and what the epoch loop needs around it.

        Returns ``(trainer, val_operator, X_fit, n_support, batch_offset)``:
        ``val_operator`` maps coefficients to held-out outputs (kernel or
        features of the validation rows, None without early stopping).
        ``eigen_key`` is the cache key of the training Gram matrix, when the
        solver choice already needed it.
        """
        settings = OptimizerSettings(
            optimizer=self.optimizer,
            learning_rate=self.learning_rate_init,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        loss = targets["loss"]
        Y = np.ascontiguousarray(targets["Y"], dtype=X.dtype)
        rows = slice(None) if train_rows is None else train_rows
        n_train = X.shape[0] if train_rows is None else train_rows.size
        if solver == "eigen" and (eigen_key is None or resume is not None):
            eigen_key = self._eigen_key(
                X, train_rows, sample_weight, network, targets["Y"],
                fresh=resume is None,
            )
        if not continuing:
            cached = solver == "eigen" and _eigen_cache.get(eigen_key) is not None
            self._check_memory(solver, n_train, X, cached=cached)
        Y_train, sw_train = Y[rows], sample_weight[rows]

        if solver == "primal":
            trainer = PrimalTrainer(
                self._features(X[rows], network),
                Y_train,
                settings,
                loss,
                sample_weight=sw_train,
                coef=None if resume is None else resume["coef_"],
                state=None if resume is None else resume["_state"],
            )
            val_operator = None
            if val_rows is not None:
                val_operator = self._features(X[val_rows], network)
            return trainer, val_operator, None, None, 0

        if continuing:
            trainer, X_fit, batch_offset = self._online_dual_trainer(
                resume, X, Y, sample_weight, settings, loss, network
            )
            return trainer, None, X_fit, X_fit.shape[0], batch_offset

        X_fit = None if self.kernel == "precomputed" else X
        coef = state = None
        if resume is not None:
            coef = resume["dual_coef_"][rows]
            state = _restrict_state(resume["_state"], train_rows)
        if solver == "eigen":
            trainer = self._eigen_trainer(
                eigen_key, X, train_rows, network, Y_train, sw_train, settings, coef,
                state,
            )
        else:
            trainer = self._dual_trainer(
                self._train_gram(X, train_rows, network),
                Y_train,
                settings,
                loss,
                sample_weight=sw_train,
                coef=coef,
                state=state,
            )
        val_operator = None
        if val_rows is not None:
            if self.kernel == "precomputed":
                val_operator = np.ascontiguousarray(X[np.ix_(val_rows, train_rows)])
            else:
                val_operator = self._gram(X[val_rows], X[train_rows], network=network)
        return trainer, val_operator, X_fit, X.shape[0], 0

    def _train_gram(self, X, train_rows, network):
        """Gram matrix among the training rows (on the GPU, it stays there)."""
        if self.kernel == "precomputed":
            K = X if train_rows is None else X[np.ix_(train_rows, train_rows)]
            return np.ascontiguousarray(K)
        rows = slice(None) if train_rows is None else train_rows
        if self._device() == "cuda":
            return _cuda.kernel_matrix(
                X[rows], depth=self.depth, keep_on_device=True, **self._kernel_params()
            )
        return self._gram(X[rows], network=network)

    def _dual_trainer(self, K, *args, **kwargs):
        """The dual trainer of the device this fit runs on (same interface)."""
        trainer = _cuda.DualTrainer if self._device() == "cuda" else DualTrainer
        return trainer(K, *args, **kwargs)

    def _device(self, *, fitting=False):
        """Where the numeric work runs: ``"cpu"`` or ``"cuda"``.

        ``"auto"`` is the GPU when there is one and the CUDA backend runs
        this model; an explicit ``"cuda"`` raises when either is not so.
        """
        unsupported = None
        if self.width is not None:
            unsupported = (
                "the CUDA backend computes infinite-width kernels only; set "
                "width=None"
            )
        elif fitting and self.solver in ("eigen", "primal"):
            unsupported = (
                f"the CUDA backend trains with solver='dual' (or 'auto'), not "
                f"solver={self.solver!r}"
            )
        if unsupported is not None:
            if self.device == "cuda":
                raise ValueError(
                    f"{type(self).__name__}: device='cuda': {unsupported}, or "
                    "use device='cpu'."
                )
            return "cpu"
        if not fitting and self.device == "cuda" and not _cuda.cuda_available():
            # The fitted state is plain NumPy: a model fitted on a GPU and
            # loaded where there is none predicts on the CPU.
            return "cpu"
        return _cuda.resolve_device(self.device)

    def _krylov_epochs(self, n_train, n_outputs, fresh):
        """Epochs of a Krylov restriction for this fit, or None for a full eigh.

        From zero coefficients, ``max_iter`` epochs need ``(max_iter + 1) k``
        directions and as many products with ``K`` (about one dual fit)
        instead of an ``O(N^3)`` eigensolve.
        """
        if fresh and krylov_pays(n_train, n_outputs, self.max_iter):
            return self.max_iter
        return None

    def _eigen_key(self, X, train_rows, sample_weight, network, Y, *, fresh):
        """Digest of what the training spectrum (or its restriction) depends on."""
        n_train = X.shape[0] if train_rows is None else train_rows.size
        return _eigen_cache.cache_key(
            self._kernel_params(),
            self.depth,
            network,
            X,
            train_rows,
            sample_weight,
            Y,
            self._krylov_epochs(n_train, Y.shape[1], fresh),
        )

    def _eigen_trainer(
        self, key, X, train_rows, network, Y, sample_weight, settings, coef, state
    ):
        """An :class:`EigenTrainer`, on a cached eigendecomposition when possible.

        The Gram matrix is computed only when the decomposition is not cached
        or a resumed model needs it, and is decomposed in place when nothing
        else needs it afterwards.
        """
        decomposition = _eigen_cache.get(key)
        resuming = coef is not None
        K = None
        if decomposition is None or resuming:
            K = self._train_gram(X, train_rows, network)
        krylov_epochs = self._krylov_epochs(Y.shape[0], Y.shape[1], not resuming)
        if decomposition is None and krylov_epochs is not None:
            decomposition = krylov_decomposition(
                K, Y, krylov_epochs, sample_weight=sample_weight
            )
            K = None
            _eigen_cache.put(key, decomposition)
        elif decomposition is None:
            in_place = not resuming and K is not X
            decomposition = eigen_decomposition(
                K, sample_weight=sample_weight, overwrite_K=in_place
            )
            if in_place:
                K = None
            _eigen_cache.put(key, decomposition)
        return EigenTrainer(
            decomposition,
            K,
            Y,
            settings,
            sample_weight=sample_weight,
            coef=coef,
            state=state,
        )

    def _resolve_solver(
        self, X, n_train, n_outputs, loss, full_batch, online, eigen_key
    ):
        if online:
            # Online training keeps adding rows: the weights of a finite
            # network do not grow with them, the dual coefficients do.
            if self.width is not None and self.solver in ("auto", "primal"):
                return "primal"
            return "dual"
        if self._device() == "cuda":
            return "dual"  # the one solver of the CUDA backend
        if self.solver != "auto":
            return self.solver
        n_columns = None
        if self.width is not None:
            n_columns = n_feature_columns(
                X.shape[1], width=self.width, depth=self.depth, kernel=self.kernel
            )
        return choose_solver(
            n_samples=n_train,
            n_outputs=n_outputs,
            n_feature_columns=n_columns,
            full_batch=full_batch,
            loss=loss,
            optimizer=self.optimizer,
            max_iter=self.max_iter,
            eigen_cached=eigen_key is not None
            and _eigen_cache.get(eigen_key) is not None,
        )

    def _same_training_rows(self, previous, X, train_rows):
        """True when the previous dual coefficients refer to these very rows."""
        prev_rows = previous["_train_rows"]
        if (prev_rows is None) != (train_rows is None):
            return False
        if prev_rows is not None and not np.array_equal(prev_rows, train_rows):
            return False
        if self.kernel == "precomputed":
            return previous.get("_fit_digest") == joblib.hash(X)
        X_fit = previous["X_fit_"]
        return (
            X_fit is not None
            and X_fit.shape == X.shape
            and X_fit.dtype == X.dtype
            and np.array_equal(X_fit, X)
        )

    def _split(self, n_samples, targets, rng):
        train_rows, val_rows = train_test_split(
            np.arange(n_samples),
            test_size=self.validation_fraction,
            random_state=rng,
            stratify=targets.get("stratify"),
        )
        if val_rows.size < 2:
            raise ValueError(
                f"{type(self).__name__}: the validation set is too small "
                f"({val_rows.size} rows). Increase validation_fraction or the "
                "size of the data, or set early_stopping=False."
            )
        # Sorted, so that the coefficients keep the order of the rows of X.
        return np.sort(train_rows), np.sort(val_rows)

    def _online_dual_trainer(
        self, previous, X_new, Y_new, sw_new, settings, loss, network
    ):
        """Trainer for one online epoch in which the new rows join the support set.

        Returns ``(trainer, X_fit, batch_offset)``: the new rows are the last
        ones of ``X_fit`` and the batches index them from ``batch_offset``.
        Only the kernel between the new rows and the whole support set is
        computed: the old rows never form a batch, so the trainer never reads
        the kernel among them (that block is left zero).
        """
        X_old = previous["X_fit_"]
        n_old, n_new = X_old.shape[0], X_new.shape[0]
        X_fit = np.concatenate([X_old, X_new.astype(X_old.dtype, copy=False)])
        K_new = self._gram(X_new, X_fit, network=network)
        dtype = K_new.dtype
        # Mini-batch steps read only the batch rows of K (never its old-old
        # block), so only those rows are written: the untouched zero pages
        # of the rest are never materialised.
        K = np.zeros((n_old + n_new, n_old + n_new), dtype=dtype)
        K[n_old:] = K_new
        Y = np.zeros((n_old + n_new, Y_new.shape[1]), dtype=dtype)
        Y[n_old:] = Y_new
        sample_weight = np.zeros(n_old + n_new, dtype=dtype)
        sample_weight[n_old:] = sw_new
        coef = np.concatenate(
            [
                previous["dual_coef_"].astype(dtype, copy=False),
                np.zeros((n_new, Y.shape[1]), dtype=dtype),
            ]
        )
        state = previous["_state"].with_new_rows(n_new)
        trainer = self._dual_trainer(
            K, Y, settings, loss, sample_weight=sample_weight, coef=coef, state=state
        )
        return trainer, X_fit, n_old

    def _epoch_batches(self, n_rows, batch_size, full_batch, rng, offset):
        """Index arrays of this epoch's mini-batches, in the order they run."""
        if full_batch:
            # The order inside one full batch does not change the step, so no
            # random numbers are drawn for it.
            return [np.arange(offset, offset + n_rows)]
        order = rng.permutation(n_rows) if self.shuffle else np.arange(n_rows)
        return [order[s] + offset for s in gen_batches(n_rows, batch_size)]

    def _run_epochs(
        self,
        trainer,
        *,
        max_iter,
        online,
        n_batch_rows,
        batch_offset,
        batch_size,
        full_batch,
        shuffle_rng,
        val_operator,
        val_targets,
        expand,
        reconstruction,
        X,
        y,
        sample_weight,
    ):
        """The epoch loop: batches, loss curve, early stopping, verbose, callbacks.

        ``expand`` turns the trainer's coefficients into the fitted
        coefficients (dual: zero rows for held-out rows); ``reconstruction``
        builds the attributes a callback's ``fitted_estimator`` needs.
        """
        name = type(self).__name__
        early_stopping = val_operator is not None
        loss_curve = []
        validation_scores = [] if early_stopping else None
        best_validation_score = -np.inf if early_stopping else None
        best_loss = None if early_stopping else np.inf
        no_improvement = 0
        path = []
        best_epoch = None
        eigen_path = isinstance(trainer, EigenTrainer)
        if early_stopping:
            # The eigen trainer maps the validation kernel into its basis once,
            # so that no epoch needs its O(N^2 k) dual coefficients.
            if eigen_path:
                val_outputs = trainer.output_map(val_operator)
            else:
                def val_outputs():
                    return val_operator @ coef

        callback_ctx = self._begin_callbacks(X, y, sample_weight, max_iter)
        n_iter = 0
        try:
            for _ in range(max_iter):
                batches = self._epoch_batches(
                    n_batch_rows, batch_size, full_batch, shuffle_rng, batch_offset
                )
                epoch_ctx = self._begin_epoch_callback(
                    callback_ctx, X, y, sample_weight
                )
                try:
                    epoch_loss = trainer.run_epoch(batches)
                except FloatingPointError as exc:
                    raise self._diverged(n_iter + 1) from exc
                if not np.isfinite(epoch_loss):
                    raise self._diverged(n_iter + 1)
                n_iter += 1
                loss_curve.append(float(epoch_loss))
                # The eigen trainer gives its whole path at the end from one
                # product; reading its coefficients costs O(N^2 k), so only
                # callbacks that ask for them do.
                if not eigen_path:
                    coef = trainer.coef
                    path.append(expand(coef))

                line = f"Iteration {n_iter}, loss = {epoch_loss:.8f}"
                if early_stopping:
                    score = self._validation_score(val_outputs(), val_targets)
                    validation_scores.append(score)
                    line += f", validation score = {score:.8f}"
                    if score < best_validation_score + self.tol:
                        no_improvement += 1
                    else:
                        no_improvement = 0
                    if score > best_validation_score:
                        best_validation_score = score
                        best_epoch = n_iter - 1
                else:
                    if epoch_loss > best_loss - self.tol:
                        no_improvement += 1
                    else:
                        no_improvement = 0
                    best_loss = min(best_loss, float(epoch_loss))
                if self.verbose:
                    print(line)

                stop = self._end_epoch_callback(
                    epoch_ctx,
                    X,
                    y,
                    sample_weight,
                    lambda: reconstruction(expand(trainer.coef)),
                )
                if stop or online:
                    break
                if no_improvement > self.n_iter_no_change:
                    if self.verbose:
                        what = "Validation score" if early_stopping else "Training loss"
                        print(
                            f"{what} did not improve more than tol={self.tol:f} "
                            f"for {self.n_iter_no_change} consecutive epochs. "
                            "Stopping."
                        )
                    break
            else:
                if not online:
                    warnings.warn(
                        f"{name}: maximum iterations ({max_iter}) reached and "
                        "the optimization hasn't converged yet; increase "
                        "max_iter or learning_rate_init, or raise tol.",
                        ConvergenceWarning,
                    )
        except KeyboardInterrupt:
            if n_iter == 0:
                raise
            warnings.warn(
                f"{name}: training interrupted by user after {n_iter} epochs."
            )

        if eigen_path:
            path = [expand(coef) for coef in trainer.coef_path()]
        # As MLP: with early stopping, the best epoch's coefficients are kept.
        final = path[-1] if best_epoch is None else path[best_epoch]
        self._end_callbacks(
            callback_ctx, X, y, sample_weight, lambda: reconstruction(final)
        )
        return {
            "coef": final,
            "n_iter": n_iter,
            "loss_curve": loss_curve,
            "validation_scores": validation_scores,
            "best_validation_score": best_validation_score,
            "best_loss": best_loss,
            "path": path,
        }

    def _diverged(self, epoch):
        return ValueError(
            f"{type(self).__name__}: training diverged at epoch {epoch}: the loss "
            "or the coefficients became NaN or infinite. Lower learning_rate_init "
            f"(it is {self.learning_rate_init!r}) or, for optimizer='sgd' or "
            "'momentum', scale the kernel down (weight_variance, bias_variance). "
            "The previous fit, if any, is left as it was."
        )

    # ------------------------------------------------------------------
    # Callbacks (scikit-learn >= 1.9)
    # ------------------------------------------------------------------
    def _begin_callbacks(self, X, y, sample_weight, max_iter):
        if not _HAS_CALLBACKS:
            return None
        ctx = self._init_callback_context(max_subtasks=max_iter)
        ctx.call_on_fit_task_begin(
            estimator=self, X=X, y=y, metadata={"sample_weight": sample_weight}
        )
        return ctx

    def _begin_epoch_callback(self, ctx, X, y, sample_weight):
        if ctx is None:
            return None
        epoch_ctx = ctx.subcontext(task_name="epoch")
        epoch_ctx.call_on_fit_task_begin(
            estimator=self, X=X, y=y, metadata={"sample_weight": sample_weight}
        )
        return epoch_ctx

    def _end_epoch_callback(self, epoch_ctx, X, y, sample_weight, attributes):
        if epoch_ctx is None:
            return False
        return epoch_ctx.call_on_fit_task_end(
            estimator=self,
            X=X,
            y=y,
            metadata={"sample_weight": sample_weight},
            reconstruction_attributes=attributes,
        )

    def _end_callbacks(self, ctx, X, y, sample_weight, attributes):
        if ctx is None:
            return
        ctx.call_on_fit_task_end(
            estimator=self,
            X=X,
            y=y,
            metadata={"sample_weight": sample_weight},
            reconstruction_attributes=attributes,
        )

    def _reconstruction(self, coef, form, network, X_fit, targets):
        """Attributes that make a copy of this estimator predict with ``coef``."""
        attributes = dict(targets["attributes"])
        attributes["n_outputs_"] = coef.shape[1]
        attributes["solver_"] = form
        if form == "primal":
            attributes["coef_"] = coef
        else:
            attributes["dual_coef_"] = coef
            attributes["X_fit_"] = X_fit
        if network is not None:
            attributes["network_"] = network
        return attributes

    # ------------------------------------------------------------------
    # Prediction
    # ------------------------------------------------------------------
    def _operator(self, X):
        """Rows that multiply the coefficients: kernel against the support set,
        or the random network's features."""
        if self.solver_ == "primal":
            return self._features(X, self.network_)
        if self.kernel == "precomputed":
            return X
        return self._gram(X, self.X_fit_, network=getattr(self, "network_", None))

    def _raw_predict(self, X):
        """Model outputs ``f(X)`` of shape (n_samples, n_outputs_), in blocks."""
        X = self._validate_X_predict(X)
        coef = self.coef_ if self.solver_ == "primal" else self.dual_coef_
        return self._blocked_product(X, coef)

    def _staged_raw_predict(self, X):
        """Outputs after each epoch, from one blocked pass over ``X``.

        The operator (kernel against the support set, or features) of a block
        of rows multiplies the coefficients of every epoch at once, so the
        extra memory is the outputs and one block, never the whole operator.
        """
        X = self._validate_X_predict(X)
        if not self._coef_path:
            return
        k = self._coef_path[0].shape[1]
        outputs = self._blocked_product(X, np.concatenate(self._coef_path, axis=1))
        for epoch in range(len(self._coef_path)):
            yield outputs[:, epoch * k : (epoch + 1) * k]

    def _blocked_product(self, X, coef):
        """``operator(X) @ coef``, with the operator built in row blocks."""
        if self.solver_ != "primal" and self._device() == "cuda":
            # Kernel blocks are built and multiplied on the GPU; only the
            # outputs come back.
            if self.kernel == "precomputed":
                out = _cuda.predict_precomputed(X, coef)
            else:
                out = _cuda.predict(
                    self.X_fit_, coef, X, depth=self.depth, **self._kernel_params()
                )
            return out.astype(np.result_type(X, coef), copy=False)
        step = _backend.block_rows(
            coef.shape[0], np.float64, get_config()["working_memory"], n_temporaries=2
        )
        out = np.empty((X.shape[0], coef.shape[1]), dtype=np.result_type(X, coef))
        with _backend.numba_threads(self.n_jobs):
            for rows in gen_batches(X.shape[0], step):
                out[rows] = self._operator(X[rows]) @ coef
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.kernel == "precomputed"
        return tags


def _is_fitted_model(estimator):
    return "_state" in estimator.__dict__


def _partial_fit_available(estimator):
    # Online training adds rows to the support set; a precomputed Gram matrix
    # has a fixed set of columns (n_features_in_), so it cannot grow.
    if estimator.kernel == "precomputed":
        raise AttributeError(
            "partial_fit is not available with kernel='precomputed': the new "
            "rows would need the kernel against every past row."
        )
    return True


_PARAMETERS_DOC = """
    kernel : {"nngp", "ntk", "precomputed"}, default="nngp"
        ``"nngp"``: the network's body is frozen at initialisation and only
        the readout trains (the paper's construction; the kernel is
        ``Sigma^{depth+1}``). ``"ntk"``: every layer of the linearised network
        trains (Jacot's neural tangent kernel). ``"precomputed"``: ``X`` is a
        Gram matrix, ``(n_train, n_train)`` at fit and ``(n_test, n_train)``
        at predict, as in :class:`~sklearn.svm.SVR`.

    activation : {"relu", "erf"}, default="relu"
        Activation of the hidden layers.

    depth : int, default=1
        Number of hidden layers.

    weight_variance : float, default=2.0
        Variance ``sigma_w^2`` of the weights (NTK parameterisation).

    bias_variance : float, default=1.0
        Variance ``sigma_b^2`` of the biases.

    width : int or None, default=None
        ``None``: infinite width, the analytic kernel. An int: a random
        finite network with that many units per hidden layer, drawn from
        ``random_state`` (an int seed gives the same network at every fit).

    optimizer : {"adam*", "sgd", "momentum", "adam"}, default="adam*"
        ``"adam*"``: Adam with the second moment averaged over the features
        (exact at infinite width). ``"sgd"``: kernel gradient descent (the
        classic NTK). ``"momentum"``: heavy ball with coefficient
        ``momentum``. ``"adam"``: true per-weight Adam, finite width only.

    learning_rate_init : float, default=1.0
        Step size. ADAM* normalises its steps, so with standardised targets
        (``normalize_y=True``) a rate near 1 is stable. Full-batch SGD needs a
        rate below ``2 / lambda_max(K / n_samples)`` (about 0.8 on
        standardised data with the default kernel).

    beta_1 : float, default=0.9
        Decay of the first moment (``"adam*"``, ``"adam"``).

    beta_2 : float, default=0.999
        Decay of the second moment (``"adam*"``, ``"adam"``).

    epsilon : float, default=1e-8
        Added to the square root of the bias-corrected second moment.

    momentum : float, default=0.9
        Heavy-ball coefficient (``"momentum"`` only).

    weight_decay : float, default=0.0
        Decoupled weight decay: every step first shrinks the coefficients by
        ``1 - learning_rate_init * weight_decay``.

    batch_size : int or None, default=None
        Rows per step. ``None``: the whole training set (full batch). Values
        larger than the training set are clipped to it.

    max_iter : int, default=100
        Epochs (passes over the training rows).

    shuffle : bool, default=True
        Shuffle the rows at every epoch (mini-batches only: one full batch is
        the same step in any order, so no random numbers are drawn).

    tol : float, default=1e-4
        Stop when the training loss (or, with early stopping, the validation
        score) has not improved by at least ``tol`` for ``n_iter_no_change``
        consecutive epochs.

    n_iter_no_change : int, default=10
        See ``tol``.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows (stratified for the
        classifier), score them after each epoch and keep the coefficients of
        the best epoch. The held-out rows stay in ``X_fit_`` with zero dual
        coefficients.

    validation_fraction : float, default=0.1
        Fraction of the rows held out when ``early_stopping=True``.

    warm_start : bool, default=False
        Resume the previous coefficients and optimizer state ``(m, v, t)``
        when ``fit`` is called again on the same training rows (dual
        solvers: identical ``X`` and, with early stopping, the same split;
        ``solver="primal"``: the same network, any rows), with unchanged
        kernel, width, optimizer and targets (classes). Otherwise ``fit``
        starts afresh. The shuffling continues the previous stream. After
        early stopping the restored best coefficients resume with the
        optimizer state of the last epoch, as in ``MLPRegressor``.

    random_state : int, RandomState instance or None, default=None
        Seeds the finite-width network, the early-stopping split and the
        shuffling. Pass an int for reproducible results.

    verbose : int, default=0
        Print one line per epoch (loss, and validation score with early
        stopping).

    solver : {"auto", "dual", "eigen", "primal"}, default="auto"
        How the dynamics are computed; all give the same predictions to
        rounding. ``"dual"``: the recursion on dual coefficients over the
        training rows (O(N^2) memory). ``"eigen"``: full batch and squared
        loss only; one eigendecomposition of the Gram matrix (O(N^3), about
        20 Cholesky factorisations), then each step costs O(N k). When
        ``(max_iter + 1) k`` is under a quarter of the rows, the dynamics
        from zero are confined to a Krylov subspace of that dimension, and
        its eigenbasis, built from ``max_iter + 1`` products with the Gram
        matrix (about one dual fit), replaces the eigensolve exactly. The
        decomposition is kept in this process (under a quarter of the
        available memory) and reused by later fits on the same kernel,
        training rows and sample weights, e.g. every setting of a grid
        search over the optimizer within one cross-validation fold, or a
        ``warm_start`` refit. ``"primal"``: finite width only, the network's
        weights are trained (O(N P) memory for P feature columns).
        ``"auto"``: a flop cost model (``choose_solver`` in
        ``_optimizers.py``) picks the cheapest for this one fit, counting a
        cached decomposition as paid; a first fit takes ``"eigen"`` only
        when ``max_iter`` exceeds about ``2 N / k``.

    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the kernels and the training run. ``"cuda"``: on an NVIDIA
        GPU (``pip install "sklearn_adamntk[cuda]"``), with the Gram matrix,
        coefficients and optimizer state on the device for the whole fit;
        infinite width (``width=None``) and ``solver="dual"`` or ``"auto"``
        only; ``fit`` raises, rather than falls back, when no GPU is
        available. ``"auto"``: the GPU when there is one and the model runs
        there, else the CPU. Resolved at every ``fit`` and ``predict``; the
        fitted state is plain NumPy, so a model fitted on a GPU pickles and
        predicts (on the CPU) on a machine without one.

    n_jobs : int or None, default=None
        Numba threads used inside ``fit`` and ``predict``, set in the calling
        thread only; ``None`` and ``-1`` mean every thread Numba has (inside
        joblib's loky workers, joblib already limits that to its share of
        the cores). With joblib's threading or Dask backend, pass ``n_jobs=1``.
"""

_ATTRIBUTES_DOC = """
    dual_coef_ : ndarray of shape (n_samples_fit, n_outputs_)
        Dual coefficients ``A`` (dual and eigen solvers): ``f(x) = sum_i
        A[i] K(X_fit_[i], x)``. Not set with ``solver="primal"``.

    X_fit_ : ndarray of shape (n_samples_fit, n_features) or None
        The rows ``dual_coef_`` refers to (every row passed to ``fit``, plus
        the rows added by ``partial_fit``). ``None`` with
        ``kernel="precomputed"``: row ``i`` of ``dual_coef_`` then refers to
        column ``i`` of the Gram matrix. Not set with ``solver="primal"``.

    coef_ : ndarray of shape (n_feature_columns, n_outputs_)
        Readout weights of the finite network (``solver="primal"`` only).

    network_ : RandomNetwork
        The random network's parameters (finite ``width`` only).

    solver_ : str
        The solver used: ``"dual"``, ``"eigen"`` or ``"primal"``.

    device_ : str
        Where the last fit ran: ``"cpu"`` or ``"cuda"``.

    n_iter_ : int
        Epochs run by the last call to ``fit`` or ``partial_fit``.

    t_ : int
        Optimizer steps taken since the model was initialised.

    loss_curve_ : list of float
        Mean training loss of each epoch of the last call, each batch's loss
        measured before its step (as :class:`~sklearn.neural_network.MLPRegressor`).

    validation_scores_ : list of float or None
        Score on the held-out rows after each epoch (``early_stopping=True``),
        else ``None``.

    best_validation_score_ : float or None
        Best of ``validation_scores_`` (``early_stopping=True``), else ``None``.

    best_loss_ : float or None
        Smallest training loss (``early_stopping=False``), else ``None``.

    n_outputs_ : int
        Number of model outputs.

    n_features_in_ : int
        Number of features seen during fit (rows of the Gram matrix with
        ``kernel="precomputed"``).

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during fit, when ``X`` has string column names.
"""


class AdamStarNTKRegressor(RegressorMixin, _BaseAdamStarNTK):
    __doc__ = (
        """Infinite-width network regressor trained with ADAM* (or SGD, momentum).

    The exact infinite-width limit of a network whose readout (``"nngp"``)
    or linearised layers (``"ntk"``) are trained from zero with ADAM*, Adam
    with its second moment averaged over the features (Sernau 2024, "Infinite
    Width Models That Work"). The model is a kernel machine ``f(x) = sum_i
    A[i] K(x_i, x)`` whose dual coefficients follow the optimizer's
    trajectory exactly; training is stopped early (``max_iter``, ``tol``,
    ``early_stopping``), which is the regulariser. The squared loss
    ``1/2 ||f - y||^2`` is averaged over each (sample-weighted) batch; multi-
    output targets are trained jointly, with one second moment per output.

    Parameters
    ----------"""
        + _PARAMETERS_DOC
        + """
    normalize_y : bool, default=True
        Centre and scale the targets (sample-weighted mean and standard
        deviation) before training, undone at predict. With ``partial_fit``
        the statistics of the first call are kept.

    Attributes
    ----------"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    AdamStarNTKClassifier : The same model for classification.
    sklearn.kernel_ridge.KernelRidge : Kernel ridge regression (the
        ``weight_decay`` long-time limit), with ``NetworkKernel``.
    sklearn.svm.SVR : Support vector regression on the same kernel.
    sklearn.neural_network.MLPRegressor : A finite network trained with Adam.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_adamntk import AdamStarNTKRegressor
    >>> X, y = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    >>> reg = AdamStarNTKRegressor(learning_rate_init=0.1, max_iter=100)
    >>> model = make_pipeline(StandardScaler(), reg).fit(X, y)
    >>> model.score(X, y) > 0.9
    True
    """
    )

    _parameter_constraints: dict = {
        **_BaseAdamStarNTK._parameter_constraints,
        "normalize_y": ["boolean"],
    }
    _squared_loss = True

    def __init__(
        self,
        *,
        kernel="nngp",
        activation="relu",
        depth=1,
        weight_variance=2.0,
        bias_variance=DEFAULT_BIAS_VARIANCE,
        width=None,
        optimizer="adam*",
        learning_rate_init=DEFAULT_LEARNING_RATE_INIT,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        momentum=0.9,
        weight_decay=0.0,
        batch_size=None,
        max_iter=DEFAULT_MAX_ITER,
        shuffle=True,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        verbose=0,
        normalize_y=DEFAULT_NORMALIZE_Y,
        solver="auto",
        device="cpu",
        n_jobs=None,
    ):
        super().__init__(
            kernel=kernel,
            activation=activation,
            depth=depth,
            weight_variance=weight_variance,
            bias_variance=bias_variance,
            width=width,
            optimizer=optimizer,
            learning_rate_init=learning_rate_init,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            momentum=momentum,
            weight_decay=weight_decay,
            batch_size=batch_size,
            max_iter=max_iter,
            shuffle=shuffle,
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
            solver=solver,
            device=device,
            n_jobs=n_jobs,
        )
        self.normalize_y = normalize_y

    def _validate_Xy_fit(self, X, y, *, reset):
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            dtype=[np.float64, np.float32],
            order="C",
            multi_output=True,
            y_numeric=True,
        )
        if y.dtype.kind not in "biuf":
            raise ValueError(
                f"{type(self).__name__} needs numeric targets; got y of dtype "
                f"{y.dtype}. For class labels use AdamStarNTKClassifier."
            )
        return X, y

    def _encode_targets(self, y, sample_weight, *, classes=None, previous=None):
        y_1d = y.ndim == 1
        Y = np.asarray(y, dtype=np.float64).reshape(y.shape[0], -1)
        if previous is not None:
            mean, std = previous["_y_mean"], previous["_y_std"]
        elif self.normalize_y:
            mean = np.average(Y, axis=0, weights=sample_weight)
            std = np.sqrt(np.average((Y - mean) ** 2, axis=0, weights=sample_weight))
            # A constant target (to rounding) is centred but not scaled.
            tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
            std = np.where(std > tiny, std, 1.0)
        else:
            mean = np.zeros(Y.shape[1])
            std = np.ones(Y.shape[1])
        return {
            "Y": (Y - mean) / std,
            "loss": "squared",
            "y_raw": Y,
            "attributes": {"_y_mean": mean, "_y_std": std, "_y_1d": y_1d},
        }

    def _same_targets(self, previous, targets):
        return previous["_y_mean"].shape == targets["attributes"]["_y_mean"].shape

    def _val_targets(self, targets, val_rows, sample_weight):
        return (
            targets["y_raw"][val_rows],
            sample_weight[val_rows],
            targets["attributes"],
        )

    def _validation_score(self, F_val, val_targets):
        y_val, sw_val, attributes = val_targets
        pred = F_val * attributes["_y_std"] + attributes["_y_mean"]
        with np.errstate(all="ignore"):
            return float(r2_score(y_val, pred, sample_weight=sw_val))

    def _to_prediction(self, F):
        pred = F * self._y_std + self._y_mean
        return pred.ravel() if self._y_1d else pred

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network from zero (or resume, with ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, or the ``(n_samples, n_samples)`` Gram matrix with
            ``kernel="precomputed"``.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Numeric targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; each batch's loss is the weighted mean.

        Returns
        -------
        self : AdamStarNTKRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, online=False)

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over the given rows, continuing the previous optimizer state.

        At infinite width (and with ``solver="dual"``) the new rows join the
        support set ``X_fit_`` with zero coefficients before the epoch, the
        paper's online setting; with a finite ``width`` and the primal solver
        the network's weights keep training. ``early_stopping`` is not
        supported; ``normalize_y`` keeps the statistics of the first call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New training rows.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Their targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : AdamStarNTKRegressor
            The updated estimator.
        """
        return self._fit(X, y, sample_weight, online=True)

    def predict(self, X):
        """Predict with the trained network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict, or their ``(n_samples, n_samples_fit)`` kernel
            against the training rows with ``kernel="precomputed"``.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions, 1-D when ``y`` was 1-D at fit.
        """
        return self._to_prediction(self._raw_predict(X))

    def staged_predict(self, X):
        """Predictions after each epoch of the last call to ``fit`` or ``partial_fit``.

        The kernel between ``X`` and the training rows is computed once.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to predict (a kernel with ``kernel="precomputed"``).

        Yields
        ------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions after epoch 1, 2, ..., ``n_iter_``. With early
            stopping the last stage is the last epoch, not the restored best.
        """
        for F in self._staged_raw_predict(X):
            yield self._to_prediction(F)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class AdamStarNTKClassifier(ClassifierMixin, _BaseAdamStarNTK):
    __doc__ = (
        """Infinite-width network classifier trained with ADAM* (or SGD, momentum).

    The exact infinite-width limit of a network trained from a zero readout
    with ADAM* (Sernau 2024, "Infinite Width Models That Work"): a kernel
    machine whose dual coefficients follow the optimizer exactly. Two classes
    use one logit and the logistic loss; three or more use ``n_classes``
    logits and the softmax cross-entropy, as
    :class:`~sklearn.neural_network.MLPClassifier` does. Losses are
    (sample-weighted) means over each batch.

    Parameters
    ----------"""
        + _PARAMETERS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
"""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    AdamStarNTKRegressor : The same model for regression.
    sklearn.svm.SVC : Support vector classification on the same kernel.
    sklearn.neural_network.MLPClassifier : A finite network trained with Adam.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn_adamntk import AdamStarNTKClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = AdamStarNTKClassifier(learning_rate_init=0.1, max_iter=100)
    >>> clf = make_pipeline(StandardScaler(), clf)
    >>> bool(cross_val_score(clf, X, y, cv=5).mean() > 0.9)
    True
    >>> clf.fit(X, y).predict_proba(X[:2]).shape
    (2, 3)
    """
    )

    def _validate_Xy_fit(self, X, y, *, reset):
        X, y = validate_data(
            self, X, y, reset=reset, dtype=[np.float64, np.float32], order="C"
        )
        check_classification_targets(y)
        return X, y

    def _encode_targets(self, y, sample_weight, *, classes=None, previous=None):
        name = type(self).__name__
        if previous is not None:
            known = previous["classes_"]
            if classes is not None and not np.array_equal(
                unique_labels(classes), known
            ):
                raise ValueError(
                    f"{name}: classes={classes!r} is not the same as on the "
                    f"first call to partial_fit, {known!r}."
                )
            labels = known
        elif classes is not None:
            labels = unique_labels(classes)
        else:
            labels = unique_labels(y)
        unseen = np.setdiff1d(np.unique(y), labels)
        if unseen.size:
            raise ValueError(
                f"{name}: y contains labels {unseen!r} that are not in "
                f"classes {labels!r}."
            )
        if labels.size < 2:
            raise ValueError(
                f"{name} needs samples of at least 2 classes in the data, but "
                f"the data contains only one class: {labels[0]!r}."
            )
        codes = np.searchsorted(labels, y)
        if labels.size == 2:
            Y = codes.astype(np.float64).reshape(-1, 1)
            loss = "logistic"
        else:
            Y = np.zeros((codes.size, labels.size))
            Y[np.arange(codes.size), codes] = 1.0
            loss = "softmax"
        return {
            "Y": Y,
            "loss": loss,
            "codes": codes,
            "y_raw": y,
            "stratify": codes,
            "attributes": {"classes_": labels},
        }

    def _same_targets(self, previous, targets):
        return np.array_equal(previous["classes_"], targets["attributes"]["classes_"])

    def _val_targets(self, targets, val_rows, sample_weight):
        return (
            targets["codes"][val_rows],
            sample_weight[val_rows],
            targets["attributes"],
        )

    def _validation_score(self, F_val, val_targets):
        codes, sw_val, _ = val_targets
        predicted = _predicted_codes(F_val)
        return float(accuracy_score(codes, predicted, sample_weight=sw_val))

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network from zero (or resume, with ``warm_start``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, or the ``(n_samples, n_samples)`` Gram matrix with
            ``kernel="precomputed"``.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; each batch's loss is the weighted mean.

        Returns
        -------
        self : AdamStarNTKClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, online=False)

    @available_if(_partial_fit_available)
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over the given rows, continuing the previous optimizer state.

        At infinite width (and with ``solver="dual"``) the new rows join the
        support set ``X_fit_`` before the epoch (the paper's online setting);
        with a finite ``width`` and the primal solver the network's weights
        keep training. ``early_stopping`` is not supported.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            New training rows.
        y : array-like of shape (n_samples,)
            Their labels.
        classes : array-like of shape (n_classes,), default=None
            Every class that will ever appear. Required on the first call
            (unless the estimator was fitted with ``fit``), ignored after.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : AdamStarNTKClassifier
            The updated estimator.
        """
        if classes is None and not _is_fitted_model(self):
            raise ValueError(
                f"{type(self).__name__}: classes must be passed on the first "
                "call to partial_fit."
            )
        return self._fit(X, y, sample_weight, online=True, classes=classes)

    def decision_function(self, X):
        """Logits of the trained network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel against the training rows with
            ``kernel="precomputed"``).

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes the logit of ``classes_[1]``, else one logit per
            class.
        """
        F = self._raw_predict(X)
        return F.ravel() if F.shape[1] == 1 else F

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted labels.
        """
        codes = _predicted_codes(self._raw_predict(X))
        return self.classes_[codes]

    def predict_proba(self, X):
        """Class probabilities (sigmoid for two classes, softmax otherwise).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_``.
        """
        F = self._raw_predict(X)
        if F.shape[1] == 1:
            p = expit(F)
            return np.hstack([1 - p, p])
        return softmax(F, axis=1)

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities, computed without underflow.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log-probabilities, columns in the order of ``classes_``.
        """
        F = self._raw_predict(X)
        if F.shape[1] == 1:
            return np.hstack([-np.logaddexp(0, F), -np.logaddexp(0, -F)])
        return log_softmax(F, axis=1)

    def staged_predict(self, X):
        """Predicted labels after each epoch of the last ``fit`` or ``partial_fit``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows (a kernel with ``kernel="precomputed"``).

        Yields
        ------
        y_pred : ndarray of shape (n_samples,)
            Labels after epoch 1, 2, ..., ``n_iter_``. With early stopping the
            last stage is the last epoch, not the restored best.
        """
        for F in self._staged_raw_predict(X):
            yield self.classes_[_predicted_codes(F)]


def _predicted_codes(F):
    if F.shape[1] == 1:
        return (F[:, 0] > 0).astype(np.intp)
    return np.argmax(F, axis=1)
