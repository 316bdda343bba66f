"""Slow float64 references of the training recursions of DESIGN section 3.

Nothing here imports the package: these loops are the independent statement
of what the trainers must compute, written straight from the formulas, one
step at a time, recomputing every product from scratch.

Conventions fixed by the design and the optimizer interface:

- the readout starts at zero (``f_0 = 0``); a batch's loss is the
  sample-weighted mean over the batch; a batch whose weights are all zero has
  no gradient but still counts as a step;
- decoupled weight decay multiplies the coefficients by ``1 - lr * wd`` at
  each step, after the gradient was taken at the undecayed coefficients;
- momentum is the heavy ball ``M = mu M + G``, ``A -= lr M``;
- the weight-space model is the mean-field one of DESIGN 2:
  ``f(x) = E_z[W(z) phi(x; z)]`` with ``z`` uniform over the ``P`` columns of
  ``phi = sqrt(P) Psi`` (so ``E_z[phi phi] = Psi Psi^T``) and per-feature
  gradient ``g(z) = sum_i L_i phi(x_i; z)``.
"""

import numpy as np


def loss_and_gradient(F, Y, loss):
    """Per-row loss and ``dloss/dF``, textbook formulas (moderate logits only)."""
    F = np.asarray(F, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if loss == "squared":
        return 0.5 * np.sum((F - Y) ** 2, axis=1), F - Y
    if loss == "logistic":
        p = 1.0 / (1.0 + np.exp(-F))
        per_row = -(Y * np.log(p) + (1.0 - Y) * np.log(1.0 - p))
        return per_row[:, 0], p - Y
    if loss == "softmax":
        P = np.exp(F) / np.sum(np.exp(F), axis=1, keepdims=True)
        return -np.sum(Y * np.log(P), axis=1), P - Y
    raise ValueError(loss)


def _mean_loss_gradient(F, Y, weight, batch, loss):
    """Weighted loss sum of the batch, its weight and ``G`` (zero off the batch)."""
    G = np.zeros_like(F)
    per_row, grad = loss_and_gradient(F[batch], Y[batch], loss)
    w = weight[batch]
    if w.sum() > 0:
        G[batch] = grad * (w / w.sum())[:, None]
    return np.sum(w * per_row), w.sum(), G


def dual_training(K, Y, epochs, *, optimizer, loss="squared", learning_rate,
                  beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum=0.9,
                  weight_decay=0.0, sample_weight=None, coef=None,
                  momentum_buffer=None, second_moment=None, t=0, power_t=0.0):
    """Kernel (dual) dynamics of DESIGN 3.1-3.3.

    Parameters
    ----------
    epochs : list of list of index arrays
        The batches of each epoch, in order.

    Returns
    -------
    dict with ``coef`` (A), ``momentum_buffer`` (M), ``second_moment`` (v),
    ``t``, ``losses`` (one weighted mean per epoch) and ``steps`` (the
    per-output step size ``eta D_t`` of every step, ``eta`` for SGD and
    momentum).
    """
    K = np.asarray(K, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(K.shape[0], -1)
    n, k = Y.shape
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    A = np.zeros((n, k)) if coef is None else np.array(coef, dtype=float)
    M = np.zeros((n, k))
    if momentum_buffer is not None:
        M = np.array(momentum_buffer, dtype=float)
    v = np.zeros(k) if second_moment is None else np.array(second_moment, dtype=float)
    losses, steps = [], []
    for batches in epochs:
        loss_sum = weight_sum = 0.0
        for batch in batches:
            F = K @ A
            batch_loss, batch_weight, G = _mean_loss_gradient(F, Y, weight, batch, loss)
            loss_sum += batch_loss
            weight_sum += batch_weight
            t += 1
            eta = learning_rate / t**power_t  # DESIGN 3.6, "invscaling"
            decayed = (1.0 - eta * weight_decay) * A
            if optimizer == "sgd":
                A = decayed - eta * G
                steps.append(np.full(k, eta))
            elif optimizer == "momentum":
                M = momentum * M + G
                A = decayed - eta * M
                steps.append(np.full(k, eta))
            elif optimizer == "adam*":
                M = beta_1 * M + (1 - beta_1) * G
                v = beta_2 * v + (1 - beta_2) * np.diag(G.T @ K @ G)
                D = 1.0 / ((1 - beta_1**t) * (np.sqrt(v / (1 - beta_2**t)) + epsilon))
                A = decayed - eta * D[None, :] * M
                steps.append(eta * D)
            else:
                raise ValueError(optimizer)
        losses.append(loss_sum / weight_sum)
    return dict(coef=A, momentum_buffer=M, second_moment=v, t=t, losses=losses,
                steps=np.array(steps))


def smoother_trace(K, steps, *, optimizer, beta_1=0.9, momentum=0.9,
                   sample_weight=None, power=1):
    """Trace of ``S_t ** power`` in ``F_t = S_t Y``, full-batch squared loss.

    Given the step sizes a run took (one per output), the map from the
    targets to the fitted values is linear (DESIGN 3.7): it is the same
    recursion applied to every column of the identity.  Returns the trace
    after each step, shape (n_steps, k); ``power=2`` gives the trace of the
    square that robust GCV needs.
    """
    K = np.asarray(K, dtype=np.float64)
    n = K.shape[0]
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    W = np.diag(weight / weight.sum())
    traces = []
    for c in range(steps.shape[1]):
        A = np.zeros((n, n))
        M = np.zeros((n, n))
        column = []
        for step in steps[:, c]:
            G = W @ (K @ A - np.eye(n))
            if optimizer == "sgd":
                M = G
            elif optimizer == "momentum":
                M = momentum * M + G
            else:
                M = beta_1 * M + (1 - beta_1) * G
            A = A - step * M
            column.append(np.trace(np.linalg.matrix_power(K @ A, power)))
        traces.append(column)
    return np.array(traces).T


def weight_space_training(Psi, Y, epochs, *, optimizer, loss="squared", learning_rate,
                          beta_1=0.9, beta_2=0.999, epsilon=1e-8, momentum=0.9,
                          weight_decay=0.0, sample_weight=None, power_t=0.0):
    """Finite network trained on its readout ``W(z)``, per feature (DESIGN 2, 3).

    ``"adam*"`` uses ``v = E_z[g(z)^2]`` (one number per output); ``"adam"``
    uses ``v(z) = g(z)^2`` per weight.

    Returns
    -------
    dict with ``W`` (P, k), ``features`` (the ``phi`` of the training rows) and
    ``losses``; predict new rows with :func:`weight_space_predict`.
    """
    Psi = np.asarray(Psi, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(Psi.shape[0], -1)
    n, P = Psi.shape
    k = Y.shape[1]
    phi = np.sqrt(P) * Psi
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, float)
    W = np.zeros((P, k))
    m = np.zeros((P, k))
    v = np.zeros(k) if optimizer == "adam*" else np.zeros((P, k))
    t = 0
    losses = []
    for batches in epochs:
        loss_sum = weight_sum = 0.0
        for batch in batches:
            F = phi @ W / P
            batch_loss, batch_weight, L = _mean_loss_gradient(F, Y, weight, batch, loss)
            loss_sum += batch_loss
            weight_sum += batch_weight
            t += 1
            g = np.zeros((P, k))
            for z in range(P):
                for i in range(n):
                    g[z] += L[i] * phi[i, z]
            eta = learning_rate / t**power_t  # DESIGN 3.6, "invscaling"
            decayed = (1.0 - eta * weight_decay) * W
            if optimizer == "sgd":
                W = decayed - eta * g
            elif optimizer == "momentum":
                m = momentum * m + g
                W = decayed - eta * m
            elif optimizer in ("adam*", "adam"):
                m = beta_1 * m + (1 - beta_1) * g
                second = np.mean(g**2, axis=0) if optimizer == "adam*" else g**2
                v = beta_2 * v + (1 - beta_2) * second
                D = 1.0 / ((1 - beta_1**t) * (np.sqrt(v / (1 - beta_2**t)) + epsilon))
                W = decayed - eta * D * m
            else:
                raise ValueError(optimizer)
        losses.append(loss_sum / weight_sum)
    return dict(W=W, losses=losses)


def weight_space_predict(Psi_new, W):
    """``f(x) = E_z[W(z) phi(x; z)]`` for feature rows ``Psi_new`` (N_new, P)."""
    Psi_new = np.asarray(Psi_new, dtype=np.float64)
    P = Psi_new.shape[1]
    return (np.sqrt(P) * Psi_new) @ W / P
