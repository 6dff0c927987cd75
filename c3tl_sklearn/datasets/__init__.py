"""Data: the shipped LINCS knockdowns and glioblastoma single cells; synthetic generators
(effects, and single cells for the peers' head-to-head)."""

from ._cells import CellDesign, make_synthetic_cells
from ._glioblastoma import load_glioblastoma_crispri
from ._lincs import load_lincs_knockdowns
from ._regimes import REGIMES, make_regime_perturbations
from ._synthetic import PerturbationDesign, make_synthetic_perturbations

__all__ = [
    "REGIMES",
    "CellDesign",
    "PerturbationDesign",
    "load_glioblastoma_crispri",
    "load_lincs_knockdowns",
    "make_regime_perturbations",
    "make_synthetic_cells",
    "make_synthetic_perturbations",
]
