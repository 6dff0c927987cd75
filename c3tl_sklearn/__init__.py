"""C3TL: predict perturbation effects in unseen cellular contexts, the scikit-learn way."""

from .estimator import C3TLRegressor
from .datasets import load_lincs_knockdowns, make_synthetic_perturbations

__version__ = "0.1.0"

__all__ = ["C3TLRegressor", "__version__", "load_lincs_knockdowns", "make_synthetic_perturbations"]
