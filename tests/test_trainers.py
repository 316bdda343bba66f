"""The trainers (dual, primal, eigen) against slow references and each other.

The references live in ``naive_dynamics.py`` (plain NumPy, one step at a
time, written from the formulas of DESIGN 3).  Besides agreement with them, these tests
check the exactness contract of DESIGN 3.1 (weight-space ADAM* on ``Psi`` is
the dual model on ``K = Psi Psi^T``) together with negative controls that
must break it, the eigenbasis shortcut, resuming, limits, and failures.
"""

import numba
import numpy as np
import pytest
from naive_dynamics import (
    dual_training,
    weight_space_predict,
    weight_space_training,
)

from training_problems import (
    FULL,
    HYPER,
    MINI,
    N_COLUMNS,
    N_FEATURES,
    N_NEW,
    N_TRAIN,
    epochs_of,
    make_features,
    make_targets,
    make_weights,
    relative_error,
    run,
    settings,
)

from sklearn_adamntk import _dual
from sklearn_adamntk._dual import DualTrainer
from sklearn_adamntk._eigen import EigenTrainer
from sklearn_adamntk._losses import LOSSES
from sklearn_adamntk._optimizer import OptimizerSettings, init_state
from sklearn_adamntk._primal import PrimalTrainer
from sklearn_adamntk._spectral import eigen_decomposition


# --------------------------------------------------------------------------
# 1. Every trainer against the naive recursions
# --------------------------------------------------------------------------


@pytest.mark.parametrize("batching", ["full", "mini"])
@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum", "adam"])
@pytest.mark.parametrize("loss", LOSSES)
def test_trainers_match_naive_dynamics(loss, optimizer, batching):
    Psi, Psi_new = make_features()
    K = Psi @ Psi.T
    Y = make_targets(loss)
    weight = make_weights()
    epochs = epochs_of(batching, 6)
    options = dict(optimizer=optimizer, loss=loss, sample_weight=weight, **HYPER)

    reference = weight_space_training(Psi, Y, epochs, **options)
    primal = PrimalTrainer(Psi, Y, settings(optimizer), loss, sample_weight=weight)
    losses = run(primal, epochs)
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-12)
    assert relative_error(primal.coef, reference["W"] / np.sqrt(N_COLUMNS)) < 1e-12
    assert relative_error(primal.train_predictions(),
                          weight_space_predict(Psi, reference["W"])) < 1e-12
    assert primal.state.t == 6 * len(epochs[0])

    if optimizer == "adam":
        with pytest.raises(ValueError, match="no dual form"):
            DualTrainer(K, Y, settings(optimizer), loss)
        return
    reference = dual_training(K, Y, epochs, **options)
    dual = DualTrainer(K, Y, settings(optimizer), loss, sample_weight=weight)
    losses = run(dual, epochs)
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-12)
    assert relative_error(dual.coef, reference["coef"]) < 1e-12
    assert relative_error(dual.train_predictions(), K @ reference["coef"]) < 1e-12
    K_new = Psi_new @ Psi.T
    assert relative_error(K_new @ dual.coef, K_new @ reference["coef"]) < 1e-12
    state = dual.state
    if optimizer != "sgd":
        assert relative_error(state.momentum_buffer,
                              reference["momentum_buffer"]) < 1e-12
    if optimizer == "adam*":
        np.testing.assert_allclose(state.second_moment, reference["second_moment"],
                                   rtol=1e-12)
    assert state.t == reference["t"]


def test_minibatch_adam_star_without_the_block_buffer(monkeypatch):
    # Batches whose K_BB does not fit the buffer gather it from K instead.
    monkeypatch.setattr(_dual, "_BLOCK_BUFFER_BYTES", 0)
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("softmax")
    epochs = epochs_of("mini", 4)
    reference = dual_training(K, Y, epochs, optimizer="adam*", loss="softmax", **HYPER)
    dual = DualTrainer(K, Y, settings("adam*"), "softmax")
    np.testing.assert_allclose(run(dual, epochs), reference["losses"], rtol=1e-12)
    assert relative_error(dual.coef, reference["coef"]) < 1e-12


