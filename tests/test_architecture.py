"""The import rules that keep the three layers apart (README, "Architecture").

Read from the source with :mod:`ast`, so a rule broken by an import inside a
function is caught too.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "sklearn_adamntk"

# What the network computes, and how the readout learns: NumPy, SciPy, Numba.
KERNEL_CORE = ["_kernels", "_random_network", "_jit", "_magnitude"]
TRAINING_CORE = ["_losses", "_optimizer", "_inputs", "_batch", "_dual", "_primal",
                 "_streamed", "_eigen", "_spectral", "_eigen_cache", "_cuda",
                 "_cuda_dual"]
# The engine, and the validated kernel functions, may use scikit-learn's
# utilities, not its estimator machinery.
ENGINE = ["_fitting", "_solvers", "_epochs", "_model", "_backend", "_pairwise",
          "_distributed"]
# The scikit-learn face knows nothing of Numba or CUDA.
FACE = ["_base", "_estimators", "_cv", "_callbacks", "_kernel_objects", "_display",
        "__main__"]


def _imports(module):
    """Every module name ``module`` imports, relative ones as ``.name``."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            if node.module is None:  # from . import x
                names.update("." + alias.name for alias in node.names)
    return names


def test_every_module_is_in_a_layer():
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(KERNEL_CORE + TRAINING_CORE + ENGINE + FACE)


@pytest.mark.parametrize("module", KERNEL_CORE + TRAINING_CORE)
def test_the_numeric_core_imports_no_scikit_learn(module):
    assert not any(name.startswith("sklearn") for name in _imports(module))


@pytest.mark.parametrize("module", ENGINE)
def test_the_engine_uses_no_estimator_machinery(module):
    forbidden = ("sklearn.base", "sklearn.callback", "sklearn.pipeline")
    assert not any(name.startswith(forbidden) for name in _imports(module))
    assert not any(name in ("._base", "._estimators") for name in _imports(module))


@pytest.mark.parametrize("module", FACE)
def test_the_scikit_learn_face_knows_no_numba_or_cuda(module):
    names = _imports(module)
    assert not any(name.startswith("numba") for name in names)
    assert not names & {"._cuda", "._cuda_dual"}


def test_only_the_backend_imports_the_cuda_modules():
    importers = {path.stem for path in PACKAGE.glob("*.py")
                 if _imports(path.stem) & {"._cuda", "._cuda_dual"}}
    # The CUDA dual trainer builds on the device functions of ``_cuda``.
    assert importers == {"_backend", "_cuda_dual"}


def test_only_the_distributed_module_imports_dask():
    importers = {path.stem for path in PACKAGE.glob("*.py")
                 if any(name.split(".")[0] in ("dask", "distributed")
                        for name in _imports(path.stem))}
    assert importers == {"_distributed"}


def test_importing_the_package_imports_no_dask():
    # _distributed imports Dask inside the functions that need it.
    code = ("import sys, sklearn_adamntk; "
            "assert not [m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed')]")
    subprocess.run([sys.executable, "-c", code], check=True)
