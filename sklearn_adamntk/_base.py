"""What the estimators share: parameters, validation, the engine, prediction.

:class:`_BaseAdamStarNTK` is an adapter (DESIGN 6): it holds the parameters
and their constraints, validates the data, has its subclass encode the
targets for a loss, and hands a plain :class:`._fitting.TrainingProblem` to
the fitting engine, which returns a :class:`._model.FittedModel`.  That one
object is the fitted state: it is assigned in one step (with the public
fitted attributes read from it) and every prediction reads it once, so a
refit that fails, or runs on another thread, never mixes two models.  The
parameter and attribute documentation shared by the estimators is here too.
"""

import dataclasses
import functools
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn import get_config
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    _check_y,
    check_is_fitted,
    validate_data,
)

from . import _distributed
from ._callbacks import HAS_CALLBACKS, CallbackSupportMixin, SklearnCallbacks
from ._fitting import Schedule, TrainingProblem, fit_model, staged_outputs
from ._kernel_objects import NetworkKernel
from ._magnitude import kernel_limit
from ._model import (
    NetworkSpec,
    model_outputs,
    prediction_device,
    scale_error,
    scale_warning,
)
from ._optimizer import OptimizerSettings
from ._spectral import gram_defect

# The defaults chosen by benchmarks/choose_defaults.py (its table is in
# benchmarks/DEFAULTS.md); the signatures below read them from here, so a new
# result is changed in one place (and in the "default=" of the docstrings).
DEFAULT_LEARNING_RATE_INIT = "auto"
DEFAULT_MAX_ITER = 10000
DEFAULT_EARLY_STOPPING = "auto"
DEFAULT_BIAS_VARIANCE = 1.0

# The parameters a NetworkKernel object given as ``kernel`` holds instead.
_ARCHITECTURE = ("activation", "depth", "weight_variance", "bias_variance")
DEFAULT_NORMALIZE_Y = True


