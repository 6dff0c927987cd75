"""Single cells to pseudo-bulk effects: the streaming sums and pseudobulk()."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils._param_validation import (
    validate_params,
)

from .._warnings import user_stacklevel
from ._h5ad import (
    _VALUES_PER_BLOCK,
    _check_dtype,
    _DataChecks,
    _import_anndata,
    _iter_blocks,
    _matrix_format,
    _open_source,
    _Source,
    transform_block,
)
from ._hvg import _column_sums, _expm1_squares, select_genes
from ._options import PseudobulkOptions, PseudobulkReport, PseudobulkWarning
from ._plan import (
    _as_label_list,
    _labels_column,
    _Plan,
    _plan_groups,
)

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = ["pseudobulk"]

@validate_params(
    {
        "options": [PseudobulkOptions, None],
        "return_report": ["boolean"],
        "progress": [callable, None],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=True,
)
def pseudobulk(
    adata: AnnData | str | os.PathLike | Sequence[str | os.PathLike],
    context_key: Hashable,
    perturbation_key: Hashable,
    control: Hashable | Sequence[Hashable],
    options: PseudobulkOptions | None = None,
    *,
    return_report: bool = False,
    progress: Callable[[int, int], None] | None = None,
    n_jobs: int | None = None,
):
    """Pseudo-bulk single cells into per-context perturbation effects.

    For each (context, perturbation) pair the effect is the mean expression of
    its cells minus the mean expression of the control cells of the *same*
    context, gene by gene. The result is the package's data contract: an
    index table ``X`` and an effect matrix ``Y`` for
    :class:`~c3tl_sklearn.C3TLRegressor`.

    Parameters
    ----------
    adata : AnnData or str or os.PathLike
        Cells x genes. An in-memory :class:`anndata.AnnData` (dense or any
        scipy sparse matrix), one opened with ``anndata.read_h5ad(path,
        backed="r")``, or the path of an ``.h5ad`` file. For a path only the
        two label columns of ``obs``, the gene names and the chosen matrix are
        read, the matrix in blocks, so files larger than memory work. A list
        of paths, or a glob pattern such as ``"plates/*.h5ad"``: the cells of
        all the files (with the same genes), read ``n_jobs`` files at a time;
        a pair or a context's controls may span files, as the per-file sums
        are added before ``min_cells`` and the gene selection apply, so the
        result equals that of one file holding every cell. Never modified.
    context_key, perturbation_key : hashable
        Columns of ``adata.obs`` with the context (cell line, donor, ...) and
        the perturbation of each cell. Cells with a missing label are ignored
        (with a warning).
    control : hashable or list of hashable
        Label(s) of the control condition in ``obs[perturbation_key]`` (e.g.
        ``"DMSO"`` or ``["non-targeting", "safe-targeting"]``; a list pools
        several control labels). Must exist; the type matters (``"0"`` is
        not ``0``).
    options : PseudobulkOptions, optional
        How the cells become effects: the matrix (``layer``), its
        ``transform``, ``min_cells``, the gene selection (``n_top_genes``,
        ``hvg_on``) and the block size. ``None`` is ``PseudobulkOptions()``:
        ``adata.X`` as given, ``min_cells=10``, every gene.
    return_report : bool, default=False
        Also return a :class:`PseudobulkReport` (every group with its cell
        count and fate, the control means, the gene ranking; for several
        files the time and peak memory per file).
    progress : callable, optional
        Called as ``progress(done, total)`` after every block of the
        streaming pass, counted along the storage axis (cells for CSR and
        dense matrices, genes for CSC), for example to drive a progress bar
        (the ``c3tl pseudobulk`` command does); one source only.
    n_jobs : int, optional
        Several files: how many are read at once, through joblib (local
        processes, or a Dask or Ray cluster inside
        ``joblib.parallel_config(backend="dask")``). Each worker holds one
        block and the ``(n_groups, n_genes)`` float64 sums of its file.
        ``None`` is one at a time (unless a ``parallel_config`` says
        otherwise). Ignored for one source.

    Returns
    -------
    X : pandas.DataFrame of shape (n_pairs, 4)
        The index table: ``context``, ``perturbation`` (labels as in
        ``obs``, controls excluded), ``n_cells`` and ``n_control_cells``
        (extra columns are ignored by the estimators). Sorted by context,
        then perturbation; a fresh ``RangeIndex``.
    Y : pandas.DataFrame of shape (n_pairs, n_genes)
        Effects (float32), gene names as columns, same index as ``X``.
    report : PseudobulkReport
        Only with ``return_report=True``.

    Raises
    ------
    ValueError
        A missing obs column or layer, a control label that does not exist,
        no context with ``min_cells`` control cells, NaN or infinite values
        (the message names the first cell and gene), negative values with a
        ``transform``.
    TypeError
        A non-numeric matrix.

    Warns
    -----
    PseudobulkWarning
        Dropped pairs or contexts; unlabelled cells; duplicated gene names
        (made unique as anndata's ``var_names_make_unique`` does: ``"A"``,
        ``"A-1"``); data that look like raw counts (all values non-negative
        integers) with ``transform=None``.

    Notes
    -----
    Effects are differences of means of the values *as given*: of
    log-normalised expression, an effect is a log fold change of geometric
    means. Negative values (e.g. scaled data) are accepted and averaged like
    any others. Contexts that lack controls are dropped with a warning rather
    than an error, because a single unusable context should not sink a whole
    data set; with no usable context at all it is an error.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> import pandas as pd
    >>> from c3tl_sklearn.preprocessing import PseudobulkOptions, pseudobulk
    >>> obs = pd.DataFrame(
    ...     {"cell_line": ["A"] * 4 + ["B"] * 4, "drug": ["DMSO", "DMSO", "x", "x"] * 2},
    ...     index=[f"cell{i}" for i in range(8)],
    ... )
    >>> expr = np.array([[0.5, 1.0], [0.5, 1.0], [2.5, 1.0], [2.5, 3.0],
    ...                  [1.0, 0.5], [1.0, 0.5], [1.0, 2.5], [1.0, 2.5]], dtype=np.float32)
    >>> adata = ad.AnnData(expr, obs=obs, var=pd.DataFrame(index=["g1", "g2"]))
    >>> X, Y = pseudobulk(adata, "cell_line", "drug", "DMSO", PseudobulkOptions(min_cells=2))
    >>> X
      context perturbation  n_cells  n_control_cells
    0       A            x        2                2
    1       B            x        2                2
    >>> Y
        g1   g2
    0  2.0  1.0
    1  0.0  2.0
    """
    if context_key == perturbation_key:
        raise ValueError(
            f"context_key and perturbation_key are both {context_key!r}; they must be two "
            "different obs columns."
        )
    controls = _as_label_list(control)
    options = PseudobulkOptions() if options is None else options
    from ._multi import file_list, pseudobulk_files  # it builds on this module

    paths = file_list(adata)
    if paths is not None:
        return pseudobulk_files(paths, context_key, perturbation_key, controls, options,
                                return_report=return_report, n_jobs=n_jobs)
    source = _open_source(adata, options.layer)
    try:
        return _pseudobulk(source, context_key, perturbation_key, controls, options,
                           return_report=return_report, progress=progress)
    finally:
        source.close()


def _pseudobulk(source: _Source, context_key, perturbation_key, controls,
                options: PseudobulkOptions, *, return_report: bool, progress=None):
    matrix, fmt = _checked_matrix(source)
    genes = _unique_gene_names(source.var_names)
    plan = _plan_groups(
        source.column(context_key), source.column(perturbation_key), controls,
        options.min_cells, context_key, perturbation_key,
    )
    sums = _Sums(plan, source.n_obs, len(source.var_names), cell_stats=options.cell_stats)
    checks = _accumulate(sums, matrix, fmt, source, options, progress)
    if options.transform is None and checks.looks_like_counts:
        warnings.warn(
            f"{source.label} looks like raw counts (every value is a non-negative integer, "
            f"max {checks.max_value:g}). Effects are differences of means of the values as "
            "given; C3TL, like the paper, expects log-normalised expression. Pass "
            "transform='normalize_log1p' to normalise and log-transform on the fly, or "
            "layer=... to use a log-normalised layer.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )

    totals = _Totals(sums.sums, sums.s1, sums.s2)
    return _results(plan, totals, genes, options, looks_like_counts=checks.looks_like_counts,
                    return_report=return_report)


@dataclass(frozen=True)
class _Totals:
    """The kept groups' sums (plan row order) and the cells' per-gene moments, if kept."""

    group_sums: np.ndarray
    s1: np.ndarray | None  # per-gene sum of expm1 over the kept groups' cells
    s2: np.ndarray | None  # and of its square


def _results(plan: _Plan, totals: _Totals, genes: pd.Index, options: PseudobulkOptions, *,
             looks_like_counts: bool, return_report: bool, files=None):
    """``X``, ``Y`` (and the report) from the kept groups' sums, in the plan's row order."""
    n_top_genes = options.n_top_genes
    counts = np.concatenate([plan.pair_counts, plan.control_counts[plan.kept_contexts]])
    means = totals.group_sums / counts[:, None]
    control_means = means[plan.control_row_of_context[plan.pair_context]]
    effects = means[: plan.n_pairs] - control_means
    if n_top_genes is not None and n_top_genes > effects.shape[1]:
        warnings.warn(
            f"n_top_genes={n_top_genes} exceeds the {effects.shape[1]} genes of the data; "
            "keeping all genes.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )
    # the moments' cell count is the kept groups' cells: the counts the means divide by
    gene_stats, selected = select_genes(effects, totals.s1, totals.s2, float(counts.sum()),
                                        n_top_genes, options.hvg_on, genes)

    out_genes = genes[selected]
    X = pd.DataFrame(
        {
            "context": _labels_column(plan.contexts[plan.pair_context]),
            "perturbation": _labels_column(plan.perturbations[plan.pair_perturbation]),
            "n_cells": plan.pair_counts.astype(np.int64),
            "n_control_cells": plan.control_counts[plan.pair_context].astype(np.int64),
        }
    )
    Y = pd.DataFrame(effects[:, selected].astype(np.float32), columns=out_genes,
                     index=X.index)
    if not return_report:
        return X, Y
    control_mean = pd.DataFrame(
        means[plan.n_pairs:][:, selected].astype(np.float32),
        index=pd.Index(plan.contexts[plan.kept_contexts], name="context"),
        columns=out_genes,
    )
    report = PseudobulkReport(
        groups=plan.groups,
        control_mean=control_mean,
        gene_stats=gene_stats,
        looks_like_counts=looks_like_counts,
        n_cells_unlabelled=plan.n_unlabelled,
        files=files,
    )
    return X, Y, report


def _checked_matrix(source: _Source):
    """The source's matrix and its storage format (``"csr"``, ``"csc"`` or ``"dense"``)."""
    matrix = source.matrix
    shape = tuple(int(s) for s in matrix.shape)
    n_obs, n_vars = source.n_obs, len(source.var_names)
    if len(shape) != 2 or shape != (n_obs, n_vars):  # pragma: no cover - corrupt input
        raise ValueError(
            f"{source.label} has shape {shape}; expected ({n_obs} cells, {n_vars} genes)."
        )
    _check_dtype(matrix, source.label)
    fmt = _matrix_format(matrix)
    if fmt not in ("csr", "csc"):
        if sp.issparse(matrix):  # COO, LIL, ...: one CSR copy
            matrix, fmt = sp.csr_matrix(matrix), "csr"
        else:
            fmt = "dense"
    return matrix, fmt


