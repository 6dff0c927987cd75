"""C3TL: predict perturbation effects in unseen cellular contexts, the scikit-learn way.

Heavy modules (torch for ``C3TLRegressor``) load on first use, so the metrics,
splitters and baselines import quickly on their own. Importing the package
changes no other library: the scorers are objects to pass as ``scoring=``
(:func:`c3tl_sklearn.metrics.get_scorer`).
"""

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "C3TLRegressor": "estimator",
    "MeanBaseline": "baselines",
    "ClosestContextBaseline": "baselines",
    "AdditiveBaseline": "baselines",
    "LinearTransferBaseline": "baselines",
    "LeaveOneContextOut": "model_selection",
    "ContextKFold": "model_selection",
    "PerturbationHoldout": "model_selection",
    "ScarcitySplit": "model_selection",
    "StateSplit": "model_selection",
    "C3TLEnsemble": "ensemble",
    "C3TLSearchCV": "tuning",
    "pseudobulk": "preprocessing",
    "PseudobulkOptions": "preprocessing",
    "to_anndata": "preprocessing",
    "load_glioblastoma_crispri": "datasets",
    "load_lincs_knockdowns": "datasets",
    "make_synthetic_perturbations": "datasets",
    "make_regime_perturbations": "datasets",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
