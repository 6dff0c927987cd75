"""The base class of every regressor in the package: its data contract and its tags."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ._contract import (
    check_index_table,
    check_no_duplicate_pairs,
    check_response,
    match_genes,
    match_rows,
)
from ._labels import encode_labels, label_examples, unique_labels

__all__ = ["PerturbationRegressorMixin"]


class PerturbationRegressorMixin(RegressorMixin, BaseEstimator):
    """Shared data contract of the package's regressors.

    Subclasses define ``context_col`` and ``perturbation_col`` parameters and
    call :meth:`_validate_fit_data` in ``fit`` and :meth:`_validate_predict_data`
    in ``predict``. Fitted attributes set here:

    - ``contexts_``, ``perturbations_``: the labels seen in fit (sorted);
    - ``n_features_in_``, ``feature_names_in_``: columns of the index table;
    - ``n_genes_`` and ``gene_names_`` (``None`` when ``Y`` had no names).

    Rows of ``Y`` (and of ``Y_obs`` in ``observed=(X_obs, Y_obs)``) are matched
    to the rows of the index table by index label when ``Y`` is a DataFrame or
    Series, by position when it is an array (see :func:`~c3tl_sklearn._contract.match_rows`).
    """

    _min_contexts = 2

    def _validate_fit_data(self, X, Y):
        """Check ``(X, Y)``, record label sets; return codes and a float32 copy of Y."""
        contexts, perturbations = check_index_table(X, self.context_col, self.perturbation_col)
        # a DataFrame/Series Y is matched to X by index label, an array by position
        Y_arr, gene_names = check_response(Y, n_rows=len(contexts), index=X.index)
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
        Y_obs = self._match_genes(Y_obs)
        contexts, perturbations = check_index_table(
            X_obs, self.context_col, self.perturbation_col, name="X_obs"
        )
        Y_arr, _ = check_response(Y_obs, n_rows=len(contexts), name="Y_obs",
                                  index=X_obs.index, against="X_obs")
        if Y_arr.shape[1] != self.n_genes_:
            raise ValueError(
                f"Y_obs has {Y_arr.shape[1]} genes but the model was fitted on {self.n_genes_}."
            )
        check_no_duplicate_pairs(contexts, perturbations)
        p_codes = encode_labels(perturbations, self.perturbations_)
        self._raise_unknown_perturbations(p_codes, perturbations)
        return contexts, Y_arr, p_codes

    def _match_genes(self, Y_obs):
        """Put the columns of a DataFrame ``Y_obs`` in the order of the genes of fit.

        Columns are matched by name when both fit and ``Y_obs`` named them, as
        rows are matched by index label: the same genes in another order are
        reordered, other genes are an error.
        """
        names = getattr(self, "gene_names_", None)
        if names is None or not isinstance(Y_obs, pd.DataFrame):
            return Y_obs
        fitted = pd.Index(names, dtype=object, tupleize_cols=False)
        columns = pd.Index(Y_obs.columns, dtype=object, tupleize_cols=False)
        if columns.equals(fitted) or len(columns) != len(fitted):
            return Y_obs  # a different count is reported by the gene-count check
        fix = ("give the effects of the fit genes, Y_obs[model.gene_names_], or pass Y_obs "
               "as an array to match genes by position.")
        match = match_genes(columns, fitted)
        if match.extra:
            raise ValueError(
                f"Y_obs's columns are not the {len(fitted)} genes the model was fitted on "
                f"(e.g. {match.extra[:5]} are not among them); {fix}"
            )
        if match.repeated:
            raise ValueError(
                "Y_obs's columns differ from the fit genes and gene names repeat (in Y_obs "
                f"or in fit), so they cannot be matched by name; {fix}"
            )
        return Y_obs.iloc[:, match.positions]

    def score(self, X, y, sample_weight=None) -> float:
        """R² of ``predict(X)`` against ``y``, averaged over genes.

        Like :meth:`sklearn.base.RegressorMixin.score`, except that the rows of
        a DataFrame or Series ``y`` are matched to ``X`` by index label, as in
        ``fit`` (an array ``y`` by position).
        """
        if isinstance(X, pd.DataFrame):
            y = match_rows(y, X.index, name="Y")
        return super().score(X, y, sample_weight=sample_weight)

    def _raise_unknown_perturbations(self, p_codes, perturbations):
        """A perturbation never observed in fit has no code: refuse clearly."""
        unknown = p_codes < 0
        if unknown.any():
            labels = label_examples(perturbations[unknown])
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
