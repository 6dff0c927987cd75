"""Synthetic perturbation effects that follow the paper's causal manifold assumption."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.utils import check_random_state

from ._checks import check_flag, check_fraction, check_non_negative, check_positive_int

__all__ = ["PerturbationDesign", "make_synthetic_perturbations"]


@dataclass(frozen=True)
class PerturbationDesign:
    """The generating model of :func:`make_synthetic_perturbations`: manifold and noise.

    The sizes, the observed fraction and the seed are the generator's own
    arguments; these are the knobs of the model behind the effects, grouped
    so that a variant of the default model is one value to pass around
    (``PerturbationDesign(noise=0.5, noise_df=3)``).

    Parameters
    ----------
    latent_dim : int, default=8
        Dimension of the latent manifold.
    hidden_dim : int, default=64
        Width of the hidden layer of ``f``.
    context_scale : float, default=0.7
        Standard deviation of the context shifts relative to the perturbation
        codes (which have standard deviation 1); larger makes contexts differ
        more.
    context_offset : float, default=0.0
        Standard deviation of a per-context, per-gene offset added to every
        effect of the context (relative to the unit standard deviation of
        the manifold effects): contexts that differ mostly by a shift, as
        cell lines with different baselines do.
    noise : float, default=0.1
        Standard deviation of the observation noise, relative to the unit
        standard deviation of the noise-free effects.
    noise_df : float or None, default=None
        Degrees of freedom of Student-t observation noise (heavy tails, as
        outlier wells give); ``None`` draws Gaussian noise. Either way the
        noise is scaled to standard deviation ``noise`` (``noise_df > 2``).
    rank_transform : bool, default=False
        Replace each observed effect vector by the normal scores of its
        ranks (``Phi^-1((rank - 0.5) / n_genes)``), the signed rank-type
        values that signature databases publish; ``truth["effects"]`` stays
        on the original scale.

    Examples
    --------
    >>> from c3tl_sklearn.datasets import PerturbationDesign, make_synthetic_perturbations
    >>> design = PerturbationDesign(context_offset=1.0, noise=0.05)
    >>> X, Y = make_synthetic_perturbations(4, 30, 50, design=design, random_state=0)
    >>> Y.shape
    (120, 50)
    """

    latent_dim: int = 8
    hidden_dim: int = 64
    context_scale: float = 0.7
    context_offset: float = 0.0
    noise: float = 0.1
    noise_df: float | None = None
    rank_transform: bool = False

    def __post_init__(self):
        # the checked values are stored as plain int/float/bool (a frozen dataclass)
        def store(name, value):
            object.__setattr__(self, name, value)

        for name in ("latent_dim", "hidden_dim"):
            store(name, check_positive_int(name, getattr(self, name)))
        for name in ("context_scale", "context_offset", "noise"):
            store(name, check_non_negative(name, getattr(self, name)))
        if self.noise_df is not None:
            noise_df = self.noise_df
            if isinstance(noise_df, bool) or not isinstance(noise_df, Real) or \
                    not 2 < noise_df < np.inf:
                raise ValueError(f"noise_df must be a finite number above 2 (finite variance) "
                                 f"or None; got {noise_df!r}.")
            store("noise_df", float(noise_df))
        store("rank_transform", check_flag("rank_transform", self.rank_transform))


def make_synthetic_perturbations(
    n_contexts: int = 8,
    n_perturbations: int = 100,
    n_genes: int = 200,
    *,
    observed_fraction: float = 1.0,
    design: PerturbationDesign | None = None,
    as_frame: bool = True,
    return_truth: bool = False,
    random_state=None,
):
    """Draw perturbation effects under the causal manifold assumption (CMA).

    Each perturbation ``p`` has a latent code ``z_p`` and each context ``c`` a
    shift ``psi_c`` in a ``latent_dim``-dimensional space; the noise-free effect
    is ``f(z_p + psi_c)`` for one fixed random nonlinear map
    ``f(u) = W2 tanh(W1 u + b1)`` to the genes (paper, Assumption 3.2), scaled
    to unit standard deviation. Observed effects add Gaussian noise.

    Parameters
    ----------
    n_contexts, n_perturbations, n_genes : int
        Sizes; the Tahoe-100M pseudo-bulk shape is 48 x 1138 x 2000.
    observed_fraction : float, default=1.0
        Fraction of (context, perturbation) pairs returned; each perturbation
        keeps at least one pair.
    design : PerturbationDesign, optional
        The manifold and the noise (latent and hidden sizes, context scale and
        offset, noise level and tails, rank transform); ``None`` is
        ``PerturbationDesign()``.
    as_frame : bool, default=True
        Return ``Y`` as a DataFrame with gene names ``gene0, gene1, ...``.
    return_truth : bool, default=False
        Also return a dict with the noise-free effects of the returned rows
        (``"effects"``) and the latent codes (``"z"``, ``"psi"``).
    random_state : int, RandomState instance or None
        Seed for reproducible draws.

    Returns
    -------
    X : pandas.DataFrame of shape (n_rows, 2)
        Index table with ``context`` (``"ctx0"``, ...) and ``perturbation``
        (``"pert0"``, ...) columns, rows ordered by context then perturbation.
    Y : pandas.DataFrame or ndarray of shape (n_rows, n_genes)
        Noisy effects, float32.
    truth : dict, only when ``return_truth=True``

    Examples
    --------
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> X, Y = make_synthetic_perturbations(4, 30, 50, random_state=0)
    >>> X.shape, Y.shape
    ((120, 2), (120, 50))
    """
    n_contexts = check_positive_int("n_contexts", n_contexts)
    n_perturbations = check_positive_int("n_perturbations", n_perturbations)
    n_genes = check_positive_int("n_genes", n_genes)
    observed_fraction = check_fraction("observed_fraction", observed_fraction, low_open=True)
    d = PerturbationDesign() if design is None else design
    if not isinstance(d, PerturbationDesign):
        raise TypeError(f"design must be a PerturbationDesign or None; got {type(d).__name__}.")
    latent_dim, hidden_dim = d.latent_dim, d.hidden_dim
    rng = check_random_state(random_state)

    z = rng.standard_normal((n_perturbations, latent_dim))
    psi = d.context_scale * rng.standard_normal((n_contexts, latent_dim))
    w1 = rng.standard_normal((latent_dim, hidden_dim)) / np.sqrt(latent_dim)
    b1 = 0.5 * rng.standard_normal(hidden_dim)
    w2 = rng.standard_normal((hidden_dim, n_genes)) / np.sqrt(hidden_dim)

    mask = np.ones((n_contexts, n_perturbations), dtype=bool)
    if observed_fraction < 1.0:
        mask = rng.random((n_contexts, n_perturbations)) < observed_fraction
        # every perturbation is observed somewhere, or it could never be encoded
        empty = np.flatnonzero(~mask.any(axis=0))
        mask[rng.randint(n_contexts, size=empty.size), empty] = True
    ci, pi = np.nonzero(mask)

    # chunked so the Tahoe shape (55k x 2000) never holds float64 copies at once
    clean = np.empty((ci.size, n_genes), dtype=np.float32)
    for start in range(0, ci.size, 8192):
        sl = slice(start, start + 8192)
        u = z[pi[sl]] + psi[ci[sl]]
        clean[sl] = np.tanh(u @ w1 + b1) @ w2
    clean /= clean.std()
    if d.context_offset > 0:
        clean += (d.context_offset * rng.standard_normal((n_contexts, n_genes)))[ci].astype(
            np.float32
        )
    Y = _observe(clean, d, rng)

    ctx_names = np.array([f"ctx{i}" for i in range(n_contexts)], dtype=object)
    pert_names = np.array([f"pert{i}" for i in range(n_perturbations)], dtype=object)
    X = pd.DataFrame({"context": ctx_names[ci], "perturbation": pert_names[pi]})
    if as_frame:
        Y = pd.DataFrame(Y, columns=pd.Index([f"gene{j}" for j in range(n_genes)], name="gene"))
    if return_truth:
        return X, Y, {"effects": clean, "z": z, "psi": psi}
    return X, Y


def _observe(clean, design: PerturbationDesign, rng):
    """Noisy observations of the clean effects, rank-transformed per row if asked."""
    noise, noise_df = design.noise, design.noise_df
    Y = np.empty_like(clean)
    for start in range(0, len(clean), 8192):  # chunks: no float64 copy of the whole
        sl = slice(start, start + 8192)
        if noise_df is None:
            eps = rng.standard_normal(clean[sl].shape)
        else:
            eps = rng.standard_t(noise_df, clean[sl].shape) / np.sqrt(noise_df / (noise_df - 2))
        Y[sl] = clean[sl] + noise * eps
    if design.rank_transform:
        ranks = Y.argsort(axis=1).argsort(axis=1) + 0.5
        Y = norm.ppf(ranks / Y.shape[1]).astype(np.float32)
    return Y
