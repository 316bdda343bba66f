"""A fitted model as plain data, and its outputs on new rows.

:class:`NetworkSpec` says what the network computes (kernel, activation,
depth, variances, width); :class:`FittedModel` is everything one fit produced:
that spec, the coefficients in dual or primal form with the rows or the random
network they refer to, the optimizer state a later fit resumes, and the
training history.  It is immutable and complete, so that an estimator can
swap a new model in with one assignment and predict from one read of it
(a concurrent refit yields the old model or the new one, never a mixture).

:func:`model_outputs` evaluates ``f(X)`` in row blocks: the kernel between a
block and the support rows (dual form), or the block's network features
(primal form), times the coefficients.  No scikit-learn estimator machinery
here.
"""

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import _backend
from ._magnitude import (
    WELL_SCALED,
    kernel_limit,
    kernel_scale_error,
    largest_diagonal,
    largest_entry,
)
from ._pairwise import network_kernel
from ._random_network import empirical_kernel, forward_bytes, network_features


@dataclass(frozen=True)
class NetworkSpec:
    """The network whose readout is trained (DESIGN 4).

    Attributes
    ----------
    kernel : {"nngp", "ntk", "precomputed"}
    activation : {"relu", "erf"}
    depth : int
    weight_variance, bias_variance : float
    width : int or None
        ``None``: infinite width (the analytic kernel).
    """

    kernel: str
    activation: str
    depth: int
    weight_variance: float
    bias_variance: float
    width: int = None

    def kernel_params(self):
        """Keyword arguments of the kernel and feature functions (not ``depth``)."""
        return {
            "kernel": self.kernel,
            "activation": self.activation,
            "weight_variance": self.weight_variance,
            "bias_variance": self.bias_variance,
        }

    @property
    def precomputed(self):
        return self.kernel == "precomputed"


@dataclass(frozen=True)
class FittedModel:
    """Everything one call to ``fit`` or ``partial_fit`` produced.

    Attributes
    ----------
    spec : NetworkSpec
    form : {"dual", "primal"}
        ``coef`` are dual coefficients over ``X_fit`` (``f = K(., X_fit) coef``)
        or readout weights of ``network`` (``f = features(.) coef``).
    solver : {"dual", "eigen", "primal"}
        The solver that trained it.
    device : {"cpu", "cuda"}
        Where it was trained.
    coef : ndarray of shape (n_support, k) or (n_feature_columns, k)
    X_fit : ndarray or None
        Support rows (dual form); ``None`` for a precomputed kernel or the
        primal form.
    network : RandomNetwork or None
        The random network (finite width).
    targets : dict
        The target encoding the estimator decodes predictions with (its
        fitted attributes, e.g. ``classes_``), kept with the coefficients.
    state : OptimizerState or None
        Optimizer memory over the support rows (dual) or weights (primal).
    learning_rate : float or None
        The base step size the optimizer ran with (resolved when chosen from
        the kernel).
    stopping : {"loss", "validation", "gcv"} or None
        The rule that decided when to stop.
    n_iter : int
        Epochs of this call.
    best_iteration : int
        The epoch whose coefficients are kept (the last one, or the best by
        the stopping rule).
    loss_curve, validation_scores, best_validation_score, best_loss
        Training history of this call.
    record : TrainingRecord or None
        What it takes to run this call's training again
        (:func:`._fitting.staged_outputs`).
    shuffle_rng : RandomState or None
        The shuffling stream, continued by a resumed fit.
    model_key : tuple
        What must not change for ``warm_start`` to resume this model.
    train_rows : ndarray or None
        Rows of ``X_fit`` that trained (early stopping holds the others out).
    fit_digest : str or None
        Digest of a precomputed training Gram matrix (``warm_start``).
    n_features_in, feature_names_in : int, ndarray or None
        The columns the model was fitted on, which new rows are checked
        against (set by the estimator: a prediction never mixes the feature
        count of one fit with the coefficients of another).
    """

    spec: NetworkSpec
    form: str
    solver: str
    device: str
    coef: np.ndarray
    X_fit: np.ndarray = None
    network: object = None
    targets: dict = field(default_factory=dict)
    state: object = None
    learning_rate: float = None
    stopping: str = None
    n_iter: int = 0
    best_iteration: int = 0
    loss_curve: list = field(default_factory=list)
    validation_scores: list = None
    best_validation_score: float = None
    best_loss: float = None
    record: object = None
    shuffle_rng: object = None
    model_key: tuple = ()
    train_rows: np.ndarray = None
    fit_digest: str = None
    n_features_in: int = None
    feature_names_in: np.ndarray = None

    @property
    def t(self):
        """Optimizer steps since the model was initialised."""
        return 0 if self.state is None else int(self.state.t)

    @property
    def n_outputs(self):
        return self.coef.shape[1]

    @property
    def optimizer(self):
        """The optimizer that trained the model (``model_key[1]``), or None."""
        return self.model_key[1] if len(self.model_key) > 1 else None

    def with_coef(self, coef):
        """The same model with other coefficients (an epoch of the path, say)."""
        return dataclasses.replace(self, coef=coef)


def scale_error(spec, X, what, advice):
    """Why the kernel of ``spec`` on rows ``X`` is too large to train or predict on.

    Returns a message, or None when the kernel's diagonal (the largest value
    of a positive semi-definite kernel; at finite width, the analytic
    kernel's, which the empirical one approaches) stays within
    :func:`._magnitude.kernel_limit` for training.  A precomputed kernel is
    checked entry by entry.
    """
    if spec.precomputed:
        limit = kernel_limit(X.dtype, training=True)
        largest = largest_entry(X)
        if largest <= limit:
            return None
        return (
            f"the precomputed kernel {what} has entries up to {largest:.3g} (at "
            f"most {limit:.2g} is supported in {X.dtype}). Scale the kernel down."
        )
    return kernel_scale_error(X, dict(spec.kernel_params(), depth=spec.depth),
                              training=True, what=what, advice=advice)