def test_zero_weight_batch_is_a_step_without_gradient():
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = np.ones(N_TRAIN)
    weight[[3, 0, 7, 9]] = 0.0  # the whole first batch of MINI[0]
    epochs = [MINI[0], MINI[1]]
    reference = dual_training(K, Y, epochs, optimizer="adam*", sample_weight=weight,
                              **HYPER)
    dual = DualTrainer(K, Y, settings("adam*"), "squared", sample_weight=weight)
    np.testing.assert_allclose(run(dual, epochs), reference["losses"], rtol=1e-12)
    assert relative_error(dual.coef, reference["coef"]) < 1e-12
    assert dual.state.t == 6


# --------------------------------------------------------------------------
# 2. One ADAM* step by hand
# --------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dual", "primal", "eigen"])
def test_adam_star_steps_by_hand(form):
    # K = I, y = (6, 8), f_0 = 0, squared loss: L_1 = (f - y) / N = (-3, -4).
    K = np.eye(2)
    Y = np.array([[6.0], [8.0]])
    hyper = OptimizerSettings("adam*", learning_rate=0.1, beta_1=0.9, beta_2=0.999,
                              epsilon=1e-8)
    if form == "dual":
        trainer = DualTrainer(K, Y, hyper, "squared")
    elif form == "primal":
        trainer = PrimalTrainer(K, Y, hyper, "squared")  # Psi = I, so K = I
    else:
        trainer = EigenTrainer(eigen_decomposition(K), K, Y, hyper)

    loss_1 = trainer.run_epoch([np.arange(2)])
    assert loss_1 == pytest.approx((36 + 64) / 4)  # mean of 0.5 (f - y)^2
    # M_1 = (1 - b1) L_1 = (-0.3, -0.4); v_1 = (1 - b2) ||L_1||^2 = 0.001 * 25
    # D_1 = 1 / ((1 - 0.9) (sqrt(0.025 / 0.001) + 1e-8)) = 1 / (0.1 (5 + 1e-8))
    # A_1 = -0.1 D_1 M_1 = (0.3, 0.4) / (5 + 1e-8)
    A_1 = np.array([[0.3], [0.4]]) / (5 + 1e-8)
    np.testing.assert_allclose(trainer.coef, A_1, rtol=1e-14)
    state = trainer.state
    np.testing.assert_allclose(state.momentum_buffer, [[-0.3], [-0.4]], rtol=1e-14)
    np.testing.assert_allclose(state.second_moment, [0.025], rtol=1e-14)
    assert state.t == 1

    trainer.run_epoch([np.arange(2)])
    L_2 = (A_1 - Y) / 2  # K = I: f_1 = A_1
    M_2 = 0.9 * np.array([[-0.3], [-0.4]]) + 0.1 * L_2
    v_2 = 0.999 * 0.025 + 0.001 * np.sum(L_2**2)
    D_2 = 1 / ((1 - 0.9**2) * (np.sqrt(v_2 / (1 - 0.999**2)) + 1e-8))
    A_2 = A_1 - 0.1 * D_2 * M_2
    np.testing.assert_allclose(trainer.coef, A_2, rtol=1e-13)
    np.testing.assert_allclose(trainer.state.second_moment, [v_2], rtol=1e-13)


def test_weight_decay_and_momentum_steps_by_hand():
    K = np.eye(2)
    Y = np.array([[6.0], [8.0]])
    A_0 = np.array([[1.0], [-2.0]])
    trainer = DualTrainer(K, Y, OptimizerSettings("momentum", learning_rate=0.1,
                                                  momentum=0.5, weight_decay=2.0),
                          "squared", coef=A_0)
    trainer.run_epoch([np.arange(2)])
    G_1 = (A_0 - Y) / 2  # gradient at the undecayed coefficients
    A_1 = (1 - 0.1 * 2.0) * A_0 - 0.1 * G_1  # heavy ball: M_1 = G_1
    np.testing.assert_allclose(trainer.coef, A_1, rtol=1e-15)
    trainer.run_epoch([np.arange(2)])
    M_2 = 0.5 * G_1 + (A_1 - Y) / 2
    np.testing.assert_allclose(trainer.coef, 0.8 * A_1 - 0.1 * M_2, rtol=1e-15)