class _BaseAdamStarNTK(CallbackSupportMixin, BaseEstimator):
    """Shared parameters, validation, the hand-over to the engine, and prediction.

    Subclasses say how targets are validated, encoded and scored, and how raw
    outputs become predictions.
    """

    _parameter_constraints: dict = {
        "kernel": [StrOptions({"nngp", "ntk", "precomputed"}), NetworkKernel],
        "activation": [StrOptions({"relu", "erf"})],
        "depth": [Interval(Integral, 1, None, closed="left")],
        "weight_variance": [Interval(Real, 0, None, closed="neither")],
        "bias_variance": [Interval(Real, 0, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left"), None],
        "optimizer": [StrOptions({"adam*", "sgd", "momentum", "adam"})],
        "learning_rate_init": [
            Interval(Real, 0, None, closed="neither"),
            StrOptions({"auto"}),
        ],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean", StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "solver": [StrOptions({"auto", "dual", "eigen", "primal", "streamed"})],
        # "cuda" without a GPU is an error: there is no silent fallback.
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "n_jobs": [Integral, None],
        "copy_X": ["boolean"],
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
        learning_rate="constant",
        power_t=0.5,
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
        early_stopping=DEFAULT_EARLY_STOPPING,
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        verbose=0,
        solver="auto",
        device="cpu",
        n_jobs=None,
        copy_X=True,
    ):
        self.kernel = kernel
        self.activation = activation
        self.depth = depth
        self.weight_variance = weight_variance
        self.bias_variance = bias_variance
        self.width = width
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.learning_rate = learning_rate
        self.power_t = power_t
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
        self.copy_X = copy_X

    # ------------------------------------------------------------------
    # Validation
    # ------------------------------------------------------------------
    def _check_params(self, n_train=None, *, online=False):
        """Every rule that ties two hyper-parameters together, in one place.

        Single-parameter rules live in ``_parameter_constraints``. Called
        before any work, once the number of training rows is known.
        """
        name = type(self).__name__
        if isinstance(self.kernel, NetworkKernel):
            self._check_kernel_object()
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
        if self.solver in ("primal", "streamed") and self.width is None:
            raise ValueError(
                f"{name}: solver={self.solver!r} trains the weights of a finite "
                "network; set an int width, or use solver='dual' or 'eigen'."
            )
        if (self.learning_rate_init != "auto"
                and self.learning_rate_init * self.weight_decay >= 1):
            raise ValueError(
                f"{name}: learning_rate_init * weight_decay must be below 1 "
                "(every step multiplies the coefficients by 1 - "
                "learning_rate_init * weight_decay); got "
                f"{self.learning_rate_init!r} * {self.weight_decay!r}."
            )
        if self.solver == "eigen":
            self._check_eigen_params(n_train)

    def _check_kernel_object(self):
        """A NetworkKernel says the architecture; the estimator's own must not."""
        defaults = _BaseAdamStarNTK().get_params()
        set_here = [name for name in _ARCHITECTURE
                    if getattr(self, name) != defaults[name]]
        if set_here:
            raise ValueError(
                f"{type(self).__name__}: kernel={self.kernel!r} sets the "
                f"architecture, but {', '.join(set_here)} was also set on the "
                f"estimator; set {'them' if len(set_here) > 1 else 'it'} on the "
                f"kernel instead (kernel__{set_here[0]} in a grid search)."
            )

    def _check_eigen_params(self, n_train):
        name = type(self).__name__
        if not self._squared_loss:
            raise ValueError(
                f"{name}: solver='eigen' needs the squared loss "
                "(AdamStarNTKRegressor); use solver='dual' or 'auto'."
            )
        if self.batch_size is not None and n_train is not None and (
            self.batch_size < n_train
        ):
            raise ValueError(
                f"{name}: solver='eigen' needs full-batch training, but "
                f"batch_size={self.batch_size} < {n_train} training rows; "
                "use batch_size=None or solver='dual'."
            )

    def _validate_fit_inputs(self, X, y, sample_weight, *, online, continuing):
        """Validate data and hyper-parameters together, before any work."""
        if _distributed.is_dask_array(X):
            return self._validate_dask_fit_inputs(X, y, sample_weight, online=online)
        name = type(self).__name__
        X, y = self._validate_Xy_fit(X, y, reset=not continuing)
        self._check_params(X.shape[0], online=online)
        precomputed = self.kernel == "precomputed"
        if not continuing and precomputed and X.shape[0] != X.shape[1]:
            raise ValueError(
                f"{name}: with kernel='precomputed', X at fit "
                "is the Gram matrix of the training rows and must be square "
                f"(n_train, n_train); got shape {X.shape}."
            )
        message = scale_error(
            self._network_spec(), X, "the training rows",
            "Standardise X (e.g. StandardScaler in a pipeline) or lower "
            "weight_variance.")
        if message:
            raise ValueError(f"{name}: {message}")
        message = scale_warning(self._network_spec(), X)
        if message:
            warnings.warn(f"{name}: {message}", UserWarning, stacklevel=2)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=X.dtype, ensure_non_negative=True
        )
        largest = float(np.max(sample_weight))
        if not largest > 0:
            raise ValueError(f"{name}: sample_weight must have a positive sum.")
        if not 2.0**-60 <= largest <= 2.0**60:
            # Every loss is a weighted mean, so a common factor changes
            # nothing; a power of four near the largest weight keeps sums and
            # square roots of extreme weights finite, and exact.
            power = int(np.clip(round(np.log2(largest) / 2), -511, 511))
            sample_weight = sample_weight * 4.0**-power
        if self.copy_X and not precomputed:
            # The support rows are the model: later changes to the caller's
            # array must not change its predictions.
            X = np.array(X, order="C", copy=True)
        return X, y, sample_weight

    def _validate_dask_fit_inputs(self, X, y, sample_weight, *, online):
        """The checks of :meth:`_validate_fit_inputs`, for rows on a Dask cluster.

        ``X`` is checked chunk by chunk on the workers (the same errors) and
        never gathered; ``y`` and ``sample_weight`` (``O(N)``) are brought
        here to be encoded as in-process.
        """
        name = type(self).__name__
        _distributed.check_options(name, kernel=self.kernel, solver=self.solver,
                                   device=self.device,
                                   early_stopping=self.early_stopping, online=online)
        self._check_params()
        rows = _distributed.check_rows(X, name)
        validate_data(self, X, reset=True, skip_check_array=True)
        X = rows
        _distributed.check_batch_size(name, self.batch_size, X.shape[0])
        y = _check_y(_distributed.to_numpy(y), estimator=self, **self._y_checks)
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                "Found input variables with inconsistent numbers of samples: "
                f"[{X.shape[0]}, {y.shape[0]}]"
            )
        y = self._check_targets(y)
        sample_weight = _check_sample_weight(
            _distributed.to_numpy(sample_weight), X, dtype=X.dtype,
            ensure_non_negative=True,
        )
        if not np.sum(sample_weight) > 0:
            raise ValueError(f"{name}: sample_weight must have a positive sum.")
        return X, y, sample_weight

    # ------------------------------------------------------------------
    # Fitting: a training problem for the engine
    # ------------------------------------------------------------------
    def _fit(self, X, y, sample_weight, *, online, classes=None):
        # Validation sets n_features_in_ before the engine runs: if anything
        # fails (bad input, divergence) the attributes are put back as they
        # were. The callback machinery's own attributes are left alone:
        # scikit-learn tears the callbacks down after this returns.
        snapshot = {
            key: value
            for key, value in self.__dict__.items()
            if not key.startswith(("_callback", "_skl_callbacks"))
        }
        try:
            model = self._fit_model(X, y, sample_weight, online, classes)
        except BaseException:
            for key in list(self.__dict__):
                if key not in snapshot and not key.startswith(
                    ("_callback", "_skl_callbacks")
                ):
                    del self.__dict__[key]
            self.__dict__.update(snapshot)
            raise
        for key in ("dual_coef_", "X_fit_", "coef_", "network_"):
            self.__dict__.pop(key, None)
        self.__dict__.update(_fitted_attributes(model))
        return self

    def _fit_model(self, X, y, sample_weight, online, classes):
        """Validate, encode and train; returns the :class:`FittedModel`."""
        previous = self.__dict__.get("_model")
        problem = self._training_problem(X, y, sample_weight, online=online,
                                         classes=classes, previous=previous)
        model = fit_model(problem, previous)
        # The columns new rows are checked against, kept with the model.
        return dataclasses.replace(
            model,
            n_features_in=self.n_features_in_,
            feature_names_in=self.__dict__.get("feature_names_in_"),
        )

    def _training_problem(self, X, y, sample_weight, *, online, classes, previous):
        """Validate the data and encode the targets: the engine's problem."""
        continuing = online and previous is not None
        X, y, sample_weight = self._validate_fit_inputs(
            X, y, sample_weight, online=online, continuing=continuing
        )
        if continuing:
            self._check_same_model(previous)
        encode_as = previous.targets if continuing else None
        targets = self._encode_targets(y, sample_weight, classes=classes,
                                       previous=encode_as)
        self._check_encoded_targets(targets.Y, X.dtype, continuing)
        if self.kernel == "precomputed":
            # Last of the checks: it costs about 15 products with the matrix.
            defect = gram_defect(X)
            if defect:
                raise ValueError(
                    f"{type(self).__name__}: with kernel='precomputed', X at fit "
                    "must be the symmetric positive semi-definite Gram matrix of "
                    f"the training rows, but {defect}. Check how it was computed "
                    "(a kernel function, not a distance or a similarity score).")
        resume_targets = None
        if (
            self.warm_start
            and previous is not None
            and not continuing
            and self._same_targets(previous.targets, targets)
        ):
            resume_targets = self._encode_targets(
                y, sample_weight, classes=classes, previous=previous.targets
            )
        solver, device = self.solver, self.device
        if _distributed.is_distributed(X):  # the workers' CPUs ("cuda" is refused)
            solver, device = _distributed.solver_for(solver, self.width), "cpu"
        return TrainingProblem(
            X=X,
            targets=targets,
            sample_weight=sample_weight,
            spec=self._network_spec(),
            settings=self._optimizer_settings(),
            schedule=self._schedule(),
            solver=solver,
            device=device,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
            warm_start=self.warm_start,
            resume_targets=resume_targets,
            online=online,
            learning_rate_auto=self.learning_rate_init == "auto",
            verbose=self.verbose,
            callbacks=SklearnCallbacks(self, X, y, sample_weight, _fitted_attributes)
            if HAS_CALLBACKS
            else None,
            name=type(self).__name__,
        )

    def _check_same_model(self, previous):
        """``partial_fit`` continues the previous model: same network and optimizer."""
        spec = self._network_spec()
        changed = [
            f"{field.name}={getattr(previous.spec, field.name)!r} -> "
            f"{getattr(spec, field.name)!r}"
            for field in dataclasses.fields(spec)
            if getattr(previous.spec, field.name) != getattr(spec, field.name)
        ]
        if previous.optimizer not in (None, self.optimizer):
            changed.append(f"optimizer={previous.optimizer!r} -> {self.optimizer!r}")
        if changed:
            raise ValueError(
                f"{type(self).__name__}: partial_fit continues the model of the "
                "previous calls, but its parameters changed since "
                f"({', '.join(changed)}). Set them back, or call fit to start "
                "a new model."
            )

    def _check_encoded_targets(self, Y, dtype, continuing):
        """Targets that the losses can square and sum without overflow."""
        limit = kernel_limit(dtype, training=True)
        largest = float(np.max(np.abs(Y))) if Y.size else 0.0
        if largest > limit:
            scaling = (" in the scaling of the first call to partial_fit"
                       if continuing else "")
            raise ValueError(
                f"{type(self).__name__}: the targets reach {largest:.3g}"
                f"{scaling}, beyond what training can handle in {dtype} (at most "
                f"{limit:.2g}). Standardise them (normalize_y=True does)."
            )

    def _network_spec(self):
        owner = self.kernel if isinstance(self.kernel, NetworkKernel) else self
        return NetworkSpec(
            kernel=owner.kernel,
            **{name: getattr(owner, name) for name in _ARCHITECTURE},
            width=self.width,
        )

    def _optimizer_settings(self):
        learning_rate = self.learning_rate_init
        if learning_rate == "auto":
            learning_rate = 1.0  # a placeholder: the engine sets it from the kernel
        return OptimizerSettings(
            optimizer=self.optimizer,
            learning_rate=learning_rate,
            power_t=self.power_t if self.learning_rate == "invscaling" else 0.0,
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )

    def _schedule(self):
        return Schedule(
            max_iter=self.max_iter,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            tol=self.tol,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=self.early_stopping,
            learning_rate=self.learning_rate,
            power_t=self.power_t,
            validation_fraction=self.validation_fraction,
        )

    # ------------------------------------------------------------------
    # Prediction: one read of the fitted model
    # ------------------------------------------------------------------
    def _raw_predict(self, X, *, staged=False):
        """The fitted model and its outputs ``f(X)`` (n_samples, n_outputs_).

        ``staged=True``: a generator of the outputs after each epoch instead.
        """
        check_is_fitted(self)
        model = self._model
        name = type(self).__name__
        X = validate_data(
            _fitted_view(self, model), X, reset=False,
            dtype=[np.float64, np.float32], order="C",
        )
        message = scale_error(
            model.spec, X, "X",
            "Standardise X as the training rows were (e.g. StandardScaler in "
            "a pipeline).")
        if message:
            raise ValueError(f"{name}: {message}")
        options = {
            "device": prediction_device(model.spec, self.device, name),
            "n_jobs": self.n_jobs,
            "working_memory": get_config()["working_memory"],
        }
        if staged:
            return model, (finite_outputs(F, name) for F in
                           staged_outputs(model, X, **options))
        return model, finite_outputs(model_outputs(model, X, **options), name)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.kernel == "precomputed"
        return tags


