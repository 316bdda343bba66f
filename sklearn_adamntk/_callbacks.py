"""scikit-learn's fit callbacks (``set_callbacks``, scikit-learn >= 1.9), told of each epoch.

The fitting engine reports a fit and its epochs to a
:class:`._fitting.FitCallbacks`; :class:`SklearnCallbacks` passes those
reports on to the callbacks set on the estimator (``ProgressBar``,
``ScoringMonitor``, ...), one subtask per epoch.  A callback that inspects
the model receives the attributes that make a copy of the estimator predict
as the model of that epoch.
"""

from ._fitting import FitCallbacks

try:  # scikit-learn >= 1.9: progress bars and other fit callbacks.
    from sklearn.callback import CallbackSupportMixin

    HAS_CALLBACKS = True
except ImportError:  # pragma: no cover - depends on the installed scikit-learn

    class CallbackSupportMixin:
        """Stand-in for scikit-learn < 1.9, which has no callback API."""

    HAS_CALLBACKS = False


class SklearnCallbacks(FitCallbacks):
    """The estimator's callbacks, driven by the engine's reports.

    Parameters
    ----------
    estimator : estimator with :class:`CallbackSupportMixin`
    X, y, sample_weight
        The data of the fit, as the callbacks receive them.
    attributes : callable
        ``attributes(model)``: the fitted attributes of a model.
    """

    def __init__(self, estimator, X, y, sample_weight, attributes):
        self._estimator = estimator
        self._data = {"X": X, "y": y, "metadata": {"sample_weight": sample_weight}}
        self._attributes = attributes

    def begin(self, max_iter):
        context = self._estimator._init_callback_context(max_subtasks=max_iter)
        context.call_on_fit_task_begin(estimator=self._estimator, **self._data)
        return context

    def begin_epoch(self, context):
        epoch_context = context.subcontext(task_name="epoch")
        epoch_context.call_on_fit_task_begin(estimator=self._estimator, **self._data)
        return epoch_context

    def end_epoch(self, epoch_context, model):
        return epoch_context.call_on_fit_task_end(
            estimator=self._estimator,
            reconstruction_attributes=lambda: self._attributes(model()),
            **self._data,
        )

    def end(self, context, model):
        context.call_on_fit_task_end(
            estimator=self._estimator,
            reconstruction_attributes=lambda: self._attributes(model()),
            **self._data,
        )
