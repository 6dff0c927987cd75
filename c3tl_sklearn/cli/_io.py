"""Data for the benchmark: tables and .h5ad files, read and checked through the input contract."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pandas as pd

from .._contract import check_index_table, check_no_duplicate_pairs, check_response
from .._labels import unique_labels
from ._config import H5adCells

__all__ = ["BenchmarkDataError", "check_benchmark_data", "gene_matrix", "load_benchmark_data",
           "read_frame"]


class BenchmarkDataError(ValueError):
    """The benchmark's input data cannot be used; the message says why."""


def _suffix(path) -> str:
    """The format suffix of ``path``, ignoring a compression suffix (``x.csv.gz`` is ``.csv``)."""
    name = Path(path).name.lower()
    for compression in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(compression):
            name = name[: -len(compression)]
    return Path(name).suffix


def read_frame(path, what: str) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file into a DataFrame, with clear errors."""
    p = Path(path)
    if not p.exists():
        raise BenchmarkDataError(f"The {what} file {str(p)!r} does not exist.")
    if p.is_dir():
        raise BenchmarkDataError(f"The {what} path {str(p)!r} is a folder, not a file.")
    suffix = _suffix(p)
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            frame = _read_text_table(p, what, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(p)
        elif suffix == ".h5ad":
            raise BenchmarkDataError(
                f"{str(p)!r} is an .h5ad file: pass it with --h5ad together with "
                "--context-key, --perturbation-key and --control."
            )
        else:
            raise BenchmarkDataError(
                f"Cannot read the {what} file {str(p)!r}: use .csv, .tsv or .parquet."
            )
    except BenchmarkDataError:
        raise
    except ImportError as exc:
        raise BenchmarkDataError(
            f"Reading {str(p)!r} needs an optional dependency ({exc}); "
            "pip install c3tl-sklearn[benchmark]"
        ) from exc
    except Exception as exc:
        raise BenchmarkDataError(
            f"Cannot parse the {what} file {str(p)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if len(frame.columns) and str(frame.columns[0]).startswith("Unnamed: 0"):
        frame = frame.drop(columns=frame.columns[0])  # an index written by DataFrame.to_csv
    if frame.empty:
        raise BenchmarkDataError(f"The {what} file {str(p)!r} has no rows.")
    return frame


#: Cells of a gene column read as a missing value (then refused as NaN, with the fix).
_MISSING_TEXT = frozenset({"", "NA", "N/A", "NaN", "nan", "NULL", "null", "None", "<NA>"})


def _read_text_table(path: Path, what: str, sep: str) -> pd.DataFrame:
    """A CSV/TSV with every cell as the text written: ``001``, ``NA`` and ``None`` stay labels.

    pandas would make ``001`` the number 1 (so ``1`` and ``01`` collide), ``NA`` a
    missing value and a repeated header ``gene`` into ``gene.1``; labels are text,
    and numbers are parsed later, only in the gene columns. Only an empty cell
    is missing.
    """
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str,
                         keep_default_na=False, na_filter=False)
    names = [str(v) for v in header.iloc[0].tolist()] if len(header) else []
    seen: dict[str, int] = {}
    repeated = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        if seen[name] == 2 and name != "":
            repeated.append(name)
    if repeated:
        shown = ", ".join(repr(n) for n in repeated[:8]) + (" ..." if len(repeated) > 8 else "")
        raise BenchmarkDataError(
            f"The {what} file {str(path)!r} repeats the column name(s) {shown}; every column "
            "needs its own name (a gene measured twice: keep one column or rename one)."
        )
    # only an empty cell is missing (a label nobody can have); "NA" is text
    return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])


def _as_numbers(column: pd.Series) -> pd.Series | None:
    """A gene column as float64 (text cells parsed, missing markers as NaN); ``None`` if not."""
    if pd.api.types.is_bool_dtype(column):
        return None
    if pd.api.types.is_numeric_dtype(column):
        return column
    text = column.astype(str).str.strip()
    text = text.mask(text.isin(_MISSING_TEXT), "nan")
    try:
        return text.astype(np.float64)
    except (TypeError, ValueError):
        return None


def gene_matrix(frame: pd.DataFrame, source: str, hint: str) -> pd.DataFrame:
    numbers = {}
    bad = []
    for position, c in enumerate(frame.columns):
        converted = _as_numbers(frame.iloc[:, position])
        if converted is None:
            bad.append(c)
        else:
            numbers[position] = converted.to_numpy()
    if bad:
        shown = ", ".join(repr(c) for c in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise BenchmarkDataError(
            f"{source}: {len(bad)} column(s) are not numeric but every effect column must "
            f"be a gene: {shown}. {hint}"
        )
    genes = pd.DataFrame({i: v.astype(np.float32) for i, v in numbers.items()})
    genes.columns = pd.Index([str(c) for c in frame.columns], name="gene")
    return genes.reset_index(drop=True)


def check_benchmark_data(
    X: pd.DataFrame,
    Y,
    *,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
    source: str = "data",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check an index table and effect matrix for the benchmark; return clean copies.

    Parameters
    ----------
    X : pandas.DataFrame
        Index table with ``context_col`` and ``perturbation_col``.
    Y : array-like or DataFrame of shape (n_rows, n_genes)
        Effects, row ``i`` for row ``i`` of ``X``.
    context_col, perturbation_col : hashable
        Label columns of ``X``.
    source : str, default="data"
        How to name the data in error messages (for example a file name).

    Returns
    -------
    X : pandas.DataFrame
        The two label columns (labels as given), a fresh ``RangeIndex``.
    Y : pandas.DataFrame
        float32 effects with string gene names.

    Raises
    ------
    BenchmarkDataError
        Missing columns, a row-count mismatch, non-numeric or non-finite
        effects, fewer than 2 genes, missing labels, repeated (context,
        perturbation) pairs, or fewer than two contexts.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.cli import check_benchmark_data
    >>> X = pd.DataFrame({"context": ["a", "a"], "perturbation": ["p", "q"]})
    >>> check_benchmark_data(X, np.zeros((2, 3)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    c3tl_sklearn.cli._io.BenchmarkDataError: data: only one context ('a'); ...
    """
    if isinstance(Y, pd.DataFrame):
        Y = gene_matrix(Y, source, "Drop metadata columns from the effect matrix.")
    try:
        contexts, perturbations = check_index_table(
            X, context_col, perturbation_col, name="the index table",
            column_hint="Name the label columns with --context-col and --perturbation-col.",
        )
        check_no_duplicate_pairs(contexts, perturbations)
        values, _ = check_response(Y, n_rows=len(contexts), name="the effect matrix")
    except (TypeError, ValueError) as exc:
        raise BenchmarkDataError(f"{source}: {exc}") from exc
    if not isinstance(Y, pd.DataFrame):
        Y = pd.DataFrame(values, columns=pd.Index(
            [f"gene{i}" for i in range(values.shape[1])], name="gene"))
    if Y.shape[1] < 2:
        raise BenchmarkDataError(
            f"{source}: the effects have {Y.shape[1]} gene column(s); the correlation "
            "metrics need at least 2 genes."
        )
    if len(unique_labels(contexts)) < 2:
        raise BenchmarkDataError(
            f"{source}: only one context ({contexts[0]!r}); a held-out-context benchmark "
            "needs at least 2 contexts (3 with tuning). Is --context-col the right column?"
        )
    return X[[context_col, perturbation_col]].reset_index(drop=True), Y


