"""Fitted state helpers that need neither torch nor skorch (the baselines load without them)."""

from __future__ import annotations


def discard_fitted(estimator) -> None:
    """Remove every fitted attribute, so that the estimator reads as not fitted.

    After an interrupted or diverged fit a mix of new and old attributes would
    pass ``check_is_fitted`` and predict from a model nobody finished training.
    """
    for name in [n for n in vars(estimator) if n.endswith("_") and not n.startswith("__")]:
        delattr(estimator, name)
