"""Shared test setup: tests/ on sys.path (for ``from naive import ...``) and kernel data."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="module")
def data():
    """Two small sets of points (X, Y) for the kernel tests."""
    rng = np.random.default_rng(0)
    return rng.standard_normal((7, 5)), rng.standard_normal((6, 5))


@pytest.fixture(scope="module")
def large():
    """More rows than one product chunk, so blocks, chunks and tiles all vary."""
    rng = np.random.default_rng(1)
    return rng.standard_normal((600, 5)), rng.standard_normal((300, 5))


@pytest.fixture(autouse=True)
def _empty_eigen_cache():
    """Each test starts without eigendecompositions cached by earlier tests."""
    from sklearn_adamntk import _eigen_cache

    _eigen_cache.clear()
    yield
    _eigen_cache.clear()
