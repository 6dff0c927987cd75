"""The package's one input contract: index-table and response checks, rows and genes matched.

The data contract is an *index table* ``X`` (a DataFrame with a context column
and a perturbation column, one row per observation) plus a response matrix
``Y`` of shape ``(n_rows, n_genes)``. Every estimator, splitter, metric and the
command-line application funnel their inputs through these functions, so bad
input fails early with a message that names the problem (never deep inside
torch). Labels are coded and sorted one way (``_labels``) and group means
taken one way (``_groups``).

Rows: a DataFrame or Series ``Y`` is matched to ``X`` by index label (reordered
when the labels are the same, an error when they differ), an array by position
(:func:`match_rows`).
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from ._labels import object_array
from ._warnings import user_stacklevel

__all__ = [
    "GeneMatch",
    "check_hidden_dims",
    "check_index_table",
    "check_label_columns",
    "check_labels",
    "check_no_duplicate_pairs",
    "check_response",
    "first_non_finite",
    "match_genes",
    "match_rows",
    "repeated_pairs",
]


def check_index_table(
    X,
    context_col: Hashable,
    perturbation_col: Hashable,
    *,
    name: str = "X",
    column_hint: str = "Set context_col / perturbation_col to the names your table uses.",
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
    column_hint : str
        The fix suggested when a label column is missing.

    Returns
    -------
    contexts, perturbations : ndarray of object, shape (n_rows,)
        Fresh arrays; ``X`` itself is never modified.
    """
    return tuple(check_label_columns(
        X, [context_col, perturbation_col], name=name, column_hint=column_hint
    ))


def check_label_columns(
    X,
    columns: Sequence[Hashable],
    *,
    name: str = "X",
    column_hint: str = "Set context_col / perturbation_col to the names your table uses.",
) -> list[np.ndarray]:
    """Validate the label columns of a table; return a fresh object array per column.

    :func:`check_index_table` for any set of label columns (a splitter given
    ``groups`` needs only the perturbation column).
    """
    if not isinstance(X, pd.DataFrame):
        shown = " and ".join(repr(c) for c in columns)
        raise TypeError(
            f"{name} must be a pandas DataFrame with the column(s) {shown} (one row per "
            f"(context, perturbation) observation); got {type(X).__name__}."
        )
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ValueError(
            f"{name} is missing the column(s) {missing}; it has "
            f"{list(X.columns)[:20]}{' ...' if len(X.columns) > 20 else ''}. {column_hint}"
        )
    if len(X) == 0:
        raise ValueError(f"{name} is empty: it needs at least one row.")
    out = []
    for col in columns:
        labels = X[col].to_numpy(dtype=object, copy=True)
        _check_no_missing(labels, f"{name} column {col!r}")
        _check_label_values(labels, f"{name} column {col!r}", f"{name}[{col!r}]")
        out.append(labels)
    return out


def _label_text(label) -> str:
    return f"{_plain(label)!r} ({type(_plain(label)).__name__})"


def _check_label_values(labels: np.ndarray, name: str, column: str = "labels") -> None:
    """Labels must be hashable, and labels that differ must not print alike.

    ``1`` and ``'1'`` are two contexts to Python and one to every file written
    from the table (and to anyone reading the output), so they are refused.
    Labels that differ only in surrounding white space or Unicode form
    (``'café'`` composed or decomposed) are legal but look like typing slips:
    a warning names them.
    """
    try:
        uniques = pd.unique(labels)
    except TypeError:
        for i, label in enumerate(labels):
            try:
                hash(label)
            except TypeError:
                raise TypeError(
                    f"{name} holds a label of type {type(label).__name__} in row {i} "
                    f"({label!r:.60}), which is not hashable; labels must be values such as "
                    f"str, int or tuple: convert them, e.g. {column}.map(tuple) or "
                    f"{column}.astype(str)."
                ) from None
        raise  # pragma: no cover - pandas refused for another reason
    if len(uniques) < 2:
        return
    by_text: dict[str, object] = {}
    for label in uniques:
        text = str(_plain(label))
        if text in by_text:
            raise ValueError(
                f"{name} has different labels that print alike: {_label_text(by_text[text])} "
                f"and {_label_text(label)}; every file or table written from them would "
                f"merge the two. If they name the same thing, make the labels one type, e.g. "
                f"{column} = {column}.astype(str); if not, rename one of them."
            )
        by_text[text] = label
    import unicodedata

    by_form: dict[str, str] = {}
    for text in by_text:
        form = unicodedata.normalize("NFC", text).strip()
        if form in by_form:
            warnings.warn(
                f"{name} has labels that differ only in white space or Unicode form: "
                f"{by_form[form]!r} and {text!r}; they are treated as different labels. If "
                "they name the same thing, clean them first (str.strip(), "
                "unicodedata.normalize('NFC', ...)).", UserWarning, stacklevel=user_stacklevel(),
            )
            return
        by_form[form] = text


