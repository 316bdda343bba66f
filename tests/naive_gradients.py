"""Slow float64 reference for the kernels' hyper-parameter gradients.

The derivatives are taken numerically, with an eighth-order central difference
in log-space, of the naive kernels of ``naive.py``: nothing here differentiates
a formula by hand, so an error in the analytic derivation of the package
cannot be repeated here.  Nothing here imports the package.

The kernel is a smooth function of ``log(weight_variance)`` and
``log(bias_variance)`` (a product of powers of the variances and of smooth
angular functions), so with a step of 1e-2 the truncation error (``h^8``
times the ninth derivative, which grows like ``(depth + 1)^9``) and the
rounding error (``eps / h``) are both about 1e-13 relative.
"""

import numpy as np

from naive import network_kernel

# Order of the last axis: scikit-learn's order of the hyper-parameters (by name).
HYPERPARAMETERS = ("bias_variance", "weight_variance")

# f'(0) ~ sum_k w_k (f(k h) - f(-k h)) / h, exact for polynomials of degree 8.
_STENCIL = ((1, 4 / 5), (2, -1 / 5), (3, 4 / 105), (4, -1 / 280))


def log_derivative(function, value, step=1e-2):
    """``value * d function / d value`` at ``value > 0``, by central differences."""
    total = 0.0
    for k, weight in _STENCIL:
        total = total + weight * (function(value * np.exp(k * step))
                                  - function(value * np.exp(-k * step)))
    return total / step


def network_kernel_gradient(X, kernel="ntk", activation="relu", depth=1,
                            weight_variance=2.0, bias_variance=0.0, step=1e-2):
    """``K(X, X)`` and its log-derivatives, shape (n, n, 2), bias first.

    ``K_gradient[..., p] = v dK/dv`` for ``v`` the variance ``HYPERPARAMETERS[p]``.
    At ``bias_variance = 0`` the bias column is 0: ``v dK/dv`` vanishes with
    ``v`` (the kernel's derivative in ``v`` is finite there).
    """
    params = dict(kernel=kernel, activation=activation, depth=depth,
                  weight_variance=weight_variance, bias_variance=bias_variance)
    K = network_kernel(X, **params)

    def varying(name):
        return lambda value: network_kernel(X, **{**params, name: value})

    gradient = np.zeros(K.shape + (2,))
    for p, name in enumerate(HYPERPARAMETERS):
        if params[name] > 0:
            gradient[..., p] = log_derivative(varying(name), params[name], step)
    return K, gradient
