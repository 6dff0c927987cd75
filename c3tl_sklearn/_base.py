"""The base class of every regressor in the package (C3TL and the baselines)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ._validation import (
    check_index_table,
    check_no_duplicate_pairs,
    check_response,
    encode_labels,
)

__all__ = ["PerturbationRegressorMixin", "segment_means", "transfer_holdout_mask",
           "unique_labels"]


def unique_labels(values: np.ndarray) -> np.ndarray:
    """Sorted unique labels, or first-seen order when labels are not comparable."""
    uniq = list(pd.unique(pd.Series(values, dtype=object)))
    try:
        uniq = sorted(uniq)
    except TypeError:
        pass
    out = np.empty(len(uniq), dtype=object)  # element-wise, so tuple labels stay scalars
    out[:] = uniq
    return out


def segment_means(codes: np.ndarray, n_groups: int, values: np.ndarray):
    """Per-group means of the rows of ``values`` (float64) and the group sizes.

    One sparse indicator-matrix product, no Python loop over rows. Groups without
    rows get a mean of 0.
    """
    n = len(codes)
    indicator = sparse.csr_matrix(
        (np.ones(n, dtype=np.float64), (codes, np.arange(n))), shape=(n_groups, n)
    )
    sums = np.asarray(indicator @ np.asarray(values, dtype=np.float64))
    counts = np.bincount(codes, minlength=n_groups)
    means = sums / np.maximum(counts, 1)[:, None]
    return means, counts


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


class PerturbationRegressorMixin(RegressorMixin, BaseEstimator):
    """Shared data contract of the package's regressors.

    Subclasses define ``context_col`` and ``perturbation_col`` parameters and
    call :meth:`_validate_fit_data` in ``fit`` and :meth:`_validate_predict_data`
    in ``predict``. Fitted attributes set here:

    - ``contexts_``, ``perturbations_``: the labels seen in fit (sorted);
    - ``n_features_in_``, ``feature_names_in_``: columns of the index table;
    - ``n_genes_`` and ``gene_names_`` (``None`` when ``Y`` had no names).
    """

    _min_contexts = 2

    def _validate_fit_data(self, X, Y):
        """Check ``(X, Y)``, record label sets; return codes and a float32 copy of Y."""
        contexts, perturbations = check_index_table(X, self.context_col, self.perturbation_col)
        Y_arr, gene_names = check_response(Y, n_rows=len(contexts))
        check_no_duplicate_pairs(contexts, perturbations)
        self.contexts_ = unique_labels(contexts)
        self.perturbations_ = unique_labels(perturbations)
        if len(self.contexts_) < self._min_contexts:
            raise ValueError(
                f"{type(self).__name__} needs observations from at least "
                f"{self._min_contexts} contexts to transfer between them; got "
                f"{len(self.contexts_)} ({list(self.contexts_)})."
            )
        self.n_features_in_ = X.shape[1]
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_genes_ = Y_arr.shape[1]
        self.gene_names_ = gene_names
        c_codes = encode_labels(contexts, self.contexts_)
        p_codes = encode_labels(perturbations, self.perturbations_)
        return c_codes, p_codes, Y_arr

    def _validate_predict_data(self, X):
        """Check a predict-time index table; return codes (-1 for labels unseen in fit)."""
        check_is_fitted(self)
        contexts, perturbations = check_index_table(X, self.context_col, self.perturbation_col)
        return (
            encode_labels(contexts, self.contexts_),
            encode_labels(perturbations, self.perturbations_),
            contexts,
            perturbations,
        )

    def _validate_observed(self, observed):
        """Check post-fit measurements ``(X_obs, Y_obs)``.

        Returns the context labels, a float32 copy of the effects and the
        perturbation codes; every perturbation must have been seen in fit.
        """
        if not (isinstance(observed, tuple | list) and len(observed) == 2):
            raise TypeError("observed must be a pair (X_obs, Y_obs): an index table and effects.")
        X_obs, Y_obs = observed
        contexts, perturbations = check_index_table(
            X_obs, self.context_col, self.perturbation_col, name="X_obs"
        )
        Y_arr, _ = check_response(Y_obs, n_rows=len(contexts), name="Y_obs")
        if Y_arr.shape[1] != self.n_genes_:
            raise ValueError(
                f"Y_obs has {Y_arr.shape[1]} genes but the model was fitted on {self.n_genes_}."
            )
        check_no_duplicate_pairs(contexts, perturbations)
        p_codes = encode_labels(perturbations, self.perturbations_)
        self._raise_unknown_perturbations(p_codes, perturbations)
        return contexts, Y_arr, p_codes

    def _raise_unknown_perturbations(self, p_codes, perturbations):
        """A perturbation never observed in fit has no code: refuse clearly."""
        unknown = p_codes < 0
        if unknown.any():
            labels = list(pd.unique(pd.Series(perturbations[unknown], dtype=object))[:5])
            raise ValueError(
                f"{int(unknown.sum())} row(s) ask for perturbation(s) never observed in fit, "
                f"e.g. {labels}; a perturbation must be measured in at least one context "
                "before its effect can be transferred."
            )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags
