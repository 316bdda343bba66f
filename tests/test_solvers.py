"""The cost model that picks a solver for one fit."""

from sklearn_adamntk._solvers import choose_solver


def test_choose_solver():
    common = dict(n_samples=2000, n_outputs=1, loss="squared", max_iter=200)
    assert choose_solver(n_feature_columns=101, full_batch=False, optimizer="adam*",
                         **common) == "primal"
    assert choose_solver(n_feature_columns=None, full_batch=False, optimizer="adam*",
                         **common) == "dual"
    assert choose_solver(n_feature_columns=None, full_batch=True, optimizer="adam*",
                         **common) == "dual"
    assert choose_solver(n_feature_columns=None, full_batch=True, optimizer="sgd",
                         **{**common, "max_iter": 100_000}) == "eigen"
    assert choose_solver(n_feature_columns=None, full_batch=True, optimizer="sgd",
                         **{**common, "max_iter": 100_000, "loss": "softmax"}) == "dual"
    assert choose_solver(n_feature_columns=10**6, full_batch=True, optimizer="adam",
                         **common) == "primal"
    assert choose_solver(n_feature_columns=10**6, full_batch=False, optimizer="adam*",
                         **common) == "dual"