class _Sums:
    """The float64 per-group sums (and per-gene moments for ``hvg_on="cells"``)."""

    def __init__(self, plan: _Plan, n_obs: int, n_vars: int, *, cell_stats: bool):
        self.plan = plan
        self.n_obs = n_obs
        self.n_groups = plan.n_pairs + plan.kept_contexts.size
        self.used = plan.cell_group >= 0
        self.sums = np.zeros((self.n_groups, n_vars), dtype=np.float64)
        self.cell_stats = cell_stats
        self.s1 = np.zeros(n_vars) if cell_stats else None
        self.s2 = np.zeros(n_vars) if cell_stats else None
        self._col_indicator = None
        self._as_float64 = _Float64Buffer()

    def add_rows(self, block, start: int, stop: int) -> None:
        """Add a block of cells (all genes)."""
        codes = self.plan.cell_group[start:stop]
        keep = codes >= 0
        if not keep.any():
            return
        rows_used, inverse = np.unique(codes[keep], return_inverse=True)
        indicator = sp.csr_matrix(
            (np.ones(inverse.size), (inverse, np.flatnonzero(keep))),
            shape=(rows_used.size, block.shape[0]),
        )
        _scatter_add(self.sums, indicator @ self._as_float64(block), rows_used, slice(None))
        if self.cell_stats:
            e, sq = _expm1_squares(block)
            w = keep.astype(np.float64)
            self.s1 += _column_sums(e, w)
            self.s2 += _column_sums(sq, w)

    def add_cols(self, block, start: int, stop: int) -> None:
        """Add a block of genes (all cells)."""
        used = self.used
        if self._col_indicator is None:
            self._col_indicator = sp.csr_matrix(
                (np.ones(int(used.sum())), (self.plan.cell_group[used], np.flatnonzero(used))),
                shape=(self.n_groups, self.n_obs),
            )
        _scatter_add(self.sums, self._col_indicator @ self._as_float64(block),
                     np.arange(self.n_groups), slice(start, stop))
        if self.cell_stats:
            e, sq = _expm1_squares(block)
            w = used.astype(np.float64)
            self.s1[start:stop] += _column_sums(e, w)
            self.s2[start:stop] += _column_sums(sq, w)