def _fitted_view(estimator, model):
    """The estimator as ``model`` was fitted, to check new rows against.

    A shallow copy whose ``n_features_in_`` and ``feature_names_in_`` are the
    model's own: a fit running on another thread sets the estimator's before
    it swaps its model in, and a prediction must check ``X`` against the
    model it uses.
    """
    view = object.__new__(type(estimator))
    view.__dict__ = estimator.__dict__.copy()
    if model.n_features_in is not None:
        view.__dict__["n_features_in_"] = model.n_features_in
        view.__dict__.pop("feature_names_in_", None)
        if model.feature_names_in is not None:
            view.__dict__["feature_names_in_"] = model.feature_names_in
    return view


def finite_outputs(outputs, name):
    """``outputs``, or a clear error where they overflowed."""
    if not np.all(np.isfinite(outputs)):
        raise ValueError(
            f"{name}: the predictions overflow (they are not finite). The "
            "rows to predict, or the targets, are of too extreme a magnitude "
            "for the fitted model; standardise them as the training data "
            "(e.g. StandardScaler in a pipeline, normalize_y=True)."
        )
    return outputs


def _dask_rows(method):
    """Let a prediction method take a Dask array of rows, and give one back.

    Each chunk of rows is predicted where it lives by the method itself (so
    it is validated there, with the same errors), through ``map_blocks``.
    """

    @functools.wraps(method)
    def predict(self, X):
        if not _distributed.is_dask_array(X):
            return method(self, X)
        check_is_fitted(self)
        validate_data(self, X, reset=False, skip_check_array=True)
        # The bound method pickles by name, to worker processes too.
        return _distributed.map_rows(getattr(self, method.__name__), X)

    return predict


