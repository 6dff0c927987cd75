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
after fit are added to those of fit, without refitting anything. The
statistics are kept as factors with at most as many rows as the context has
measured pairs (and never more than the features), so a model with thousands
of contexts stays the size of what they measured.
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

    The statistics of context ``c`` are the cross products of its measured
    pairs' features (with a leading column of ones) ``A = [1 F]`` and
    residuals ``R``: ``A^T A`` and ``A^T R``. They are kept as two factors
    with at most ``n_features + 1`` rows, ``factor_f_[c]`` and
    ``factor_r_[c]``, such that ``A^T A = factor_f_[c]^T factor_f_[c]`` and
    ``A^T R = factor_f_[c]^T factor_r_[c]``: the rows themselves while the
    context has few pairs, their QR-compressed form once it has more. Memory
    thus grows with each context's measured pairs (at most ``n_features + 1``
    rows of outputs per context), not with contexts x features x outputs.

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
    factor_f_ : list of ndarray of shape (m_c, n_features + 1), float64
        Per context, the factor of ``[1 F]^T [1 F]``.
    factor_r_ : list of ndarray of shape (m_c, n_outputs), float32
        Per context, the factor that gives ``[1 F]^T R`` with ``factor_f_``.
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
        self.factor_f_ = [np.zeros((0, n_features + 1)) for _ in range(n_contexts)]
        self.factor_r_ = [np.zeros((0, n_outputs), dtype=np.float32) for _ in range(n_contexts)]
        self.alpha_ = np.full(n_contexts, DEFAULT_ALPHA)

    @property
    def n_contexts(self) -> int:
        return len(self.n_)

    @property
    def n_features(self) -> int:
        return self.factor_f_[0].shape[1] - 1 if self.factor_f_ else 0

    @property
    def n_outputs(self) -> int:
        return self.factor_r_[0].shape[1] if self.factor_r_ else 0

    def add(self, F: np.ndarray, R: np.ndarray, contexts: np.ndarray) -> ContextReadout:
        """Add measured pairs: features ``F`` (n, k), residuals ``R`` (n, d), context codes.

        Returns ``self``. Codes must lie in ``0 .. n_contexts - 1``. A
        context's penalty is chosen on the first pairs added for it. The
        factors are replaced, never written into, so a shallow copy
        (:meth:`extended`) leaves the original untouched.
        """
        for c in np.unique(contexts):
            rows = contexts == c
            f = np.asarray(F[rows], dtype=np.float64)
            r = np.asarray(R[rows], dtype=np.float64)
            if self.n_[c] == 0 and len(f) >= MIN_PAIRS_FOR_PENALTY:
                self.alpha_[c] = _loo_alpha(f, r)
            self.n_[c] += len(f)
            a = np.vstack([self.factor_f_[c], np.hstack([np.ones((len(f), 1)), f])])
            b = np.vstack([self.factor_r_[c].astype(np.float64), r])
            if len(a) > a.shape[1]:
                # A^T A = R^T R and A^T B = R^T (Q^T B) for A = QR: k + 1 rows suffice
                q, a = np.linalg.qr(a)
                b = q.T @ b
            self.factor_f_[c], self.factor_r_[c] = a, b.astype(np.float32)
        return self

    def extended(self, n_contexts: int) -> ContextReadout:
        """A copy with room for ``n_contexts`` codes (new ones start empty)."""
        out = ContextReadout(max(n_contexts, self.n_contexts), self.n_features, self.n_outputs)
        m = self.n_contexts
        out.n_[:m], out.alpha_[:m] = self.n_, self.alpha_
        out.factor_f_[:m], out.factor_r_[:m] = self.factor_f_, self.factor_r_
        return out

    @classmethod
    def from_attributes(cls, attributes: dict) -> ContextReadout:
        """A read-out from the attributes a model file stores, after checking them.

        Reads this layout and the one of format version 2 (dense sums
        ``n_, sum_f_, sum_r_, gram_ff_, gram_fr_, alpha_``), which it turns
        into factors with the same cross products. Raises ``ValueError`` when
        the attributes do not describe a read-out.
        """
        names = set(attributes)
        if names == _DENSE_ATTRIBUTES:
            return cls._from_sums(attributes)
        if names != _FACTOR_ATTRIBUTES:
            raise ValueError(
                f"malformed file: a ContextReadout has the attributes {sorted(_FACTOR_ATTRIBUTES)}"
                f" (or, in older files, {sorted(_DENSE_ATTRIBUTES)}), not {sorted(names)}"
            )
        n, alpha = (_vector(attributes[k], k) for k in ("n_", "alpha_"))
        f, r = attributes["factor_f_"], attributes["factor_r_"]
        if not (isinstance(f, list) and isinstance(r, list)
                and len(n) == len(alpha) == len(f) == len(r) > 0):
            raise ValueError("malformed file: ContextReadout factors do not match its contexts")
        first_f, first_r = np.shape(f[0]), np.shape(r[0])
        width, d = first_f[-1] if first_f else 0, first_r[-1] if first_r else 0
        for count, a, b in zip(n, f, r, strict=True):
            if not (width >= 1 and isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                    and a.ndim == b.ndim == 2 and a.shape[1] == width and b.shape[1] == d
                    and len(a) == len(b) <= width):
                raise ValueError("malformed file: ContextReadout factors of inconsistent shapes")
            if not (np.isfinite(a).all() and np.isfinite(b).all()):
                raise ValueError("malformed file: ContextReadout factors hold NaN or infinity")
            # the ones column's square sum is the pair count: a factor that disagrees
            # would give the context a feature mean (and offset) of some other data
            ones = float(a[:, 0] @ a[:, 0])
            if abs(ones - count) > 1e-6 * max(count, 1.0):
                raise ValueError("malformed file: ContextReadout pair counts do not match "
                                 "its factors")
        out = cls.__new__(cls)
        out.n_, out.alpha_ = n, alpha
        out.factor_f_ = [a.astype(np.float64) for a in f]
        out.factor_r_ = [b.astype(np.float32) for b in r]
        return out

    @classmethod
    def _from_sums(cls, attributes: dict) -> ContextReadout:
        """Factors of the dense per-context sums of format version 2."""
        n, alpha = (_vector(attributes[k], k) for k in ("n_", "alpha_"))
        sum_f, sum_r = attributes["sum_f_"], attributes["sum_r_"]
        gram_ff, gram_fr = attributes["gram_ff_"], attributes["gram_fr_"]
        C, k, d = len(n), sum_f.shape[-1], sum_r.shape[-1]
        if not (len(alpha) == C and sum_f.shape == (C, k) and sum_r.shape == (C, d)
                and gram_ff.shape == (C, k, k) and gram_fr.shape == (C, k, d)):
            raise ValueError("malformed file: ContextReadout sums of inconsistent shapes")
        if not all(np.isfinite(a).all() for a in (sum_f, sum_r, gram_ff, gram_fr)):
            raise ValueError("malformed file: ContextReadout sums hold NaN or infinity")
        out = cls(C, k, d)
        out.n_, out.alpha_ = n, alpha
        for c in np.flatnonzero(n > 0):
            G = np.block([[n[c, None, None], sum_f[c][None]], [sum_f[c][:, None], gram_ff[c]]])
            H = np.vstack([sum_r[c][None], gram_fr[c].astype(np.float64)])
            # G = U s U^T gives A = s^1/2 U^T and B = s^-1/2 U^T H (H lies in G's range)
            s, U = np.linalg.eigh((G + G.T) / 2)
            keep = s > 1e-12 * s.max()
            root = np.sqrt(s[keep])
            out.factor_f_[c] = root[:, None] * U[:, keep].T
            out.factor_r_[c] = ((U[:, keep].T @ H) / root[:, None]).astype(np.float32)
        return out

    def cross_products(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """``[1 F]^T [1 F]`` and ``[1 F]^T R`` over the pairs of context code ``c``."""
        a = self.factor_f_[c]
        return a.T @ a, a.T @ self.factor_r_[c].astype(np.float64)

    def _centred(self, c: int):
        """The context's factors centred on its feature mean, and its eigenbasis.

        With ``a0`` the ones column of the factor and ``Ac = A1 - a0 f_bar^T``,
        ``Ac^T Ac`` and ``Ac^T B`` are the centred cross products of the
        features and of features with residuals.
        """
        a = self.factor_f_[c]
        n = self.n_[c]
        a0, a1 = a[:, 0], a[:, 1:]
        f_bar = (a0 @ a1) / n
        centred = a1 - np.outer(a0, f_bar)
        c_ff = centred.T @ centred
        lam, V = np.linalg.eigh((c_ff + c_ff.T) / 2)
        return a0, centred, f_bar, np.clip(lam, 0.0, None), V

    def solve(self, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Offset ``b``, map ``W``, feature mean and penalty of context code ``c``.

        ``W`` minimises ``sum ||r - r_bar - (f - f_bar) W||^2 + alpha ||W||^2``
        with the context's penalty ``alpha_[c]``.
        """
        k, d = self.n_features, self.n_outputs
        if self.n_[c] == 0:
            return np.zeros(d), np.zeros((k, d)), np.zeros(k), DEFAULT_ALPHA
        a0, centred, f_bar, lam, V = self._centred(c)
        B = self.factor_r_[c].astype(np.float64)
        alpha = float(self.alpha_[c])
        b = (a0 @ B) / (self.n_[c] + OFFSET_PSEUDOCOUNT)
        W = V @ ((V.T @ (centred.T @ B)) / (lam + alpha)[:, None])
        return b, W, f_bar, alpha

    def correction(self, contexts: np.ndarray, F: np.ndarray, *, features: bool = True):
        """The read-out's correction of rows with context codes ``contexts`` and features ``F``.

        ``features=False`` applies the offsets ``b_c`` alone. Codes outside
        ``0 .. n_contexts - 1`` (contexts without measurements) get 0.
        """
        out = np.zeros((len(contexts), self.n_outputs))
        known = (contexts >= 0) & (contexts < self.n_contexts)
        for c in np.unique(contexts[known]):
            if self.n_[c] == 0:
                continue
            rows = contexts == c
            a0, centred, f_bar, lam, V = self._centred(int(c))
            # b + (f - f_bar) W as one weighting of the factor's rows, so that no
            # features x outputs map is formed
            weights = np.broadcast_to(a0 / (self.n_[c] + OFFSET_PSEUDOCOUNT),
                                      (int(rows.sum()), len(a0)))
            if features:
                g = ((np.asarray(F[rows], dtype=np.float64) - f_bar) @ V) \
                    / (lam + float(self.alpha_[c]))
                weights = weights + (g @ V.T) @ centred.T
            out[rows] = weights @ self.factor_r_[c].astype(np.float64)
        return out


#: What a read-out stores, in this layout and in format version 2's dense sums.
_FACTOR_ATTRIBUTES = {"n_", "alpha_", "factor_f_", "factor_r_"}
_DENSE_ATTRIBUTES = {"n_", "alpha_", "sum_f_", "sum_r_", "gram_ff_", "gram_fr_"}


def _vector(value, name: str) -> np.ndarray:
    """A stored per-context vector, checked: one dimension, finite, non-negative.

    A penalty (``alpha_``) must be positive: a zero one divides by zero in a
    context whose features do not vary. Pair counts (``n_``) are whole numbers:
    a fraction of a pair would scale the context's feature mean without bound.
    """
    arr = np.asarray(value, dtype=np.float64) if isinstance(value, np.ndarray) else None
    positive = name == "alpha_"
    what = "positive numbers" if positive else "non-negative whole numbers"
    if arr is None or arr.ndim != 1 or not np.all(np.isfinite(arr)) \
            or np.any(arr <= 0 if positive else (arr < 0) | (arr != np.round(arr))):
        raise ValueError(f"malformed file: ContextReadout.{name} is not a vector of {what}")
    return arr


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