def _accumulate(sums: _Sums, matrix, fmt: str, source: _Source, options: PseudobulkOptions,
                progress=None) -> _DataChecks:
    """Stream the matrix once (twice for CSC with normalisation) into ``sums``."""
    n_obs, n_vars = source.n_obs, len(source.var_names)
    transform, target_sum, chunk_size = options.transform, options.target_sum, options.chunk_size
    totals = None
    if transform == "normalize_log1p" and fmt == "csc":
        # column blocks cannot see a cell's total: one cheap first pass for them
        totals = np.zeros(n_obs)
        for _, _, _, block in _iter_blocks(matrix, fmt, n_obs, n_vars, chunk_size):
            totals += np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
    checks = _DataChecks(source)
    for axis, start, stop, block in _iter_blocks(matrix, fmt, n_obs, n_vars, chunk_size):
        checks.update(block, axis, start)
        if transform is not None and checks.any_negative:
            raise ValueError(
                f"{source.label} has negative values, so transform={transform!r} (meant for "
                "raw counts) does not apply. Use transform=None for data that are already "
                "normalised."
            )
        if axis == "rows":
            sums.add_rows(transform_block(block, transform, target_sum), start, stop)
        else:
            sums.add_cols(transform_block(block, transform, target_sum, totals), start, stop)
        if progress is not None:
            progress(stop, n_obs if axis == "rows" else n_vars)
    return checks


