"""The epoch loop: batches, loss curve, stopping, divergence, schedules, callbacks.

A trainer (:mod:`._dual`, :mod:`._primal`, :mod:`._eigen`, or the CUDA dual
trainer) runs one epoch at a time; this readable Python loop around it
decides the batches of each epoch, records the loss curve, and decides when
to stop, by one of three rules (DESIGN 3.7):

- ``"loss"``: MLP's rule on the training loss (``n_iter_no_change`` epochs
  within ``tol`` of the best); the last epoch is kept;
- ``"validation"``: a score of held-out rows after every epoch (R^2,
  accuracy, or minus the held-out loss); the best epoch is kept;
- ``"gcv"``: generalised cross-validation of the path (the eigen trainer's
  :meth:`gcv`), no held-out rows; the best epoch is kept;
- ``"fixed"``: exactly ``max_iter`` epochs (a refit, a replay).

A criterion stops the fit when it has not improved by ``tol`` for
``n_iter_no_change`` epochs, or, with ``window > 0``, for that fraction of
the epochs run so far if that is longer (a slow, steady path keeps going).
Whatever the rule, a loss that turns non-finite, grows far past where it
started, or keeps rising above it is divergence: a clear error, never a
convergence.  The ``"adaptive"`` schedule divides the step size by 5 when the
training loss stalls.  Each epoch is reported to the callbacks;
``KeyboardInterrupt`` ends the fit after the epoch under way, keeping what is
done (MLP's convention).  No scikit-learn estimator machinery here.
"""

import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import gen_batches

# A loss this many times the loss of the zero model has diverged...
DIVERGENCE_FACTOR = 100.0
# ...and so has one that rose for DIVERGENCE_RISES epochs in a row to more than
# RISING_FACTOR times it.  Healthy fits rise above their start for at most two
# epochs (a large first ADAM* step) and oscillate near it on hard problems; a
# runaway fit rises every epoch, geometrically.
DIVERGENCE_RISES = 5
RISING_FACTOR = 2.0
# The "adaptive" schedule: the step size is divided by this when the training
# loss has not fallen by tol for two epochs, and training stops below the floor.
ADAPTIVE_DIVISOR = 5.0
ADAPTIVE_FLOOR = 1e-6
# The shortest patience of the path rules (early_stopping="auto").
PATH_MIN_PATIENCE = 100


@dataclass
class EpochPlan:
    """How the epochs of one call run.

    Attributes
    ----------
    max_iter : int
        Epochs at most.
    n_rows : int
        Training rows the batches draw from.
    batch_size : int
    full_batch : bool
    shuffle : bool
    rng : RandomState
        Shuffling stream.
    tol, n_iter_no_change
        The stopping rule's threshold and patience.
    online : bool
        One epoch of ``partial_fit``: no stopping rule, no warning.
    rows : ndarray of int or None, default=None
        The trainer's rows the batches draw from (online training: the rows
        of this call's samples in the support set); ``None``: the first
        ``n_rows``.
    stopping : {"loss", "validation", "gcv", "fixed"}, default="loss"
    window : float, default=0.0
        Patience as a fraction of the epochs run so far, when longer than
        ``n_iter_no_change`` (0: MLP's fixed patience).
    schedule : {"constant", "invscaling", "adaptive"}, default="constant"
        Only ``"adaptive"`` concerns the loop; the trainers apply
        ``invscaling`` themselves.
    reference_loss : float or None, default=None
        The loss of the zero model, what divergence is measured against
        (``None``: the first epoch's loss).
    gcv_gamma : float, default=1.0
        The robustness parameter of ``stopping="gcv"`` (1: plain GCV; see
        :meth:`._eigen.EigenTrainer.gcv`).
    """

    max_iter: int
    n_rows: int
    batch_size: int
    full_batch: bool
    shuffle: bool
    rng: object
    tol: float
    n_iter_no_change: int
    online: bool
    rows: np.ndarray = None
    stopping: str = "loss"
    window: float = 0.0
    schedule: str = "constant"
    reference_loss: float = None
    gcv_gamma: float = 1.0

    def batches(self):
        """Index arrays of this epoch's mini-batches, in the order they run."""
        rows = np.arange(self.n_rows) if self.rows is None else self.rows
        if self.full_batch:
            # The order inside one full batch does not change the step, so no
            # random numbers are drawn for it.
            return [rows]
        order = self.rng.permutation(self.n_rows) if self.shuffle else np.arange(
            self.n_rows)
        return [rows[order[batch]] for batch in gen_batches(self.n_rows,
                                                             self.batch_size)]


