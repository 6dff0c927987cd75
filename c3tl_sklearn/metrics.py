"""Scores for predicted perturbation effects, and scikit-learn scorers built on them.

Every metric takes ``(Y_true, Y_pred)`` of shape ``(n_rows, n_genes)``: one
effect vector per scored (context, perturbation) pair. Inputs are validated
(2-D, same shape, finite numbers) and never modified. Rows of a DataFrame or
Series are matched by index label (to the index table ``X`` in
:func:`score_table`, else to a pandas ``Y_true``), rows of arrays by position.

Edge cases have defined values, so no NaN reaches an average:

- :func:`pearson_delta`: a row whose true or predicted vector is constant has
  no correlation; it counts as ``0.0`` and an
  :class:`~sklearn.exceptions.UndefinedMetricWarning` (a ``UserWarning``)
  says how many rows.
- :func:`centered_pearson_delta`: the same rule after centring; in particular
  a row alone in its context has a centred truth of zero and counts as ``0.0``.
- :func:`discrimination_score`: a row alone in its context has nothing to be
  told apart from; it is left out of the average (with a warning), and an
  error is raised when no row is left.
- :func:`top_k_overlap`: ties in magnitude are broken in favour of the lower
  gene index.

How they relate to cell-eval (0.8.2), the implementation the field compares
against; ``tests/test_metrics_celleval.py`` computes both on the same effects:

- :func:`pearson_delta` is cell-eval's ``pearson_delta``; cell-eval takes the
  predicted effect against the predicted file's controls, see the function's
  notes.
- mean squared / absolute error over all entries of the effects (the
  ``mse`` column of :func:`score_table`, :data:`mse_scorer`,
  :func:`sklearn.metrics.mean_absolute_error`) is the mean over
  perturbations of cell-eval's ``mse_delta`` / ``mae_delta``, and of its
  ``mse`` / ``mae`` on pseudo-bulk expression when the predicted and real
  controls coincide.
- :func:`discrimination_score` with ``metric="l1"|"l2"|"cosine"`` and
  ``convention="cell-eval"`` is cell-eval's
  ``discrimination_score_{l1,l2,cosine}``; the default convention is the
  pairwise fraction, an affine map of it per context.
- :func:`top_k_overlap` is cell-eval's ``overlap_at_k`` on differential
  expression tables in which every gene is significant.
- :func:`centered_pearson_delta` has no cell-eval counterpart.

The scorers (``pearson_scorer``, ``centered_pearson_scorer``, ...) plug into
``scoring=`` of :func:`~sklearn.model_selection.cross_val_score` and
:class:`~sklearn.model_selection.GridSearchCV`; the two that need the context of
every row read it from the index table ``X`` they are called with, and all
match a pandas ``y``'s rows to ``X``'s by index label, as ``fit`` does. ``SCORERS``
maps names to all of them and can itself be passed as ``scoring=``. Importing
the package changes nothing in scikit-learn: its table of scorer names does
not know ``"pearson_delta"``. :func:`get_scorer` resolves the package's names
(and scikit-learn's), so ``cross_val_score(..., scoring=get_scorer("pearson_delta"))``
or ``scoring=pearson_scorer`` is how to pass them; :class:`~c3tl_sklearn.C3TLSearchCV`
takes the names directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable
from numbers import Integral

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import get_scorer as _sklearn_get_scorer
from sklearn.metrics import mean_squared_error

from ._contract import check_label_columns, check_labels, check_response, match_rows
from ._groups import segment_means
from ._labels import sorted_codes
from ._warnings import user_stacklevel

__all__ = [
    "CONTEXT_METRICS",
    "NAMED_SCORERS",
    "SCORERS",
    "centered_pearson_delta",
    "centered_pearson_scorer",
    "discrimination_score",
    "discrimination_scorer",
    "get_scorer",
    "make_context_scorer",
    "make_row_scorer",
    "mse_scorer",
    "pearson_delta",
    "pearson_scorer",
    "score_table",
    "top_k_overlap",
    "top_k_scorer",
]

# rows whose spread is below this fraction of their magnitude count as constant
_CONSTANT_RTOL = 1e-12
# rows per block in the pairwise and sorting computations (bounds memory)
_BLOCK = 1024


# --------------------------------------------------------------------------- validation


def _row_index(X, Y_true) -> pd.Index | None:
    """The row index the other inputs are matched to: ``X``'s, else a pandas ``Y_true``'s."""
    if isinstance(X, pd.DataFrame):
        return X.index
    if isinstance(Y_true, pd.DataFrame | pd.Series):
        return Y_true.index
    return None


def _gene_names(Y) -> pd.Index | None:
    """A DataFrame's gene names; ``None`` for arrays and default (0, 1, ...) columns."""
    if not isinstance(Y, pd.DataFrame) or isinstance(Y.columns, pd.RangeIndex):
        return None
    return Y.columns


