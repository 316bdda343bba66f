"""The epoch loop: batches, loss curve, stopping, divergence, callbacks.

A trainer (:mod:`._dual`, :mod:`._primal`, :mod:`._eigen`, or the CUDA dual
trainer) runs one epoch at a time; this readable Python loop around it
decides the batches of each epoch, records the loss curve, stops when the
training loss (or, with early stopping, the validation score) stops
improving, turns a non-finite loss into a clear error, reports each epoch to
the callbacks, and ends early, keeping what is done, on ``KeyboardInterrupt``
(the conventions of scikit-learn's MLP).  No scikit-learn estimator
machinery here.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import gen_batches


@dataclass
class EpochPlan:
    """How the epochs of one call run.

    Attributes
    ----------
    max_iter : int
        Epochs at most.
    n_rows : int
        Training rows the batches index, from ``offset`` on.
    batch_size : int
    full_batch : bool
    shuffle : bool
    rng : RandomState
        Shuffling stream.
    tol, n_iter_no_change
        The stopping rule (MLP's).
    online : bool
        One epoch of ``partial_fit``: no stopping rule, no warning.
    offset : int, default=0
        Index of the first trainable row (online training appends rows).
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
    offset: int = 0

    def batches(self):
        """Index arrays of this epoch's mini-batches, in the order they run."""
        if self.full_batch:
            # The order inside one full batch does not change the step, so no
            # random numbers are drawn for it.
            return [np.arange(self.offset, self.offset + self.n_rows)]
        if self.shuffle:
            order = self.rng.permutation(self.n_rows)
        else:
            order = np.arange(self.n_rows)
        batches = gen_batches(self.n_rows, self.batch_size)
        return [order[rows] + self.offset for rows in batches]


@dataclass
class Validation:
    """Held-out rows scored after each epoch (early stopping).

    Attributes
    ----------
    operator : ndarray of shape (n_val, n_coef)
        Maps the trainer's coefficients to the held-out outputs (their kernel
        against the training rows, or their features).
    score : callable
        ``score(F_val)``: higher is better (R^2, accuracy).
    """

    operator: np.ndarray
    score: object


class _Progress:
    """MLP's stopping rule: ``n_iter_no_change`` epochs without a gain of ``tol``."""

    def __init__(self, early_stopping, tol):
        self.early_stopping = early_stopping
        self.tol = tol
        self.validation_scores = [] if early_stopping else None
        self.best_validation_score = -np.inf if early_stopping else None
        self.best_loss = None if early_stopping else np.inf
        self.best_epoch = None
        self.no_improvement = 0

    def update(self, epoch, loss, score):
        """Record an epoch (0-based) with its training loss and validation score."""
        if self.early_stopping:
            self.validation_scores.append(score)
            if score < self.best_validation_score + self.tol:
                self.no_improvement += 1
            else:
                self.no_improvement = 0
            if score > self.best_validation_score:
                self.best_validation_score = score
                self.best_epoch = epoch
        else:
            if loss > self.best_loss - self.tol:
                self.no_improvement += 1
            else:
                self.no_improvement = 0
            self.best_loss = min(self.best_loss, loss)


def _validation_outputs(trainer, validation, eigen_path):
    """A function returning the held-out outputs of the current coefficients."""
    if eigen_path:
        # The eigen trainer maps the validation kernel into its basis once, so
        # that no epoch needs its O(N^2 k) dual coefficients.
        return trainer.output_map(validation.operator)
    return lambda: validation.operator @ trainer.coef


def run_epochs(trainer, plan, *, validation=None, expand=np.array, callbacks=None,
               reconstruct=None, name="", verbose=0, diverged=None):
    """Train epoch by epoch until the plan says stop.

    Parameters
    ----------
    trainer : trainer object
        ``run_epoch(batches) -> loss`` and ``coef``.
    plan : EpochPlan
    validation : Validation or None
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
    diverged : callable
        ``diverged(epoch)``: the error to raise when training diverges.

    Returns
    -------
    history : dict
        ``coef`` (the kept coefficients: the last epoch's, or the best
        validation epoch's), ``n_iter``, ``loss_curve``,
        ``validation_scores``, ``best_validation_score``, ``best_loss`` and
        ``path`` (coefficients after each epoch).
    """
    # The eigen trainer records its path and gives it at the end, from one
    # product; reading its coefficients every epoch would cost O(N^2 k).
    eigen_path = hasattr(trainer, "coef_path")
    progress = _Progress(validation is not None, plan.tol)
    if validation is not None:
        validation_outputs = _validation_outputs(trainer, validation, eigen_path)
    loss_curve, path = [], []
    context = None if callbacks is None else callbacks.begin(plan.max_iter)
    n_iter = 0
    try:
        for _ in range(plan.max_iter):
            batches = plan.batches()
            epoch_context = None if context is None else callbacks.begin_epoch(context)
            try:
                epoch_loss = trainer.run_epoch(batches)
            except FloatingPointError as exc:
                raise diverged(n_iter + 1) from exc
            if not np.isfinite(epoch_loss):
                raise diverged(n_iter + 1)
            n_iter += 1
            loss_curve.append(float(epoch_loss))
            if not eigen_path:
                path.append(expand(trainer.coef))
            line = f"Iteration {n_iter}, loss = {epoch_loss:.8f}"
            score = None
            if validation is not None:
                score = validation.score(validation_outputs())
                line += f", validation score = {score:.8f}"
            progress.update(n_iter - 1, float(epoch_loss), score)
            if verbose:
                print(line)
            stop = epoch_context is not None and callbacks.end_epoch(
                epoch_context, lambda: reconstruct(expand(trainer.coef))
            )
            if stop or plan.online:
                break
            if progress.no_improvement > plan.n_iter_no_change:
                if verbose:
                    _print_stop(validation is not None, plan)
                break
        else:
            if not plan.online:
                warnings.warn(
                    f"{name}: maximum iterations ({plan.max_iter}) reached and "
                    "the optimization hasn't converged yet; increase "
                    "max_iter or learning_rate_init, or raise tol.",
                    ConvergenceWarning,
                )
    except KeyboardInterrupt:
        if n_iter == 0:
            raise
        warnings.warn(f"{name}: training interrupted by user after {n_iter} epochs.")

    if eigen_path:
        path = [expand(coef) for coef in trainer.coef_path()]
    # As MLP: with early stopping, the best epoch's coefficients are kept.
    final = path[-1] if progress.best_epoch is None else path[progress.best_epoch]
    if context is not None:
        callbacks.end(context, lambda: reconstruct(final))
    return {
        "coef": final,
        "n_iter": n_iter,
        "loss_curve": loss_curve,
        "validation_scores": progress.validation_scores,
        "best_validation_score": progress.best_validation_score,
        "best_loss": progress.best_loss,
        "path": path,
    }


def _print_stop(early_stopping, plan):
    what = "Validation score" if early_stopping else "Training loss"
    print(
        f"{what} did not improve more than tol={plan.tol:f} "
        f"for {plan.n_iter_no_change} consecutive epochs. Stopping."
    )