@dataclass
class Validation:
    """Held-out rows scored after each epoch (``stopping="validation"``).

    Attributes
    ----------
    operator : ndarray of shape (n_val, n_coef)
        Maps the trainer's coefficients to the held-out outputs (their kernel
        against the training rows, or their features).
    score : callable
        ``score(F_val)``: higher is better.
    """

    operator: np.ndarray
    score: object


class Diverged(Exception):
    """Raised inside the loop; the engine turns it into the estimator's error.

    ``epoch`` is where it happened, ``reason`` says what was seen.
    """

    def __init__(self, epoch, reason):
        super().__init__(reason)
        self.epoch = epoch
        self.reason = reason


class _DivergenceGuard:
    """Losses that grow far past where they started, or keep rising above it."""

    def __init__(self, reference_loss):
        self.reference = reference_loss
        self.previous = None
        self.rises = 0

    def check(self, epoch, loss):
        if not np.isfinite(loss):
            raise Diverged(epoch, "the loss or the coefficients became NaN or "
                                  "infinite")
        if self.reference is None:
            self.reference = loss
        if loss > DIVERGENCE_FACTOR * self.reference:
            raise Diverged(epoch, f"the training loss grew from {self.reference:.4g} "
                                  f"to {loss:.4g}")
        rising = self.previous is not None and loss > self.previous
        self.rises = self.rises + 1 if rising else 0
        if self.rises >= DIVERGENCE_RISES and loss > RISING_FACTOR * self.reference:
            raise Diverged(epoch, f"the training loss rose for {self.rises} epochs "
                                  f"in a row, to {loss:.4g} (it started at "
                                  f"{self.reference:.4g})")
        self.previous = loss


class _Progress:
    """The best epoch so far by one criterion (higher is better), and MLP's patience.

    The criterion is exhausted when no epoch has beaten the best so far by
    ``tol`` for ``n_iter_no_change`` epochs.
    """

    def __init__(self, plan):
        self.plan = plan
        self.best = -np.inf
        self.best_epoch = None
        self.last_gain = 0  # epoch of the last improvement by more than tol

    def update(self, epoch, value):
        """Record epoch ``epoch`` (1-based); True when it is the best so far."""
        if value > self.best + self.plan.tol:
            self.last_gain = epoch
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def patience(self, epoch):
        return self.plan.n_iter_no_change

    def exhausted(self, epoch):
        """Whether the criterion has stopped improving."""
        return epoch - self.last_gain > self.patience(epoch)


class _PathProgress(_Progress):
    """Patience that grows with the path: the best must gain ``tol`` over a window.

    The window is ``max(n_iter_no_change, PATH_MIN_PATIENCE, window *
    epochs)`` epochs, so a path that improves slowly but steadily (many small
    gains) is followed, an early transient (ADAM*'s first steps overshoot and
    come back within a few dozen epochs) does not end it, and one that has
    turned (overfitting) stops after a tenth more epochs.
    """

    def __init__(self, plan):
        super().__init__(plan)
        self.best_history = []

    def update(self, epoch, value):
        improved = super().update(epoch, value)
        self.best_history.append(self.best)
        return improved

    def patience(self, epoch):
        return max(self.plan.n_iter_no_change, PATH_MIN_PATIENCE,
                   int(self.plan.window * epoch))

    def exhausted(self, epoch):
        patience = self.patience(epoch)
        if len(self.best_history) <= patience:
            return False
        gain = self.best_history[-1] - self.best_history[-1 - patience]
        return not gain > self.plan.tol


