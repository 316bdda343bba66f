"""Infinite-width neural networks trained with ADAM* dynamics, as scikit-learn estimators.

The public names live here; every other module is private and may change.
"""

from ._cv import AdamStarNTKClassifierCV, AdamStarNTKRegressorCV
from ._display import LossCurveDisplay, ValidationPathDisplay
from ._eigen_cache import clear_eigen_cache, eigen_cache_info, set_eigen_cache_size
from ._estimators import AdamStarNTKClassifier, AdamStarNTKRegressor
from ._kernel_objects import NetworkKernel, RandomNetworkFeatures
from ._pairwise import arccos_kernel, network_kernel, network_kernel_diag

__version__ = "0.1.0.dev0"

__all__ = [
    "AdamStarNTKClassifier",
    "AdamStarNTKClassifierCV",
    "AdamStarNTKRegressor",
    "AdamStarNTKRegressorCV",
    "LossCurveDisplay",
    "NetworkKernel",
    "RandomNetworkFeatures",
    "ValidationPathDisplay",
    "__version__",
    "arccos_kernel",
    "clear_eigen_cache",
    "eigen_cache_info",
    "network_kernel",
    "network_kernel_diag",
    "set_eigen_cache_size",
]
