"""The context read-out: closed-form adaptation of predictions to a context's own measurements.

A model that transfers effects between contexts still errs in a context in a
way that the context's own measured pairs reveal. The read-out regresses, per
context ``c``, the residuals ``r_cq = y_cq - y_hat_cq`` of its measured pairs
on features ``f_q`` of their perturbations and corrects every prediction in
that context::

    y_hat_cp + b_c + (f_p - f_bar_c) W_c

``b_c`` is the context's mean residual shrunk toward 0 by ``n_c / (n_c + 1)``
(with zero features and predictions equal to the perturbation means over the
other contexts, this is exactly :class:`~c3tl_sklearn.baselines.AdditiveBaseline`)
and ``W_c`` a ridge regression whose penalty is chosen per context by exact
leave-one-out error on the first measurements the context gets. Everything
else is computed from per-context sufficient statistics, so measurements made
after fit are added to those of fit by summation, without refitting anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._groups import leave_one_out_mean, segment_means

__all__ = [
    "ContextReadout",
    "MeanComponents",
    "apply_readout",
    "mean_effect_components",
    "standardise_features",
]

#: Ridge penalties tried for ``W_c`` (the features are standardised).
ALPHAS = np.logspace(-1, 4, 11)
#: Fewest measured pairs of a context on which its penalty is chosen (by
#: leave-one-out); with fewer, a held-out pair leaves too little to fit on.
MIN_PAIRS_FOR_PENALTY = 3
#: Penalty used when a context has fewer than ``MIN_PAIRS_FOR_PENALTY`` pairs.
DEFAULT_ALPHA = 30.0
#: At most this many principal components of the perturbations' mean effects
#: are read-out features.
MAX_MEAN_COMPONENTS = 50
#: Pseudo-count (in pairs) that shrinks a context's offset toward 0, as
#: :class:`~c3tl_sklearn.baselines.AdditiveBaseline` does by default.
OFFSET_PSEUDOCOUNT = 1.0


class ContextReadout:
    """Per-context sufficient statistics of residuals on features, and the read-out they give.

    Parameters
    ----------
    n_contexts : int
        Number of context codes.
    n_features, n_outputs : int
        Width of the features and of the residuals.

    Attributes
    ----------
    n_ : ndarray of shape (n_contexts,)
        Measured pairs per context.
    sum_f_, sum_r_ : ndarray of shape (n_contexts, n_features) and (n_contexts, n_outputs)
        Sums of the features and of the residuals.
    gram_ff_, gram_fr_ : ndarray of shape (n_contexts, n_features, n_features) and
        (n_contexts, n_features, n_outputs)
        Uncentred cross products ``F^T F`` and ``F^T R``.
    alpha_ : ndarray of shape (n_contexts,)
        Ridge penalty of each context: the one of :data:`ALPHAS` with the
        smallest exact leave-one-out error (summed over outputs) on the first
        pairs added for the context, :data:`DEFAULT_ALPHA` when those were
        fewer than three.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.adaptation import ContextReadout
    >>> F = np.eye(4)[[0, 1, 2, 3, 0, 1]]
    >>> R = np.array([[1.0], [1.0], [1.0], [1.0], [0.0], [0.0]])
    >>> readout = ContextReadout(2, 4, 1).add(F, R, np.array([0, 0, 0, 0, 1, 1]))
    >>> readout.correction(np.array([0, 1]), F[:2], features=False).ravel()
    array([0.8, 0. ])
    """

    def __init__(self, n_contexts: int, n_features: int, n_outputs: int):
        self.n_ = np.zeros(n_contexts)
        self.sum_f_ = np.zeros((n_contexts, n_features))
        self.sum_r_ = np.zeros((n_contexts, n_outputs))
        self.gram_ff_ = np.zeros((n_contexts, n_features, n_features))
        self.gram_fr_ = np.zeros((n_contexts, n_features, n_outputs), dtype=np.float32)
        self.alpha_ = np.full(n_contexts, DEFAULT_ALPHA)

    @property
    def n_contexts(self) -> int:
        return len(self.n_)

    def add(self, F: np.ndarray, R: np.ndarray, contexts: np.ndarray) -> ContextReadout:
        """Add measured pairs: features ``F`` (n, k), residuals ``R`` (n, d), context codes.

        Returns ``self``. Codes must lie in ``0 .. n_contexts - 1``. A
        context's penalty is chosen on the first pairs added for it.
        """
        for c in np.unique(contexts):
            rows = contexts == c
            f = np.asarray(F[rows], dtype=np.float64)
            r = np.asarray(R[rows], dtype=np.float64)
            if self.n_[c] == 0 and len(f) >= MIN_PAIRS_FOR_PENALTY:
                self.alpha_[c] = _loo_alpha(f, r)
            self.n_[c] += len(f)
            self.sum_f_[c] += f.sum(axis=0)
            self.sum_r_[c] += r.sum(axis=0)
            self.gram_ff_[c] += f.T @ f
            self.gram_fr_[c] += (f.T @ r).astype(np.float32)
        return self

    def extended(self, n_contexts: int) -> ContextReadout:
        """A copy with room for ``n_contexts`` codes (new ones start empty)."""
        k, d = self.sum_f_.shape[1], self.sum_r_.shape[1]
        out = ContextReadout(max(n_contexts, self.n_contexts), k, d)
        m = self.n_contexts
        for name in ("n_", "sum_f_", "sum_r_", "gram_ff_", "gram_fr_", "alpha_"):
            getattr(out, name)[:m] = getattr(self, name)
        return out

    def solve(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Offset ``b``, map ``W``, feature mean and penalty of context code ``c``.

        ``W`` minimises ``sum ||r - r_bar - (f - f_bar) W||^2 + alpha ||W||^2``
        with the context's penalty ``alpha_[c]``.
        """
        n = self.n_[c]
        k = self.sum_f_.shape[1]
        if n == 0:
            return np.zeros(self.sum_r_.shape[1]), np.zeros((k, self.sum_r_.shape[1])), \
                np.zeros(k), DEFAULT_ALPHA
        f_bar = self.sum_f_[c] / n
        r_bar = self.sum_r_[c] / n
        b = self.sum_r_[c] / (n + OFFSET_PSEUDOCOUNT)
        c_ff = self.gram_ff_[c] - n * np.outer(f_bar, f_bar)
        c_fr = self.gram_fr_[c].astype(np.float64) - n * np.outer(f_bar, r_bar)
        lam, V = np.linalg.eigh((c_ff + c_ff.T) / 2)
        alpha = float(self.alpha_[c])
        W = V @ ((V.T @ c_fr) / (np.clip(lam, 0.0, None) + alpha)[:, None])
        return b, W, f_bar, alpha

    def correction(self, contexts: np.ndarray, F: np.ndarray, *, features: bool = True):
        """The read-out's correction of rows with context codes ``contexts`` and features ``F``.

        ``features=False`` applies the offsets ``b_c`` alone. Codes outside
        ``0 .. n_contexts - 1`` (contexts without measurements) get 0.
        """
        out = np.zeros((len(contexts), self.sum_r_.shape[1]))
        known = (contexts >= 0) & (contexts < self.n_contexts)
        for c in np.unique(contexts[known]):
            rows = contexts == c
            b, W, f_bar, _ = self.solve(int(c))
            out[rows] = b
            if features:
                out[rows] += (np.asarray(F[rows], dtype=np.float64) - f_bar) @ W
        return out


