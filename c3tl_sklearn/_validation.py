"""Input checks shared by every estimator, splitter and metric of the package.

The package's data contract is an *index table* ``X`` (a DataFrame with a
context column and a perturbation column, one row per observation) plus a
response matrix ``Y`` of shape ``(n_rows, n_genes)``. Every public entry point
funnels its inputs through these functions so that bad input fails early with
a message that names the problem, and never deep inside torch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "check_index_table",
    "check_no_duplicate_pairs",
    "check_response",
    "encode_labels",
]


def check_index_table(
    X, context_col: Hashable, perturbation_col: Hashable, *, name: str = "X"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate an index table and return its context and perturbation labels.

    Parameters
    ----------
    X : pandas.DataFrame
        One row per observation, with at least ``context_col`` and
        ``perturbation_col``. Labels may be any hashable values.
    context_col, perturbation_col : hashable
        Column names.
    name : str, default="X"
        How the table is called in error messages.

    Returns
    -------
    contexts, perturbations : ndarray of object, shape (n_rows,)
        Fresh arrays; ``X`` itself is never modified.
    """
    if not isinstance(X, pd.DataFrame):
        raise TypeError(
            f"{name} must be a pandas DataFrame with columns {context_col!r} and "
            f"{perturbation_col!r} (one row per (context, perturbation) observation); "
            f"got {type(X).__name__}."
        )
    missing = [c for c in (context_col, perturbation_col) if c not in X.columns]
    if missing:
        raise ValueError(
            f"{name} is missing the column(s) {missing}; it has {list(X.columns)}. "
            "Set context_col / perturbation_col to the names your table uses."
        )
    if len(X) == 0:
        raise ValueError(f"{name} is empty: it needs at least one row.")
    contexts = X[context_col].to_numpy(dtype=object, copy=True)
    perturbations = X[perturbation_col].to_numpy(dtype=object, copy=True)
    for col, values in ((context_col, contexts), (perturbation_col, perturbations)):
        isna = pd.isna(values)
        if isna.any():
            raise ValueError(
                f"{name}[{col!r}] has {int(isna.sum())} missing label(s) "
                f"(first at row {int(np.flatnonzero(isna)[0])})."
            )
    return contexts, perturbations


def check_response(
    Y, n_rows: int | None = None, *, name: str = "Y", dtype=np.float32
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate a response matrix and return it as a new float array.

    Parameters
    ----------
    Y : array-like or pandas.DataFrame of shape (n_rows, n_genes)
        Effects (for example pseudo-bulk log fold changes). A 1-D array is read
        as a single gene.
    n_rows : int, optional
        Expected number of rows (the length of the index table).
    name : str, default="Y"
        How the matrix is called in error messages.
    dtype : numpy dtype, default=float32

    Returns
    -------
    Y_array : ndarray of shape (n_rows, n_genes)
        A copy in ``dtype``; the caller's object is never modified.
    gene_names : ndarray of object or None
        The column labels when ``Y`` is a DataFrame, else ``None``.
    """
    gene_names = None
    if isinstance(Y, pd.DataFrame):
        gene_names = Y.columns.to_numpy(dtype=object, copy=True)
        non_numeric = [c for c, t in Y.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
        if non_numeric:
            raise TypeError(
                f"{name} must be numeric; column(s) {non_numeric[:5]} are not."
            )
        values = Y.to_numpy()
    elif isinstance(Y, pd.Series):
        values = Y.to_numpy()
    else:
        if hasattr(Y, "toarray"):
            Y = Y.toarray()
        values = np.asarray(Y)
    if values.dtype == object or not (
        np.issubdtype(values.dtype, np.number) or values.dtype == bool
    ):
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be numeric; got values of dtype {values.dtype}."
            ) from exc
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_rows, n_genes); got shape {values.shape}.")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(f"{name} is empty: got shape {values.shape}.")
    if n_rows is not None and values.shape[0] != n_rows:
        raise ValueError(
            f"{name} has {values.shape[0]} rows but the index table has {n_rows}; "
            "row i of the responses must describe row i of the index table."
        )
    out = np.array(values, dtype=dtype, copy=True)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name} contains {int((~finite).sum())} NaN or infinite value(s) "
            f"(first at row {int(bad[0])}, column {int(bad[1])}); impute or drop them first."
        )
    return out, gene_names


def check_no_duplicate_pairs(contexts: np.ndarray, perturbations: np.ndarray) -> None:
    """Raise if a (context, perturbation) pair occurs more than once.

    The model treats each pair as one effect vector. Replicates should be
    averaged first, for example ``Y.groupby([X.context, X.perturbation]).mean()``.
    """
    pairs = pd.MultiIndex.from_arrays([contexts, perturbations])
    dup = pairs.duplicated()
    if dup.any():
        examples = list(pairs[dup].unique()[:3])
        raise ValueError(
            f"{int(dup.sum())} duplicated (context, perturbation) pair(s), e.g. {examples}. "
            "Average replicates first, e.g. "
            "Y.groupby([X['context'], X['perturbation']]).mean()."
        )


def encode_labels(values: np.ndarray, categories: Sequence) -> np.ndarray:
    """Integer codes of ``values`` in ``categories``; -1 for labels not in it."""
    index = pd.Index(categories, dtype=object, tupleize_cols=False)
    query = pd.Index(values, dtype=object, tupleize_cols=False)
    return np.asarray(index.get_indexer(query), dtype=np.int64)
