"""Former home of the base class and shared helpers; see :mod:`.base` and :mod:`._data`."""

from ._data import segment_means, transfer_holdout_mask, unique_labels
from .base import PerturbationRegressorMixin

__all__ = ["PerturbationRegressorMixin", "segment_means", "transfer_holdout_mask",
           "unique_labels"]
