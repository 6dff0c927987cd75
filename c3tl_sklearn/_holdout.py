"""Hold-out masks: pairs held out of fit that look like the transfer task."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._warnings import user_stacklevel

__all__ = [
    "holdout_mask",
    "transfer_holdout_mask",
]


def transfer_holdout_mask(c_codes, p_codes, fraction: float, rng) -> np.ndarray:
    """Hold out ``fraction`` of each context's pairs whose perturbation stays observed.

    Pairs held out this way look like the prediction task: their perturbation
    is still measured in some other context. A perturbation's last
    observation is never taken and every context keeps at least one pair.
    """
    n = len(c_codes)
    held = np.zeros(n, dtype=bool)
    if fraction == 0:
        return held
    frame = pd.DataFrame({"c": c_codes, "p": p_codes, "u": rng.random_sample(n)})
    p_rank = frame.groupby("p")["u"].rank(method="first").to_numpy() - 1
    p_size = frame.groupby("p")["p"].transform("size").to_numpy()
    eligible = p_rank < p_size - 1
    n_c = np.bincount(c_codes)
    quota = np.minimum(np.round(fraction * n_c), n_c - 1).astype(int)
    c_rank = frame[eligible].groupby("c")["u"].rank(method="first").to_numpy() - 1
    held[np.flatnonzero(eligible)[c_rank < quota[c_codes[eligible]]]] = True
    return held


def holdout_mask(c_codes, p_codes, fraction: float, rng, *, name: str,
                 consequence: str) -> np.ndarray:
    """:func:`transfer_holdout_mask`, with a warning when a positive fraction holds out nothing.

    ``name`` is the parameter that set ``fraction``; ``consequence`` says what
    the estimator does without held-out pairs.
    """
    held = transfer_holdout_mask(c_codes, p_codes, fraction, rng)
    if fraction > 0 and not held.any():
        warnings.warn(
            f"{name} is too small for this data: no pair was held out, so {consequence}",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return held
