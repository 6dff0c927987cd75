"""Simple baselines for predicting perturbation effects in under-measured contexts.

Every baseline has the package's estimator API (see
:class:`~c3tl_sklearn.base.PerturbationRegressorMixin`): ``fit(X, Y)`` takes an
index table ``X`` (one row per observed (context, perturbation) pair) and the
effect matrix ``Y`` of shape ``(n_rows, n_genes)``; ``predict(X_new)`` returns
an ``(n_new, n_genes)`` float64 array of predicted effects for the pairs of
``X_new``.

The evaluation task is a target context in which only a few perturbations were
observed (they are part of the training data); its other perturbations are
predicted from what was seen in the other contexts. The baselines are:

- :class:`MeanBaseline`: the perturbation's mean effect over the other contexts;
- :class:`ClosestContextBaseline`: copy the effect from the most similar context;
- :class:`AdditiveBaseline`: perturbation mean plus a per-gene context offset;
- :class:`LinearTransferBaseline`: ridge regression between PCA embeddings of
  the effects (Ahlmann-Eltze, Huber & Anders, Nature Methods 2025).

Shared conventions
------------------
- "Mean over the other contexts" of perturbation ``p`` for context ``c`` is the
  mean of ``p``'s training effects over the training contexts other than ``c``.
  When ``(c, p)`` is not a training pair this is simply ``p``'s mean over all
  training contexts. When ``p`` was observed only in ``c`` there is no other
  context; the observed effect of ``(c, p)`` itself is used.
- A perturbation never observed in fit raises a ``ValueError`` at predict.
- A context never observed in fit gets the prediction of a context with no
  observed pairs (the mean over the training contexts, no offset) and a
  ``UserWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._groups import leave_one_out_mean, segment_means
from ._labels import label_examples
from ._warnings import user_stacklevel, warn_unknown_contexts
from .adaptation import OFFSET_PSEUDOCOUNT
from .base import PerturbationRegressorMixin
from .persistence import PersistenceMixin

__all__ = [
    "AdditiveBaseline",
    "ClosestContextBaseline",
    "LinearTransferBaseline",
    "MeanBaseline",
]

#: Shrinkage of the context offset used by :class:`AdditiveBaseline` by default
#: and by :class:`LinearTransferBaseline` for its additive fallback: the one
#: offset pseudo-count of the package, shared with the read-out.
_DEFAULT_SHRINKAGE = OFFSET_PSEUDOCOUNT


class _TransferBaseline(PerturbationRegressorMixin):
    """Fitted tables shared by the baselines (not public).

    Sets ``effects_`` (the training effects, float32, in training-row order),
    ``pair_index_`` (``(n_contexts, n_perturbations)`` row of ``effects_`` for
    each observed pair, -1 where unobserved), ``perturbation_means_`` (float64
    means over all training contexts) and ``perturbation_counts_`` (number of
    training contexts in which each perturbation was observed).
    """

    _parameter_constraints: ClassVar[dict] = {
        "context_col": [Hashable],
        "perturbation_col": [Hashable],
    }
    #: How predict's warning about contexts never seen in fit ends: what they get.
    _unseen_context_fallback: ClassVar[str] = "they get the mean baseline prediction."

    def _fit_tables(self, X, Y):
        c_codes, p_codes, Y_arr = self._validate_fit_data(X, Y)
        n_ctx, n_pert = len(self.contexts_), len(self.perturbations_)
        self.effects_ = Y_arr
        pair_index = np.full((n_ctx, n_pert), -1, dtype=np.int64)
        pair_index[c_codes, p_codes] = np.arange(len(c_codes))
        self.pair_index_ = pair_index
        self.perturbation_means_, self.perturbation_counts_ = segment_means(
            p_codes, n_pert, Y_arr
        )
        return c_codes, p_codes

    def _other_context_mean(self, c_codes: np.ndarray, p_codes: np.ndarray):
        """Mean of each row's perturbation over the training contexts except its own.

        Returns the (n, n_genes) float64 means, the training row of each pair
        (-1 when the pair was not observed in fit, or its context is unseen) and
        the number of training contexts that observed each row's perturbation.
        A pair observed in fit whose perturbation was observed nowhere else gets
        its own observed effect.
        """
        means = self.perturbation_means_[p_codes]
        counts = self.perturbation_counts_[p_codes]
        rows = np.full(len(p_codes), -1, dtype=np.int64)
        known = c_codes >= 0
        rows[known] = self.pair_index_[c_codes[known], p_codes[known]]
        own = rows >= 0
        exclude = own & (counts > 1)
        if exclude.any():
            k = counts[exclude][:, None].astype(np.float64)
            means[exclude] = leave_one_out_mean(means[exclude], k, self.effects_[rows[exclude]])
        only_own = own & (counts == 1)
        if only_own.any():
            means[only_own] = self.effects_[rows[only_own]]
        return means, rows, counts

    def _context_offsets(self, c_codes, p_codes, shrinkage: float):
        """Shrunken mean residual of each context against the other-context means.

        ``offset_c = sum_{p in P_c} (y_cp - m_{p,-c}) / (n_c + shrinkage)``, where
        ``P_c`` are the perturbations observed in ``c`` and in at least one other
        context and ``n_c = |P_c|``; 0 for a context with ``n_c = 0``.
        """
        means, _, counts = self._other_context_mean(c_codes, p_codes)
        usable = counts > 1
        resid = self.effects_[usable].astype(np.float64) - means[usable]
        n_ctx = len(self.contexts_)
        mean_resid, n_used = segment_means(c_codes[usable], n_ctx, resid)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = np.where(n_used > 0, n_used / (n_used + shrinkage), 0.0)
        return mean_resid * factor[:, None], n_used

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: pd.DataFrame, Y):
        """Fit the baseline on the observed (context, perturbation) pairs.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_rows, n_columns)
            Index table with ``context_col`` and ``perturbation_col``; each
            (context, perturbation) pair at most once.
        Y : array-like or pandas.DataFrame of shape (n_rows, n_genes)
            Effects; row ``i`` belongs to row ``i`` of ``X``.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        c_codes, p_codes = self._fit_tables(X, Y)
        self._fit_codes(c_codes, p_codes)
        return self

    def _fit_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> None:
        """Fit what the baseline needs beyond the shared tables (nothing by default)."""

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predict the effects of the (context, perturbation) pairs of ``X``.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_new, n_columns)
            Index table with ``context_col`` and ``perturbation_col``.

        Returns
        -------
        Y_pred : ndarray of shape (n_new, n_genes)
            Predicted effects (float64).
        """
        c_codes, p_codes, contexts, perturbations = self._validate_predict_data(X)
        self._raise_unknown_perturbations(p_codes, perturbations)
        warn_unknown_contexts(c_codes < 0, contexts, self._unseen_context_fallback)
        return self._predict_codes(c_codes, p_codes)

    def _predict_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> np.ndarray:
        """Predict the validated, coded pairs (contexts never seen in fit are -1)."""
        raise NotImplementedError  # pragma: no cover


class MeanBaseline(PersistenceMixin, _TransferBaseline):
    """Predict a perturbation's mean effect over the other training contexts.

    For a pair ``(c, p)`` the prediction is the mean of ``p``'s training effects
    over the contexts where ``p`` was observed. With ``exclude_target=True`` (the
    default) context ``c`` itself is left out of that mean when ``(c, p)`` is a
    training pair, so the prediction is always "what the *other* contexts say";
    if ``p`` was observed only in ``c``, its own effect is returned.

    Parameters
    ----------
    context_col : hashable, default="context"
        Column of the index table holding the context labels.
    perturbation_col : hashable, default="perturbation"
        Column of the index table holding the perturbation labels.
    exclude_target : bool, default=True
        Leave the target context out of the mean for pairs observed in fit.
        If False, the mean over all training contexts is returned for every
        pair (including the pair's own training effect).

    Attributes
    ----------
    contexts_, perturbations_ : ndarray of object
        Labels seen in fit (sorted when comparable).
    perturbation_means_ : ndarray of shape (n_perturbations, n_genes)
        Mean effect of each perturbation over all training contexts (float64).
    perturbation_counts_ : ndarray of shape (n_perturbations,)
        Number of training contexts that observed each perturbation.
    effects_ : ndarray of shape (n_rows, n_genes)
        The training effects (float32).
    pair_index_ : ndarray of shape (n_contexts, n_perturbations)
        Row of ``effects_`` holding each observed pair; -1 where unobserved.
    n_features_in_, feature_names_in_, n_genes_, gene_names_
        See :class:`~c3tl_sklearn.base.PerturbationRegressorMixin`.

    See Also
    --------
    AdditiveBaseline : Adds a per-gene context offset to this mean.

    Notes
    -----
    A context never seen in fit gets the mean over all training contexts and a
    ``UserWarning``; a perturbation never seen in fit raises ``ValueError``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.baselines import MeanBaseline
    >>> X = pd.DataFrame({"context": ["a", "a", "b", "b"],
    ...                   "perturbation": ["p1", "p2", "p1", "p2"]})
    >>> Y = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 1.0], [4.0, 1.0]])
    >>> model = MeanBaseline().fit(X, Y)
    >>> model.predict(pd.DataFrame({"context": ["a"], "perturbation": ["p1"]}))
    array([[3., 1.]])
    >>> MeanBaseline(exclude_target=False).fit(X, Y).predict(X.iloc[:1])
    array([[2. , 0.5]])
    """

    _parameter_constraints: ClassVar[dict] = {
        **_TransferBaseline._parameter_constraints,
        "exclude_target": ["boolean"],
    }
    _unseen_context_fallback: ClassVar[str] = (
        "they are predicted as the perturbation's mean over all training contexts."
    )

    def __init__(
        self,
        *,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        exclude_target: bool = True,
    ) -> None:
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.exclude_target = exclude_target

    def _predict_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> np.ndarray:
        if not self.exclude_target:
            return self.perturbation_means_[p_codes]
        return self._other_context_mean(c_codes, p_codes)[0]


class AdditiveBaseline(PersistenceMixin, _TransferBaseline):
    """Perturbation mean over the other contexts plus a per-gene context offset.

    For a pair ``(c, p)`` the prediction is ``m_{p,-c} + offset_c`` where
    ``m_{p,-c}`` is ``p``'s mean effect over the training contexts other than
    ``c`` (as :class:`MeanBaseline` with ``exclude_target=True``) and::

        offset_c = sum_{q in P_c} (y_cq - m_{q,-c}) / (n_c + shrinkage)
                 = mean_{q in P_c} (y_cq - m_{q,-c}) * n_c / (n_c + shrinkage)

    with ``P_c`` the perturbations observed in ``c`` and in at least one other
    training context and ``n_c = |P_c|``. ``shrinkage=0`` is the plain mean
    residual; larger values pull the offset of a sparsely observed context
    toward 0 (one pseudo-observation of residual 0 per unit of shrinkage).

    Parameters
    ----------
    context_col : hashable, default="context"
        Column of the index table holding the context labels.
    perturbation_col : hashable, default="perturbation"
        Column of the index table holding the perturbation labels.
    shrinkage : float, default=1.0
        Pseudo-count shrinking each context offset toward 0; 0 disables it.
        The shrinkage matters when a context has only a few adaptation pairs,
        whose mean residual is noisy; with ten or more it hardly changes the
        offset.

    Attributes
    ----------
    offsets_ : ndarray of shape (n_contexts, n_genes)
        The shrunken context offsets (float64), 0 for contexts with ``n_c = 0``.
    n_offset_pairs_ : ndarray of shape (n_contexts,)
        ``n_c``: the number of pairs each offset was estimated from.
    contexts_, perturbations_, perturbation_means_, perturbation_counts_, \