@dataclass(frozen=True)
class MeanComponents:
    """Principal components of the perturbations' mean effects, the read-out's shared features.

    Attributes
    ----------
    per_perturbation : ndarray of shape (n_perturbations, k)
        Each perturbation's mean over its rows.
    per_row : ndarray of shape (n_rows, k)
        Each row's perturbation mean without the row itself, what a fit pair
        is regressed on (its own effect would otherwise leak into its
        features, a signal unmeasured pairs never have).
    """

    per_perturbation: np.ndarray
    per_row: np.ndarray


def mean_effect_components(Y, p_codes, n_perturbations: int, *, random_state=None,
                           basis=None) -> MeanComponents:
    """The principal components of the perturbations' mean effects, per perturbation and per row.

    Parameters
    ----------
    Y : ndarray of shape (n_rows, n_genes)
        Effects, one row per measured pair.
    p_codes : ndarray of shape (n_rows,)
        Perturbation code of each row.
    n_perturbations : int
        Number of perturbation codes.
    random_state : int, RandomState instance or None, default=None
        Seeds the PCA fitted here.
    basis : tuple (PCA, ndarray) or None, default=None
        A fitted PCA and ``Y``'s rows in it, reused when it has no more than
        :data:`MAX_MEAN_COMPONENTS` components (the estimator's own basis).

    Returns
    -------
    MeanComponents
        At most :data:`MAX_MEAN_COMPONENTS` components (none for a single
        perturbation).
    """
    k = int(min(MAX_MEAN_COMPONENTS, n_perturbations - 1, Y.shape[1]))
    if k < 1:
        return MeanComponents(np.zeros((n_perturbations, 0)), np.zeros((len(Y), 0)))
    if basis is not None and basis[0].n_components_ <= k:
        rows = basis[1][:, :k]
    else:
        # imported here: predicting with a loaded read-out does not need it
        from sklearn.decomposition import PCA

        rows = PCA(k, random_state=random_state).fit(Y).transform(Y)[:, :k]
    means, counts = segment_means(p_codes, n_perturbations, rows)
    per_row = leave_one_out_mean(means[p_codes], counts[p_codes][:, None], rows)
    return MeanComponents(means, per_row)


