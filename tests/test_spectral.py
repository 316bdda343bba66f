"""The spectrum of the eigen trainer: whole (either LAPACK driver) or restricted."""

import numpy as np
import pytest
from training_problems import (
    N_TRAIN,
    epochs_of,
    make_features,
    make_targets,
    make_weights,
    relative_error,
    run,
    settings,
)

from sklearn_adamntk._dual import DualTrainer
from sklearn_adamntk._eigen import EigenTrainer
from sklearn_adamntk import _backend, _spectral, network_kernel
from sklearn_adamntk._spectral import eigen_decomposition, krylov_decomposition


@pytest.mark.parametrize("optimizer", ["adam*", "sgd", "momentum"])
def test_krylov_restriction_trains_exactly_as_the_dual_form(optimizer):
    # 200 rows, 2 outputs, 8 epochs: the subspace (18 directions) is far
    # from the whole space, so the restriction is doing the work.
    n, n_epochs = 200, 8
    Psi, _ = make_features(n_train=n, n_new=0, n_columns=400)
    K = Psi @ Psi.T
    Y = make_targets("squared", n=n)
    weight = make_weights(n=n)
    hyper = settings(optimizer, learning_rate=0.3, weight_decay=0.01)
    krylov = krylov_decomposition(K, Y, n_epochs, weight)
    assert krylov.eigenvectors.shape == (n, 2 * (n_epochs + 1))
    assert krylov.max_epochs == n_epochs
    eigen = EigenTrainer(krylov, None, Y, hyper, sample_weight=weight)
    dual = DualTrainer(K, Y, hyper, "squared", sample_weight=weight)
    full = [np.arange(n)]
    for _ in range(n_epochs):
        assert np.isclose(eigen.run_epoch(), dual.run_epoch(full), rtol=1e-10)
    assert relative_error(eigen.coef, dual.coef) < 1e-9
    if optimizer != "sgd":
        assert relative_error(eigen.state.momentum_buffer,
                              dual.state.momentum_buffer) < 1e-9
    with pytest.raises(RuntimeError, match="exact for 8 epochs"):
        eigen.run_epoch()


def test_krylov_restriction_of_a_small_problem_is_invariant():
    # 12 rows and 2 outputs: the subspace fills the space after 6 blocks,
    # and then holds for any number of epochs.
    Psi, _ = make_features()
    K = Psi @ Psi.T
    Y = make_targets("squared")
    krylov = krylov_decomposition(K, Y, 20)
    assert krylov.max_epochs is None and krylov.eigenvectors.shape[1] <= N_TRAIN
    eigen = EigenTrainer(krylov, None, Y, settings("adam*"))
    dual = DualTrainer(K, Y, settings("adam*"), "squared")
    run(eigen, epochs_of("full", 25))
    run(dual, epochs_of("full", 25))
    assert relative_error(eigen.coef, dual.coef) < 1e-9


def test_krylov_restriction_refuses_other_targets_and_resuming():
    n = 60
    Psi, _ = make_features(n_train=n, n_new=0, n_columns=100)
    K = Psi @ Psi.T
    Y = make_targets("squared", n=n)
    krylov = krylov_decomposition(K, Y, 4)
    with pytest.raises(ValueError, match="not the target"):
        EigenTrainer(krylov, None, make_targets("squared", seed=7, n=n),
                     settings("adam*"))
    with pytest.raises(ValueError, match="from zero coefficients only"):
        EigenTrainer(krylov, K, Y, settings("adam*"), coef=np.ones((n, 2)))


@pytest.mark.parametrize("available, driver", [(2**40, "evd"), (10_000, "evr")])
def test_both_lapack_drivers_decompose_the_weighted_gram_matrix(monkeypatch, available,
                                                                driver):
    monkeypatch.setattr(_backend, "available_memory_bytes", lambda: available)
    assert _spectral._eigh_driver(30, np.float64) == driver
    rng = np.random.default_rng(5)
    K = network_kernel(rng.standard_normal((30, 4)), depth=2)
    weight = rng.uniform(0.5, 2, 30)
    decomposition = eigen_decomposition(K, weight)
    Q, lam = decomposition.eigenvectors, decomposition.eigenvalues
    sw = np.sqrt(weight)
    np.testing.assert_allclose(Q.T @ Q, np.eye(30), atol=1e-12)
    np.testing.assert_allclose(Q @ np.diag(lam) @ Q.T, sw[:, None] * K * sw,
                               atol=1e-12)
    np.testing.assert_allclose(lam, np.linalg.eigvalsh(sw[:, None] * K * sw),
                               rtol=1e-10, atol=1e-12)
