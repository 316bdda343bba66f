"""Real tabular datasets for judging defaults beyond scikit-learn's bundled sets.

Each loader returns ``(X, y)`` with ``X`` a float64 array (categorical
columns one-hot encoded, rows with missing values dropped) and ``y`` the
target (float for regression, labels for classification).  Sources, all
installable from PyPI without downloads at run time:

- scikit-learn's bundled sets and ``make_friedman1``;
- the data files of ISLP, the labs of *An Introduction to Statistical
  Learning* (``pip install --no-deps ISLP``: its data are plain CSV files,
  read here without importing the package, whose own dependencies are heavy);
- ``statsmodels.datasets``;
- ``palmerpenguins``.

A loader whose package is missing raises ``ImportError`` naming the install
command; :func:`available` lists the datasets that can be loaded here.
Larger sets are subsampled (without replacement, fixed seed) to
``MAX_ROWS`` rows so that an experiment over many of them stays affordable.
"""

import importlib.util
import os

import numpy as np
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_friedman1,
)

MAX_ROWS = 3000


def _subsample(X, y, max_rows=MAX_ROWS, seed=0):
    if X.shape[0] <= max_rows:
        return X, y
    rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], max_rows, replace=False))
    return X[rows], y[rows]


def _frame_to_arrays(frame, target, drop=()):
    import pandas as pd

    frame = frame.dropna()
    y = frame[target].to_numpy()
    features = frame.drop(columns=[target, *drop])
    features = pd.get_dummies(features, drop_first=True, dtype=float)
    return features.to_numpy(dtype=np.float64), y


def _islp(name):
    spec = importlib.util.find_spec("ISLP")
    if spec is None:
        raise ImportError("the ISLP data files: pip install --no-deps ISLP")
    import pandas as pd

    return pd.read_csv(os.path.join(spec.submodule_search_locations[0], "data",
                                    f"{name}.csv"))


def _statsmodels(name):
    try:
        import statsmodels.datasets as datasets
    except ImportError as error:
        raise ImportError("statsmodels: pip install statsmodels") from error
    return getattr(datasets, name).load_pandas().data


# -- regression ---------------------------------------------------------------

def friedman1(n_samples=2000):
    return make_friedman1(n_samples=n_samples, noise=1.0, random_state=0)


def diabetes():
    return load_diabetes(return_X_y=True)


def auto_mpg():
    frame = _islp("Auto").drop(columns=["name"])
    frame["origin"] = frame["origin"].astype(str)
    return _frame_to_arrays(frame, "mpg")


def carseats():
    return _frame_to_arrays(_islp("Carseats"), "Sales")


def college_grad_rate():
    return _frame_to_arrays(_islp("College"), "Grad.Rate")


def credit_balance():
    return _frame_to_arrays(_islp("Credit"), "Balance", drop=("ID",))


def hitters_log_salary():
    frame = _islp("Hitters").dropna()
    frame["Salary"] = np.log(frame["Salary"])
    return _frame_to_arrays(frame, "Salary")


def wage():
    frame = _islp("Wage").drop(columns=["logwage", "region"])
    return _frame_to_arrays(frame, "wage")


def bikeshare():
    frame = _islp("Bikeshare").drop(columns=["casual", "registered", "day"])
    for column in ("season", "mnth", "hr", "weathersit"):
        frame[column] = frame[column].astype(str)
    return _subsample(*_frame_to_arrays(frame, "bikers"))


def fair_affairs():
    return _subsample(*_frame_to_arrays(_statsmodels("fair"), "affairs"))


def rand_hie_visits():
    return _subsample(*_frame_to_arrays(_statsmodels("randhie"), "mdvis"))


# -- classification -----------------------------------------------------------

def breast_cancer():
    return load_breast_cancer(return_X_y=True)


def wine():
    return load_wine(return_X_y=True)


def digits():
    return load_digits(return_X_y=True)


def default_credit():
    return _subsample(*_frame_to_arrays(_islp("Default"), "default"))


def orange_juice():
    return _frame_to_arrays(_islp("OJ"), "Purchase", drop=("Store7",))


def penguins():
    try:
        from palmerpenguins import load_penguins
    except ImportError as error:
        raise ImportError("palmerpenguins: pip install palmerpenguins") from error
    frame = load_penguins().drop(columns=["year"])
    return _frame_to_arrays(frame, "species")


def anes96_vote():
    frame = _statsmodels("anes96")
    return _frame_to_arrays(frame[["logpopul", "TVnews", "selfLR", "ClinLR", "DoleLR",
                                   "PID", "age", "educ", "income", "vote"]], "vote")


REGRESSION = {
    "diabetes": diabetes,
    "friedman1": friedman1,
    "auto_mpg": auto_mpg,
    "carseats": carseats,
    "college_grad_rate": college_grad_rate,
    "credit_balance": credit_balance,
    "hitters_log_salary": hitters_log_salary,
    "wage": wage,
    "bikeshare": bikeshare,
    "fair_affairs": fair_affairs,
    "rand_hie_visits": rand_hie_visits,
}
CLASSIFICATION = {
    "breast_cancer": breast_cancer,
    "wine": wine,
    "digits": digits,
    "default_credit": default_credit,
    "orange_juice": orange_juice,
    "penguins": penguins,
    "anes96_vote": anes96_vote,
}


def available(names):
    """The names among ``names`` whose loader works here."""
    loaders = {**REGRESSION, **CLASSIFICATION}
    found = []
    for name in names:
        try:
            loaders[name]()
        except ImportError:
            continue
        found.append(name)
    return found


def load(name):
    """``(X, y, task)`` of a dataset named in :data:`REGRESSION` or :data:`CLASSIFICATION`."""
    if name in REGRESSION:
        X, y = REGRESSION[name]()
        return np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64), "regression"
    X, y = CLASSIFICATION[name]()
    return np.asarray(X, dtype=np.float64), np.asarray(y), "classification"
