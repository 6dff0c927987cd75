"""Synthetic effects from worlds that are *not* the model's own assumption.

:func:`make_synthetic_perturbations` draws effects ``f(z_p + psi_c)``, which is
what C3TL's encoders and decoder are built to fit, so it flatters the model.
The worlds here are the ones the simple baselines are right about, or where
nothing transfers at all; a model that is to be trusted on small data must
do no worse than those baselines in them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

__all__ = ["REGIMES", "make_regime_perturbations"]

#: The worlds :func:`make_regime_perturbations` draws from, with what holds in each.
REGIMES = {
    "shared": "every context has the same effect up to noise (the mean baseline's world)",
    "mixing": "low-rank effects whose factors each context mixes in its own way, "
              "plus a small per-context offset",
    "offset": "the same effects plus a large per-context, per-gene offset "
              "(the additive baseline's world)",
    "unstructured": "independent effects for every pair: nothing transfers",
}


def make_regime_perturbations(
    regime: str,
    n_contexts: int = 6,
    n_perturbations: int = 40,
    n_genes: int = 300,
    *,
    rank: int = 5,
    noise: float = 0.5,
    missing_fraction: float = 0.2,
    random_state=None,
):
    """Draw effects from one of the :data:`REGIMES`.

    All effects have unit standard deviation before noise; with ``m_p`` a
    perturbation's low-rank effect (``rank`` factors over the genes):

    - ``"shared"``: ``y_cp = m_p + e``;
    - ``"mixing"``: ``y_cp = u_p M_c B + o_c + e``, ``M_c = I + 0.5 N_c`` a
      context's own mixing of the perturbation's factors ``u_p`` (``B`` the
      gene loadings) and ``o_c`` a small offset (standard deviation 0.3);
    - ``"offset"``: ``y_cp = m_p + o_c + e``, ``o_c`` of standard deviation 1;
    - ``"unstructured"``: ``y_cp = e_cp`` with a fresh unit-variance draw per
      pair, plus the noise.

    Parameters
    ----------
    regime : {"shared", "mixing", "offset", "unstructured"}
        The world to draw from.
    n_contexts, n_perturbations, n_genes : int, default=6, 40, 300
        Sizes.
    rank : int, default=5
        Number of factors of the low-rank effects.
    noise : float, default=0.5
        Standard deviation of the observation noise ``e``.
    missing_fraction : float in [0, 1), default=0.2
        Fraction of (context, perturbation) pairs left out at random. Every
        perturbation keeps at least two contexts and every context at least
        two pairs, so that each pair can be predicted from the others.
    random_state : int, RandomState instance or None
        Seeds the regime's draws (factors, mixing, offsets, missing pairs, noise).

    Returns
    -------
    X : pandas.DataFrame of shape (n_rows, 2)
        The observed pairs, labelled as by :func:`make_synthetic_perturbations`
        (``context``: ``"ctx0"``, ...; ``perturbation``: ``"pert0"``, ...).
    Y : pandas.DataFrame of shape (n_rows, n_genes)
        Noisy effects (float32), genes ``gene0, gene1, ...``.

    Examples
    --------
    >>> from c3tl_sklearn.datasets import make_regime_perturbations
    >>> X, Y = make_regime_perturbations("shared", 3, 10, 20, random_state=0)
    >>> Y.shape[1], X["context"].nunique()
    (20, 3)
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {sorted(REGIMES)}; got {regime!r}.")
    sizes = (("n_contexts", n_contexts, 2), ("n_perturbations", n_perturbations, 2),
             ("n_genes", n_genes, 1), ("rank", rank, 1))
    for name, value, low in sizes:
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")
    if not 0.0 <= missing_fraction < 1.0:
        raise ValueError(f"missing_fraction must be in [0, 1); got {missing_fraction!r}.")
    if noise < 0:
        raise ValueError(f"noise must be non-negative; got {noise!r}.")
    rng = check_random_state(random_state)
    C, P, G = int(n_contexts), int(n_perturbations), int(n_genes)

    factors = rng.standard_normal((P, rank))
    loadings = rng.standard_normal((rank, G)) / np.sqrt(rank)
    clean = np.empty((C, P, G))
    if regime == "unstructured":
        clean[:] = rng.standard_normal((C, P, G))
    elif regime == "mixing":
        for c in range(C):
            mixing = np.eye(rank) + 0.5 * rng.standard_normal((rank, rank)) / np.sqrt(rank)
            clean[c] = factors @ mixing @ loadings + 0.3 * rng.standard_normal(G)
    else:
        clean[:] = factors @ loadings
        if regime == "offset":
            clean += rng.standard_normal((C, 1, G))

    mask = _observed_pairs(C, P, missing_fraction, rng)
    ci, pi = np.nonzero(mask)
    Y = (clean[ci, pi] + noise * rng.standard_normal((ci.size, G))).astype(np.float32)
    X = pd.DataFrame({
        "context": np.array([f"ctx{i}" for i in range(C)], dtype=object)[ci],
        "perturbation": np.array([f"pert{i}" for i in range(P)], dtype=object)[pi],
    })
    genes = pd.Index([f"gene{j}" for j in range(G)], name="gene")
    return X, pd.DataFrame(Y, columns=genes)


def _observed_pairs(C: int, P: int, missing_fraction: float, rng) -> np.ndarray:
    """A random mask of observed pairs: each perturbation in >= 2 contexts, each context >= 2."""
    mask = rng.random_sample((C, P)) >= missing_fraction
    for p in np.flatnonzero(mask.sum(axis=0) < 2):
        mask[rng.choice(C, size=2, replace=False), p] = True
    for c in np.flatnonzero(mask.sum(axis=1) < 2):
        mask[c, rng.choice(P, size=2, replace=False)] = True
    return mask
