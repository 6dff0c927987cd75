"""Files of the ``c3tl`` command: effect tables and AnnData in, effects, models and scores out."""

from __future__ import annotations

import os
import sys
from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from .._contract import first_non_finite, repeated_pairs
from ._errors import CommandError
from ._io import BenchmarkDataError, _suffix, gene_matrix, read_frame

__all__ = ["CommandError", "check_output", "read_effects", "read_pairs", "write_effects"]

_TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def _require_file(path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CommandError(f"the {what} file {str(p)!r} does not exist; check the path.")
    if p.is_dir():
        raise CommandError(f"the {what} path {str(p)!r} is a folder; pass a file.")
    return p


def _read_h5ad(path: Path, what: str):
    try:
        import anndata
    except ImportError as exc:
        raise CommandError(
            f"reading the {what} file {str(path)!r} needs anndata: "
            "pip install c3tl-sklearn[anndata]."
        ) from exc
    try:
        return anndata.read_h5ad(path)
    except Exception as exc:  # h5py and anndata raise many types for a bad file
        raise CommandError(
            f"the {what} file {str(path)!r} is not a readable .h5ad file "
            f"({type(exc).__name__}: {exc}); pass an AnnData written by anndata or scanpy."
        ) from None


def _check_columns(frame: pd.DataFrame, columns: Sequence[Hashable], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(repr(str(c)) for c in list(frame.columns)[:12])
        more = " ..." if len(frame.columns) > 12 else ""
        raise CommandError(
            f"{source} has no column {', '.join(repr(str(c)) for c in missing)} (its columns: "
            f"{shown}{more}); name the label columns with --context-col and "
            "--perturbation-col."
        )


def read_effects(
    path: str | os.PathLike,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
    *,
    what: str = "effects",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read effects: an ``.h5ad`` AnnData (obs = index table, var = genes) or a table.

    A table (CSV, TSV or Parquet) has the two label columns and one numeric
    column per gene: every other column is a gene.

    Parameters
    ----------
    path : path
        The file.
    context_col, perturbation_col : hashable
        Label columns (``obs`` columns of an AnnData).
    what : str, default="effects"
        How error messages name the file.

    Returns
    -------
    X : pandas.DataFrame
        The two label columns, a fresh ``RangeIndex``.
    Y : pandas.DataFrame
        float32 effects with the gene names as columns, same index as ``X``.

    Raises
    ------
    CommandError
        A missing or unreadable file, missing label columns, non-numeric or
        non-finite effects, or repeated (context, perturbation) pairs, which
        is what single cells look like (they are pseudo-bulked first).
    """
    if context_col == perturbation_col:
        raise CommandError(
            f"--context-col and --perturbation-col both name the column {str(context_col)!r}; "
            "give the context and the perturbation column each its own name."
        )
    p = _require_file(path, what)
    if _suffix(p) == ".h5ad":
        adata = _read_h5ad(p, what)
        obs = adata.obs.reset_index(drop=True)
        _check_columns(obs, [context_col, perturbation_col], f"the {what} file {str(p)!r}")
        values = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        Y = pd.DataFrame(values, columns=pd.Index([str(g) for g in adata.var_names]))
    elif _suffix(p) in _TABLE_SUFFIXES:
        try:
            frame = read_frame(p, what)
        except BenchmarkDataError as exc:
            raise CommandError(str(exc)) from None
        _check_columns(frame, [context_col, perturbation_col], f"the {what} file {str(p)!r}")
        obs = frame
        try:
            Y = gene_matrix(
                frame.drop(columns=[context_col, perturbation_col]), str(p),
                "Every column other than the two label columns must be a gene; drop the "
                "others.",
            )
        except BenchmarkDataError as exc:
            raise CommandError(str(exc)) from None
    else:
        raise CommandError(
            f"cannot read the {what} file {str(p)!r}: use .h5ad, .csv, .tsv or .parquet."
        )
    X = pd.DataFrame({context_col: obs[context_col].to_numpy(),
                      perturbation_col: obs[perturbation_col].to_numpy()})
    _check_effects(X, Y, str(p), context_col, perturbation_col)
    Y = Y.astype(np.float32)
    Y.columns.name = None
    return X, Y


def _check_effects(X, Y, source, context_col, perturbation_col) -> None:
    """Labels present, one row per pair, finite values: the contract of an effect file."""
    # a table's labels are text, so an empty cell is the empty string, not NaN
    if (X[[context_col, perturbation_col]].isna().any().any()
            or X[[context_col, perturbation_col]].isin([""]).any().any()):
        raise CommandError(f"{source}: some rows have no context or perturbation label; "
                           "fill or drop them.")
    n_repeated, examples = repeated_pairs(X[context_col], X[perturbation_col], k=1)
    if n_repeated:
        context, perturbation = examples[0]
        raise CommandError(
            f"{source} has {n_repeated} repeated (context, perturbation) pair(s), e.g. "
            f"({context!r}, {perturbation!r}); an effect file has one row "
            "per pair. Single cells? Run `c3tl pseudobulk` on them first."
        )
    if not Y.columns.is_unique:
        raise CommandError(f"{source}: gene names are repeated; make them unique.")
    bad = first_non_finite(Y.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad is not None:
        _, row, col = bad
        raise CommandError(
            f"{source}: the effects hold NaN or infinite values (first at row {row}, gene "
            f"{Y.columns[col]!r}); remove or impute them."
        )


def read_pairs(path: str | os.PathLike, context_col: Hashable,
               perturbation_col: Hashable) -> pd.DataFrame:
    """The (context, perturbation) pairs of a table or of an AnnData's ``obs``.

    Other columns (genes of an effect file, cell counts, ...) are ignored, so
    a truth file can serve as its own list of pairs.
    """
    p = _require_file(path, "pairs")
    if _suffix(p) == ".h5ad":
        frame = _read_h5ad(p, "pairs").obs.reset_index(drop=True)
    else:
        try:
            frame = read_frame(p, "pairs")
        except BenchmarkDataError as exc:
            raise CommandError(str(exc)) from None
    _check_columns(frame, [context_col, perturbation_col], f"the pairs file {str(p)!r}")
    pairs = frame[[context_col, perturbation_col]].reset_index(drop=True)
    if pairs.isna().any().any() or pairs.isin([""]).any().any():
        raise CommandError(f"the pairs file {str(p)!r} has rows without a context or "
                           "perturbation label; fill or drop them.")
    return pairs


def same_path(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two names are one file: the same file when both exist, else the same path."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(out: str | os.PathLike, inputs: Sequence, suffixes: Sequence[str] | None,
                 what: str, *, flag: str = "-o", outputs: dict | None = None) -> Path:
    """Check an output path: a known suffix (any with ``None``), an existing folder, no input.

    Writing over an input would destroy the user's data, so it is refused
    rather than trusted to be intended; so is one output written over
    another (``outputs``: the command's other outputs, by flag).
    """
    p = Path(out)
    if p.is_dir():
        example = p / ("model.c3tl" if suffixes is None else f"{what}{suffixes[0]}")
        raise CommandError(f"{flag} {str(p)!r} is a folder; give a file name, e.g. "
                           f"{str(example)!r}.")
    if suffixes is not None and _suffix(p) not in suffixes:
        raise CommandError(
            f"cannot write the {what} as {str(p)!r}: end the name with "
            f"{' or '.join(suffixes)}."
        )
    if not p.parent.exists():
        raise CommandError(f"the folder of {str(p)!r} does not exist; create it first.")
    for source in inputs:
        if source is not None and Path(source).exists() and same_path(p, source):
            raise CommandError(
                f"{flag} {str(p)!r} is also an input file; choose another output name (inputs "
                "are never overwritten)."
            )
    for other_flag, other in (outputs or {}).items():
        if other is not None and same_path(p, other):
            raise CommandError(f"{flag} {str(p)!r} is also the {other_flag} file; give each "
                               "output its own name.")
    return p


def write_effects(X: pd.DataFrame, Y, genes, path: Path, *,
                  context_col: Hashable = "context",
                  perturbation_col: Hashable = "perturbation", uns: dict | None = None) -> None:
    """Write effects as ``.h5ad`` (obs = ``X``, var = genes) or as one table with the labels.

    The file is written next to its final name and renamed into place, so an
    interrupted run leaves no half-written output.
    """
    with atomic_path(path) as tmp:
        if _suffix(path) == ".h5ad":
            from ..preprocessing import to_anndata

            adata = to_anndata(X, np.asarray(Y), genes=genes, context_col=context_col,
                               perturbation_col=perturbation_col)
            adata.uns.update(uns or {})
            adata.write_h5ad(tmp)
        else:
            table = pd.concat([X.reset_index(drop=True), pd.DataFrame(
                np.asarray(Y), columns=[str(g) for g in genes])], axis=1)
            _write_table(table, tmp, _suffix(path))


def _write_table(table: pd.DataFrame, path: Path, suffix: str) -> None:
    if suffix in (".parquet", ".pq"):
        try:
            table.to_parquet(path, index=False)
        except ImportError as exc:
            raise CommandError(
                f"writing Parquet needs pyarrow ({exc}); pip install pyarrow, or use .csv."
            ) from None
    else:
        sep = "\t" if suffix == ".tsv" else ","
        table.to_csv(path, index=False, sep=sep)  # compression from the suffix


def say(message: str, quiet: bool = False) -> None:
    """A status line on stderr (stdout is kept for results)."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