def _listed(labels, limit: int = 5) -> str:
    shown = ", ".join(repr(_plain_label(g)) for g in list(labels)[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


def _plain_label(label):
    return label.item() if isinstance(label, np.generic) else label


def _match_genes(Y_true, Y_pred):
    """``Y_pred`` with its gene columns in ``Y_true``'s order, when both name their genes.

    Rows are matched by label, and genes must be too: scoring a ``Y_pred``
    whose columns are in another order by position compares unrelated genes
    (a perfect prediction scores about 0) without a word.
    """
    true_genes, pred_genes = _gene_names(Y_true), _gene_names(Y_pred)
    if true_genes is None or pred_genes is None or true_genes.equals(pred_genes):
        return Y_pred
    for name, genes in (("Y_true", true_genes), ("Y_pred", pred_genes)):
        if genes.has_duplicates:
            raise ValueError(
                f"{name} has duplicate gene names ({_listed(genes[genes.duplicated()].unique())})"
                ", so genes cannot be matched by name; give every gene column one name."
            )
    missing = true_genes.difference(pred_genes, sort=False)
    extra = pred_genes.difference(true_genes, sort=False)
    if len(missing) or len(extra):
        parts = []
        if len(missing):
            parts.append(
                f"{len(missing)} gene(s) of Y_true are not in Y_pred ({_listed(missing)})"
            )
        if len(extra):
            parts.append(
                f"{len(extra)} gene(s) of Y_pred are not in Y_true ({_listed(extra)})"
            )
        raise ValueError(
            "Y_true and Y_pred name different genes: " + "; ".join(parts) + ". Genes are "
            "matched by name when both are DataFrames; to score the genes both have, select "
            "them: genes = Y_true.columns.intersection(Y_pred.columns), then pass "
            "Y_true[genes] and Y_pred[genes]."
        )
    return Y_pred.loc[:, true_genes]


def _check_pair(Y_true, Y_pred, X=None) -> tuple[np.ndarray, np.ndarray]:
    """Validate two response matrices; return float64 copies.

    Rows follow the package's rule (:func:`~c3tl_sklearn._contract.match_rows`): a
    DataFrame or Series is matched to the index table ``X`` (or, without
    ``X``, ``Y_pred`` to a pandas ``Y_true``) by index label, arrays by position.
    Genes are matched by name when both are DataFrames with named columns, by
    position otherwise.
    """
    Y_pred = _match_genes(Y_true, Y_pred)
    index = _row_index(X, Y_true)
    against = "X" if X is not None else "Y_true"
    arrays = []
    for name, Y in (("Y_true", Y_true), ("Y_pred", Y_pred)):
        if name != against:
            Y = match_rows(Y, index, name=name, against=against)
        try:
            ndim = np.ndim(Y)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} must be a 2-D array (n_rows, n_genes).") from exc
        if ndim != 2:
            raise ValueError(
                f"{name} must be 2-D (n_rows, n_genes); got {ndim}-D input of shape "
                f"{np.shape(Y)}. Use Y.reshape(1, -1) for a single effect vector."
            )
        arrays.append(check_response(Y, name=name, dtype=np.float64)[0])
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(
            f"Y_true and Y_pred must have the same shape; got {arrays[0].shape} and "
            f"{arrays[1].shape}."
        )
    return arrays[0], arrays[1]


def _check_contexts(contexts, n_rows: int, Y_true=None) -> np.ndarray:
    """Integer codes of per-row context labels (``None``: one context for all rows).

    A Series of contexts is matched to a pandas ``Y_true`` by index label.
    """
    if contexts is None:
        return np.zeros(n_rows, dtype=np.intp)
    contexts = match_rows(contexts, _row_index(None, Y_true), name="contexts",
                          against="Y_true")
    labels = check_labels(contexts, n_rows, name="contexts", against="Y_true")
    return sorted_codes(labels)[0]


def _warn_rows(flagged: np.ndarray, what: str) -> None:
    """Tell the metric's caller how many of the rows ``what`` (a clause ending the sentence)."""
    warnings.warn(
        f"{int(flagged.sum())} of {flagged.size} row(s) {what}",
        UndefinedMetricWarning,
        stacklevel=user_stacklevel(),
    )


def _check_min_genes(n_genes: int, name: str) -> None:
    if n_genes < 2:
        raise ValueError(
            f"{name} correlates effects across genes and needs at least 2 genes; got {n_genes}."
        )


# --------------------------------------------------------------------------- Pearson


def _pearson_rows(
    A: np.ndarray, B: np.ndarray, scale_A: np.ndarray, scale_B: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise Pearson r and the mask of rows where it is undefined (set to 0).

    ``A`` and ``B`` are scratch copies: they are centred and rescaled in place.
    ``scale_*`` is the magnitude of each row before any centring; a row whose
    spread is below ``_CONSTANT_RTOL`` of it counts as constant.
    """
    undefined = (_row_spread(A) <= _CONSTANT_RTOL * scale_A) | (
        _row_spread(B) <= _CONSTANT_RTOL * scale_B
    )
    for M in (A, B):
        M -= M.mean(axis=1, keepdims=True)
        # rescale each row so squares can neither overflow nor underflow; r is scale invariant
        M /= np.where(undefined, 1.0, _row_scale(M))[:, None]
    num = np.einsum("ij,ij->i", A, B)
    den = np.sqrt(np.einsum("ij,ij->i", A, A) * np.einsum("ij,ij->i", B, B))
    undefined |= ~(den > 0)
    r = np.zeros(A.shape[0])
    ok = ~undefined
    r[ok] = np.clip(num[ok] / den[ok], -1.0, 1.0)
    return r, undefined


def _row_scale(Y: np.ndarray) -> np.ndarray:
    """Largest absolute value of every row (without an ``abs`` temporary)."""
    return np.maximum(Y.max(axis=1), -Y.min(axis=1))


def _row_spread(Y: np.ndarray) -> np.ndarray:
    return Y.max(axis=1) - Y.min(axis=1)


def pearson_delta(Y_true, Y_pred, *, per_row: bool = False):
    """Pearson correlation across genes between true and predicted effects, per row, averaged.

    This is the paper's headline metric: for every scored (context,
    perturbation) pair, the correlation over genes of the predicted and the
    true effect vector, then the mean over pairs.

    Parameters
    ----------
    Y_true : array-like of shape (n_rows, n_genes)
        True effects.
    Y_pred : array-like of shape (n_rows, n_genes)
        Predicted effects.
    per_row : bool, default=False
        Return the per-row correlations instead of their mean.

    Returns
    -------
    score : float or ndarray of shape (n_rows,)
        Mean correlation (or per-row values). A row whose true or predicted
        vector is constant counts as ``0.0``, with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`.

    Notes
    -----
    For row ``i``, ``r_i = corr(t_i, p_i)`` over genes, and the score is the
    mean of ``r_i``. This is cell-eval's ``pearson_delta`` (0.8.2; scipy's
    :func:`~scipy.stats.pearsonr` per perturbation, averaged over
    perturbations) when both are given the same effects: equal to 1e-6 in
    ``tests/test_metrics_celleval.py``. The deliberate differences:

    - which control an effect is taken against. cell-eval computes
      ``t_i = mean(real cells of i) - mean(real controls)`` and
      ``p_i = mean(predicted cells of i) - mean(predicted controls)``, the
      predicted file's own controls (cell-eval issue #196); here ``Y_pred``
      is compared as given, and a model predicts effects against the
      measured controls of the context. With predicted controls ``c_pred``
      and measured ones ``c_real``, cell-eval's value is this function's on
      ``Y_pred + c_real - c_pred``.
    - cell-eval scores one context per run; here the mean is over every
      row given, so it pools contexts (weighting each by its rows), and
      :func:`score_table` reports each context separately.
    - a constant row gives NaN in cell-eval and ``0.0`` here.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.metrics import pearson_delta
    >>> Y_true = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    >>> Y_pred = np.array([[2.0, 4.0, 7.0], [0.0, 3.0, 1.0]])
    >>> pearson_delta(Y_true, Y_pred, per_row=True).round(3)
    array([0.993, 0.945])
    >>> round(pearson_delta(Y_true, Y_pred), 3)
    0.969
    """
    Yt, Yp = _check_pair(Y_true, Y_pred)
    _check_min_genes(Yt.shape[1], "pearson_delta")
    r, undefined = _pearson_rows(Yt, Yp, _row_scale(Yt), _row_scale(Yp))
    if undefined.any():
        _warn_rows(
            undefined,
            "have a constant true or predicted effect vector, so their Pearson correlation "
            "is undefined; it is counted as 0.0.",
        )
    return r if per_row else float(r.mean())


def _context_means(Y: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per-row mean of ``Y`` over the rows of the same context."""
    return segment_means(codes, int(codes.max()) + 1, Y)[0][codes]


def centered_pearson_delta(Y_true, Y_pred, contexts, *, per_row: bool = False):
    """Pearson delta after removing each context's mean true effect.

    Within each context, the mean true effect of that context's rows (among
    the rows scored) is subtracted from both truth and prediction, then
    :func:`pearson_delta` is computed. Plain Pearson is inflated by the offset
    that every perturbation in a context shares; centring removes it (Systema,
    Viñas Torné et al., 2025), so a model that predicts only the context's
    average effect scores about 0.

    Parameters
    ----------
    Y_true : array-like of shape (n_rows, n_genes)
        True effects.
    Y_pred : array-like of shape (n_rows, n_genes)
        Predicted effects.
    contexts : array-like of shape (n_rows,) or None
        Context label of every row; ``None`` treats all rows as one context.
    per_row : bool, default=False
        Return the per-row correlations instead of their mean.

    Returns
    -------
    score : float or ndarray of shape (n_rows,)
        Mean centred correlation (or per-row values). Rows with a constant
        centred truth or prediction, including every row that is alone in its
        context (its centred truth is zero), count as ``0.0``, with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.metrics import centered_pearson_delta
    >>> rng = np.random.default_rng(0)
    >>> Y_true = rng.normal(size=(6, 20)) + 5 * rng.normal(size=20)  # shared offset
    >>> Y_pred = np.repeat(Y_true.mean(axis=0, keepdims=True), 6, axis=0)
    >>> round(centered_pearson_delta(Y_true, Y_pred + 1e-3 * rng.normal(size=(6, 20)),
    ...                              ["a"] * 6), 1)
    0.0
    """
    Yt, Yp = _check_pair(Y_true, Y_pred)
    _check_min_genes(Yt.shape[1], "centered_pearson_delta")
    codes = _check_contexts(contexts, Yt.shape[0], Y_true)
    mu = _context_means(Yt, codes)
    scale_mu = _row_scale(mu)
    scale_t = np.maximum(_row_scale(Yt), scale_mu)
    scale_p = np.maximum(_row_scale(Yp), scale_mu)
    Yt -= mu
    Yp -= mu
    r, undefined = _pearson_rows(Yt, Yp, scale_t, scale_p)
    if undefined.any():
        alone = np.bincount(codes)[codes] == 1
        n_alone = int((undefined & alone).sum())
        detail = (
            f" ({n_alone} of them alone in their context, whose centred truth is zero)"
            if n_alone
            else ""
        )
        _warn_rows(
            undefined,
            f"have a constant centred true or predicted effect vector{detail}, so their "
            "centred Pearson correlation is undefined; it is counted as 0.0.",
        )
    return r if per_row else float(r.mean())


# --------------------------------------------------------------------------- discrimination


def _discrimination_rows(
    Yt: np.ndarray, Yp: np.ndarray, codes: np.ndarray, metric: str = "l2"
) -> np.ndarray:
    """Per-row discrimination score; NaN for rows alone in their context.

    Only the order of the distances from a prediction matters, so each metric
    uses the cheapest quantity with the same order. L2: for a fixed prediction
    ``p_i`` the squared distance to ``t_j`` is ``|p_i|^2 + |t_j|^2 - 2
    p_i.t_j``; the first term is the same for every ``j``, so ``|t_j|^2 - 2
    p_i.t_j`` orders the ``j`` identically and is one matrix product. Cosine:
    ``1 - cos`` is ordered as ``-p_i.t_j / |t_j|``. L1 has no such shortcut.
    Identical truth rows share one column, so their (tied) distances are
    exactly equal.
    """
    scores = np.full(Yt.shape[0], np.nan)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    for rows in np.split(order, np.cumsum(counts)[:-1]):
        m = rows.size
        if m < 2:
            continue
        truth, inverse = np.unique(Yt[rows], axis=0, return_inverse=True)
        inverse = inverse.ravel()
        if metric == "l2":
            sq_norms = np.einsum("ij,ij->i", truth, truth)
        elif metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", truth, truth))
            # a zero vector has cosine similarity 0 with everything, as in scikit-learn
            truth = truth / np.where(norms > 0, norms, 1.0)[:, None]
        for start in range(0, m, _BLOCK):
            block = np.arange(start, min(start + _BLOCK, m))
            pred = Yp[rows[block]]
            if metric == "l2":
                dist = sq_norms - 2.0 * (pred @ truth.T)
            elif metric == "cosine":
                dist = -(pred @ truth.T)
            else:
                dist = cdist(pred, truth, metric="cityblock")
            dist = dist[:, inverse]  # (b, m)
            own = dist[np.arange(block.size), block][:, None]
            farther = (dist > own).sum(axis=1)
            ties = (dist == own).sum(axis=1) - 1  # minus the row itself
            scores[rows[block]] = (farther + 0.5 * ties) / (m - 1)
    return scores


_DISCRIMINATION_METRICS = ("l2", "l1", "cosine")
_DISCRIMINATION_CONVENTIONS = ("pairwise", "cell-eval")


def discrimination_score(
    Y_true,
    Y_pred,
    contexts,
    *,
    metric: str = "l2",
    convention: str = "pairwise",
    per_row: bool = False,
):
    """How well each prediction picks out its own perturbation among its context's.

    For row ``i`` and every other row ``j`` of the same context, ``j`` counts 1
    if its true effect is farther (by ``metric``) from the prediction for ``i``
    than ``i``'s own true effect is, and 1/2 if it is exactly as far. The row
    score is the fraction over the ``j``; the result is the mean over rows.
    1 is perfect; 0.5 is what predicting the same vector for every
    perturbation gets.

    Parameters
    ----------
    Y_true : array-like of shape (n_rows, n_genes)
        True effects.
    Y_pred : array-like of shape (n_rows, n_genes)
        Predicted effects.
    contexts : array-like of shape (n_rows,) or None
        Context label of every row; rows are compared only within their
        context. ``None`` compares all rows with each other.
    metric : {"l2", "l1", "cosine"}, default="l2"
        Distance between a prediction and a true effect: Euclidean, Manhattan
        or cosine distance (``1 - cos``; a zero vector is at distance 1 from
        everything, as in :func:`sklearn.metrics.pairwise_distances`).
    convention : {"pairwise", "cell-eval"}, default="pairwise"
        How the comparisons become a score, for a context with ``m`` rows:

        - ``"pairwise"``: ``s_i = (farther_i + ties_i / 2) / (m - 1)``, the
          fraction of the other perturbations that the prediction places
          farther away than its own. 1 is perfect, 0 the worst, 0.5 chance.
        - ``"cell-eval"``: ``1 - rank_i / m``, cell-eval's
          ``discrimination_score_{l1,l2,cosine}``, where ``rank_i`` is the
          number of true effects (of all ``m``, the row's own included)
          closer to the prediction than the row's own, ties counted as one
          half. It equals ``(1 + (m - 1) s_i) / m``: 1 is perfect, ``1 / m``
          the worst and ``(m + 1) / (2 m)`` chance, so its floor depends on
          how many perturbations a context has.

    per_row : bool, default=False
        Return the per-row scores instead of their mean.

    Returns
    -------
    score : float or ndarray of shape (n_rows,)
        Mean over rows that share their context with at least one other row.
        Rows alone in their context are left out (per-row value NaN) with an
        :class:`~sklearn.exceptions.UndefinedMetricWarning`.

    Raises
    ------
    ValueError
        If no context has two or more rows (and ``per_row=False``), or for an
        unknown ``metric`` or ``convention``.

    Notes
    -----
    Relation to cell-eval (``cell_eval.metrics.discrimination_score``, 0.8.2),
    which scores one context per run: with ``convention="cell-eval"`` and the
    same ``metric`` the per-row values are equal to cell-eval's per
    perturbation (tested to 1e-6 in ``tests/test_metrics_celleval.py``) when
    the inputs are the same effects. The deliberate differences:

    - cell-eval's effects are differences of pseudo-bulk means against the
      control cells of each file, the predicted file's own (predicted)
      controls for predictions (cell-eval issues #183 and #196); here both
      matrices are effects already, in practice against the measured controls
      (:func:`~c3tl_sklearn.preprocessing.pseudobulk`).
    - cell-eval drops, by default, the gene named like the perturbation
      (``exclude_target_gene=True``, for knockdowns whose target dominates
      the profile); here every column counts, so drop the target gene from
      ``Y_true`` and ``Y_pred`` to reproduce it.
    - cell-eval breaks exact ties by the sort order of perturbation names;
      here a tie counts one half, its expected value under a random order.
    - A context with one perturbation scores 1 in cell-eval (nothing to
      confuse it with); here it is left out, with a warning.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.metrics import discrimination_score
    >>> Y_true = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    >>> discrimination_score(Y_true, Y_true, None)
    1.0
    >>> discrimination_score(Y_true, np.zeros((3, 2)), None)
    0.5
    >>> round(discrimination_score(Y_true, np.zeros((3, 2)), None, convention="cell-eval"), 3)
    0.667
    """
    if metric not in _DISCRIMINATION_METRICS:
        raise ValueError(f"metric must be one of {_DISCRIMINATION_METRICS}; got {metric!r}.")
    if convention not in _DISCRIMINATION_CONVENTIONS:
        raise ValueError(
            f"convention must be one of {_DISCRIMINATION_CONVENTIONS}; got {convention!r}."
        )
    Yt, Yp = _check_pair(Y_true, Y_pred)
    codes = _check_contexts(contexts, Yt.shape[0], Y_true)
    scores = _discrimination_rows(Yt, Yp, codes, metric)
    if convention == "cell-eval":
        m = np.bincount(codes)[codes]
        scores = (1.0 + (m - 1) * scores) / m
    alone = np.isnan(scores)
    if alone.any():
        _warn_rows(
            alone,
            "are alone in their context and cannot be told apart from other perturbations; "
            "they are left out of the discrimination score.",
        )
    if per_row:
        return scores
    if alone.all():
        raise ValueError(
            "discrimination_score needs at least one context with two or more rows; every "
            "row is alone in its context."
        )
    return float(scores[~alone].mean())


# --------------------------------------------------------------------------- top-k


def _top_k_mask(Y: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` largest ``|Y|`` per row; ties go to the lower gene index."""
    mask = np.zeros(Y.shape, dtype=bool)
    for start in range(0, Y.shape[0], _BLOCK):
        block = np.abs(Y[start : start + _BLOCK])
        threshold = -np.partition(-block, k - 1, axis=1)[:, k - 1 : k]  # k-th largest
        above = block > threshold
        at = block == threshold
        room = k - above.sum(axis=1, keepdims=True)
        mask[start : start + _BLOCK] = above | (at & (np.cumsum(at, axis=1) <= room))
    return mask


def _check_k(k, n_genes: int) -> int:
    if not isinstance(k, Integral) or isinstance(k, bool) or not 1 <= k <= n_genes:
        raise ValueError(
            f"k must be an integer between 1 and the number of genes ({n_genes}); got {k!r}."
        )
    return int(k)


def top_k_overlap(Y_true, Y_pred, k: int = 50, *, per_row: bool = False):
    """Overlap of the ``k`` most affected genes, true against predicted, per row, averaged.

    For every row: the ``k`` genes with the largest absolute true effect and
    the ``k`` with the largest absolute predicted effect; the score is the
    size of their intersection divided by ``k``. Ties in magnitude are broken
    in favour of the lower gene index.

    Parameters
    ----------
    Y_true : array-like of shape (n_rows, n_genes)
        True effects.
    Y_pred : array-like of shape (n_rows, n_genes)
        Predicted effects.
    k : int, default=50
        Number of top genes, between 1 and ``n_genes``.
    per_row : bool, default=False
        Return the per-row overlaps instead of their mean.

    Returns
    -------
    score : float or ndarray of shape (n_rows,)
        In [0, 1]; 1 when the top-``k`` sets agree.

    Notes
    -----
    cell-eval's ``overlap_at_k`` (0.8.2) is the same fraction over genes
    from differential-expression tables: per perturbation, the genes with
    FDR below 0.05 ranked by ``|log2 fold change|`` (ties by table order).
    Given tables in which every gene is significant and the log fold change
    is the effect, the two are equal (tested in
    ``tests/test_metrics_celleval.py``). On cells they differ by design:
    cell-eval's genes are those its Mann-Whitney tests call significant, its
    fold change is ``log2`` of the ratio of mean expression in count space
    (``mean(expm1(x))``), and it divides by ``min(k, n_significant)``;
    here every gene is ranked by the effect as given (a difference of means
    of log-normalised expression) and the divisor is ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.metrics import top_k_overlap
    >>> Y_true = np.array([[5.0, -4.0, 0.1, 0.2]])
    >>> Y_pred = np.array([[3.0, 0.0, 0.0, -2.0]])
    >>> top_k_overlap(Y_true, Y_pred, k=2)
    0.5
    """
    Yt, Yp = _check_pair(Y_true, Y_pred)
    k = _check_k(k, Yt.shape[1])
    overlap = (_top_k_mask(Yt, k) & _top_k_mask(Yp, k)).sum(axis=1) / k
    return overlap if per_row else float(overlap.mean())


# --------------------------------------------------------------------------- report


def score_table(X, Y_true, Y_pred, context_col: Hashable = "context", *, k: int = 50):
    """All metrics per context and overall, as a DataFrame.

    Parameters
    ----------
    X : pandas.DataFrame of shape (n_rows, n_columns)
        Index table of the scored rows, with the context column.
    Y_true : array-like of shape (n_rows, n_genes)
        True effects.
    Y_pred : array-like of shape (n_rows, n_genes)
        Predicted effects.
    context_col : hashable, default="context"
        Context column of ``X``.
    k : int, default=50
        Number of top genes for :func:`top_k_overlap`; capped at the number of
        genes.

    Returns
    -------
    table : pandas.DataFrame
        One row per context (sorted) plus a final ``"overall"`` row, indexed
        by ``context_col``; columns ``pearson_delta``,
        ``centered_pearson_delta``, ``discrimination_score``,
        ``top_k_overlap``, ``mse`` and ``n_rows``. Centring and discrimination
        are always within context, so a context's row equals the metric
        computed on that context alone, and ``"overall"`` averages over all
        rows. ``discrimination_score`` is NaN for a context with a single row
        (and overall if every context has one).

    See Also
    --------
    c3tl_sklearn.preprocessing.read_cell_eval : a pair of cell-eval files as
        ``(X, Y_true, Y_pred)``, so ``score_table(*read_cell_eval(pred, real,
        ...), context_col=...)`` scores a prediction in cell-eval's layout.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.metrics import score_table
    >>> X = pd.DataFrame({"context": ["a", "a", "b", "b"], "perturbation": ["p", "q"] * 2})
    >>> Y = np.arange(24.0).reshape(4, 6) ** 1.5
    >>> table = score_table(X, Y, Y, k=3)
    >>> table.index.tolist()
    ['a', 'b', 'overall']
    >>> table.loc["overall", ["pearson_delta", "discrimination_score", "mse"]].tolist()
    [1.0, 1.0, 0.0]
    >>> table["n_rows"].tolist()
    [2, 2, 4]
    """
    (labels,) = check_label_columns(X, [context_col],
                                    column_hint="Set context_col to your context column.")
    Yt, Yp = _check_pair(Y_true, Y_pred, X)
    if len(X) != Yt.shape[0]:
        raise ValueError(
            f"X has {len(X)} rows but Y_true has {Yt.shape[0]}; every row of X needs one row "
            "of effects (matched by index label for a DataFrame, by position for an array)."
        )
    codes, uniques = sorted_codes(labels)
    per_row = {
        "pearson_delta": pearson_delta(Yt, Yp, per_row=True),
        "centered_pearson_delta": centered_pearson_delta(Yt, Yp, codes, per_row=True),
        "discrimination_score": discrimination_score(Yt, Yp, codes, per_row=True),
        "top_k_overlap": top_k_overlap(Yt, Yp, min(k, Yt.shape[1]), per_row=True),
    }

    def summarise(mask: np.ndarray) -> dict:
        row = {}
        for name, values in per_row.items():
            chosen = values[mask]
            chosen = chosen[~np.isnan(chosen)]
            row[name] = float(chosen.mean()) if chosen.size else np.nan
        row["mse"] = float(mean_squared_error(Yt[mask], Yp[mask]))
        row["n_rows"] = int(mask.sum())
        return row

    index = list(uniques)
    rows = [summarise(codes == code) for code in range(uniques.size)]
    rows.append(summarise(np.ones(len(labels), dtype=bool)))
    index.append("overall")
    return pd.DataFrame(
        rows, index=pd.Index(index, dtype=object, name=context_col, tupleize_cols=False)
    )


# --------------------------------------------------------------------------- scorers


class _IndexTableScorer:
    """Scorer ``(estimator, X, y) -> float`` that matches ``y``'s rows to ``X``'s by label.

    scikit-learn's :func:`~sklearn.metrics.make_scorer` compares ``y`` with
    ``predict(X)`` by position; here a pandas ``y`` follows the index table
    ``X`` by index label, as in ``fit`` and ``score``. With ``context_col``,
    every row's context is read from that column of ``X`` and passed to the
    metric as its third argument.
    """

    def __init__(self, score_func: Callable, context_col: Hashable | None, sign: int,
                 kwargs: dict, follow_estimator: bool = False):
        self._score_func = score_func
        self._context_col = context_col
        self._sign = sign
        self._kwargs = kwargs
        # the scorers behind scoring="name" read the estimator's own context column
        self._follow_estimator = follow_estimator

    def _context_column(self, estimator) -> Hashable | None:
        if self._context_col is None or not self._follow_estimator:
            return self._context_col
        own = _estimator_param(estimator, "context_col")
        return self._context_col if own is None else own

    def __call__(self, estimator, X, y_true, **kwargs) -> float:
        if kwargs:
            raise TypeError(
                f"{self!r} does not accept extra arguments such as {sorted(kwargs)}."
            )
        is_table = isinstance(X, pd.DataFrame)
        context_col = self._context_column(estimator)
        if context_col is not None and not (is_table and context_col in X.columns):
            raise ValueError(
                f"{self!r} reads the context of every row from the column "
                f"{context_col!r} of X, so X must be the index table (a DataFrame "
                "with that column). If the contexts are in another column, score with "
                f"scoring=make_context_scorer({self._score_func.__name__}, context_col=...) "
                "(from c3tl_sklearn.metrics)."
            )
        # y_true's rows follow X's by index label, as in fit (an array: by position)
        y_true = match_rows(y_true, X.index if is_table else None, name="y_true")
        y_pred = estimator.predict(X)
        genes = _estimator_param(estimator, "gene_names_")
        if genes is not None and isinstance(y_true, pd.DataFrame) and \
                np.shape(y_pred)[1:] == (len(genes),):
            # the prediction's columns are the fit genes, matched to y_true's by name
            y_pred = pd.DataFrame(y_pred, index=y_true.index, columns=pd.Index(genes))
        args = () if context_col is None else (X[context_col].to_numpy(object),)
        return self._sign * self._score_func(y_true, y_pred, *args, **self._kwargs)

    def __repr__(self) -> str:
        args = [self._score_func.__name__]
        if self._context_col not in ("context", None):
            args.append(f"context_col={self._context_col!r}")
        if self._sign < 0:
            args.append("greater_is_better=False")
        args += [f"{key}={value!r}" for key, value in self._kwargs.items()]
        maker = "make_scorer" if self._context_col is None else "make_context_scorer"
        return f"{maker}({', '.join(args)})"


def _estimator_param(estimator, name: str):
    """``name`` (a parameter or fitted attribute) of ``estimator`` or of the model it wraps.

    Looks through a ``Pipeline`` (its last step), ``TransformedTargetRegressor``
    (``regressor_``) and searches (``best_estimator_``); ``None`` if absent.
    """
    for _ in range(16):  # nesting deeper than this is no model of the package
        value = getattr(estimator, name, None)
        if value is not None:
            return value
        if hasattr(estimator, "steps"):
            estimator = estimator.steps[-1][1]
        elif hasattr(estimator, "regressor_"):
            estimator = estimator.regressor_
        elif hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        else:
            return None
    return None


def make_context_scorer(
    score_func: Callable,
    *,
    context_col: Hashable = "context",
    greater_is_better: bool = True,
    **kwargs,
) -> Callable:
    """Make a scorer for a metric ``score_func(Y_true, Y_pred, contexts, **kwargs)``.

    scikit-learn scorers receive ``(estimator, X, y)``; this one predicts on
    ``X`` and reads every row's context from the column ``context_col`` of the
    index table ``X``.

    Parameters
    ----------
    score_func : callable
        Metric taking ``(Y_true, Y_pred, contexts)``, for example
        :func:`centered_pearson_delta` or :func:`discrimination_score`.
    context_col : hashable, default="context"
        Context column of the index table.
    greater_is_better : bool, default=True
        If ``False`` the scorer returns the negated metric, as scikit-learn's
        scorers do for errors.
    **kwargs
        Extra keyword arguments passed to ``score_func``.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, usable as ``scoring=``.

    Examples
    --------
    >>> from c3tl_sklearn.metrics import centered_pearson_delta, make_context_scorer
    >>> make_context_scorer(centered_pearson_delta, context_col="cell_line")
    make_context_scorer(centered_pearson_delta, context_col='cell_line')
    """
    return _IndexTableScorer(score_func, context_col, 1 if greater_is_better else -1, kwargs)


def make_row_scorer(score_func: Callable, *, greater_is_better: bool = True, **kwargs):
    """``make_scorer`` for a metric ``score_func(Y_true, Y_pred)``, rows matched by label.

    ``kwargs`` go to ``score_func`` (for example ``k`` of :func:`top_k_overlap`).

    Examples
    --------
    >>> from c3tl_sklearn.metrics import make_row_scorer, top_k_overlap
    >>> make_row_scorer(top_k_overlap, k=20)
    make_scorer(top_k_overlap, k=20)
    """
    return _IndexTableScorer(score_func, None, 1 if greater_is_better else -1, kwargs)


pearson_scorer = make_row_scorer(pearson_delta)
"""Scorer for :func:`pearson_delta` (greater is better)."""

centered_pearson_scorer = _IndexTableScorer(centered_pearson_delta, "context", 1, {},
                                            follow_estimator=True)
"""Scorer for :func:`centered_pearson_delta`, contexts from the estimator's ``context_col``
(``X["context"]`` for an estimator without one)."""

discrimination_scorer = _IndexTableScorer(discrimination_score, "context", 1, {},
                                          follow_estimator=True)
"""Scorer for :func:`discrimination_score`, contexts from the estimator's ``context_col``
(``X["context"]`` for an estimator without one)."""

top_k_scorer = make_row_scorer(top_k_overlap)
"""Scorer for :func:`top_k_overlap` with ``k=50``."""

mse_scorer = make_row_scorer(mean_squared_error, greater_is_better=False)
"""Negated mean squared error over all entries (scikit-learn's sign convention)."""

CONTEXT_METRICS: dict[str, Callable] = {
    "centered_pearson_delta": centered_pearson_delta,
    "discrimination_score": discrimination_score,
}
"""The metrics whose scorers read every row's context from ``X``, by scorer name."""

SCORERS: dict[str, Callable] = {
    "pearson_delta": pearson_scorer,
    "centered_pearson_delta": centered_pearson_scorer,
    "discrimination_score": discrimination_scorer,
    "top_k_overlap": top_k_scorer,
    "neg_mean_squared_error": mse_scorer,
}
"""Every scorer of the module by name; ``scoring=SCORERS`` evaluates them all."""

NAMED_SCORERS: dict[str, Callable] = {
    name: scorer for name, scorer in SCORERS.items() if name != "neg_mean_squared_error"
}
"""The names :func:`get_scorer` resolves to the package's scorers; every other name is
scikit-learn's (``"neg_mean_squared_error"`` included)."""


def get_scorer(scoring: str | Callable) -> Callable:
    """The scorer behind a name: the package's own, else scikit-learn's.

    The package's scorers are plain objects, never written into scikit-learn's
    table of names: pass them as ``scoring=`` (``scoring=get_scorer("pearson_delta")``
    or ``scoring=pearson_scorer``). A name the package does not define goes
    to :func:`sklearn.metrics.get_scorer`; a callable is returned unchanged.

    Parameters
    ----------
    scoring : str or callable
        ``"pearson_delta"``, ``"centered_pearson_delta"``,
        ``"discrimination_score"``, ``"top_k_overlap"``, or any scikit-learn
        scorer name.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``, greater is better.

    Examples
    --------
    >>> from c3tl_sklearn.metrics import get_scorer
    >>> get_scorer("centered_pearson_delta")
    make_context_scorer(centered_pearson_delta)
    """
    if callable(scoring):
        return scoring
    if isinstance(scoring, str) and scoring in NAMED_SCORERS:
        return NAMED_SCORERS[scoring]
    try:
        return _sklearn_get_scorer(scoring)
    except ValueError as exc:
        raise ValueError(
            f"Unknown scoring {scoring!r}. Use one of the package's scorers "
            f"{sorted(NAMED_SCORERS)} or a scikit-learn scorer name."
        ) from exc