# --------------------------------------------------------------------------
# 3. Exactness contract (DESIGN 3.1) and its negative controls
# --------------------------------------------------------------------------


def _primal_and_dual(loss, batching, primal_settings, dual_settings, n_epochs=20):
    Psi, Psi_new = make_features(seed=5)
    K = Psi @ Psi.T
    Y = make_targets(loss)
    weight = make_weights()
    epochs = epochs_of(batching, n_epochs)
    primal = PrimalTrainer(Psi, Y, primal_settings, loss, sample_weight=weight)
    dual = DualTrainer(K, Y, dual_settings, loss, sample_weight=weight)
    run(primal, epochs)
    run(dual, epochs)
    predictions_primal = np.vstack([Psi @ primal.coef, Psi_new @ primal.coef])
    predictions_dual = np.vstack([K @ dual.coef, (Psi_new @ Psi.T) @ dual.coef])
    return predictions_primal, predictions_dual, primal, dual, Psi


@pytest.mark.parametrize("batching", ["full", "mini"])
@pytest.mark.parametrize("loss", LOSSES)
def test_weight_space_adam_star_is_the_dual_model(loss, batching):
    primal_f, dual_f, primal, dual, Psi = _primal_and_dual(
        loss, batching, settings("adam*"), settings("adam*"))
    assert relative_error(primal_f, dual_f) < 1e-10
    assert relative_error(primal.coef, Psi.T @ dual.coef) < 1e-10
    np.testing.assert_allclose(primal.state.second_moment, dual.state.second_moment,
                               rtol=1e-10)


@pytest.mark.parametrize("batching", ["full", "mini"])
@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_weight_space_adam_star_is_the_dual_model_under_invscaling(loss, batching):
    decaying = settings("adam*", power_t=0.5)
    primal_f, dual_f, primal, dual, Psi = _primal_and_dual(loss, batching, decaying,
                                                            decaying)
    assert relative_error(primal_f, dual_f) < 1e-10
    # The schedule is not a no-op: a constant rate gives other predictions.
    constant_f = _primal_and_dual(loss, batching, settings("adam*"),
                                  settings("adam*"))[1]
    assert relative_error(dual_f, constant_f) > 1e-3


@pytest.mark.parametrize("batching", ["full", "mini"])
@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum", "adam"])
def test_invscaling_follows_the_naive_schedule(optimizer, batching):
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    epochs = epochs_of(batching, 5)
    hyper = settings(optimizer, power_t=0.7)
    trainer = (PrimalTrainer(Psi, Y, hyper, "squared", sample_weight=weight)
               if optimizer == "adam" else
               DualTrainer(K, Y, hyper, "squared", sample_weight=weight))
    losses = run(trainer, epochs)
    naive_hyper = {**HYPER, "power_t": 0.7}
    if optimizer == "adam":
        reference = weight_space_training(Psi, Y, epochs, optimizer="adam",
                                          sample_weight=weight, **naive_hyper)
        outputs = Psi @ trainer.coef
        expected = weight_space_predict(Psi, reference["W"])
    else:
        reference = dual_training(K, Y, epochs, optimizer=optimizer,
                                  sample_weight=weight, **naive_hyper)
        outputs, expected = K @ trainer.coef, K @ reference["coef"]
    assert relative_error(outputs, expected) < 1e-10
    np.testing.assert_allclose(losses, reference["losses"], rtol=1e-10)


@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum"])
def test_eigen_trainer_follows_a_decaying_and_a_changed_rate(optimizer):
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    hyper = settings(optimizer, power_t=0.5)
    eigen = EigenTrainer(eigen_decomposition(K, weight), K, Y, hyper,
                         sample_weight=weight)
    dual = DualTrainer(K, Y, hyper, "squared", sample_weight=weight)
    for trainer in (eigen, dual):
        run(trainer, epochs_of("full", 4))
        trainer.set_learning_rate(hyper.learning_rate / 5)  # "adaptive"
        run(trainer, epochs_of("full", 4))
    assert eigen.learning_rate == dual.learning_rate == hyper.learning_rate / 5
    assert relative_error(eigen.coef, dual.coef) < 1e-10