effects_, pair_index_, n_features_in_, feature_names_in_, n_genes_, gene_names_
        As in :class:`MeanBaseline`.

    See Also
    --------
    MeanBaseline : The same prediction without the offset.

    Notes
    -----
    A training pair whose perturbation was observed only in its own context is
    predicted as its observed effect (no offset is added: that effect already
    contains the context). A context never seen in fit gets offset 0, that is
    the :class:`MeanBaseline` prediction, and a ``UserWarning``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.baselines import AdditiveBaseline
    >>> X = pd.DataFrame({"context": ["a", "a", "b", "b", "c"],
    ...                   "perturbation": ["p1", "p2", "p1", "p2", "p1"]})
    >>> Y = np.array([[1.0], [2.0], [1.0], [2.0], [3.0]])
    >>> model = AdditiveBaseline(shrinkage=0.0).fit(X, Y)
    >>> model.offsets_.ravel()
    array([-0.5, -0.5,  2. ])
    >>> model.predict(pd.DataFrame({"context": ["c"], "perturbation": ["p2"]}))
    array([[4.]])
    """

    _parameter_constraints: ClassVar[dict] = {
        **_TransferBaseline._parameter_constraints,
        "shrinkage": [Interval(Real, 0, None, closed="left")],
    }
    _unseen_context_fallback: ClassVar[str] = (
        "they get context offset 0 (the mean baseline prediction)."
    )

    def __init__(
        self,
        *,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        shrinkage: float = _DEFAULT_SHRINKAGE,
    ) -> None:
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.shrinkage = shrinkage

    def _fit_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> None:
        """Estimate the perturbation means and the context offsets."""
        self.offsets_, self.n_offset_pairs_ = self._context_offsets(
            c_codes, p_codes, float(self.shrinkage)
        )

    def _predict_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> np.ndarray:
        pred, rows, counts = self._other_context_mean(c_codes, p_codes)
        add = (c_codes >= 0) & ~((rows >= 0) & (counts == 1))
        pred[add] += self.offsets_[c_codes[add]]
        return pred


class ClosestContextBaseline(PersistenceMixin, _TransferBaseline):
    """Copy the effect observed in the training context most similar to the target.

    The similarity of contexts ``a`` and ``b`` is computed on the perturbations
    observed in both (``S_ab``) as the mean, over ``p in S_ab``, of a per-pair
    similarity of the effect vectors ``y_ap`` and ``y_bp`` across genes:

    - ``"pearson"``: Pearson correlation (0 when either vector is constant);
    - ``"cosine"``: cosine similarity (0 when either vector is zero);
    - ``"euclidean"``: minus the Euclidean distance.

    Averaging per-pair similarities (rather than, say, correlating the
    concatenated effects) weights every shared perturbation equally and ignores
    the shared offset of a context, which would otherwise dominate. Only
    contexts sharing at least ``min_shared`` perturbations with the target are
    candidates. For ``(c, p)`` the effect of ``p`` is copied from the most
    similar candidate that observed ``p``; if no candidate did, the
    :class:`MeanBaseline` prediction (mean over the other contexts) is used.
    The rankings are computed once in fit.

    Parameters
    ----------
    context_col : hashable, default="context"
        Column of the index table holding the context labels.
    perturbation_col : hashable, default="perturbation"
        Column of the index table holding the perturbation labels.
    metric : {"pearson", "euclidean", "cosine"}, default="pearson"
        Per-pair similarity of effect vectors.
    min_shared : int, default=3
        Minimum number of shared observed perturbations for a context to be a
        candidate source of another.

    Attributes
    ----------
    similarity_ : ndarray of shape (n_contexts, n_contexts)
        Mean per-pair similarity between contexts; NaN on the diagonal and for
        pairs sharing fewer than ``min_shared`` perturbations.
    n_shared_ : ndarray of shape (n_contexts, n_contexts)
        Number of perturbations observed in both contexts.
    ranking_ : ndarray of shape (n_contexts, n_contexts)
        Row ``c``: codes (indices into ``contexts_``) of the candidate contexts
        of ``c`` from most to least similar (ties: ``contexts_`` order), padded
        with -1.
    closest_context_ : ndarray of object, shape (n_contexts,)
        Label of the most similar candidate of each context (None if none).
    contexts_, perturbations_, perturbation_means_, perturbation_counts_, \