class _LossProgress(_Progress):
    """MLP's rule on the training loss, except that a rise never counts as convergence.

    An epoch counts towards convergence when its loss is within ``tol`` of
    the best (on either side); a loss above that resets the count: it is
    either a transient, or divergence, which the guard catches.
    """

    def __init__(self, plan):
        super().__init__(plan)
        self.stalled = 0

    def update(self, epoch, value):
        loss = -value
        best_loss = -self.best
        if loss < best_loss - self.plan.tol:
            self.stalled = 0
        elif loss <= best_loss + self.plan.tol:
            self.stalled += 1
        else:
            self.stalled = 0
        return super().update(epoch, value)

    def exhausted(self, epoch):
        return self.stalled > self.plan.n_iter_no_change


class _Fixed(_Progress):
    """Never exhausted: the plan's ``max_iter`` epochs are all run."""

    def exhausted(self, epoch):
        return False


class _AdaptiveRate:
    """Divide the step size by 5 when the training loss fails to fall by tol twice."""

    def __init__(self, trainer, learning_rate, tol):
        self.trainer = trainer
        self.learning_rate = learning_rate
        self.tol = tol
        self.best = np.inf
        self.stalled = 0

    def update(self, loss):
        """True when the step size has fallen below the floor: stop."""
        if loss > self.best - self.tol:
            self.stalled += 1
        else:
            self.stalled = 0
        self.best = min(self.best, loss)
        if self.stalled >= 2:
            self.stalled = 0
            self.learning_rate /= ADAPTIVE_DIVISOR
            if self.learning_rate < ADAPTIVE_FLOOR:
                return True
            self.trainer.set_learning_rate(self.learning_rate)
        return False


