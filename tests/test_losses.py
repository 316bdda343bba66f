"""The three losses against their textbook formulas (``naive_dynamics.py``)."""

import numpy as np
import pytest
from naive_dynamics import loss_and_gradient as naive_loss_and_gradient
from training_problems import make_targets

from sklearn_adamntk._losses import LOSSES, loss_and_gradient


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_and_gradient_matches_textbook_formulas(loss):
    rng = np.random.default_rng(3)
    Y = make_targets(loss, n=7)
    F = 2.0 * rng.standard_normal(Y.shape)
    per_row, grad = loss_and_gradient(F, Y, loss)
    expected_rows, expected_grad = naive_loss_and_gradient(F, Y, loss)
    np.testing.assert_allclose(per_row, expected_rows, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-13, atol=1e-15)


def test_classification_losses_stay_finite_for_huge_logits():
    F = np.array([[800.0], [-800.0]])
    Y = np.array([[0.0], [1.0]])
    per_row, grad = loss_and_gradient(F, Y, "logistic")
    np.testing.assert_allclose(per_row, [800.0, 800.0])
    np.testing.assert_allclose(grad, [[1.0], [-1.0]])
    F = np.array([[1000.0, -1000.0, 0.0]])
    per_row, grad = loss_and_gradient(F, np.array([[0.0, 1.0, 0.0]]), "softmax")
    np.testing.assert_allclose(per_row, [2000.0])
    np.testing.assert_allclose(grad, [[1.0, -1.0, 0.0]], atol=1e-300)
