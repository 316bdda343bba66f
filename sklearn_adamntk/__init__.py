"""Infinite-width neural networks trained with ADAM* dynamics, as scikit-learn estimators.

The public names live here; everything else is private and may change.
"""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