@contextmanager
def _interrupts_deferred():
    """Hold back Ctrl-C until the epoch under way is complete.

    A trainer updates its coefficients, moments and step count in several
    statements; an interrupt between them would leave a state one step ahead
    of the coefficients.  Yields a function that says whether one came.
    Only the main thread receives signals, so elsewhere nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: received.append(True))
    except ValueError:  # pragma: no cover - no signal handling here
        yield lambda: False
        return
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)


def _criterion(plan, trainer, validation):
    """A function ``value(loss)`` of the stopping rule (higher is better)."""
    if plan.stopping == "gcv":
        return lambda loss: -trainer.gcv(plan.gcv_gamma)
    if plan.stopping == "validation":
        if hasattr(trainer, "output_map"):
            # The eigen trainer maps the held-out kernel into its basis once,
            # so that no epoch needs its O(N^2 k) dual coefficients.
            outputs = trainer.output_map(validation.operator)
        else:
            def outputs():
                return validation.operator @ trainer.coef
        return lambda loss: validation.score(outputs())
    return lambda loss: -loss


def run_epochs(trainer, plan, *, validation=None, expand=np.array, callbacks=None,
               reconstruct=None, name="", verbose=0):
    """Train epoch by epoch until the plan says stop.

    Parameters
    ----------
    trainer : trainer object
        ``run_epoch(batches) -> loss``, ``coef``, ``snapshot()``,
        ``coef_of(snapshot)``, ``learning_rate`` and ``set_learning_rate(lr)``.
    plan : EpochPlan
    validation : Validation or None
        Required by ``plan.stopping == "validation"``.
    expand : callable
        Trainer coefficients -> fitted coefficients (dual form with early
        stopping: zero rows for the held-out rows).
    callbacks : FitCallbacks or None
        Told of the fit and of each epoch (see :class:`._fitting.FitCallbacks`).
    reconstruct : callable
        ``reconstruct(coef)``: the model a callback may inspect.
    name : str
        The estimator's name, for messages.
    verbose : int

    Returns
    -------
    history : dict
        ``coef`` (the kept coefficients), ``n_iter``, ``best_iteration``
        (the epoch kept), ``loss_curve``, ``validation_scores`` (the
        criterion per epoch, for the validation and GCV rules),
        ``best_validation_score``, ``best_loss``, ``interrupted``.

    Raises
    ------
    Diverged
        When the loss diverges (see :class:`_DivergenceGuard`).
    """
    loop = _Loop(trainer, plan, validation, expand, reconstruct, verbose)
    context = None if callbacks is None else callbacks.begin(plan.max_iter)
    stopped = interrupted = False
    try:
        for epoch in range(1, plan.max_iter + 1):
            epoch_context = None if context is None else callbacks.begin_epoch(context)
            stop = loop.epoch(epoch)
            if epoch_context is not None and callbacks.end_epoch(
                epoch_context, lambda: reconstruct(expand(trainer.coef))
            ):
                stop = True
            if stop or plan.online:
                stopped = True
                break
    except KeyboardInterrupt:
        if loop.n_iter == 0:
            raise
        interrupted = True
        warnings.warn(
            f"{name}: training interrupted by user after {loop.n_iter} epochs.")
    if not (stopped or interrupted or plan.online or plan.stopping == "fixed"):
        warnings.warn(
            f"{name}: maximum iterations ({plan.max_iter}) reached and the "
            f"{_what_improves(plan)} was still improving; increase max_iter.",
            ConvergenceWarning,
        )
    history = loop.history()
    if context is not None:
        callbacks.end(context, lambda: reconstruct(history["coef"]))
    return dict(history, interrupted=interrupted)


class _Loop:
    """One fit's epochs: the step, the guard, the criterion, the best epoch."""

    def __init__(self, trainer, plan, validation, expand, reconstruct, verbose):
        self.trainer, self.plan, self.expand = trainer, plan, expand
        self.verbose = verbose
        self.keeps_best = plan.stopping in ("validation", "gcv")
        self.progress = _progress(plan)
        self.criterion = _criterion(plan, trainer, validation)
        self.guard = _DivergenceGuard(plan.reference_loss)
        self.adaptive = None
        if plan.schedule == "adaptive":
            self.adaptive = _AdaptiveRate(trainer, trainer.learning_rate, plan.tol)
        self.loss_curve, self.scores = [], []
        self.best_snapshot = None
        self.n_iter = 0

    def epoch(self, epoch):
        """Run epoch ``epoch`` (1-based); True when the rule says stop."""
        with _interrupts_deferred() as interrupt_requested:
            try:
                loss = float(self.trainer.run_epoch(self.plan.batches()))
            except FloatingPointError as error:
                raise Diverged(epoch, "the loss or the coefficients became NaN "
                                      "or infinite") from error
            self.n_iter = epoch
            self.loss_curve.append(loss)
        self.guard.check(epoch, loss)
        value = self.criterion(loss)
        line = f"Iteration {epoch}, loss = {loss:.8f}"
        if self.keeps_best:
            self.scores.append(float(value))
            line += f", validation score = {value:.8f}"
        if self.progress.update(epoch, value) and self.keeps_best:
            self.best_snapshot = self.trainer.snapshot()
        if self.verbose:
            print(line)
        if interrupt_requested():
            raise KeyboardInterrupt
        if self.adaptive is not None and self.adaptive.update(loss):
            return True
        if self.progress.exhausted(epoch):
            if self.verbose:
                _print_stop(self.plan, self.progress.patience(epoch))
            return True
        return False

    def history(self):
        """The kept coefficients and the record of the epochs run."""
        if self.keeps_best and self.best_snapshot is not None:
            coef = self.expand(self.trainer.coef_of(self.best_snapshot))
        else:
            coef = self.expand(self.trainer.coef)
        keeps_best = self.keeps_best
        return {
            "coef": coef,
            "n_iter": self.n_iter,
            "best_iteration": self.progress.best_epoch if keeps_best else self.n_iter,
            "loss_curve": self.loss_curve,
            "validation_scores": self.scores if keeps_best else None,
            "best_validation_score": self.progress.best if keeps_best else None,
            "best_loss": None if keeps_best else float(min(self.loss_curve)),
        }


def _progress(plan):
    """The stopping rule's bookkeeping for this plan."""
    if plan.stopping == "fixed" or (plan.stopping == "loss"
                                    and plan.schedule == "adaptive"):
        # "adaptive" lowers the step size where MLP's rule would stop, and
        # stops when it falls below the floor.
        return _Fixed(plan)
    if plan.stopping == "loss":
        return _LossProgress(plan)
    if plan.window > 0:
        return _PathProgress(plan)
    return _Progress(plan)


def _what_improves(plan):
    return {"loss": "training loss", "validation": "validation score",
            "gcv": "cross-validation estimate (GCV)"}[plan.stopping]


def _print_stop(plan, patience):
    what = _what_improves(plan)
    print(f"{what[0].upper()}{what[1:]} did not improve more than tol={plan.tol:f} "
          f"for {patience} consecutive epochs. Stopping.")