@pytest.mark.parametrize("batching", ["full", "mini"])
@pytest.mark.parametrize("loss", ["squared", "softmax"])
def test_negative_control_perturbed_beta_2_breaks_the_match(loss, batching):
    primal_f, dual_f, *_ = _primal_and_dual(
        loss, batching, settings("adam*"), settings("adam*", beta_2=0.98))
    assert relative_error(primal_f, dual_f) > 1e-6


@pytest.mark.parametrize("batching", ["full", "mini"])
@pytest.mark.parametrize("loss", ["squared", "softmax"])
def test_negative_control_true_adam_is_not_the_dual_model(loss, batching):
    primal_f, dual_f, *_ = _primal_and_dual(
        loss, batching, settings("adam"), settings("adam*"))
    assert relative_error(primal_f, dual_f) > 1e-6


def test_contract_on_real_network_features():
    random_network = pytest.importorskip(
        "sklearn_adamntk._random_network",
        reason="the finite-network module is not in this checkout yet")
    rng = np.random.default_rng(6)
    X = rng.standard_normal((N_TRAIN + N_NEW, N_FEATURES))
    network = random_network.draw_network(N_FEATURES, width=8, depth=2, random_state=0)
    Psi_all = random_network.network_features(
        network, X, kernel="ntk", activation="relu", weight_variance=2.0,
        bias_variance=0.1)
    Psi, Psi_new = Psi_all[:N_TRAIN], Psi_all[N_TRAIN:]
    K = Psi @ Psi.T
    for loss in ("squared", "logistic"):
        Y = make_targets(loss)
        primal = PrimalTrainer(Psi, Y, settings("adam*"), loss)
        dual = DualTrainer(K, Y, settings("adam*"), loss)
        run(primal, epochs_of("mini", 15))
        run(dual, epochs_of("mini", 15))
        K_new = Psi_new @ Psi.T
        assert relative_error(Psi_new @ primal.coef, K_new @ dual.coef) < 1e-10
        assert relative_error(Psi @ primal.coef, dual.train_predictions()) < 1e-10


# --------------------------------------------------------------------------
# 4. Eigenbasis shortcut and resuming
# --------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum"])
def test_eigen_trainer_equals_dual_and_naive(optimizer):
    Psi, Psi_new = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    decomposition = eigen_decomposition(K, weight)
    eigen = EigenTrainer(decomposition, K, Y, settings(optimizer))
    dual = DualTrainer(K, Y, settings(optimizer), "squared", sample_weight=weight)
    eigen_losses = run(eigen, epochs_of("full", 25))
    dual_losses = run(dual, epochs_of("full", 25))
    reference = dual_training(K, Y, epochs_of("full", 25), optimizer=optimizer,
                              sample_weight=weight, **HYPER)
    np.testing.assert_allclose(eigen_losses, dual_losses, rtol=1e-8)
    np.testing.assert_allclose(eigen_losses, reference["losses"], rtol=1e-8)
    assert relative_error(eigen.coef, dual.coef) < 1e-8
    assert relative_error(eigen.coef, reference["coef"]) < 1e-8
    assert relative_error(eigen.train_predictions(), dual.train_predictions()) < 1e-8
    K_new = Psi_new @ Psi.T
    assert relative_error(K_new @ eigen.coef, K_new @ dual.coef) < 1e-8
    if optimizer != "sgd":
        assert relative_error(eigen.state.momentum_buffer,
                              dual.state.momentum_buffer) < 1e-8
    np.testing.assert_allclose(eigen.state.second_moment, dual.state.second_moment,
                               rtol=1e-8)
    assert eigen.state.t == dual.state.t == 25


