"""Optimizer state: its shapes per optimizer, and growing it for new rows."""

import numpy as np

from sklearn_adamntk._optimizer import OptimizerState, init_state


def test_with_new_rows_appends_zero_rows():
    state = OptimizerState(np.ones((3, 2)), np.array([0.5, 0.25]), t=7)
    grown = state.with_new_rows(2)
    np.testing.assert_array_equal(grown.momentum_buffer, np.vstack([np.ones((3, 2)),
                                                                    np.zeros((2, 2))]))
    np.testing.assert_array_equal(grown.second_moment, [0.5, 0.25])
    assert grown.t == 7
    assert state.momentum_buffer.shape == (3, 2)  # the original is untouched
    adam = init_state(3, 2, "adam", np.float64).with_new_rows(1)
    assert adam.second_moment.shape == (4, 2)


def test_init_state_shapes():
    assert init_state(5, 2, "adam*", np.float32).second_moment.shape == (2,)
    assert init_state(5, 2, "adam*", np.float32).momentum_buffer.dtype == np.float32
    assert init_state(5, 2, "adam", np.float64).second_moment.shape == (5, 2)
    assert init_state(5, 2, "sgd", np.float64).second_moment.shape == (0,)
    assert init_state(5, 2, "momentum", np.float64).t == 0
