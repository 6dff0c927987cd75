"""Warnings of the package: where they point, and the one about contexts unseen in fit."""

from __future__ import annotations

import warnings

import numpy as np

from ._labels import label_examples

__all__ = [
    "user_stacklevel",
    "warn_unknown_contexts",
]


def user_stacklevel() -> int:
    """``warnings.warn``'s ``stacklevel`` that points at the caller's code.

    Called from the function that warns, it counts the frames up to the
    first one outside this package and the libraries that call into it
    (scikit-learn's ``validate_params`` and ``_fit_context`` wrap public
    functions and ``fit``; skorch's training loop calls the callbacks, and
    Optuna's calls the search's objective), so the warning names the user's
    line however deep inside it is raised.
    """
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and \
            frame.f_globals.get("__name__", "").split(".")[0] in _CALLERS_SKIPPED:
        frame, level = frame.f_back, level + 1
    return level


_CALLERS_SKIPPED = ("c3tl_sklearn", "sklearn", "skorch", "optuna")


def warn_unknown_contexts(unseen: np.ndarray, contexts: np.ndarray, consequence: str) -> None:
    """Warn that rows ask for contexts never observed in fit, and what they get instead.

    The warning names the first line outside the package (:func:`user_stacklevel`).

    Parameters
    ----------
    unseen : ndarray of bool, shape (n_rows,)
        Rows whose context was not seen in fit.
    contexts : ndarray of shape (n_rows,)
        The context label of every row.
    consequence : str
        What those rows get, e.g. ``"they get the mean baseline prediction."``.
    """
    if unseen.any():
        warnings.warn(
            f"{int(unseen.sum())} row(s) ask for context(s) never observed in fit, "
            f"e.g. {label_examples(contexts[unseen])}; {consequence}",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