effects_, pair_index_, n_features_in_, feature_names_in_, n_genes_, gene_names_
        As in :class:`MeanBaseline`.

    Notes
    -----
    A context never seen in fit, or one without any candidate, gets the
    :class:`MeanBaseline` prediction and a ``UserWarning``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.baselines import ClosestContextBaseline
    >>> X = pd.DataFrame({"context": ["a"] * 3 + ["b"] * 3 + ["t"] * 2,
    ...                   "perturbation": ["p1", "p2", "p3"] * 2 + ["p1", "p2"]})
    >>> Y = np.array([[1, 2, 3], [3, 1, 2], [0, 0, 1],
    ...               [3, 2, 1], [1, 3, 2], [1, 0, 0],
    ...               [1, 2, 4], [3, 1, 1]], dtype=float)
    >>> model = ClosestContextBaseline(min_shared=2).fit(X, Y)
    >>> model.closest_context_[2]
    'a'
    >>> model.predict(pd.DataFrame({"context": ["t"], "perturbation": ["p3"]}))
    array([[0., 0., 1.]])
    """

    _parameter_constraints: ClassVar[dict] = {
        **_TransferBaseline._parameter_constraints,
        "metric": [StrOptions({"pearson", "euclidean", "cosine"})],
        "min_shared": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        *,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        metric: str = "pearson",
        min_shared: int = 3,
    ) -> None:
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.metric = metric
        self.min_shared = min_shared

    def _fit_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> None:
        """Compute the context similarities and rankings."""
        n_ctx = len(self.contexts_)
        Y64 = self.effects_.astype(np.float64)
        if self.metric == "euclidean":
            feats = Y64
        else:
            if self.metric == "pearson":
                Y64 = Y64 - Y64.mean(axis=1, keepdims=True)
            norms = np.linalg.norm(Y64, axis=1, keepdims=True)
            feats = np.divide(Y64, norms, out=np.zeros_like(Y64), where=norms > 0)
        sim_sum = np.zeros((n_ctx, n_ctx))
        for a in range(n_ctx):
            # For every training row j = (b, q) with b != a: the row of (a, q), if observed.
            partner = self.pair_index_[a, p_codes]
            j = np.flatnonzero((partner >= 0) & (c_codes != a))
            if self.metric == "euclidean":
                values = -np.linalg.norm(feats[j] - feats[partner[j]], axis=1)
            else:
                values = np.einsum("ij,ij->i", feats[j], feats[partner[j]])
            sim_sum[a] = np.bincount(c_codes[j], weights=values, minlength=n_ctx)
        observed = (self.pair_index_ >= 0).astype(np.float64)
        n_shared = np.rint(observed @ observed.T).astype(np.int64)
        eligible = (n_shared >= self.min_shared) & ~np.eye(n_ctx, dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            similarity = np.where(eligible, sim_sum / np.maximum(n_shared, 1), np.nan)
        order = np.argsort(-np.where(eligible, similarity, -np.inf), axis=1, kind="stable")
        self.ranking_ = np.where(np.take_along_axis(eligible, order, axis=1), order, -1)
        self.similarity_ = similarity
        self.n_shared_ = n_shared
        first = self.ranking_[:, 0]
        self.closest_context_ = np.array(
            [self.contexts_[k] if k >= 0 else None for k in first], dtype=object
        )

    def _predict_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> np.ndarray:
        pred = self._other_context_mean(c_codes, p_codes)[0]
        known = np.flatnonzero(c_codes >= 0)
        if known.size == 0:
            return pred
        no_candidate = self.ranking_[c_codes[known], 0] < 0
        if no_candidate.any():
            labels = label_examples(self.contexts_[c_codes[known[no_candidate]]])
            warnings.warn(
                f"Context(s) {labels} share fewer than min_shared={self.min_shared} "
                "observed perturbations with every other context; their rows get the "
                "mean baseline prediction.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
        ranks = self.ranking_[c_codes[known]]  # (n_known, n_contexts)
        source_rows = self.pair_index_[np.maximum(ranks, 0), p_codes[known][:, None]]
        has = (ranks >= 0) & (source_rows >= 0)
        first = has.argmax(axis=1)
        found = has[np.arange(len(known)), first]
        rows = source_rows[np.arange(len(known)), first][found]
        pred[known[found]] = self.effects_[rows]
        return pred


class LinearTransferBaseline(PersistenceMixin, _TransferBaseline):
    """Ridge regression between PCA embeddings of the effects in two contexts.

    The linear context-transfer baseline of Ahlmann-Eltze, Huber & Anders
    ("Deep-learning-based gene perturbation effect prediction does not yet
    outperform simple linear baselines", Nature Methods 2025), for many source
    contexts:

    1. A PCA with ``n_components`` components is fitted on all training effects
       (capped at the rank of the centred training effects): ``e(y) =
       V (y - mu)``, decoded by ``d(e) = mu + V^T e``.
    2. The *source* effect of ``p`` for target context ``c`` is
       ``m_{p,-c}``, the mean of ``p``'s effects over the training contexts other
       than ``c`` (the :class:`MeanBaseline` prediction).
    3. For each training context ``c``, a :class:`~sklearn.linear_model.Ridge`
       (with intercept) ``f_c`` maps ``e(m_{p,-c})`` to ``e(y_cp)``, fitted on the
       perturbations observed in ``c`` and in at least one other context.
    4. The prediction for ``(c, p)`` is ``d(f_c(e(m_{p,-c})))``.

    Using the mean over the other contexts as the single source (rather than one
    ridge per source context, averaged) gives one regression per target that
    uses every perturbation the target shares with any other context, which
    matters when the target has few observed pairs, and makes the source the
    same as in :class:`MeanBaseline` and :class:`AdditiveBaseline`, so that any
    gain over them is the linear map's. The ridge intercept carries the target
    context's mean shift in the embedding space.

    A context with fewer than ``min_shared`` such pairs gets no ridge; its
    prediction is the :class:`AdditiveBaseline` one (``shrinkage=1``), and fit
    warns.

    Parameters
    ----------
    context_col : hashable, default="context"
        Column of the index table holding the context labels.
    perturbation_col : hashable, default="perturbation"
        Column of the index table holding the perturbation labels.
    n_components : int, default=50
        Number of principal components of the effect embedding; capped at
        ``min(n_rows, n_genes)`` and at the rank of the centred training effects.
    alpha : float, default=10.0
        Ridge penalty (as in :class:`~sklearn.linear_model.Ridge`) on the map
        between embeddings.
    min_shared : int, default=10
        Minimum number of pairs to fit a context's ridge; below it the context
        falls back to the additive prediction.
    random_state : int, RandomState instance or None, default=0
        Seeds the PCA where it is randomized (more than 1,000 genes); below
        that the PCA is exact and the seed is not used.

    Attributes
    ----------
    pca_ : sklearn.decomposition.PCA
        The fitted embedding.
    n_components_ : int
        Number of components used after capping.
    ridges_ : list of (Ridge or None)
        One map per training context (``contexts_`` order); None where the
        context falls back to the additive prediction.
    n_shared_ : ndarray of shape (n_contexts,)
        Number of pairs each context's ridge was (or would have been) fitted on.
    offsets_ : ndarray of shape (n_contexts, n_genes)
        Additive-baseline offsets (``shrinkage=1``) used by fallback contexts.
    fallback_contexts_ : ndarray of object
        Labels of the contexts without a ridge.
    contexts_, perturbations_, perturbation_means_, perturbation_counts_, \
effects_, pair_index_, n_features_in_, feature_names_in_, n_genes_, gene_names_
        As in :class:`MeanBaseline`.

    Notes
    -----
    A ridge needs several shared pairs to learn a map between embeddings; with
    only a handful the additive prediction is the better estimate, hence the
    fallback below ``min_shared`` pairs.

    The PCA is the exact covariance eigendecomposition for up to 1,000 genes
    and sklearn's automatic choice (seeded by ``random_state``) beyond, so fits
    are deterministic. A training pair whose perturbation was observed only in its
    own context is predicted as its observed effect. A context never seen in
    fit gets the :class:`MeanBaseline` prediction and a ``UserWarning``.

    References
    ----------
    C. Ahlmann-Eltze, W. Huber, S. Anders. Deep-learning-based gene perturbation
    effect prediction does not yet outperform simple linear baselines. Nature
    Methods 22, 1657-1661 (2025).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.baselines import LinearTransferBaseline
    >>> rng = np.random.default_rng(0)
    >>> base = rng.normal(size=(20, 6))
    >>> X = pd.DataFrame({"context": ["a"] * 20 + ["b"] * 12,
    ...                   "perturbation": [f"p{i}" for i in range(20)]
    ...                                   + [f"p{i}" for i in range(12)]})
    >>> Y = np.vstack([base, 2 * base[:12] + 1])
    >>> model = LinearTransferBaseline(alpha=1e-9).fit(X, Y)
    >>> model.n_components_
    6
    >>> pred = model.predict(pd.DataFrame({"context": ["b"], "perturbation": ["p15"]}))
    >>> bool(np.allclose(pred, 2 * base[15] + 1, atol=1e-4))
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_TransferBaseline._parameter_constraints,
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "min_shared": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        *,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        n_components: int = 50,
        alpha: float = 10.0,
        min_shared: int = 10,
        random_state=0,
    ) -> None:
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.n_components = n_components
        self.alpha = alpha
        self.min_shared = min_shared
        self.random_state = random_state

    def _fit_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> None:
        """Fit the PCA embedding and one ridge map per context."""
        # imported here: predicting (a loaded model, the fallbacks of C3TL) needs neither
        from sklearn.decomposition import PCA
        from sklearn.linear_model import Ridge

        n_ctx = len(self.contexts_)
        Y64 = self.effects_.astype(np.float64)
        self.offsets_, _ = self._context_offsets(c_codes, p_codes, _DEFAULT_SHRINKAGE)

        k = int(min(self.n_components, Y64.shape[0], Y64.shape[1]))
        # The exact covariance eigendecomposition is the fastest solver for the usual
        # few-hundred-gene tables; beyond that let sklearn choose (randomized, seeded).
        solver = "covariance_eigh" if Y64.shape[1] <= 1000 else "auto"
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        pca = PCA(n_components=k, svd_solver=solver, random_state=seed).fit(Y64)
        sv = pca.singular_values_
        # Rank of the centred effects, with a float32 tolerance (the data are float32).
        tol = (sv[0] if sv.size else 0.0) * max(Y64.shape) * np.finfo(np.float32).eps
        rank = max(int(np.sum(sv > tol)), 1)
        if rank < k:
            pca = PCA(n_components=rank, svd_solver=solver, random_state=seed).fit(Y64)
        self.pca_ = pca
        self.n_components_ = int(pca.n_components_)

        source, _, counts = self._other_context_mean(c_codes, p_codes)
        usable = counts > 1
        ctx_usable = c_codes[usable]
        self.n_shared_ = np.bincount(ctx_usable, minlength=n_ctx)
        self.ridges_ = []
        if usable.any():
            emb_source = pca.transform(source[usable])
            emb_target = pca.transform(Y64[usable])
        for ci in range(n_ctx):
            if self.n_shared_[ci] < self.min_shared:
                self.ridges_.append(None)
                continue
            rows = ctx_usable == ci
            self.ridges_.append(Ridge(alpha=self.alpha).fit(emb_source[rows], emb_target[rows]))
        fallback = np.array([r is None for r in self.ridges_])
        self.fallback_contexts_ = self.contexts_[fallback]
        if fallback.any():
            warnings.warn(
                f"Context(s) {list(self.fallback_contexts_[:5])} have fewer than "
                f"min_shared={self.min_shared} perturbations observed also in another "
                "context; they fall back to the additive baseline prediction.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )

    def _predict_codes(self, c_codes: np.ndarray, p_codes: np.ndarray) -> np.ndarray:
        pred, rows, counts = self._other_context_mean(c_codes, p_codes)
        transfer = (c_codes >= 0) & ~((rows >= 0) & (counts == 1))
        for ci in np.unique(c_codes[transfer]):
            sel = np.flatnonzero(transfer & (c_codes == ci))
            ridge = self.ridges_[ci]
            if ridge is None:
                pred[sel] += self.offsets_[ci]
            else:
                emb = ridge.predict(self.pca_.transform(pred[sel]))
                pred[sel] = self.pca_.inverse_transform(emb)
        return pred