def _fitted_attributes(model):
    """The estimator's fitted attributes: the model itself, and what it holds."""
    attributes = dict(model.targets)
    if model.n_features_in is not None:
        attributes["n_features_in_"] = model.n_features_in
    attributes.update(
        _model=model,
        device_=model.device,
        solver_=model.solver,
        n_outputs_=model.n_outputs,
        n_iter_=model.n_iter,
        best_iteration_=model.best_iteration,
        learning_rate_=model.learning_rate,
        t_=model.t,
        loss_curve_=model.loss_curve,
        validation_scores_=model.validation_scores,
        best_validation_score_=model.best_validation_score,
        best_loss_=model.best_loss,
    )
    if model.form == "primal":
        attributes["coef_"] = model.coef
    else:
        attributes["dual_coef_"] = model.coef
        attributes["X_fit_"] = model.X_fit
    if model.network is not None:
        attributes["network_"] = model.network
    return attributes


def _partial_fit_available(estimator):
    # Online training adds rows to the support set; a precomputed Gram matrix
    # has a fixed set of columns (n_features_in_), so it cannot grow.
    if estimator.kernel == "precomputed":
        raise AttributeError(
            "partial_fit is not available with kernel='precomputed': the new "
            "rows would need the kernel against every past row."
        )
    # The eigen solver needs every training row in every step.
    if estimator.solver == "eigen":
        raise AttributeError(
            "partial_fit is not available with solver='eigen', which trains on "
            "the whole training set at every step; use solver='dual' or 'auto'."
        )
    return True


