"""Data: the shipped real LINCS knockdowns and a synthetic generator."""

from ._lincs import load_lincs_knockdowns
from ._synthetic import make_synthetic_perturbations

__all__ = ["load_lincs_knockdowns", "make_synthetic_perturbations"]
