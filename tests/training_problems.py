"""Small training problems shared by the tests of the training layer.

Random ReLU features of a few rows (one of them zero), targets in the
encoding of each loss, uneven sample weights with a zero, and fixed, unequal,
shuffled mini-batches.
"""

import numpy as np

from sklearn_adamntk._optimizer import OptimizerSettings

N_TRAIN, N_NEW, N_FEATURES, N_COLUMNS = 12, 5, 3, 40
FULL = [np.arange(N_TRAIN)]
# Fixed, unequal, shuffled mini-batches: two different epochs.
MINI = [
    [np.array([3, 0, 7, 9]), np.array([11, 1, 5]), np.array([2, 10, 4, 6, 8])],
    [np.array([8, 6, 4, 2, 0]), np.array([1, 3, 5, 7, 9]), np.array([10, 11])],
]
HYPER = dict(learning_rate=0.05, beta_1=0.8, beta_2=0.99, epsilon=1e-8,
             momentum=0.7, weight_decay=0.2)


def relative_error(actual, desired):
    return np.max(np.abs(actual - desired)) / np.max(np.abs(desired))


def make_features(seed=0, n_train=N_TRAIN, n_new=N_NEW, n_columns=N_COLUMNS):
    """ReLU random features of training and new rows, with one zero input row."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train + n_new, N_FEATURES))
    X[4] = 0.0  # a zero row: its features (and kernel row) vanish
    projection = rng.standard_normal((N_FEATURES, n_columns))
    Psi = np.maximum(X @ projection, 0.0) / np.sqrt(n_columns)
    return Psi[:n_train], Psi[n_train:]


def make_targets(loss, seed=1, n=N_TRAIN):
    rng = np.random.default_rng(seed)
    if loss == "squared":
        return rng.standard_normal((n, 2))
    if loss == "logistic":
        return (np.arange(n) % 2).astype(float)[:, None]
    return np.eye(3)[np.arange(n) % 3]


def make_weights(seed=2, n=N_TRAIN):
    weight = np.random.default_rng(seed).uniform(0.5, 2.0, n)
    weight[1] = 0.0
    return weight


def settings(optimizer, **overrides):
    return OptimizerSettings(optimizer, **{**HYPER, **overrides})


def run(trainer, epochs):
    return [trainer.run_epoch(batches) for batches in epochs]


def epochs_of(batching, n_epochs):
    return [FULL if batching == "full" else MINI[e % 2] for e in range(n_epochs)]