def test_eigen_coef_path_is_the_coef_after_each_epoch():
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    A_0 = np.random.default_rng(7).standard_normal((N_TRAIN, 2))
    dual = DualTrainer(K, Y, settings("adam*"), "squared", coef=A_0)
    run(dual, epochs_of("mini", 3))  # a state with momentum on the zero-weight row
    eigen = EigenTrainer(eigen_decomposition(K, weight), K, Y, settings("adam*"),
                         coef=dual.coef, state=dual.state, record_path=True)
    coefs, snapshots = [], []
    for _ in range(6):
        eigen.run_epoch()
        coefs.append(eigen.coef)
        snapshots.append(eigen.snapshot())
    path = eigen.coef_path()
    assert path.shape == (6, N_TRAIN, 2)
    assert relative_error(path, np.array(coefs)) < 1e-12
    for snapshot, coef in zip(snapshots, coefs):
        np.testing.assert_array_equal(eigen.coef_of(snapshot), coef)
    unrecorded = EigenTrainer(eigen_decomposition(K, weight), K, Y, settings("adam*"))
    with pytest.raises(ValueError, match="record_path"):
        unrecorded.coef_path()


def _trainer(kind, hyper, loss, Psi, K, Y, weight, coef=None, state=None,
             decomposition=None):
    if kind == "primal":
        return PrimalTrainer(Psi, Y, hyper, loss, sample_weight=weight, coef=coef,
                             state=state)
    if kind == "eigen":
        return EigenTrainer(decomposition, K, Y, hyper, sample_weight=weight, coef=coef,
                            state=state)
    return DualTrainer(K, Y, hyper, loss, sample_weight=weight, coef=coef, state=state)


@pytest.mark.parametrize(
    "first, second, batching, optimizer",
    [
        ("dual", "dual", "full", "adam*"),
        ("dual", "dual", "mini", "momentum"),
        ("dual", "dual", "mini", "adam*"),
        ("primal", "primal", "full", "adam"),
        ("primal", "primal", "mini", "adam*"),
        ("primal", "primal", "mini", "momentum"),
        ("eigen", "eigen", "full", "adam*"),
        ("eigen", "eigen", "full", "sgd"),
        ("eigen", "dual", "full", "adam*"),
        ("eigen", "dual", "full", "momentum"),
        ("dual", "eigen", "full", "adam*"),
    ],
)
def test_resuming_equals_training_straight(first, second, batching, optimizer):
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    decomposition = eigen_decomposition(K, weight)
    epochs = epochs_of(batching, 10)
    common = (settings(optimizer), "squared", Psi, K, Y, weight)

    straight = _trainer(second, *common, decomposition=decomposition)
    run(straight, epochs)
    part_1 = _trainer(first, *common, decomposition=decomposition)
    run(part_1, epochs[:5])
    part_2 = _trainer(second, *common, coef=part_1.coef, state=part_1.state,
                      decomposition=decomposition)
    run(part_2, epochs[5:])
    tolerance = 1e-12 if first == second != "eigen" else 1e-8
    assert relative_error(part_2.coef, straight.coef) < tolerance
    assert part_2.state.t == straight.state.t


def test_eigen_resumes_a_fit_made_with_other_weights():
    # Warm start with new sample weights: the old momentum lives on a row whose
    # new weight is zero, which the weighted eigenbasis cannot represent.
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    for optimizer in ("adam*", "momentum"):
        first = DualTrainer(K, Y, settings(optimizer), "squared")
        run(first, epochs_of("mini", 4))
        assert np.any(first.state.momentum_buffer[weight == 0])
        eigen = EigenTrainer(eigen_decomposition(K, weight), K, Y, settings(optimizer),
                             coef=first.coef, state=first.state)
        dual = DualTrainer(K, Y, settings(optimizer), "squared", sample_weight=weight,
                           coef=first.coef, state=first.state)
        run(eigen, epochs_of("full", 8))
        run(dual, epochs_of("full", 8))
        assert relative_error(eigen.coef, dual.coef) < 1e-8
        assert relative_error(eigen.state.momentum_buffer,
                              dual.state.momentum_buffer) < 1e-8