def check_hidden_dims(value) -> tuple[int, ...]:
    """``hidden_dims`` as a tuple of positive ints; anything else is refused, not truncated.

    ``int(4.5)`` would silently build a layer of 4, and ``True`` one of 1.
    """
    from numbers import Integral

    items = [value] if isinstance(value, Integral) else list(np.atleast_1d(value))
    bad = [h for h in items
           if isinstance(h, bool | np.bool_) or not isinstance(h, Integral) or h < 1]
    if bad:
        raise ValueError(
            f"hidden_dims must be a tuple of positive integers (layer widths), e.g. (256,) or "
            f"(128, 64); got {value!r}, in which {_plain(bad[0])!r} is not one."
        )
    return tuple(int(h) for h in items)


def _check_no_missing(labels: np.ndarray, name: str) -> None:
    isna = pd.isna(labels)
    if isna.any():
        raise ValueError(
            f"{name} has {int(isna.sum())} missing label(s), the first in row "
            f"{int(np.flatnonzero(isna)[0])}."
        )


def check_labels(labels, n_rows: int, *, name: str, against: str) -> np.ndarray:
    """Validate one label per row (``groups``, ``contexts``) and return a fresh object array.

    Parameters
    ----------
    labels : array-like of shape (n_rows,)
        A list (tuples in it are single labels), Series, Index or 1-D array.
    n_rows : int
        Expected number of labels.
    name, against : str
        How the labels and the object they describe are called in errors.

    Returns
    -------
    labels : ndarray of object, shape (n_rows,)
    """
    if isinstance(labels, pd.DataFrame):
        raise ValueError(f"{name} must be 1-D: one label per row of {against}.")
    if isinstance(labels, (pd.Series, pd.Index)):
        out = labels.to_numpy(dtype=object, copy=True)
    elif isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D (one label per row of {against}); got shape "
                f"{labels.shape}."
            )
        out = labels.astype(object)
    else:
        out = object_array(labels)
    if out.shape[0] != n_rows:
        raise ValueError(
            f"{name} has {out.shape[0]} labels but {against} has {n_rows} rows; give the "
            f"label of every row of {against}."
        )
    _check_no_missing(out, name)
    _check_label_values(out, name, name)
    return out


def match_rows(Y, index: pd.Index | None, *, name: str = "Y", against: str = "X"):
    """Put the rows of a pandas ``Y`` in the order of ``index`` (the rows of ``against``).

    The row rule of the whole package:

    - ``Y`` a DataFrame or Series and ``index`` given: rows are matched **by
      index label**. Equal indexes are used as they are; the same labels in
      another order are aligned (``Y.loc[index]``, a copy), because the labels
      say which row is which and a sorted or shuffled ``X`` is a normal pandas
      operation; labels that differ as sets raise a ``ValueError`` saying how
      to match rows by position instead. Aligning is safe only when the match
      is one to one, so reordered indexes with duplicate labels raise too.
      Labels that match only once written as strings (AnnData's ``obs_names``
      are always strings, so ``adata.obs`` against a ``Y`` indexed by integers)
      are matched as strings, when that too is one to one.
    - ``Y`` an array (or ``index`` ``None``): rows are matched **by position**,
      row ``i`` of ``Y`` describes row ``i`` of ``against``.

    A different number of rows is left to the caller's row-count check, whose
    message is about the counts.

    Parameters
    ----------
    Y : object
        Anything; only a DataFrame or Series is reordered.
    index : pandas.Index or None
        Row index of the table ``Y`` must follow.
    name, against : str
        How ``Y`` and the table are called in error messages.

    Returns
    -------
    Y : object
        ``Y`` itself when nothing moves, else a reordered copy.
    """
    if index is None or not isinstance(Y, pd.DataFrame | pd.Series):
        return Y
    y_index = Y.index
    if len(y_index) != len(index) or _same_index(y_index, index):
        return Y
    # Resetting both indexes pairs rows by position, which is wrong whenever the
    # labels were right (a shuffled X cut by cross-validation with a Y in the
    # original order): the first advice is to align by label, before any split.
    fix = (
        f"if {name} holds the rows of {against} in another order (a splitter cuts both by "
        f"position, so put them in one order before splitting), align it by label: "
        f"{name} = {name}.loc[{against}.index]; only if row i of {name} describes row i of "
        f"{against}, reset both indexes ({against}.reset_index(drop=True), "
        f"{name}.reset_index(drop=True)) or pass {name} as an array ({name}.to_numpy()) "
        "to match rows by position"
    )
    if index.has_duplicates or y_index.has_duplicates:
        which = against if index.has_duplicates else name
        raise ValueError(
            f"{against} and {name} have different row indexes and {which}'s has duplicate "
            f"labels, so rows cannot be matched by label; {fix}."
        )
    position = _positions(y_index, index)
    if (position < 0).any():
        # AnnData keeps row names as strings (obs_names): labels that are equal once
        # written as strings, one to one, name the same rows
        y_text, text = _text_index(y_index), _text_index(index)
        if y_text.is_unique and text.is_unique:
            as_text = _positions(y_text, text)
            if (as_text >= 0).all():
                position = as_text
    missing = np.flatnonzero(position < 0)
    if missing.size:
        raise ValueError(
            f"{against} and {name} have different row indexes ({missing.size} label(s) of "
            f"{against} are not in {name}'s, the first {_plain(index[missing[0]])!r}); rows are "
            f"matched by index label when both carry one: {fix}."
        )
    return Y.iloc[position]


