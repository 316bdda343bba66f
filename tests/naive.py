"""Slow float64 references written straight from DESIGN.md section 4.

Nothing here imports the package: these functions are the independent
statement of what the fast code must compute.  They favour the textbook
formula over speed or memory.
"""

import numpy as np


def _relu_expectations(s11, s22, s12, same=False):
    """E[relu(u) relu(v)] and E[step(u) step(v)] for a centred Gaussian pair.

    ``same`` marks the pairs of a point with itself, whose angle is exactly
    zero (DESIGN 4); elsewhere arccos of a rounded 1 would lose digits.
    """
    norm = np.sqrt(s11 * s22)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, s12 / np.where(norm > 0, norm, 1.0), 1.0)
    cos = np.where(same, 1.0, np.clip(cos, -1.0, 1.0))
    theta = np.arccos(cos)
    e_phi = norm * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    e_dphi = (np.pi - theta) / (2 * np.pi)
    return e_phi, e_dphi


def _erf_expectations(s11, s22, s12, same=False):
    """E[erf(u) erf(v)] and E[erf'(u) erf'(v)] (Williams 1997)."""
    denom = (1 + 2 * s11) * (1 + 2 * s22)
    arg = np.clip(2 * s12 / np.sqrt(denom), -1.0, 1.0)
    e_phi = (2 / np.pi) * np.arcsin(arg)
    e_dphi = (4 / np.pi) / np.sqrt(denom - 4 * s12**2)
    return e_phi, e_dphi


def network_kernel(X, Y=None, kernel="ntk", activation="relu", depth=1,
                   weight_variance=2.0, bias_variance=0.0):
    """NNGP or NTK of a fully connected network, NTK parameterisation."""
    X = np.asarray(X, dtype=np.float64)
    Y = X if Y is None else np.asarray(Y, dtype=np.float64)
    sw2, sb2 = weight_variance, bias_variance
    d = X.shape[1]
    expect = {"relu": _relu_expectations, "erf": _erf_expectations}[activation]

    s12 = sw2 * (X @ Y.T) / d + sb2
    s11 = (sw2 * np.sum(X * X, axis=1) / d + sb2)[:, None] * np.ones_like(s12)
    s22 = (sw2 * np.sum(Y * Y, axis=1) / d + sb2)[None, :] * np.ones_like(s12)
    same = np.eye(len(X), dtype=bool) if Y is X else False
    theta = s12.copy()
    for _ in range(depth):
        e12, edot12 = expect(s11, s22, s12, same)
        e11, _ = expect(s11, s11, s11, True)
        e22, _ = expect(s22, s22, s22, True)
        sdot = sw2 * edot12
        s12 = sw2 * e12 + sb2
        s11 = sw2 * e11 + sb2
        s22 = sw2 * e22 + sb2
        theta = s12 + sdot * theta
    return s12 if kernel == "nngp" else theta


def arccos_kernel(X, Y=None, degree=1):
    """Arc-cosine kernel of Cho & Saul (2009), degrees 0, 1 and 2."""
    X = np.asarray(X, dtype=np.float64)
    same = Y is None
    Y = X if Y is None else np.asarray(Y, dtype=np.float64)
    nx = np.linalg.norm(X, axis=1)[:, None]
    ny = np.linalg.norm(Y, axis=1)[None, :]
    norm = nx * ny
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norm > 0, (X @ Y.T) / np.where(norm > 0, norm, 1.0), 1.0)
    cos = np.clip(cos, -1.0, 1.0)
    if same:
        # The angle of a row with itself is 0 exactly (DESIGN 4); arccos of a
        # rounded 1 would be about 1e-8 and cost degree 0 its eighth digit.
        np.fill_diagonal(cos, 1.0)
    theta = np.arccos(cos)
    sin = np.sin(theta)
    if degree == 0:
        j = np.pi - theta
    elif degree == 1:
        j = sin + (np.pi - theta) * cos
    elif degree == 2:
        j = 3 * sin * cos + (np.pi - theta) * (1 + 2 * cos**2)
    else:
        raise ValueError(degree)
    return norm**degree * j / np.pi