def test_eigen_output_map_equals_operator_times_coef():
    # Resumed from a mini-batch fit, so that the map must also carry the
    # decaying resumed coefficients and the momentum on zero-weight rows.
    Psi, Psi_new = make_features()
    K = Psi @ Psi.T
    operator = Psi_new @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    first = DualTrainer(K, Y, settings("momentum"), "squared")
    run(first, epochs_of("mini", 3))
    eigen = EigenTrainer(eigen_decomposition(K, weight), K, Y, settings("momentum"),
                         coef=first.coef, state=first.state)
    outputs = eigen.output_map(operator)
    assert relative_error(outputs(), operator @ first.coef) < 1e-12
    for _ in range(5):
        eigen.run_epoch()
        assert relative_error(outputs(), operator @ eigen.coef) < 1e-10


def test_results_do_not_depend_on_the_thread_count():
    # Large enough for the gathers to run in parallel (several column chunks,
    # batches of 150 rows and 3 outputs).
    n = 300
    Psi, _ = make_features(n_train=n, n_new=0, n_columns=400)
    K = Psi @ Psi.T
    Y = make_targets("softmax", n=n)
    order = np.random.default_rng(9).permutation(n)
    epochs = [[order[:150], order[150:]]] * 2
    results = []
    previous = numba.get_num_threads()
    try:
        for n_threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n_threads)
            dual = DualTrainer(K, Y, settings("adam*"), "softmax")
            primal = PrimalTrainer(Psi, Y, settings("adam"), "softmax")
            run(dual, epochs)
            run(primal, epochs)
            results.append((dual.coef, primal.coef))
    finally:
        numba.set_num_threads(previous)
    for dual_coef, primal_coef in results[1:]:
        np.testing.assert_array_equal(dual_coef, results[0][0])
        np.testing.assert_array_equal(primal_coef, results[0][1])
    # The parallel paths are also right.
    reference = dual_training(K, Y, epochs, optimizer="adam*", loss="softmax", **HYPER)
    assert relative_error(results[0][0], reference["coef"]) < 1e-12
    primal = PrimalTrainer(Psi, Y, settings("adam*"), "softmax")
    run(primal, epochs)
    assert relative_error(Psi @ primal.coef, K @ reference["coef"]) < 1e-10


# --------------------------------------------------------------------------
# 5. t = 0 and long-time limits
# --------------------------------------------------------------------------


def _well_conditioned_kernel(n=8, seed=8):
    rng = np.random.default_rng(seed)
    R = rng.standard_normal((n, n))
    K = np.eye(n) + 0.3 * R @ R.T / n
    return K, rng.standard_normal((n, 1))


def test_start_is_zero_and_first_sgd_step_is_kernel_gradient():
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    weight = make_weights()
    trainers = [
        DualTrainer(K, Y, settings("sgd"), "squared", sample_weight=weight),
        PrimalTrainer(Psi, Y, settings("sgd"), "squared", sample_weight=weight),
        EigenTrainer(eigen_decomposition(K, weight), K, Y, settings("sgd")),
    ]
    for trainer in trainers:
        np.testing.assert_array_equal(trainer.train_predictions(), 0.0)
        trainer.run_epoch(FULL)
        # f_1 = -lr K G_0 with G_0 = W (0 - Y) / sum(w)
        expected = HYPER["learning_rate"] * K @ (weight[:, None] * Y) / weight.sum()
        assert relative_error(trainer.train_predictions(), expected) < 1e-12