def _positions(y_index: pd.Index, index: pd.Index) -> np.ndarray:
    """Position in ``y_index`` of every label of ``index`` (-1: absent), both unique."""
    try:
        return np.asarray(y_index.get_indexer(index), dtype=np.intp)
    except (TypeError, ValueError, pd.errors.InvalidIndexError):  # incomparable index types
        return np.full(len(index), -1, dtype=np.intp)


def _text_index(index: pd.Index) -> pd.Index:
    """The labels written as strings."""
    return pd.Index([str(label) for label in index], dtype=object)


def _plain(label):
    """A label as Python values, so messages show ``(0, 'a')`` and not ``np.int64(0)``."""
    if isinstance(label, tuple):
        return tuple(_plain(part) for part in label)
    return label.item() if isinstance(label, np.generic) else label


def _same_index(a: pd.Index, b: pd.Index) -> bool:
    try:
        return bool(a.equals(b))
    except (TypeError, ValueError):
        return False


def _real_values(Y, name: str) -> np.ndarray:
    """``Y`` as a float64 (or bool/number) ndarray; a clear error for what is not real numbers."""
    if isinstance(Y, pd.DataFrame):
        non_numeric = [c for c, t in Y.dtypes.items()
                       if not pd.api.types.is_numeric_dtype(t)
                       or pd.api.types.is_complex_dtype(t)]
        if non_numeric:
            raise TypeError(
                f"{name} must be numeric; column(s) {non_numeric[:5]} are not."
            )
        # nullable columns (Float64, Int64) hold pd.NA: read it as NaN, reported below
        values = Y.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(Y, pd.Series):
        if pd.api.types.is_numeric_dtype(Y.dtype) and not pd.api.types.is_complex_dtype(Y.dtype):
            values = Y.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = Y.to_numpy()
    else:
        if sparse.issparse(Y):
            Y = Y.toarray()
        try:
            values = np.asarray(Y)
        except (TypeError, ValueError) as exc:  # ragged nested lists
            raise ValueError(
                f"{name} must be a 2-D array (n_rows, n_genes); could not read it as one "
                f"({type(Y).__name__})."
            ) from exc
    if np.issubdtype(values.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real numbers; got values of dtype {values.dtype}.")
    if values.dtype.kind in "mM":  # numpy would turn dates into day counts
        raise TypeError(f"{name} must be numeric; got values of dtype {values.dtype}.")
    if values.dtype == object or not (
        np.issubdtype(values.dtype, np.number) or values.dtype == bool
    ):
        try:
            if values.dtype == object:
                # None and pd.NA are missing values, reported as NaN below
                values = np.where(pd.isna(values), np.nan, values)
            values = values.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be numeric; got values of dtype {values.dtype}."
            ) from exc
    return values


