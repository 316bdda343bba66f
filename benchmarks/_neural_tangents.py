"""neural-tangents' ``kernel_fn`` for the same kernel as ``network_kernel``.

neural-tangents is the peer of DESIGN 7 for the Gram matrix, an optional
benchmark dependency (``pip install ".[bench]"``).  Its analytic kernels use
the conventions ours follow (DESIGN 4): ``stax.Dense(W_std, b_std)`` in NTK
parameterisation has ``Sigma^1 = W_std^2 <x, y> / d + b_std^2``; ``depth``
hidden layers are ``depth`` (Dense, activation) pairs, and the readout is one
more Dense layer with its own bias.  So ``W_std = sqrt(weight_variance)``
and ``b_std = sqrt(bias_variance)``; the width argument plays no part in
the infinite-width kernel.

Before it is timed, :func:`kernel_function` checks on a small input that the
two kernels agree.  Off the diagonal they agree to rounding (about 1e-15
relative in float64).  On the diagonal neural-tangents' NTK is off by about
1e-8 relative (1e-4 in float32): it evaluates ``arccos`` of a cosine that
rounds to ``1 - 1 ulp``, where ``arccos`` turns an error of ``eps`` into
``sqrt(2 eps)`` (``2e-8`` in float64),
while ``network_kernel`` takes the exact value at ``theta = 0`` (DESIGN 4).
The check allows for that, and only there.

``kernel_fn`` is not jitted by neural-tangents; it is here, with ``get``
static, and its compilation is excluded from the timing by a warm-up call.
"""

import os

import numpy as np

# TensorFlow, which neural-tangents imports, logs at import unless told not to.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_ACTIVATIONS = {"relu": "Relu", "erf": "Erf"}
# Relative tolerances of the agreement check (see the module docstring).
_OFF_DIAGONAL_RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def _diagonal_rtol(dtype, depth):
    # arccos(1 - eps) = sqrt(2 eps): the angle neural-tangents finds on the
    # diagonal instead of 0, once per hidden layer.
    return 2 * depth * np.sqrt(2 * np.finfo(dtype).eps)


def import_error():
    """None when neural-tangents and JAX import, else why not (a short line)."""
    try:
        import jax  # noqa: F401
        import neural_tangents  # noqa: F401
    except Exception as error:  # ImportError, or a broken JAX/TensorFlow pair
        return f"{type(error).__name__}: {error}".splitlines()[0][:120]
    return None


def _stax_kernel_fn(params):
    from neural_tangents import stax

    w_std = np.sqrt(params.get("weight_variance", 2.0))
    b_std = np.sqrt(params.get("bias_variance", 0.0))
    activation = getattr(stax, _ACTIVATIONS[params.get("activation", "relu")])
    layers = []
    for _ in range(params.get("depth", 1)):
        layers += [stax.Dense(512, W_std=w_std, b_std=b_std), activation()]
    layers.append(stax.Dense(1, W_std=w_std, b_std=b_std))
    return stax.serial(*layers)[2]


def kernel_function(params, dtype, check_size=200, seed=0):
    """A callable ``X -> K(X, X)`` (NumPy, computed) by neural-tangents.

    Parameters
    ----------
    params : dict
        Keyword arguments of :func:`sklearn_adamntk.network_kernel`
        (``kernel``, ``activation``, ``depth``, ``weight_variance``,
        ``bias_variance``).
    dtype : {numpy.float64, numpy.float32}
        JAX computes in float64 only with ``jax_enable_x64``, which is set
        here to match ``dtype`` (the last call wins: build, time, then build
        the next one).
    check_size : int
        Rows of the random input on which the two kernels must agree.

    Raises
    ------
    AssertionError
        If neural-tangents' kernel is not ours.
    """
    import jax

    from sklearn_adamntk import network_kernel

    dtype = np.dtype(dtype).type
    jax.config.update("jax_enable_x64", dtype is np.float64)
    get = params.get("kernel", "ntk")
    jitted = jax.jit(_stax_kernel_fn(params), static_argnames="get")

    def gram(X):
        return np.asarray(jitted(X, None, get=get).block_until_ready())

    X = np.random.default_rng(seed).standard_normal((check_size, 64)).astype(dtype)
    theirs, ours = gram(X), network_kernel(X, **params)
    if theirs.dtype != dtype:
        raise AssertionError(f"neural-tangents computed in {theirs.dtype}, not "
                             f"{np.dtype(dtype).name}")
    scale = np.abs(ours).max()
    off = ~np.eye(check_size, dtype=bool)
    off_error = np.abs(theirs - ours)[off].max() / scale
    diagonal_error = np.abs(np.diag(theirs) - np.diag(ours)).max() / scale
    diagonal_rtol = _diagonal_rtol(dtype, params.get("depth", 1))
    if off_error > _OFF_DIAGONAL_RTOL[dtype] or diagonal_error > diagonal_rtol:
        raise AssertionError(
            f"neural-tangents' kernel differs from network_kernel({params}) in "
            f"{np.dtype(dtype).name}: {off_error:.1e} off the diagonal, "
            f"{diagonal_error:.1e} on it (relative to the largest entry)"
        )
    return gram