_PARAMETERS_DOC = """
    kernel : {"nngp", "ntk", "precomputed"} or NetworkKernel, default="nngp"
        ``"nngp"``: the network's body is frozen at initialisation and only
        the readout trains (the paper's construction; the kernel is
        ``Sigma^{depth+1}``). ``"ntk"``: every layer of the linearised network
        trains (Jacot's neural tangent kernel). ``"precomputed"``: ``X`` is a
        Gram matrix, ``(n_train, n_train)`` at fit and ``(n_test, n_train)``
        at predict, as in :class:`~sklearn.svm.SVR`. A
        :class:`NetworkKernel` (one tuned by a Gaussian process, say:
        ``gp.kernel_.k1.k2`` of ``ConstantKernel() * NetworkKernel() +
        WhiteKernel()``) gives the kernel, activation, depth and both
        variances, and the four parameters below must then stay at their
        defaults; a grid search reaches them as ``kernel__depth`` and so on.

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

    learning_rate_init : float or "auto", default="auto"
        Base step size. ``"auto"``: in units of the training kernel's scale
        ``lambda``, its largest eigenvalue per unit of sample weight
        (``K / n_samples``; a few power iterations, free with
        ``solver="eigen"``): ``0.125 / sqrt(lambda)`` for ``"adam*"`` and
        ``"adam"``, which makes ADAM*'s path independent of the kernel's
        scale (about 0.08 on standardised inputs with the default kernel);
        ``1 / lambda`` for ``"sgd"`` and ``"momentum"``, half the stability
        limit of full-batch SGD, so the baselines train with every other
        parameter at its default. The rate used is ``learning_rate_``. A
        number is used as it is.

    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        Step-size schedule, as :class:`~sklearn.neural_network.MLPRegressor`
        defines it, for every optimizer: ``"constant"`` keeps
        ``learning_rate_init``; ``"invscaling"`` takes
        ``learning_rate_init / t**power_t`` at step ``t``; ``"adaptive"``
        divides the rate by 5 each time the training loss fails to fall by
        ``tol`` for two consecutive epochs, and stops when it falls below
        1e-6.

    power_t : float, default=0.5
        Exponent of ``"invscaling"``.

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

    max_iter : int, default=10000
        The most epochs (passes over the training rows) a fit may run; the
        stopping rule usually ends it sooner. A fit that reaches it while
        still improving warns (``ConvergenceWarning``).

    shuffle : bool, default=True
        Shuffle the rows at every epoch (mini-batches only: one full batch is
        the same step in any order, so no random numbers are drawn).

    tol : float, default=1e-4
        The stopping rule's threshold: stop when the criterion of
        ``early_stopping`` has not improved by at least ``tol`` for
        ``n_iter_no_change`` consecutive epochs (with ``"auto"``, over the
        last tenth of the epochs run, if that is longer).

    n_iter_no_change : int, default=10
        See ``tol``.

    early_stopping : "auto" or bool, default="auto"
        How the number of epochs is chosen. ``"auto"``: on the training path,
        keeping the best epoch, not the last. When the fit runs on the
        eigenbasis (``solver="eigen"``, which ``"auto"`` picks for full-batch
        squared loss up to a few thousand rows), by robust generalised
        cross-validation (Lukas's RGCV, ``gamma=0.5``) of the path's
        spectral filter (no rows held out);
        otherwise by the loss of ``validation_fraction`` of the rows held out
        (stratified for the classifier; with ``random_state=None`` the
        same rows at every fit). ``True``: MLP's early stopping, on the
        held-out score (R^2 or accuracy) with ``tol`` and
        ``n_iter_no_change``, keeping the best epoch. ``False``: MLP's rule
        on the training loss, keeping the last epoch. Held-out rows stay in
        ``X_fit_`` with zero dual coefficients. Whatever the rule, a loss
        that grows far past where it started, or keeps rising above it,
        stops the fit with an error, never as convergence.

    validation_fraction : float, default=0.1
        Fraction of the rows held out when the stopping rule scores held-out
        rows.

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

    solver : {"auto", "dual", "eigen", "primal", "streamed"}, default="auto"
        How the dynamics are computed; all give the same predictions to
        rounding. ``"dual"``: the recursion on dual coefficients over the
        training rows (O(N^2) memory). ``"eigen"``: full batch and squared
        loss only; one eigendecomposition of the Gram matrix (O(N^3), about
        20 Cholesky factorisations), then each step costs O(N k). When
        ``(max_iter + 1) k`` is under a quarter of the rows, the dynamics
        from zero are confined to a Krylov subspace of that dimension, and
        its eigenbasis, built from ``max_iter + 1`` products with the Gram
        matrix (about one dual fit), replaces the eigensolve exactly. The
        decomposition is kept in this process (512 MiB in all by default,
        see ``set_eigen_cache_size``) and reused by later fits on the same kernel,
        training rows and sample weights, e.g. every setting of a grid
        search over the optimizer within one cross-validation fold, or a
        ``warm_start`` refit. ``"primal"``: finite width only, the network's
        weights are trained (O(N P) memory for P feature columns).
        ``"streamed"``: the same weights and steps as ``"primal"``, with the
        features of each block of rows recomputed from ``X`` at every epoch
        instead of stored (memory of one block, a few MiB, plus O(N k);
        one forward pass of the network per epoch).
        ``"auto"``: a flop cost model (``choose_solver`` in
        ``_solvers.py``) picks the cheapest for this one fit, counting a
        cached decomposition as paid and ``max_iter`` epochs; a first fit
        takes ``"eigen"`` when ``max_iter`` exceeds about ``2 N / k``.
        ``early_stopping="auto"`` on ``"eigen"`` uses the whole spectrum,
        never the Krylov restriction. At finite width it takes
        ``"streamed"`` when the stored solver's array would exceed half of
        the available memory. With a Dask array ``X`` (full batch only) the
        epochs run on the cluster: ``"auto"`` and ``"streamed"`` train a
        finite network chunk by chunk without gathering ``X``; ``"dual"``
        (the only choice at infinite width) holds the Gram matrix in row
        blocks on the workers.

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

    copy_X : bool, default=True
        Keep a copy of the training rows (``X_fit_``), as
        :class:`~sklearn.gaussian_process.GaussianProcessRegressor` does, so
        that changing the array passed to ``fit`` afterwards does not change
        the model. ``False`` keeps a reference where no conversion was
        needed (less memory; the caller must then leave the array alone).
        Ignored with ``kernel="precomputed"``, whose Gram matrix is not kept.
"""

