"""The muP network of the width experiment (benchmarks/mup_mlp.py): its forward
pass is an ordinary MLP's with the readout rescaled, its gradients are right,
and its scaling rules do what the module docstring says they do."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.neural_network import MLPRegressor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mup_mlp  # noqa: E402


def _data(n_samples=40, n_features=5, n_outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features))
    Y = rng.standard_normal((n_samples, n_outputs))
    return X, Y


def _sklearn_mlp(params, X):
    """``MLPRegressor`` (one hidden ReLU layer) holding given weights."""
    W1, b1, W2, b2 = params
    mlp = MLPRegressor(hidden_layer_sizes=(W1.shape[1],), max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(X, np.zeros((X.shape[0], W2.shape[1])))  # only to build the layers
    mlp.coefs_ = [W1, W2]
    mlp.intercepts_ = [b1, b2]
    return mlp


@pytest.mark.parametrize("width", [64, 256])
def test_forward_is_a_standard_mlp_with_the_readout_rescaled(width):
    X, Y = _data(n_outputs=2)
    params = mup_mlp.init_params(X.shape[1], width, 2, np.random.default_rng(1))
    params["b2"] += [0.3, -0.2]
    outputs, _ = mup_mlp.forward(params, X)
    # Readout V times the multiplier n_0 / width (1 at the base width 64).
    W2 = params["V"] * (mup_mlp.BASE_WIDTH / width)
    mlp = _sklearn_mlp((params["W1"], params["b1"], W2, params["b2"]), X)
    np.testing.assert_allclose(outputs, mlp.predict(X), rtol=1e-12, atol=1e-12)
    if width != mup_mlp.BASE_WIDTH:
        # Negative control: without the rescaling the outputs differ.
        plain = _sklearn_mlp((params["W1"], params["b1"], params["V"], params["b2"]), X)
        assert not np.allclose(outputs, plain.predict(X))


def test_initial_variances_follow_the_table():
    width, d = 4096, 10
    params = mup_mlp.init_params(d, width, 3, np.random.default_rng(0))
    assert params["W1"].shape == (d, width) and params["V"].shape == (width, 3)
    np.testing.assert_allclose(params["W1"].var(), 2.0 / d, rtol=0.05)
    np.testing.assert_allclose(params["b1"].var(), 1.0, rtol=0.05)
    np.testing.assert_allclose(params["V"].var(), 1.0 / mup_mlp.BASE_WIDTH, rtol=0.05)
    assert not params["b2"].any()


@pytest.mark.parametrize("loss, n_outputs", [("squared", 2), ("softmax", 3)])
def test_gradients_match_finite_differences(loss, n_outputs):
    X, Y = _data(n_samples=12, n_features=4, n_outputs=n_outputs)
    if loss == "softmax":
        Y = np.eye(n_outputs)[np.arange(12) % n_outputs]
    # Width 8: the readout multiplier is 8, so a missing factor would show.
    params = mup_mlp.init_params(4, 8, n_outputs, np.random.default_rng(2))
    params["b2"] += 0.1
    _, gradients = mup_mlp.loss_and_gradients(params, X, Y, loss)
    step = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            saved = value[index]
            value[index] = saved + step
            up = mup_mlp.loss_and_gradients(params, X, Y, loss)[0]
            value[index] = saved - step
            down = mup_mlp.loss_and_gradients(params, X, Y, loss)[0]
            value[index] = saved
            numeric[index] = (up - down) / (2 * step)
        np.testing.assert_allclose(gradients[name], numeric, rtol=1e-5, atol=1e-8,
                                   err_msg=name)


def _adam_step(params, gradients, rates, state, beta_1=0.9, beta_2=0.999,
               epsilon=1e-30):
    """One textbook Adam step with a rate per parameter (scikit-learn's form)."""
    state["t"] += 1
    t = state["t"]
    new = {}
    for name, gradient in gradients.items():
        state["m"][name] = beta_1 * state["m"].get(name, 0) + (1 - beta_1) * gradient
        state["v"][name] = beta_2 * state["v"].get(name, 0) + (1 - beta_2) * gradient**2
        size = rates[name] * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        new[name] = params[name] - size * state["m"][name] / (
            np.sqrt(state["v"][name]) + epsilon)
    return new


def _standard_mlp_gradients(params, X, Y):
    """Squared-loss gradients of relu(X W1 + b1) W2 + b2, no multiplier."""
    hidden = X @ params["W1"] + params["b1"]
    activity = np.maximum(hidden, 0)
    d_outputs = (activity @ params["W2"] + params["b2"] - Y) / X.shape[0]
    d_hidden = (d_outputs @ params["W2"].T) * (hidden > 0)
    return {"W1": X.T @ d_hidden, "b1": d_hidden.sum(axis=0),
            "W2": activity.T @ d_outputs, "b2": d_outputs.sum(axis=0)}


@pytest.mark.parametrize("width", [64, 512])
def test_adam_on_mup_is_a_standard_mlp_with_readout_rate_over_width(width):
    # The module docstring's second form: readout W2 = (n_0/n) V, trained with
    # Adam at rate eta * n_0 / n, every other parameter at eta.
    X, Y = _data()
    eta, ratio = 0.01, mup_mlp.BASE_WIDTH / width
    net = mup_mlp.MuPNetwork(width, eta, "squared", random_state=3, dtype=np.float64)
    net.start(X, Y)
    net.optimizer_.epsilon = 1e-30
    plain = {"W1": net.params_["W1"].copy(), "b1": net.params_["b1"].copy(),
             "W2": ratio * net.params_["V"], "b2": net.params_["b2"].copy()}
    state = {"t": 0, "m": {}, "v": {}}
    rates = {"W1": eta, "b1": eta, "W2": eta * ratio, "b2": eta}
    control = dict(plain)
    control_state = {"t": 0, "m": {}, "v": {}}
    for _ in range(3):
        net.step(X, Y)
        plain = _adam_step(plain, _standard_mlp_gradients(plain, X, Y), rates, state)
        control = _adam_step(control, _standard_mlp_gradients(control, X, Y),
                             dict(rates, W2=eta), control_state)
    np.testing.assert_allclose(ratio * net.params_["V"], plain["W2"], rtol=1e-9,
                               atol=1e-12)
    for name in ("W1", "b1", "b2"):
        np.testing.assert_allclose(net.params_[name], plain[name], rtol=1e-9,
                                   atol=1e-12)
    if width != mup_mlp.BASE_WIDTH:
        # Negative control: the standard parametrisation's readout rate eta.
        assert not np.allclose(ratio * net.params_["V"], control["W2"], rtol=1e-3)


def _output_change(width, base_width, monkeypatch):
    """RMS change of the outputs after 5 Adam steps at rate 0.01."""
    monkeypatch.setattr(mup_mlp, "BASE_WIDTH", base_width)
    X, Y = _data(n_samples=30)
    net = mup_mlp.MuPNetwork(width, 0.01, "squared", random_state=0, dtype=np.float64)
    net.start(X, Y)
    before = net.outputs(X)
    for _ in range(5):
        net.step(X, Y)
    return float(np.sqrt(np.mean((net.outputs(X) - before) ** 2)))


def test_an_adam_step_moves_the_output_alike_at_every_width(monkeypatch):
    # muP: the same base rate changes the function by about as much at width
    # 256 as at 4096 (0.61x here, finite-width corrections)...
    narrow = _output_change(256, 64, monkeypatch)
    wide = _output_change(4096, 64, monkeypatch)
    assert 0.5 < wide / narrow < 2.0
    # ...whereas in the standard parametrisation (the base width is the width:
    # readout variance 1/n, no multiplier, rate eta everywhere) the change grows
    # with the width (6x here), so its best rate shrinks with the width.
    narrow = _output_change(256, 256, monkeypatch)
    wide = _output_change(4096, 4096, monkeypatch)
    assert wide / narrow > 4.0


def test_training_lowers_the_loss_and_a_bad_loss_is_refused():
    X, Y = _data()
    net = mup_mlp.MuPNetwork(128, 0.01, "squared", random_state=0)
    first = net.start(X, Y).step(X, Y)
    for _ in range(50):
        last = net.step(X, Y)
    assert last < 0.5 * first
    assert net.outputs(X).dtype == np.float32
    with pytest.raises(ValueError, match="loss must be one of"):
        mup_mlp.MuPNetwork(8, 0.1, loss="hinge")
