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

import functools
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
from ._fitting import Schedule, TrainingProblem, fit_model
from ._model import (
    NetworkSpec,
    model_outputs,
    prediction_device,
    staged_model_outputs,
)
from ._optimizer import OptimizerSettings

# The four defaults chosen by benchmarks/choose_defaults.py (its table is in
# benchmarks/DEFAULTS.md); the signatures below read them from here, so a new
# result is changed in one place (and in the "default=" of the docstrings).
DEFAULT_LEARNING_RATE_INIT = 1.0
DEFAULT_MAX_ITER = 100
DEFAULT_BIAS_VARIANCE = 1.0
DEFAULT_NORMALIZE_Y = True


class _BaseAdamStarNTK(CallbackSupportMixin, BaseEstimator):
    """Shared parameters, validation, the hand-over to the engine, and prediction.

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
        "solver": [StrOptions({"auto", "dual", "eigen", "primal", "streamed"})],
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
        if self.solver in ("primal", "streamed") and self.width is None:
            raise ValueError(
                f"{name}: solver={self.solver!r} trains the weights of a finite "
                "network; set an int width, or use solver='dual' or 'eigen'."
            )
        if self.solver == "eigen":
            self._check_eigen_params(n_train, online)
        if online and self.early_stopping:
            raise ValueError(
                f"{name}: partial_fit does not support early_stopping=True "
                "(there is no held-out set in online training)."
            )

    def _check_eigen_params(self, n_train, online):
        name = type(self).__name__
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
        X, y = self._validate_Xy_fit(X, y, reset=not continuing)
        self._check_params(X.shape[0], online=online)
        if not continuing and self.kernel == "precomputed" and X.shape[0] != X.shape[1]:
            raise ValueError(
                f"{type(self).__name__}: with kernel='precomputed', X at fit "
                "is the Gram matrix of the training rows and must be square "
                f"(n_train, n_train); got shape {X.shape}."
            )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=X.dtype, ensure_non_negative=True
        )
        if not np.sum(sample_weight) > 0:
            raise ValueError(
                f"{type(self).__name__}: sample_weight must have a positive sum."
            )
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
        continuing = online and previous is not None
        X, y, sample_weight = self._validate_fit_inputs(
            X, y, sample_weight, online=online, continuing=continuing
        )
        encode_as = previous.targets if continuing else None
        targets = self._encode_targets(y, sample_weight, classes=classes,
                                       previous=encode_as)
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
        problem = TrainingProblem(
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
            verbose=self.verbose,
            callbacks=SklearnCallbacks(self, X, y, sample_weight, _fitted_attributes)
            if HAS_CALLBACKS
            else None,
            name=type(self).__name__,
        )
        return fit_model(problem, previous)

    def _network_spec(self):
        return NetworkSpec(
            kernel=self.kernel,
            activation=self.activation,
            depth=self.depth,
            weight_variance=self.weight_variance,
            bias_variance=self.bias_variance,
            width=self.width,
        )

    def _optimizer_settings(self):
        return OptimizerSettings(
            optimizer=self.optimizer,
            learning_rate=self.learning_rate_init,
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
        X = validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32], order="C"
        )
        options = {
            "device": prediction_device(model.spec, self.device, type(self).__name__),
            "n_jobs": self.n_jobs,
            "working_memory": get_config()["working_memory"],
        }
        if staged:
            return model, staged_model_outputs(model, X, **options)
        return model, model_outputs(model, X, **options)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = self.kernel == "precomputed"
        return tags


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
    attributes.update(
        _model=model,
        device_=model.device,
        solver_=model.solver,
        n_outputs_=model.n_outputs,
        n_iter_=model.n_iter,
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
        decomposition is kept in this process (under a quarter of the
        available memory) and reused by later fits on the same kernel,
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
        cached decomposition as paid; a first fit takes ``"eigen"`` only
        when ``max_iter`` exceeds about ``2 N / k``. At finite width it takes
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