def standardise_features(F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``F`` centred and scaled per column (constant columns unscaled), its mean and scale.

    Standardised features let one grid of penalties (:data:`ALPHAS`) suit
    every feature, and one kernel width suit every member of an ensemble.
    """
    mean, scale = F.mean(axis=0), F.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (F - mean) / scale, mean, scale


def apply_readout(readout: ContextReadout, features: np.ndarray, query, observed=None, *,
                  use_features: bool = True) -> np.ndarray:
    """The read-out's correction of the ``query`` pairs, after it adds the ``observed`` ones.

    Parameters
    ----------
    readout : ContextReadout
        Statistics so far (fit's, or empty); ``observed`` is added to it in place.
    features : ndarray of shape (n_perturbations, n_features)
        The read-out's features of every perturbation code.
    query : tuple (c_codes, p_codes)
        Context and perturbation codes of the pairs to correct.
    observed : tuple (c_codes, p_codes, residuals) or None, default=None
        Measured pairs and their residuals, added first.
    use_features : bool, default=True
        ``False`` applies the contexts' offsets alone.

    Returns
    -------
    correction : ndarray of shape (n_query, n_outputs)
    """
    if observed is not None:
        c_obs, p_obs, residuals = observed
        readout.add(features[p_obs], residuals, c_obs)
    c_codes, p_codes = query
    return readout.correction(c_codes, features[p_codes], features=use_features)


def _loo_alpha(F: np.ndarray, R: np.ndarray) -> float:
    """The penalty of :data:`ALPHAS` with the smallest exact leave-one-out error.

    Ridge of the centred ``R`` on the centred ``F``. With ``Fc = U S V^T``
    (from the eigendecomposition of the small ``Fc^T Fc``), the leave-one-out
    residual of row ``i`` is its residual divided by ``1 - h_i`` (``h`` the
    hat matrix diagonal, intercept included), and the squared norm of the
    residual, ``||r_i - sum_k U_ik s_k Q_k||^2`` with ``Q = U^T Rc``, expands
    into products with ``Rc Q^T`` and ``Q Q^T``: one pass over the outputs
    serves every penalty.
    """
    n = len(F)
    Fc, Rc = F - F.mean(axis=0), R - R.mean(axis=0)
    lam, V = np.linalg.eigh(Fc.T @ Fc)
    keep = lam > 1e-10 * max(float(lam.max(initial=0.0)), 1e-300)
    lam, V = lam[keep], V[:, keep]
    U = (Fc @ V) / np.sqrt(lam)
    Q = U.T @ Rc
    RQ = Rc @ Q.T
    QQ = Q @ Q.T
    r2 = np.einsum("ij,ij->i", Rc, Rc)
    U2 = U**2
    errors = []
    for alpha in ALPHAS:
        shrink = lam / (lam + alpha)
        Us = U * shrink
        e2 = r2 - 2 * np.sum(Us * RQ, axis=1) + np.sum((Us @ QQ) * Us, axis=1)
        h = 1.0 / n + U2 @ shrink
        errors.append(float(np.sum(np.maximum(e2, 0.0) / np.maximum(1.0 - h, 1e-6) ** 2)))
    return float(ALPHAS[int(np.argmin(errors))])
