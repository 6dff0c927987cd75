"""Data: the shipped LINCS knockdowns and glioblastoma single cells; a synthetic generator."""

from ._glioblastoma import load_glioblastoma_crispri
from ._lincs import load_lincs_knockdowns
from ._synthetic import make_synthetic_perturbations

__all__ = ["load_glioblastoma_crispri", "load_lincs_knockdowns", "make_synthetic_perturbations"]