@pytest.mark.parametrize("kind", ["dual", "eigen"])
def test_sgd_converges_to_the_kernel_interpolant(kind):
    K, y = _well_conditioned_kernel()
    n = K.shape[0]
    hyper = OptimizerSettings("sgd", learning_rate=n / np.linalg.eigvalsh(K).max())
    if kind == "dual":
        trainer = DualTrainer(K, y, hyper, "squared")
    else:
        trainer = EigenTrainer(eigen_decomposition(K), K, y, hyper)
    run(trainer, [[np.arange(n)]] * 400)
    np.testing.assert_allclose(trainer.coef, np.linalg.solve(K, y), rtol=1e-9)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_weight_decay_long_time_limit_is_a_ridge_fixed_point(optimizer):
    K, y = _well_conditioned_kernel()
    n = K.shape[0]
    weight = np.linspace(0.5, 1.5, n)
    weight[2] = 0.0
    wd, mu = 0.3, 0.5
    lr = 0.5 * n / np.linalg.eigvalsh(K).max()
    hyper = OptimizerSettings(optimizer, learning_rate=lr, momentum=mu, weight_decay=wd)
    trainer = EigenTrainer(eigen_decomposition(K, weight), K, y, hyper)
    run(trainer, [None] * 3000)
    A = trainer.coef
    gradient = weight[:, None] * (K @ A - y) / weight.sum()
    # Stationarity of A = (1 - lr wd) A - lr M with M = G (sgd) or G / (1 - mu)
    velocity = gradient if optimizer == "sgd" else gradient / (1 - mu)
    np.testing.assert_allclose(wd * A + velocity, 0.0, atol=1e-12)
    # ... which is kernel ridge: (W K + wd' sum(w) I) A = W y
    ridge = wd if optimizer == "sgd" else wd * (1 - mu)
    expected = np.linalg.solve(weight[:, None] * K + ridge * weight.sum() * np.eye(n),
                               weight[:, None] * y)
    np.testing.assert_allclose(A, expected, rtol=1e-9, atol=1e-12)
    assert A[2, 0] == pytest.approx(0.0, abs=1e-12)
    # The dual trainer follows the same path.
    dual = DualTrainer(K, y, hyper, "squared", sample_weight=weight)
    run(dual, [[np.arange(n)]] * 3000)
    np.testing.assert_allclose(dual.coef, A, rtol=1e-8, atol=1e-12)


# --------------------------------------------------------------------------
# 6. Failures, state helpers, solver choice
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["dual-full", "dual-mini", "primal-full", "primal-mini", "eigen"])
def test_divergence_raises_floating_point_error(kind):
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    hyper = OptimizerSettings("momentum", learning_rate=1e4)
    form, _, batching = kind.partition("-")
    trainer = _trainer(form, hyper, "squared", Psi, K, Y, None,
                       decomposition=eigen_decomposition(K))
    epochs = epochs_of(batching or "full", 1)
    with pytest.raises(FloatingPointError, match="diverged.*learning_rate_init"):
        for _ in range(500):
            run(trainer, epochs)


def test_bad_input_is_refused_before_any_work():
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    with pytest.raises(ValueError, match="optimizer"):
        OptimizerSettings("adagrad", learning_rate=0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        OptimizerSettings("sgd", learning_rate=0.0)
    with pytest.raises(ValueError, match="beta_2"):
        OptimizerSettings("adam*", learning_rate=0.1, beta_2=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        OptimizerSettings("sgd", learning_rate=1.0, weight_decay=2.0)
    with pytest.raises(ValueError, match="loss"):
        DualTrainer(K, Y, settings("sgd"), "hinge")
    with pytest.raises(ValueError, match="one output"):
        DualTrainer(K, Y, settings("sgd"), "logistic")
    with pytest.raises(ValueError, match="sample_weight"):
        DualTrainer(K, Y, settings("sgd"), "squared", sample_weight=-np.ones(N_TRAIN))
    with pytest.raises(ValueError, match="state"):
        DualTrainer(K, Y, settings("adam*"), "squared",
                    state=init_state(N_TRAIN, 2, "sgd", np.float64))
    with pytest.raises(ValueError, match="adam"):
        EigenTrainer(eigen_decomposition(K), K, Y, settings("adam"))
    with pytest.raises(ValueError, match="decomposition"):
        EigenTrainer(eigen_decomposition(K), K, Y, settings("sgd"),
                     sample_weight=make_weights())
    trainer = DualTrainer(K, Y, settings("sgd"), "squared")
    with pytest.raises(ValueError, match="Batch indices"):
        trainer.run_epoch([np.array([0, N_TRAIN])])
    with pytest.raises(ValueError, match="non-empty"):
        trainer.run_epoch([])
    assert trainer.state.t == 0


def test_float32_follows_float64():
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    trainers = [DualTrainer(K.astype(dtype), Y, settings("adam*"), "squared")
                for dtype in (np.float32, np.float64)]
    for trainer in trainers:
        run(trainer, epochs_of("full", 5))
    assert trainers[0].coef.dtype == np.float32
    assert relative_error(trainers[0].coef, trainers[1].coef) < 1e-4