def check_response(
    Y,
    n_rows: int | None = None,
    *,
    name: str = "Y",
    dtype=np.float32,
    index: pd.Index | None = None,
    against: str = "X",
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
        Values that are finite but beyond this type's range are refused with
        their own message (the cast would turn them into infinities).
    index : pandas.Index, optional
        Row index of the table ``Y`` describes; a DataFrame or Series ``Y`` is
        matched to it by label (see :func:`match_rows`).
    against : str, default="X"
        How that table is called in error messages.

    Returns
    -------
    Y_array : ndarray of shape (n_rows, n_genes)
        A copy in ``dtype``; the caller's object is never modified.
    gene_names : ndarray of object or None
        The column labels when ``Y`` is a DataFrame, else ``None``.
    """
    Y = match_rows(Y, index, name=name, against=against)
    gene_names = None
    if isinstance(Y, pd.DataFrame):
        gene_names = Y.columns.to_numpy(dtype=object, copy=True)
    values = _real_values(Y, name)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_rows, n_genes); got shape {values.shape}.")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(
            f"{name} is empty: got shape {values.shape}; it needs at least one row and one gene."
        )
    if n_rows is not None and values.shape[0] != n_rows:
        raise ValueError(
            f"{name} has {values.shape[0]} rows but the index table has {n_rows}; "
            "every row of the index table needs one row of effects (matched by index label "
            "for a DataFrame, by position for an array)."
        )
    # NaN and infinity are judged on the values as given; the cast to ``dtype``
    # may only add infinities for finite values beyond its range, reported apart.
    # Neither check copies the values to a wider type (an atlas's Y is gigabytes).
    bad = first_non_finite(values)
    if bad is not None:
        raise ValueError(
            f"{name} contains {bad[0]} NaN or infinite value(s) "
            f"(first at row {bad[1]}, column {bad[2]}); impute or drop them first."
        )
    with np.errstate(over="ignore"):
        out = np.array(values, dtype=dtype, copy=True)
    overflow = ~np.isfinite(out)
    if overflow.any():
        bad = np.argwhere(overflow)[0]
        raise ValueError(
            f"{name} has {int(overflow.sum())} value(s) beyond the {np.dtype(dtype).name} "
            f"range (largest magnitude {float(np.abs(values).max()):g}, first at row "
            f"{int(bad[0])}, column {int(bad[1])}); the model computes in "
            f"{np.dtype(dtype).name}: rescale the effects."
        )
    return out, gene_names


@dataclass(frozen=True)
class GeneMatch:
    """How the columns of an effect table match the genes of fit, by name.

    Attributes
    ----------
    positions : ndarray of int or None
        The column of each fit gene (-1 where a gene has none); ``None`` when
        the columns repeat a name, so that a name does not say which column.
    missing : list
        Fit genes that no column names.
    extra : list
        Columns that name no fit gene.
    repeated : bool
        Whether names repeat, among the columns or among the fit genes.
    """

    positions: np.ndarray | None
    missing: list
    extra: list
    repeated: bool


def match_genes(columns, genes) -> GeneMatch:
    """Match the column names of an effect table to the fit genes ``genes``.

    The one place that pairs columns with genes by name: the estimators'
    ``observed`` and the command line's observed file state their own
    rules (same count, or a superset) on the result.
    """
    columns = pd.Index(columns, dtype=object, tupleize_cols=False)
    genes = pd.Index(genes, dtype=object, tupleize_cols=False)
    positions = None if columns.has_duplicates else columns.get_indexer(genes)
    known_columns, known_genes = set(columns), set(genes)
    return GeneMatch(
        positions=positions,
        missing=[g for g in genes if g not in known_columns],
        extra=[c for c in columns if c not in known_genes],
        repeated=bool(columns.has_duplicates or genes.has_duplicates),
    )


def check_no_duplicate_pairs(contexts: np.ndarray, perturbations: np.ndarray) -> None:
    """Raise if a (context, perturbation) pair occurs more than once.

    The model treats each pair as one effect vector. Replicates should be
    averaged first, for example ``Y.groupby([X.context, X.perturbation]).mean()``.
    """
    n_repeated, examples = repeated_pairs(contexts, perturbations)
    if n_repeated:
        raise ValueError(
            f"{n_repeated} duplicated (context, perturbation) pair(s), e.g. {examples}. "
            "Average replicates first, e.g. "
            "Y.groupby([X['context'], X['perturbation']]).mean()."
        )


def repeated_pairs(contexts, perturbations, k: int = 3) -> tuple[int, list[tuple]]:
    """Rows that repeat an earlier (context, perturbation) pair: their count and ``k`` pairs.

    The one test of "one row per pair", shared by the estimators' contract
    and the command line's effect files (which word the error for a file).
    """
    pairs = pd.MultiIndex.from_arrays([np.asarray(contexts, dtype=object),
                                       np.asarray(perturbations, dtype=object)])
    dup = pairs.duplicated()
    return int(dup.sum()), list(pairs[dup].unique()[:k])


def first_non_finite(values: np.ndarray) -> tuple[int, int, int] | None:
    """``(count, row, column)`` of the NaN or infinite values of a 2-D array, else ``None``.

    The one test of finite effects, shared by the estimators' contract and
    the command line's effect files.
    """
    finite = np.isfinite(values)
    if finite.all():
        return None
    row, col = np.argwhere(~finite)[0]
    return int((~finite).sum()), int(row), int(col)