def scale_warning(spec, X):
    """A warning when the kernel on the training rows ``X`` is finite but huge.

    Returns a message, or None while the kernel's largest value stays below
    :data:`._magnitude.WELL_SCALED`.
    """
    if spec.precomputed:
        largest = largest_entry(X)
    else:
        largest = largest_diagonal(X, depth=spec.depth, **spec.kernel_params())[0]
    if largest <= WELL_SCALED:
        return None
    return (
        f"the network's kernel reaches {largest:.3g} on the training rows (the "
        f"largest |entry| of X is {largest_entry(X):.3g}). A step of ADAM* or "
        "Adam moves the model by about learning_rate_init * sqrt(K) and SGD's "
        "stable rate shrinks as 1 / K, so with a kernel this large the fit "
        "overshoots or diverges. Standardise X (e.g. StandardScaler in a "
        "pipeline) or lower weight_variance."
    )


def prediction_device(spec, requested, name=""):
    """Where a fitted model's outputs are computed: ``"cpu"`` or ``"cuda"``.

    The fitted state is plain NumPy, so a model fitted on a GPU predicts on
    the CPU where there is none; ``"cuda"`` with a finite network is an error,
    as at fit.
    """
    if spec.width is not None:
        if requested == "cuda":
            raise ValueError(
                f"{name}: device='cuda': the CUDA backend computes infinite-width "
                "kernels only; set width=None, or use device='cpu'."
            )
        return "cpu"
    if requested == "cuda" and not _backend.cuda_available():
        return "cpu"
    return _backend.resolve_device(requested)


def operator_rows(model, X, n_jobs=None, device="cpu"):
    """The rows that multiply the coefficients: ``K(X, X_fit)`` or the features."""
    spec = model.spec
    if model.form == "primal":
        return network_features(model.network, X, **spec.kernel_params())
    if spec.precomputed:
        return X
    return gram(spec, X, model.X_fit, network=model.network, n_jobs=n_jobs,
                device=device)


def gram(spec, X, Y=None, *, network=None, n_jobs=None, device="cpu"):
    """Kernel between rows of ``X`` and ``Y`` (``Y=None``: of ``X`` with itself)."""
    if spec.width is None:
        return network_kernel(X, Y, depth=spec.depth, n_jobs=n_jobs, device=device,
                              **spec.kernel_params())
    return empirical_kernel(network, X, Y, **spec.kernel_params())


def model_outputs(model, X, coef=None, *, device="cpu", n_jobs=None,
                  working_memory=1024):
    """``f(X) = operator(X) @ coef``, the operator built in row blocks.

    Parameters
    ----------
    model : FittedModel
    X : ndarray of shape (n, n_features)
        Validated rows (a kernel against the support rows when precomputed).
    coef : ndarray, default=None
        Coefficients to use instead of ``model.coef`` (several epochs side by
        side, for the staged outputs).
    device : {"cpu", "cuda"}
        Resolved device (:func:`prediction_device`).
    n_jobs : int or None
    working_memory : float
        MiB per block of the operator (scikit-learn's ``working_memory``).

    Returns
    -------
    F : ndarray of shape (n, k)
    """
    coef = model.coef if coef is None else coef
    if model.form != "primal" and device == "cuda":
        # Kernel blocks are built and multiplied on the GPU; only the outputs
        # come back.
        if model.spec.precomputed:
            out = _backend.gpu_product(X, coef)
        else:
            out = _backend.gpu_kernel_outputs(model.X_fit, coef, X,
                                              depth=model.spec.depth,
                                              **model.spec.kernel_params())
        return out.astype(np.result_type(X, coef), copy=False)
    step = _backend.block_rows(coef.shape[0], np.float64, working_memory,
                               n_temporaries=2)
    step = min(step, max(1, X.shape[0]))
    _backend.check_allocation(
        block_bytes(model, step, X.dtype.itemsize),
        f"predicting in blocks of {step} rows (the operator of a block against "
        "the model, and the network's activations where it has a finite width)",
        "predict fewer rows at a time, lower scikit-learn's working_memory "
        "(sklearn.set_config), or, at finite width, refit with solver='primal'",
    )
    out = np.empty((X.shape[0], coef.shape[1]), dtype=np.result_type(X, coef))
    with _backend.numba_threads(n_jobs):
        for start in range(0, X.shape[0], step):
            rows = slice(start, start + step)
            out[rows] = operator_rows(model, X[rows], n_jobs, device) @ coef
    return out


def block_bytes(model, n_rows, itemsize):
    """Peak bytes of :func:`operator_rows` on a block of ``n_rows`` rows.

    The block's kernel against the support rows (dual form) or its features
    (primal); at finite width also the network's activations, on the block
    and, for the dual form's empirical kernel, on every support row.
    """
    spec = model.spec
    n_columns = model.coef.shape[0]
    operator = n_rows * n_columns * itemsize
    if spec.width is None:
        return operator
    network = model.network
    options = dict(width=network.width, depth=network.depth, kernel=spec.kernel,
                   itemsize=itemsize)
    if model.form == "primal":
        extra = operator if spec.kernel == "ntk" else 0  # the unstacked blocks
        return (operator + extra
                + forward_bytes(n_rows, network.n_features, features=True, **options))
    extra = 2 * operator if spec.kernel == "ntk" else 0
    return operator + extra + forward_bytes(n_rows + n_columns, network.n_features,
                                            **options)