_ATTRIBUTES_DOC = """
    dual_coef_ : ndarray of shape (n_samples_fit, n_outputs_)
        Dual coefficients ``A`` (dual and eigen solvers): ``f(x) = sum_i
        A[i] K(X_fit_[i], x)``. Not set with ``solver="primal"`` or
        ``"streamed"``.

    X_fit_ : ndarray of shape (n_samples_fit, n_features) or None
        The rows ``dual_coef_`` refers to (every row passed to ``fit``, plus
        the rows added by ``partial_fit``). ``None`` with
        ``kernel="precomputed"``: row ``i`` of ``dual_coef_`` then refers to
        column ``i`` of the Gram matrix. Not set with ``solver="primal"`` or
        ``"streamed"``.

    coef_ : ndarray of shape (n_feature_columns, n_outputs_)
        Readout weights of the finite network (``solver="primal"`` or
        ``"streamed"`` only).

    network_ : RandomNetwork
        The random network's parameters (finite ``width`` only).

    solver_ : str
        The solver used: ``"dual"``, ``"eigen"``, ``"primal"`` or
        ``"streamed"``.

    device_ : str
        Where the last fit ran: ``"cpu"`` or ``"cuda"``.

    n_iter_ : int
        Epochs run by the last call to ``fit`` or ``partial_fit``.

    best_iteration_ : int
        The epoch (of the last call) whose coefficients the model holds: the
        best by the stopping rule, or the last one with
        ``early_stopping=False``.

    learning_rate_ : float
        The base step size the optimizer ran with (what
        ``learning_rate_init="auto"`` resolved to).

    t_ : int
        Optimizer steps taken since the model was initialised.

    loss_curve_ : list of float
        Mean training loss of each epoch of the last call, each batch's loss
        measured before its step (as :class:`~sklearn.neural_network.MLPRegressor`).

    validation_scores_ : list of float or None
        The stopping rule's criterion after each epoch, higher is better: the
        held-out score (R^2 or accuracy) with ``early_stopping=True``; with
        ``"auto"``, minus the held-out loss, or minus the GCV estimate of the
        prediction error (in standardised target units); ``None`` with
        ``early_stopping=False``.

    best_validation_score_ : float or None
        Best of ``validation_scores_``, else ``None``.

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
