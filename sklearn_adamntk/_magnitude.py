"""How large a kernel may get before its values, or training on them, overflow.

A row of norm ``|x|`` enters the network's kernel squared (``Sigma^1 = sw2
<x, x'> / d + sb2``) and every ReLU layer multiplies it by ``sw2 / 2``, so a
finite row of about ``1e155`` (float64) gives an infinite kernel, and far
smaller rows give kernels whose products in training overflow.  The largest
value of the kernel on given rows is on its diagonal (a kernel is positive
semi-definite: ``|K(x, y)| <= sqrt(K(x, x) K(y, y))``), and the diagonal
costs ``O(n (d + depth))``, so one look at it tells, before any heavy work,
whether the whole kernel and what is computed from it stay finite:

- :func:`kernel_limit` with ``training=False``: the kernel itself is finite
  (a margin of 16 below the largest float covers rounding off the diagonal);
- with ``training=True``: the products of two kernel values and their sums
  over the rows that training and prediction form stay finite too
  (``finfo.max ** (1/3)``, about ``5.6e102`` in float64 and ``7e12`` in
  float32).

NumPy and the kernel core only.
"""

import numpy as np

from ._kernels import kernel_diag


# Above this kernel value on the training rows, fitting warns.  ADAM* (and
# Adam) normalise their steps in weight space, so a step moves the model by
# about learning_rate_init * sqrt(K) target units: 100 here (rows of about
# 70 at the defaults), and the fitted values overshoot standardised targets
# by up to that much; SGD's stable rate is below 2 / K.
WELL_SCALED = 1e4


def kernel_limit(dtype, *, training):
    """Largest kernel value accepted for data of ``dtype``."""
    largest = float(np.finfo(dtype).max)
    return largest ** (1.0 / 3.0) if training else largest / 16.0


def largest_diagonal(X, *, kernel, activation, depth, weight_variance,
                     bias_variance):
    """``(value, row)`` of the largest ``K(x, x)`` over the rows of ``X``.

    Every layer of the recursion counts (``Sigma^l`` and, for the NTK,
    ``Theta^l``, ``l <= depth + 1``): an erf network's kernel is bounded
    while its first layer grows with ``|x|^2``.  ``value`` is ``inf`` when
    the diagonal overflows (or is NaN) anywhere; ``(0.0, None)`` for no rows.
    """
    if X.shape[0] == 0:
        return 0.0, None
    with np.errstate(over="ignore", invalid="ignore"):  # float32's cast
        squared = np.einsum("ij,ij->i", X, X, dtype=np.float64)
        layers = [weight_variance * squared / X.shape[1] + bias_variance]  # Sigma^1
        for layer in range(1, depth + 1):
            for name in ("nngp", "ntk") if kernel == "ntk" else ("nngp",):
                layers.append(kernel_diag(
                    X, kernel=name, activation=activation, depth=layer,
                    weight_variance=weight_variance, bias_variance=bias_variance))
        diag = np.max(np.abs(np.stack(layers).astype(np.float64)), axis=0)
    bad = ~np.isfinite(diag)
    if bad.any():
        return np.inf, int(np.argmax(bad))
    row = int(np.argmax(diag))
    return float(diag[row]), row


def largest_squared_norm(X):
    """``(value, row)`` of the largest ``|x|^2``, computed in float64.

    The kernels start from ``X @ Y.T`` in the data's precision, so the
    squared norms must be representable even where the kernel scales them
    down (a small ``weight_variance / d``, or the bounded erf kernel).
    """
    if X.shape[0] == 0:
        return 0.0, None
    with np.errstate(over="ignore", invalid="ignore"):
        squared = np.einsum("ij,ij->i", X, X, dtype=np.float64)
    row = int(np.argmax(squared))
    return float(squared[row]), row


def largest_entry(X):
    """Largest ``|X|`` entry (0 for an empty array), with no temporary array."""
    return max(float(X.max()), -float(X.min())) if X.size else 0.0


def arccos_scale_error(X, degree, what):
    """The message saying why the arc-cosine kernel of ``X`` overflows, or None.

    Its diagonal is ``|x|^(2n)`` times 1, 1 or 3, and every degree divides by
    the squared norms, which must stay finite.
    """
    limit = kernel_limit(X.dtype, training=False)
    with np.errstate(over="ignore", invalid="ignore"):
        squared = np.einsum("ij,ij->i", X, X, dtype=np.float64)
        value = float(np.max(squared) ** max(1, degree) * 3.0) if X.size else 0.0
    if value <= limit:
        return None
    return (
        f"the arc-cosine kernel of degree {degree} on {what} overflows (at most "
        f"{limit:.2g} is supported on its diagonal in {X.dtype}): the largest "
        f"|entry| of {what} is {largest_entry(X):.3g}. Scale the rows down."
    )


def kernel_scale_error(X, params, *, training, what, advice):
    """The message saying why the kernel of ``X`` is too large, or None.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        Validated (finite) rows.
    params : dict
        ``kernel``, ``activation``, ``depth``, ``weight_variance``,
        ``bias_variance`` of the network.
    training : bool
        Which limit of :func:`kernel_limit` applies.
    what : str
        The rows, for the message (e.g. ``"X"``, ``"the training rows"``).
    advice : str
        What to change, ending the message.
    """
    limit = kernel_limit(X.dtype, training=training)
    value, row = largest_diagonal(X, **params)
    what_value = f"K(x, x) of row {row}, or a layer's"
    squared, squared_row = largest_squared_norm(X)
    if squared > value and squared > limit:
        value, what_value = squared, f"|x|^2 of row {squared_row}, which X @ X.T holds"
    if value <= limit:
        return None
    reaches = "overflows" if not np.isfinite(value) else f"reaches {value:.3g}"
    return (
        f"the network's kernel on {what} {reaches} ({what_value}; at "
        f"most {limit:.2g} is supported in {X.dtype}): the largest |entry| of "
        f"{what} is {largest_entry(X):.3g}, with weight_variance="
        f"{params['weight_variance']!r}, bias_variance="
        f"{params['bias_variance']!r} and depth={params['depth']!r}. {advice}"
    )