class _Float64Buffer:
    """Float64 copies of sparse block values in one reused buffer.

    scipy's ``astype`` also copies the index arrays, and a fresh ~100 MB array
    per block costs page faults every time; sharing the indices and reusing
    one buffer avoids both.
    """

    def __init__(self):
        self._buffer = np.empty(0)

    def __call__(self, block):
        if not sp.issparse(block):
            return block.astype(np.float64, copy=False)
        if block.dtype == np.float64:
            return block
        n = block.data.size
        if self._buffer.size < n:
            self._buffer = np.empty(n)
        data = self._buffer[:n]
        np.copyto(data, block.data, casting="unsafe")
        return type(block)((data, block.indices, block.indptr), shape=block.shape, copy=False)


def _scatter_add(sums: np.ndarray, result, rows: np.ndarray, cols: slice) -> None:
    """``sums[rows, cols] += result`` for a dense or sparse product ``result``."""
    if sp.issparse(result):
        if result.shape[0] * result.shape[1] <= _VALUES_PER_BLOCK:
            sums[rows, cols] += result.toarray()
        else:  # a sparse product has no duplicate entries: scatter them directly
            coo = result.tocoo()
            sums[rows[coo.row], coo.col + (cols.start or 0)] += coo.data
    else:
        sums[rows, cols] += np.asarray(result)


def _unique_gene_names(var_names: pd.Index) -> pd.Index:
    names = pd.Index(var_names).astype(str)
    if names.is_unique:
        return names
    dup = list(pd.unique(names[names.duplicated()]))
    anndata = _import_anndata()
    unique = pd.Index(anndata.utils.make_index_unique(names))
    warnings.warn(
        f"{len(dup)} gene name(s) occur more than once (e.g. {dup[:5]}); they were made "
        "unique by appending '-1', '-2', ... as anndata's var_names_make_unique does. "
        "Call adata.var_names_make_unique() first to choose yourself.",
        PseudobulkWarning,
        stacklevel=user_stacklevel(),
    )
    return unique