def load_benchmark_data(
    data: str | os.PathLike | None = "lincs",
    *,
    index: str | os.PathLike | None = None,
    effects: str | os.PathLike | None = None,
    h5ad: H5adCells | None = None,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
    synthetic_shape: tuple[int, int, int] = (6, 60, 50),
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Load the benchmark's data from one of the supported sources.

    Parameters
    ----------
    data : {"lincs", "synthetic"} or path, default="lincs"
        The shipped LINCS knockdowns, a synthetic draw, or one table (CSV,
        TSV or Parquet) with the label columns and one numeric column per
        gene. Ignored when ``index``/``effects`` or ``h5ad`` is given.
    index, effects : path, optional
        An index table and a row-aligned effect matrix (both CSV/TSV/Parquet).
    h5ad : H5adCells, optional
        Single cells (a file, or a glob pattern such as ``"plates/*.h5ad"``:
        the cells of all its files) with their obs keys, control label and
        :class:`~c3tl_sklearn.preprocessing.PseudobulkOptions`, pseudo-bulked
        with :func:`c3tl_sklearn.preprocessing.pseudobulk`.
    context_col, perturbation_col : hashable
        Label columns of a table (``index`` or ``data``).
    synthetic_shape : (int, int, int), default=(6, 60, 50)
        Contexts, perturbations, genes of the synthetic draw.
    seed : int, default=0
        Seed of the synthetic draw.

    Returns
    -------
    X : pandas.DataFrame
        Index table with the columns ``"context"`` and ``"perturbation"``
        (renamed from ``context_col`` and ``perturbation_col``).
    Y : pandas.DataFrame
        float32 effects, gene names as columns.
    description : str
        One line describing the data, for the report.

    Raises
    ------
    BenchmarkDataError
        For an unreadable or invalid file (see :func:`check_benchmark_data`).

    Examples
    --------
    >>> from c3tl_sklearn.cli import load_benchmark_data
    >>> X, Y, text = load_benchmark_data("synthetic", synthetic_shape=(3, 10, 5))
    >>> X.shape, Y.shape, text
    ((30, 2), (30, 5), 'synthetic: 3 contexts x 10 perturbations x 5 genes (seed 0)')
    """
    if h5ad is not None:
        return _load_h5ad(h5ad)
    if (index is None) != (effects is None):
        raise BenchmarkDataError("--index and --effects must be given together.")
    if index is not None:
        X = read_frame(index, "index")
        Y = gene_matrix(
            read_frame(effects, "effects"), str(effects),
            "The effect matrix must hold only gene columns; put labels in the index file.",
        )
        X, Y = check_benchmark_data(
            X, Y, context_col=context_col, perturbation_col=perturbation_col,
            source=f"{index} + {effects}",
        )
        return _standard_labels(X, context_col, perturbation_col), Y, (
            f"index {index} + effects {effects}"
        )
    if data is None or str(data) == "lincs":
        from ..datasets import load_lincs_knockdowns

        X, Y = load_lincs_knockdowns()
        return X, Y, "LINCS L1000 shRNA knockdowns in six cell lines (shipped with the package)"
    if str(data) == "synthetic":
        from ..datasets import make_synthetic_perturbations

        c, p, g = (int(v) for v in synthetic_shape)
        X, Y = make_synthetic_perturbations(c, p, g, random_state=seed)
        return X, Y, f"synthetic: {c} contexts x {p} perturbations x {g} genes (seed {seed})"
    frame = read_frame(data, "data")
    missing = [c for c in (context_col, perturbation_col) if c not in frame.columns]
    if missing:
        raise BenchmarkDataError(
            f"{data}: missing column(s) {missing}; the columns are "
            f"{list(frame.columns)[:20]}{' ...' if len(frame.columns) > 20 else ''}. Name the "
            "label columns with --context-col and --perturbation-col."
        )
    Y = gene_matrix(
        frame.drop(columns=[context_col, perturbation_col]), str(data),
        "In a single table every column other than the context and perturbation columns "
        "is a gene; drop metadata columns or use --index and --effects.",
    )
    X, Y = check_benchmark_data(
        frame, Y, context_col=context_col, perturbation_col=perturbation_col, source=str(data)
    )
    return _standard_labels(X, context_col, perturbation_col), Y, f"table {data}"


def _load_h5ad(cells: H5adCells):
    """Pseudo-bulk an .h5ad file of single cells (see :func:`load_benchmark_data`)."""
    h5ad, context_key, perturbation_key, control = (
        cells.path, cells.context_key, cells.perturbation_key, cells.control)
    if context_key is None or perturbation_key is None or control is None:
        raise BenchmarkDataError(
            "--h5ad needs --context-key, --perturbation-key and --control (the obs "
            "columns with the labels and the control label)."
        )
    # a glob pattern names several files (plates of an atlas), pseudo-bulked together
    if not Path(h5ad).exists() and not glob.has_magic(os.fspath(h5ad)):
        raise BenchmarkDataError(f"The .h5ad file {str(h5ad)!r} does not exist.")
    from ..preprocessing import pseudobulk

    try:
        X, Y = pseudobulk(os.fspath(h5ad), context_key, perturbation_key, control,
                          cells.options)
    except (ValueError, TypeError, ImportError, KeyError) as exc:
        raise BenchmarkDataError(f"{h5ad}: {exc}") from exc
    description = (
        f"{h5ad}, pseudo-bulked by obs[{context_key!r}] x obs[{perturbation_key!r}] "
        f"against control {control!r}"
    )
    X, Y = check_benchmark_data(X, Y, source=str(h5ad))
    return X, Y, description


def _standard_labels(X: pd.DataFrame, context_col, perturbation_col) -> pd.DataFrame:
    out = pd.DataFrame({"context": X[context_col].to_numpy(),
                        "perturbation": X[perturbation_col].to_numpy()})
    return out


def _read_params_file(path) -> dict[str, dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            content = json.load(fh)
    except FileNotFoundError as exc:
        raise BenchmarkDataError(f"The parameter file {str(path)!r} does not exist.") from exc
    except json.JSONDecodeError as exc:
        raise BenchmarkDataError(f"The parameter file {str(path)!r} is not JSON: {exc}") from exc
    models = content.get("models", content) if isinstance(content, dict) else None
    if not isinstance(models, dict):
        raise BenchmarkDataError(
            f"The parameter file {str(path)!r} must map model names to parameters (as the "
            "params.json a benchmark writes)."
        )
    out = {}
    for name, entry in models.items():
        params = entry.get("params", entry) if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            raise BenchmarkDataError(f"{path}: the parameters of {name!r} are not a dict.")
        out[name] = params
    return out
