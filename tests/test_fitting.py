"""The fitting engine on plain training problems, without an estimator."""

import dataclasses
import warnings

import numpy as np
import pytest
from naive import network_kernel as naive_kernel
from naive_dynamics import dual_training
from sklearn.exceptions import ConvergenceWarning

from sklearn_adamntk._fitting import (
    FitCallbacks,
    Schedule,
    Targets,
    TrainingProblem,
    fit_model,
    staged_outputs,
)
from sklearn_adamntk._model import NetworkSpec, model_outputs
from sklearn_adamntk._optimizer import OptimizerSettings

SPEC = NetworkSpec(kernel="nngp", activation="relu", depth=2, weight_variance=2.0,
                   bias_variance=0.5)


def _problem(solver="dual", optimizer="adam*", learning_rate=0.3, max_iter=6,
             **overrides):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((25, 3))
    X[3] = 0.0
    Y = rng.standard_normal((25, 2))
    problem = TrainingProblem(
        X=X,
        targets=Targets(Y=Y, loss="squared", attributes={"encoding": "raw"}),
        sample_weight=rng.uniform(0.5, 2.0, 25),
        spec=SPEC,
        settings=OptimizerSettings(optimizer, learning_rate=learning_rate),
        schedule=Schedule(max_iter=max_iter, tol=0.0, n_iter_no_change=max_iter),
        solver=solver,
    )
    return dataclasses.replace(problem, **overrides)


@pytest.mark.parametrize("solver", ["dual", "eigen"])
@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum"])
def test_engine_follows_the_naive_dual_dynamics(solver, optimizer):
    problem = _problem(solver=solver, optimizer=optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = fit_model(problem)
    K = naive_kernel(problem.X, kernel="nngp", depth=2, weight_variance=2.0,
                     bias_variance=0.5)
    full = [np.arange(25)]
    reference = dual_training(K, problem.targets.Y, [full] * 6, optimizer=optimizer,
                              learning_rate=0.3, sample_weight=problem.sample_weight)
    assert model.solver == solver and model.form == "dual"
    assert model.n_iter == 6 and model.t == 6 and model.best_iteration == 6
    np.testing.assert_allclose(model.coef, reference["coef"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(model.loss_curve, reference["losses"], rtol=1e-10)
    assert model.targets == {"encoding": "raw"}
    # The model evaluates itself: f(X) = K(X, X_fit) A.
    np.testing.assert_allclose(model_outputs(model, problem.X), K @ reference["coef"],
                               rtol=1e-8, atol=1e-10)
    # No epoch is kept, but the fit can be run again for the staged outputs.
    stages = staged_outputs(model, problem.X)
    assert len(stages) == 6
    for epoch, stage in enumerate(stages, start=1):
        at_epoch = dual_training(K, problem.targets.Y, [full] * epoch,
                                 optimizer=optimizer, learning_rate=0.3,
                                 sample_weight=problem.sample_weight)
        np.testing.assert_allclose(stage, K @ at_epoch["coef"], rtol=1e-8, atol=1e-10)


def test_a_continued_fit_that_diverges_leaves_the_previous_model_as_it_was():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        previous = fit_model(_problem())
    coef, state = previous.coef.copy(), previous.state.momentum_buffer.copy()
    online = _problem(online=True)
    # A loss that overflows: 0.5 * (1e200)^2 is inf.
    online.targets = dataclasses.replace(online.targets, Y=1e200 * online.targets.Y)
    with pytest.raises(ValueError, match="diverged at epoch 1"):
        fit_model(online, previous)
    np.testing.assert_array_equal(previous.coef, coef)
    np.testing.assert_array_equal(previous.state.momentum_buffer, state)
    with pytest.raises(dataclasses.FrozenInstanceError):
        previous.coef = None


def test_callbacks_hear_of_every_epoch_and_can_stop_the_fit():
    class StopAfterThree(FitCallbacks):
        def __init__(self):
            self.events = []

        def begin(self, max_iter):
            self.events.append(("begin", max_iter))
            return "fit"

        def begin_epoch(self, context):
            return len(self.events)

        def end_epoch(self, epoch_context, model):
            self.events.append(("epoch", model().n_outputs))
            return len(self.events) > 3

        def end(self, context, model):
            self.events.append(("end", model().coef.shape))

    callbacks = StopAfterThree()
    model = fit_model(_problem(callbacks=callbacks))
    assert model.n_iter == 3
    assert callbacks.events == [("begin", 6), ("epoch", 2), ("epoch", 2),
                                ("epoch", 2), ("end", (25, 2))]
