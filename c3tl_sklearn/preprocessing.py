"""From single cells to pseudo-bulk effects, and from predictions back to AnnData.

C3TL works on *effects*: for a perturbation ``p`` in a context ``c`` (a cell
line, donor, cell type), the mean expression of the cells that received ``p``
in ``c`` minus the mean expression of the control cells of the same context.
:func:`pseudobulk` turns a single-cell :class:`anndata.AnnData` (in memory,
opened with ``backed="r"``, or a path to an ``.h5ad`` file larger than memory)
into the package's data contract: an index table ``X`` and an effect matrix
``Y``. :func:`to_anndata` packs predictions into an AnnData so that they drop
into scanpy plotting and cell-eval-style tools.

anndata (and, for the tests, scanpy) are optional dependencies::

    pip install c3tl-sklearn[anndata]

How the aggregation works
-------------------------
Per-group sums are a product ``G @ X`` of a sparse indicator matrix ``G``
(groups x cells, one 1 per cell) with the expression matrix. This is what
:func:`scanpy.get.aggregate` does in memory; here the product is taken one
block of rows at a time (one block of columns for CSC storage), so a sparse
matrix is never densified and a backed file is never loaded whole. Working
memory is one block plus the ``(n_groups, n_genes)`` float64 accumulator, plus
the two label columns of ``obs`` and about ten bytes of group codes per cell.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._data import check_index_table, check_response, sorted_codes

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = ["PseudobulkReport", "PseudobulkWarning", "pseudobulk", "to_anndata"]

_INSTALL_HINT = "pip install c3tl-sklearn[anndata]"
_HVG_ON = ("effects", "cells")
_TRANSFORMS = (None, "log1p", "normalize_log1p")
# Default block size: about this many stored values (non-zeros for sparse data)
# per block, i.e. ~64 MB of float32 values plus indices and a float64 copy.
_VALUES_PER_BLOCK = 2**24
# Up to this many possible (context, perturbation) pairs, pairs are counted with
# a table over all of them; beyond it, by sorting the observed ones.
_MAX_DENSE_PAIR_CODES = 50_000_000


class PseudobulkWarning(UserWarning):
    """Raised by :func:`pseudobulk` for dropped groups or data that look suspicious.

    Filter it like any warning, e.g.
    ``warnings.simplefilter("ignore", PseudobulkWarning)``.
    """


@dataclass(frozen=True)
class PseudobulkReport:
    """What :func:`pseudobulk` did, returned with ``return_report=True``.

    Attributes
    ----------
    groups : pandas.DataFrame
        One row per (context, perturbation) group present in the data,
        controls included, with columns ``context``, ``perturbation``,
        ``n_cells``, ``is_control`` and ``status``: ``"kept"`` (a row of
        ``X``/``Y``, or a control used as reference), ``"too_few_cells"``
        (fewer than ``min_cells`` cells), or ``"no_control"`` (the context has
        fewer than ``min_cells`` control cells, so no effect can be formed).
    control_mean : pandas.DataFrame
        Mean expression of the control cells, one row per context that was
        kept, one column per returned gene. Adding it to an effect gives
        back the mean expression of the perturbed cells.
    gene_stats : pandas.DataFrame or None
        With ``n_top_genes``: one row per gene of the data (in the data's
        order) with the ranking ``score`` and a ``selected`` flag (plus
        ``mean`` and ``variance`` for ``hvg_on="cells"``). ``None`` otherwise.
    looks_like_counts : bool
        Whether every value read was a non-negative integer (raw counts).
    n_cells_unlabelled : int
        Cells ignored because their context or perturbation label is missing.
    """

    groups: pd.DataFrame
    control_mean: pd.DataFrame
    gene_stats: pd.DataFrame | None
    looks_like_counts: bool
    n_cells_unlabelled: int


# ----------------------------------------------------------------------------
# Optional dependencies
# ----------------------------------------------------------------------------
def _import_anndata():
    try:
        import anndata
    except ImportError as exc:  # pragma: no cover - exercised with a monkeypatch
        raise ImportError(
            "This function needs the optional dependency anndata: " + _INSTALL_HINT
        ) from exc
    return anndata


def _import_h5py():
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "Reading .h5ad files needs the optional dependency h5py: " + _INSTALL_HINT
        ) from exc
    return h5py


def _anndata_io(anndata):
    """``(read_elem, sparse_dataset)`` across anndata 0.10 (experimental) and >= 0.11 (io)."""
    io = getattr(anndata, "io", None)
    if io is not None and hasattr(io, "read_elem") and hasattr(io, "sparse_dataset"):
        return io.read_elem, io.sparse_dataset
    from anndata import experimental  # pragma: no cover - anndata 0.10

    return experimental.read_elem, experimental.sparse_dataset  # pragma: no cover


# ----------------------------------------------------------------------------
# Where the cells come from: an AnnData (in memory or backed) or an .h5ad path
# ----------------------------------------------------------------------------
class _Source:
    """Uniform access to obs columns, gene names and the expression matrix."""

    def __init__(self, *, matrix, n_obs, var_names, label, columns, get_column, obs_name,
                 close=None):
        self.matrix = matrix
        self.n_obs = int(n_obs)
        self.var_names = var_names
        self.label = label
        self.columns = columns
        self._get_column = get_column
        self._obs_name = obs_name
        self._close = close

    def column(self, key: Hashable) -> pd.Series:
        if key not in self.columns:
            shown = list(self.columns)[:20]
            raise ValueError(
                f"obs has no column {key!r}; available columns: {shown}"
                + (" ..." if len(self.columns) > 20 else "")
                + ". Pass the obs column that holds the labels."
            )
        values = self._get_column(key)
        if len(values) != self.n_obs:  # pragma: no cover - corrupt files
            raise ValueError(f"obs[{key!r}] has {len(values)} entries for {self.n_obs} cells.")
        return values

    def obs_name(self, i: int) -> str:
        try:
            return str(self._obs_name(i))
        except Exception:  # pragma: no cover - only used for messages
            return f"#{i}"

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _open_source(adata, layer: str | None) -> _Source:
    if isinstance(adata, (str, os.PathLike)):
        return _open_h5ad(os.fspath(adata), layer)
    anndata = _import_anndata()
    if not isinstance(adata, anndata.AnnData):
        raise TypeError(
            "adata must be an anndata.AnnData (in memory or opened with backed='r') or "
            f"the path of an .h5ad file; got {type(adata).__name__}."
        )
    if layer is None:
        matrix, label = adata.X, "adata.X"
        if matrix is None:
            raise ValueError("adata.X is None; pass layer=... to use a layer instead.")
    else:
        if layer not in adata.layers:
            raise ValueError(
                f"adata has no layer {layer!r}; its layers are {list(adata.layers.keys())}."
            )
        matrix, label = adata.layers[layer], f"adata.layers[{layer!r}]"
    obs = adata.obs
    obs_names = adata.obs_names
    return _Source(
        matrix=matrix,
        n_obs=adata.n_obs,
        var_names=pd.Index(adata.var_names),
        label=label,
        columns=list(obs.columns),
        get_column=lambda key: obs[key],
        obs_name=lambda i: obs_names[i],
    )


def _open_h5ad(path: str, layer: str | None) -> _Source:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such .h5ad file: {path!r}.")
    if os.path.isdir(path):
        raise ValueError(
            f"{path!r} is a directory (a zarr store?); pseudobulk reads .h5ad files from a "
            "path. Open other stores with anndata and pass the AnnData."
        )
    anndata = _import_anndata()
    h5py = _import_h5py()
    read_elem, sparse_dataset = _anndata_io(anndata)
    f = h5py.File(path, "r")
    try:
        if not all(k in f and "_index" in f[k].attrs for k in ("obs", "var")):
            raise ValueError(
                f"{path!r} does not look like an AnnData .h5ad file written by anndata "
                ">= 0.8 (no obs/var groups with an index); re-save it with a current anndata."
            )
        obs_group, var_group = f["obs"], f["var"]
        obs_index_key = obs_group.attrs["_index"]
        var_names = pd.Index(np.asarray(read_elem(var_group[var_group.attrs["_index"]])))
        if layer is None:
            if "X" not in f:
                raise ValueError(f"{path!r} has no X; pass layer=... to use a layer.")
            elem, label = f["X"], f"X of {path!r}"
        else:
            layers = list(f["layers"].keys()) if "layers" in f else []
            if layer not in layers:
                raise ValueError(f"{path!r} has no layer {layer!r}; its layers are {layers}.")
            elem, label = f["layers"][layer], f"layers[{layer!r}] of {path!r}"
        if isinstance(elem, h5py.Group):
            encoding = elem.attrs.get("encoding-type", None)
            if encoding not in ("csr_matrix", "csc_matrix"):
                raise ValueError(
                    f"{label} is stored with encoding {encoding!r}; pseudobulk reads dense "
                    "arrays and CSR/CSC sparse matrices (files written by anndata >= 0.8)."
                )
            try:
                matrix = sparse_dataset(elem, should_cache_indptr=False)
            except TypeError:  # pragma: no cover - anndata < 0.11
                matrix = sparse_dataset(elem)
        else:
            matrix = elem
        obs_names_ds = obs_group[obs_index_key]
        columns = [c for c in obs_group.keys() if c != obs_index_key and c != "__categories"]
    except BaseException:
        f.close()
        raise
    return _Source(
        matrix=matrix,
        n_obs=obs_names_ds.shape[0],
        var_names=var_names,
        label=label,
        columns=columns,
        get_column=lambda key: pd.Series(read_elem(obs_group[key])),
        obs_name=lambda i: _decode(obs_names_ds[i]),
        close=f.close,
    )


def _decode(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ----------------------------------------------------------------------------
# Reading the matrix block by block
# ----------------------------------------------------------------------------
def _matrix_format(matrix) -> str:
    """``"csr"``/``"csc"`` for compressed sparse (in memory or backed), else ``"dense"``."""
    if sp.issparse(matrix):
        return matrix.format
    fmt = getattr(matrix, "format", None)
    if fmt in ("csr", "csc") and not isinstance(matrix, np.ndarray):
        return fmt
    return "dense"


def _stored_values(matrix, fmt: str, n_obs: int, n_vars: int) -> int:
    if fmt == "dense":
        return n_obs * n_vars
    if sp.issparse(matrix):
        return int(matrix.nnz)
    try:  # backed sparse dataset: the last indptr entry is the number of non-zeros
        return int(matrix.group["indptr"][-1])
    except Exception:  # pragma: no cover - unknown backend
        return n_obs * n_vars // 10


def _check_dtype(matrix, label: str) -> None:
    dtype = getattr(matrix, "dtype", None)
    if dtype is None:  # pragma: no cover - exotic array types are checked per block
        return
    if np.dtype(dtype).kind not in "biuf":
        raise TypeError(
            f"{label} has dtype {np.dtype(dtype)}; pseudobulk needs numeric expression "
            "values (integers or floats)."
        )


def _iter_blocks(
    matrix, fmt: str, n_obs: int, n_vars: int, chunk_size: int | None
) -> Iterator[tuple[str, int, int, Any]]:
    """Yield ``(axis, start, stop, block)``; axis ``"rows"`` or ``"cols"``."""
    by_columns = fmt == "csc"
    if chunk_size is None:
        per_line = _stored_values(matrix, fmt, n_obs, n_vars) / max(
            n_vars if by_columns else n_obs, 1
        )
        step = max(1, int(_VALUES_PER_BLOCK // max(per_line, 1.0)))
    elif by_columns:
        # the same share of the data as chunk_size rows would hold
        step = max(1, math.ceil(chunk_size * n_vars / max(n_obs, 1)))
    else:
        step = chunk_size
    total = n_vars if by_columns else n_obs
    for start in range(0, total, step):
        stop = min(start + step, total)
        if sp.issparse(matrix):
            block = _compressed_slice(matrix, start, stop)
        else:
            block = matrix[:, start:stop] if by_columns else matrix[start:stop]
        yield ("cols" if by_columns else "rows"), start, stop, _as_block(block, by_columns)


def _compressed_slice(matrix, start: int, stop: int):
    """Rows (CSR) or columns (CSC) ``start:stop`` of an in-memory matrix, without copying.

    The block shares ``data`` and ``indices`` with ``matrix``; it is only read.
    """
    matrix_cls = sp.csr_matrix if matrix.format == "csr" else sp.csc_matrix
    lo, hi = int(matrix.indptr[start]), int(matrix.indptr[stop])
    indptr = matrix.indptr[start : stop + 1] - lo
    n_other = matrix.shape[1] if matrix.format == "csr" else matrix.shape[0]
    shape = (stop - start, n_other) if matrix.format == "csr" else (n_other, stop - start)
    return matrix_cls((matrix.data[lo:hi], matrix.indices[lo:hi], indptr), shape=shape,
                      copy=False)


def _as_block(block, by_columns: bool):
    if hasattr(block, "compute"):  # dask
        block = block.compute()
    if sp.issparse(block):
        block = sp.csc_matrix(block) if by_columns else sp.csr_matrix(block)
    else:
        block = np.asarray(block)
        if block.ndim == 1:  # pragma: no cover - single-gene h5py reads
            block = block[:, None]
    if block.dtype.kind not in "biuf":
        raise TypeError(
            f"The expression matrix has dtype {block.dtype}; pseudobulk needs numeric values."
        )
    if block.dtype.kind == "b":
        block = block.astype(np.float32)
    return block


def _values(block) -> np.ndarray:
    return block.data if sp.issparse(block) else block.ravel()


class _DataChecks:
    """NaN/inf errors and the raw-counts / negative-values bookkeeping, per block."""

    def __init__(self, source: _Source):
        self.source = source
        self.all_integer = True
        self.any_negative = False
        self.max_value = -np.inf
        self.n_values = 0

    def update(self, block, axis: str, start: int) -> None:
        values = _values(block)
        if values.size == 0:
            return
        self.n_values += values.size
        if values.dtype.kind == "f":
            finite = np.isfinite(values)
            if not finite.all():
                self._raise_nonfinite(block, axis, start, int(np.flatnonzero(~finite)[0]),
                                      int((~finite).sum()))
            if self.all_integer and not np.array_equal(values, np.floor(values)):
                self.all_integer = False
        vmin, vmax = values.min(), values.max()
        self.any_negative = self.any_negative or bool(vmin < 0)
        self.max_value = max(self.max_value, float(vmax))

    def _raise_nonfinite(self, block, axis, start, flat, count):
        if sp.issparse(block):
            major = int(np.searchsorted(block.indptr, flat, side="right") - 1)
            minor = int(block.indices[flat])
            row, col = (major, minor) if axis == "rows" else (minor, major)
        else:
            row, col = divmod(flat, block.shape[1])
        if axis == "rows":
            row += start
        else:
            col += start
        raise ValueError(
            f"{self.source.label} contains NaN or infinite values ({count} in the block being "
            f"read; the first at cell {self.source.obs_name(row)!r} (row {row}), gene "
            f"{self.source.var_names[col]!r} (column {col})). Impute or remove them first."
        )

    @property
    def looks_like_counts(self) -> bool:
        return (
            self.n_values > 0 and self.all_integer and not self.any_negative
            and self.max_value > 0
        )


def _transform_block(block, transform: str | None, target_sum: float, totals=None):
    """Return a new transformed block (never modifies ``block``, which may be a view)."""
    if transform is None:
        return block
    if transform == "normalize_log1p":
        if totals is None:  # row block: every gene of each cell is present
            totals = np.asarray(block.sum(axis=1), dtype=np.float64).ravel()
            scale = _safe_scale(totals, target_sum)
            if sp.issparse(block):
                block = sp.csr_matrix(sp.diags(scale) @ block)
            else:
                block = block * scale[:, None]
        else:  # column block with totals from a first pass
            scale = _safe_scale(totals, target_sum)
            block = sp.csc_matrix(sp.diags(scale) @ block) if sp.issparse(block) else (
                block * scale[:, None]
            )
    if sp.issparse(block):
        out = block.copy() if transform == "log1p" else block
        out.data = np.log1p(out.data)
        return out
    return np.log1p(block)


def _safe_scale(totals: np.ndarray, target_sum: float) -> np.ndarray:
    scale = np.zeros_like(totals)
    positive = totals > 0
    scale[positive] = target_sum / totals[positive]
    return scale


def _expm1_squares(block):
    """``(expm1(block), expm1(block) ** 2)`` in float64 for Seurat-style gene statistics."""
    if sp.issparse(block):
        e = type(block)((np.expm1(block.data, dtype=np.float64), block.indices, block.indptr),
                        shape=block.shape)
        return e, type(e)((e.data * e.data, e.indices, e.indptr), shape=e.shape)
    e = np.expm1(block.astype(np.float64))
    return e, e * e


def _column_sums(block, weights: np.ndarray) -> np.ndarray:
    """``weights @ block`` as a 1-D float64 array."""
    if sp.issparse(block):
        return np.asarray(block.T @ weights).ravel()
    return weights @ block


# ----------------------------------------------------------------------------
# Highly variable genes
# ----------------------------------------------------------------------------
def _seurat_dispersion_norm(mean: np.ndarray, var: np.ndarray, n_bins: int = 20):
    """Scanpy's ``flavor="seurat"`` normalised dispersion from per-gene moments.

    ``mean`` and ``var`` are the per-gene mean and unbiased variance of
    ``expm1(x)``; the result matches :func:`scanpy.pp.highly_variable_genes`
    with ``flavor="seurat"`` (log-mean bins, z-scored log-dispersion per bin,
    single-gene bins set to 1).
    """
    mean = mean.astype(np.float64, copy=True)
    mean[mean == 0] = 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = var / mean
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
    log_mean = np.log1p(mean)
    df = pd.DataFrame({"means": log_mean, "dispersions": dispersion})
    df["mean_bin"] = pd.cut(df["means"], bins=n_bins)
    stats = df.groupby("mean_bin", observed=True)["dispersions"].agg(avg="mean", dev="std")
    single = stats["dev"].isna()
    stats.loc[single, "dev"] = stats.loc[single, "avg"]
    stats.loc[single, "avg"] = 0.0
    per_gene = stats.loc[df["mean_bin"]].set_index(df.index)
    return ((df["dispersions"] - per_gene["avg"]) / per_gene["dev"]).to_numpy(), log_mean


def _top_genes(scores: np.ndarray, n_top: int) -> np.ndarray:
    """Boolean mask of the ``n_top`` highest scores (NaN lowest; ties: data order)."""
    ranked = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")
    mask = np.zeros(scores.shape[0], dtype=bool)
    mask[ranked[:n_top]] = True
    return mask


# ----------------------------------------------------------------------------
# Labels and groups
# ----------------------------------------------------------------------------
def _factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and the labels, sorted where comparable."""
    codes, uniques = sorted_codes(values)
    return codes.astype(np.int32), uniques


def _as_label_list(control) -> list:
    if isinstance(control, (list, set, frozenset, np.ndarray, pd.Index, pd.Series)):
        labels = list(control)
        if not labels:
            raise ValueError("control is empty; pass the label of the control perturbation.")
        return labels
    return [control]


def _preview(labels: Sequence, k: int = 8) -> str:
    shown = ", ".join(repr(x) for x in list(labels)[:k])
    return f"[{shown}{', ...' if len(labels) > k else ''}]"


@dataclass
class _Plan:
    cell_group: np.ndarray  # per cell: row of the accumulator, -1 to skip
    n_pairs: int  # rows 0..n_pairs-1 are pairs, then one row per kept context's controls
    pair_context: np.ndarray  # context code of each kept pair
    pair_perturbation: np.ndarray
    pair_counts: np.ndarray
    control_row_of_context: np.ndarray  # accumulator row of each context's controls (-1)
    control_counts: np.ndarray  # per context
    kept_contexts: np.ndarray  # context codes with enough controls
    contexts: np.ndarray  # labels
    perturbations: np.ndarray
    groups: pd.DataFrame
    n_unlabelled: int


def _plan_groups(ctx_values, pert_values, controls: list, min_cells: int, context_key,
                 perturbation_key) -> _Plan:
    c_codes, contexts = _factorize(ctx_values)
    p_codes, perturbations = _factorize(pert_values)
    n_c, n_p = len(contexts), len(perturbations)

    where = pd.Index(perturbations, dtype=object).get_indexer(pd.Index(controls, dtype=object))
    missing = [lab for lab, i in zip(controls, where, strict=True) if i < 0]
    if missing:
        raise ValueError(
            f"control label(s) {missing} not found in obs[{perturbation_key!r}]; it has "
            f"{n_p} distinct label(s), e.g. {_preview(perturbations)}. Check the spelling "
            "and the type (a string '0' is not the integer 0)."
        )
    is_control_label = np.zeros(n_p, dtype=bool)
    is_control_label[where] = True
    if is_control_label.all():
        raise ValueError(
            f"Every perturbation label in obs[{perturbation_key!r}] is a control; there is "
            "no perturbation to compute an effect for."
        )

    labelled = (c_codes >= 0) & (p_codes >= 0)
    n_unlabelled = int((~labelled).sum())
    is_control_cell = labelled & is_control_label[np.where(labelled, p_codes, 0)]
    is_pair_cell = labelled & ~is_control_cell
    del labelled

    control_counts = np.bincount(c_codes[is_control_cell], minlength=n_c)
    # (context, perturbation) code of every perturbed cell, as one integer
    pair_code = c_codes[is_pair_cell].astype(np.int64) * n_p + p_codes[is_pair_cell]
    del p_codes
    dense_codes = n_c * n_p <= _MAX_DENSE_PAIR_CODES
    if dense_codes:
        counts_all = np.bincount(pair_code, minlength=n_c * n_p)
        observed = np.flatnonzero(counts_all)
        observed_counts = counts_all[observed]
        del counts_all
    else:  # huge label spaces: sort instead of a table over every possible pair
        observed, observed_counts = np.unique(pair_code, return_counts=True)
    obs_c, obs_p = observed // n_p, observed % n_p

    context_ok = control_counts >= min_cells
    if not context_ok.any():
        best = int(np.argmax(control_counts))
        raise ValueError(
            f"No context has at least min_cells={min_cells} control cells "
            f"({_preview(controls, 3)} in obs[{perturbation_key!r}]); the most is "
            f"{int(control_counts[best])} in context {contexts[best]!r}. Effects are "
            "measured against the controls of the same context: check control and "
            f"context_key={context_key!r}, or lower min_cells."
        )
    enough = observed_counts >= min_cells
    has_control = context_ok[obs_c]
    kept = enough & has_control
    if not kept.any():
        raise ValueError(
            f"No (context, perturbation) pair has at least min_cells={min_cells} cells in a "
            f"context with controls (largest pair: {int(observed_counts.max(initial=0))} "
            "cells). Lower min_cells."
        )

    # Warnings: which pairs were dropped, and why.
    too_few = ~enough & has_control
    if too_few.any():
        idx = np.flatnonzero(too_few)
        examples = ", ".join(
            f"({contexts[obs_c[i]]!r}, {perturbations[obs_p[i]]!r}): {observed_counts[i]}"
            for i in idx[:5]
        )
        warnings.warn(
            f"Dropped {idx.size} of {observed.size} (context, perturbation) pairs with fewer "
            f"than min_cells={min_cells} cells (e.g. {examples}"
            f"{', ...' if idx.size > 5 else ''}). Pass return_report=True for the full list.",
            PseudobulkWarning,
            stacklevel=4,
        )
    bad_contexts = np.flatnonzero(~context_ok)
    if bad_contexts.size:
        n_lost = int((~has_control).sum())
        described = ", ".join(
            f"{contexts[c]!r} ({int(control_counts[c])})" for c in bad_contexts[:5]
        )
        warnings.warn(
            f"{bad_contexts.size} context(s) have fewer than min_cells={min_cells} control "
            f"cells: {described}{', ...' if bad_contexts.size > 5 else ''}. Their {n_lost} "
            "(context, perturbation) pair(s) were dropped: an effect needs the controls of "
            "its own context.",
            PseudobulkWarning,
            stacklevel=4,
        )
    if n_unlabelled:
        warnings.warn(
            f"{n_unlabelled} cell(s) have no label in obs[{context_key!r}] or "
            f"obs[{perturbation_key!r}] and were ignored.",
            PseudobulkWarning,
            stacklevel=4,
        )

    # Accumulator rows: kept pairs (sorted by context, then perturbation), then controls.
    kept_idx = np.flatnonzero(kept)
    n_pairs = kept_idx.size
    kept_contexts = np.flatnonzero(context_ok)
    control_row = np.full(n_c, -1, dtype=np.int64)
    control_row[kept_contexts] = n_pairs + np.arange(kept_contexts.size)
    cell_group = np.full(c_codes.shape[0], -1, dtype=np.int32 if n_c * n_p < 2**31 else np.int64)
    row_of_observed = np.full(observed.size, -1, dtype=np.int64)
    row_of_observed[kept_idx] = np.arange(n_pairs)
    if dense_codes:
        row_of_pair = np.full(n_c * n_p, -1, dtype=np.int64)
        row_of_pair[observed] = row_of_observed
        cell_group[is_pair_cell] = row_of_pair[pair_code]
    else:
        cell_group[is_pair_cell] = row_of_observed[np.searchsorted(observed, pair_code)]
    cell_group[is_control_cell] = control_row[c_codes[is_control_cell]]

    status = np.where(~has_control, "no_control", np.where(enough, "kept", "too_few_cells"))
    ctrl_ctx = np.flatnonzero(control_counts)
    groups = pd.DataFrame(
        {
            "context": np.concatenate([contexts[obs_c], contexts[ctrl_ctx]]),
            "perturbation": np.concatenate(
                [perturbations[obs_p], np.full(ctrl_ctx.size, _control_name(controls),
                                               dtype=object)]
            ),
            "n_cells": np.concatenate([observed_counts, control_counts[ctrl_ctx]]),
            "is_control": np.concatenate(
                [np.zeros(observed.size, bool), np.ones(ctrl_ctx.size, bool)]
            ),
            "status": np.concatenate(
                [status, np.where(context_ok[ctrl_ctx], "kept", "too_few_cells")]
            ),
        }
    )
    return _Plan(
        cell_group=cell_group,
        n_pairs=n_pairs,
        pair_context=obs_c[kept_idx],
        pair_perturbation=obs_p[kept_idx],
        pair_counts=observed_counts[kept_idx],
        control_row_of_context=control_row,
        control_counts=control_counts,
        kept_contexts=kept_contexts,
        contexts=contexts,
        perturbations=perturbations,
        groups=groups,
        n_unlabelled=n_unlabelled,
    )


def _control_name(controls: list):
    return controls[0] if len(controls) == 1 else "+".join(str(c) for c in controls)


def _labels_column(labels: np.ndarray) -> pd.Series:
    return pd.Series(labels, dtype=object).infer_objects()


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------
def pseudobulk(
    adata: AnnData | str | os.PathLike,
    context_key: Hashable,
    perturbation_key: Hashable,
    control: Hashable | Sequence[Hashable],
    *,
    layer: str | None = None,
    min_cells: int = 10,
    n_top_genes: int | None = None,
    hvg_on: str = "effects",
    transform: str | None = None,
    target_sum: float = 1e4,
    chunk_size: int | None = None,
    return_report: bool = False,
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
        read, the matrix in blocks, so files larger than memory work. Never
        modified.
    context_key, perturbation_key : hashable
        Columns of ``adata.obs`` with the context (cell line, donor, ...) and
        the perturbation of each cell. Cells with a missing label are ignored
        (with a warning).
    control : hashable or list of hashable
        Label(s) of the control condition in ``obs[perturbation_key]`` (e.g.
        ``"DMSO"`` or ``["non-targeting", "safe-targeting"]``; a list pools
        several control labels). Must exist; the type matters (``"0"`` is
        not ``0``).
    layer : str, optional
        Use ``adata.layers[layer]`` instead of ``adata.X``.
    min_cells : int, default=10
        Pairs with fewer cells are dropped, and so are all pairs of a context
        with fewer control cells. Both are reported with a
        :class:`PseudobulkWarning`; the kept cell counts are columns of ``X``.
    n_top_genes : int, optional
        Keep only this many highly variable genes (the paper keeps 2,000),
        in the data's gene order. ``None`` keeps every gene. If it exceeds the
        number of genes, all genes are kept (with a warning).
    hvg_on : {"effects", "cells"}, default="effects"
        What "highly variable" is measured on:

        - ``"effects"``: the variance of each gene's effect across the kept
          (context, perturbation) pairs, i.e. the genes whose response to
          perturbation varies most. Cheap, and defined on what the model
          predicts.
        - ``"cells"``: scanpy's ``flavor="seurat"`` normalised dispersion
          (:func:`scanpy.pp.highly_variable_genes`, the usual single-cell
          choice) over the cells of the kept pairs and their controls,
          computed in the same streaming pass. It assumes natural-log
          normalised data (as that flavor does).

        Either way the selection sees every kept pair, including contexts you
        may later hold out; for a strict protocol select genes on training
        data only (e.g. ``Y[train].var()``).
    transform : {None, "log1p", "normalize_log1p"}, default=None
        Applied to each block as it is read. ``None`` uses the values as
        given (the paper uses log-normalised expression). ``"log1p"``:
        ``log(1 + x)``. ``"normalize_log1p"``: scale each cell to
        ``target_sum`` total counts, then ``log1p`` (scanpy's
        ``normalize_total`` + ``log1p``), for raw counts.
    target_sum : float, default=1e4
        Total per cell for ``transform="normalize_log1p"``.
    chunk_size : int, optional
        Cells per block (for CSC storage, which is read by gene blocks, the
        same share of the data). ``None`` picks blocks of about 16 million
        stored values. Memory use is about one block plus the
        ``(n_groups, n_genes)`` float64 sums (and the per-cell labels).
    return_report : bool, default=False
        Also return a :class:`PseudobulkReport` (every group with its cell
        count and fate, the control means, the gene ranking).

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
    >>> from c3tl_sklearn.preprocessing import pseudobulk
    >>> obs = pd.DataFrame(
    ...     {"cell_line": ["A"] * 4 + ["B"] * 4, "drug": ["DMSO", "DMSO", "x", "x"] * 2},
    ...     index=[f"cell{i}" for i in range(8)],
    ... )
    >>> expr = np.array([[0.5, 1.0], [0.5, 1.0], [2.5, 1.0], [2.5, 3.0],
    ...                  [1.0, 0.5], [1.0, 0.5], [1.0, 2.5], [1.0, 2.5]], dtype=np.float32)
    >>> adata = ad.AnnData(expr, obs=obs, var=pd.DataFrame(index=["g1", "g2"]))
    >>> X, Y = pseudobulk(adata, "cell_line", "drug", "DMSO", min_cells=2)
    >>> X
      context perturbation  n_cells  n_control_cells
    0       A            x        2                2
    1       B            x        2                2
    >>> Y
        g1   g2
    0  2.0  1.0
    1  0.0  2.0
    """
    # ---- parameters ---------------------------------------------------------
    if isinstance(min_cells, bool) or not isinstance(min_cells, (int, np.integer)) or (
        min_cells < 1
    ):
        raise ValueError(f"min_cells must be a positive integer; got {min_cells!r}.")
    if n_top_genes is not None and (
        isinstance(n_top_genes, bool)
        or not isinstance(n_top_genes, (int, np.integer))
        or n_top_genes < 1
    ):
        raise ValueError(f"n_top_genes must be a positive integer or None; got {n_top_genes!r}.")
    if hvg_on not in _HVG_ON:
        raise ValueError(f"hvg_on must be one of {_HVG_ON}; got {hvg_on!r}.")
    if transform not in _TRANSFORMS:
        raise ValueError(f"transform must be one of {_TRANSFORMS}; got {transform!r}.")
    if not (isinstance(target_sum, (int, float, np.number)) and target_sum > 0):
        raise ValueError(f"target_sum must be a positive number; got {target_sum!r}.")
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer or None; got {chunk_size!r}.")
    if context_key == perturbation_key:
        raise ValueError(
            f"context_key and perturbation_key are both {context_key!r}; they must be two "
            "different obs columns."
        )
    controls = _as_label_list(control)

    source = _open_source(adata, layer)
    try:
        return _pseudobulk(
            source, context_key, perturbation_key, controls,
            min_cells=int(min_cells), n_top_genes=n_top_genes, hvg_on=hvg_on,
            transform=transform, target_sum=float(target_sum), chunk_size=chunk_size,
            return_report=return_report,
        )
    finally:
        source.close()


def _pseudobulk(source: _Source, context_key, perturbation_key, controls, *, min_cells,
                n_top_genes, hvg_on, transform, target_sum, chunk_size, return_report):
    matrix = source.matrix
    n_obs = source.n_obs
    shape = tuple(int(s) for s in matrix.shape)
    n_vars = len(source.var_names)
    if len(shape) != 2 or shape != (n_obs, n_vars):  # pragma: no cover - corrupt input
        raise ValueError(
            f"{source.label} has shape {shape}; expected ({n_obs} cells, {n_vars} genes)."
        )
    _check_dtype(matrix, source.label)
    genes = _unique_gene_names(source.var_names)

    plan = _plan_groups(
        source.column(context_key), source.column(perturbation_key), controls, min_cells,
        context_key, perturbation_key,
    )
    n_groups = plan.n_pairs + plan.kept_contexts.size
    used = plan.cell_group >= 0
    fmt = _matrix_format(matrix)
    if fmt not in ("csr", "csc"):
        if sp.issparse(matrix):  # COO, LIL, ...: one CSR copy
            matrix, fmt = sp.csr_matrix(matrix), "csr"
        else:
            fmt = "dense"

    totals = None
    if transform == "normalize_log1p" and fmt == "csc":
        # column blocks cannot see a cell's total: one cheap first pass for them
        totals = np.zeros(n_obs)
        for _, _, _, block in _iter_blocks(matrix, fmt, n_obs, n_vars, chunk_size):
            totals += np.asarray(block.sum(axis=1), dtype=np.float64).ravel()

    sums = np.zeros((n_groups, n_vars), dtype=np.float64)
    want_cell_stats = n_top_genes is not None and hvg_on == "cells"
    if want_cell_stats:
        s1 = np.zeros(n_vars)
        s2 = np.zeros(n_vars)
    checks = _DataChecks(source)
    col_indicator = None
    as_float64 = _Float64Buffer()
    for axis, start, stop, block in _iter_blocks(matrix, fmt, n_obs, n_vars, chunk_size):
        checks.update(block, axis, start)
        if transform is not None and checks.any_negative:
            raise ValueError(
                f"{source.label} has negative values, so transform={transform!r} (meant for "
                "raw counts) does not apply. Use transform=None for data that are already "
                "normalised."
            )
        if axis == "rows":
            block = _transform_block(block, transform, target_sum)
            codes = plan.cell_group[start:stop]
            keep = codes >= 0
            if not keep.any():
                continue
            rows_used, inverse = np.unique(codes[keep], return_inverse=True)
            indicator = sp.csr_matrix(
                (np.ones(inverse.size), (inverse, np.flatnonzero(keep))),
                shape=(rows_used.size, block.shape[0]),
            )
            _scatter_add(sums, indicator @ as_float64(block), rows_used, slice(None))
            if want_cell_stats:
                e, sq = _expm1_squares(block)
                w = keep.astype(np.float64)
                s1 += _column_sums(e, w)
                s2 += _column_sums(sq, w)
        else:
            block = _transform_block(
                block, transform, target_sum, None if totals is None else totals
            )
            if col_indicator is None:
                col_indicator = sp.csr_matrix(
                    (np.ones(int(used.sum())), (plan.cell_group[used], np.flatnonzero(used))),
                    shape=(n_groups, n_obs),
                )
            _scatter_add(sums, col_indicator @ as_float64(block), np.arange(n_groups),
                         slice(start, stop))
            if want_cell_stats:
                e, sq = _expm1_squares(block)
                w = used.astype(np.float64)
                s1[start:stop] += _column_sums(e, w)
                s2[start:stop] += _column_sums(sq, w)

    if transform is None and checks.looks_like_counts:
        warnings.warn(
            f"{source.label} looks like raw counts (every value is a non-negative integer, "
            f"max {checks.max_value:g}). Effects are differences of means of the values as "
            "given; C3TL, like the paper, expects log-normalised expression. Pass "
            "transform='normalize_log1p' to normalise and log-transform on the fly, or "
            "layer=... to use a log-normalised layer.",
            PseudobulkWarning,
            stacklevel=3,
        )

    counts = np.concatenate([plan.pair_counts, plan.control_counts[plan.kept_contexts]])
    means = sums / counts[:, None]
    control_means = means[plan.control_row_of_context[plan.pair_context]]
    effects = means[: plan.n_pairs] - control_means

    gene_stats = None
    selected = np.ones(n_vars, dtype=bool)
    if n_top_genes is not None:
        if n_top_genes >= n_vars:
            if n_top_genes > n_vars:
                warnings.warn(
                    f"n_top_genes={n_top_genes} exceeds the {n_vars} genes of the data; "
                    "keeping all genes.",
                    PseudobulkWarning,
                    stacklevel=3,
                )
            n_top = n_vars
        else:
            n_top = int(n_top_genes)
        if hvg_on == "effects":
            score = effects.var(axis=0)
            gene_stats = pd.DataFrame({"score": score}, index=genes)
        else:
            n_used = float(used.sum())
            mean = s1 / n_used
            var = (s2 - n_used * mean**2) / max(n_used - 1.0, 1.0)
            var = np.maximum(var, 0.0)
            score, _ = _seurat_dispersion_norm(mean, var)
            gene_stats = pd.DataFrame({"score": score, "mean": mean, "variance": var},
                                      index=genes)
        selected = _top_genes(np.asarray(score, dtype=np.float64), n_top)
        gene_stats["selected"] = selected

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
        looks_like_counts=checks.looks_like_counts,
        n_cells_unlabelled=plan.n_unlabelled,
    )
    return X, Y, report


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
        stacklevel=4,
    )
    return unique


def to_anndata(
    X: pd.DataFrame,
    Y_pred,
    genes: Sequence[Hashable] | None = None,
    *,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
) -> AnnData:
    """Pack effects (observed or predicted) into an AnnData, one row per pair.

    The result drops into scanpy plotting (``sc.pl.heatmap(adata, genes,
    groupby="perturbation")``, ``sc.pl.matrixplot``, ...) and into tools
    that take an AnnData of pseudo-bulk profiles, and writes to ``.h5ad``.

    Parameters
    ----------
    X : pandas.DataFrame of shape (n_pairs, n_columns)
        The index table the predictions belong to, with ``context_col`` and
        ``perturbation_col``. All its columns become ``obs``; object columns
        whose values are not all strings are turned into strings so the
        result can be written to ``.h5ad``.
    Y_pred : array-like or pandas.DataFrame of shape (n_pairs, n_genes)
        Effects, row ``i`` for row ``i`` of ``X``, e.g. the output of
        ``C3TLRegressor.predict(X)`` or the ``Y`` of :func:`pseudobulk`.
        A DataFrame must have the same index as ``X``.
    genes : sequence of hashable, optional
        Gene names. Defaults to the columns of a DataFrame ``Y_pred``, else
        ``gene_0``, ``gene_1``, ...; with a DataFrame they must equal its
        columns. Must be unique.
    context_col, perturbation_col : hashable
        The label columns of ``X``.

    Returns
    -------
    anndata.AnnData
        ``X``: the effects as float32; ``obs``: a copy of the index table with
        the string form of its index as ``obs_names``; ``var_names``: genes.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from c3tl_sklearn.preprocessing import to_anndata
    >>> X = pd.DataFrame({"context": ["A", "B"], "perturbation": ["x", "x"]})
    >>> adata = to_anndata(X, np.array([[0.5, -1.0], [0.25, 2.0]]), genes=["g1", "g2"])
    >>> adata
    AnnData object with n_obs × n_vars = 2 × 2
        obs: 'context', 'perturbation'
    >>> adata.X.dtype
    dtype('float32')
    """
    anndata = _import_anndata()
    check_index_table(X, context_col, perturbation_col)
    if isinstance(Y_pred, pd.DataFrame) and not Y_pred.index.equals(X.index):
        raise ValueError(
            "Y_pred is a DataFrame whose index differs from X's; rows are matched by "
            "position, so align them first (or pass Y_pred.to_numpy())."
        )
    values, frame_genes = check_response(Y_pred, n_rows=len(X), name="Y_pred")
    n_genes = values.shape[1]
    if genes is None:
        genes = frame_genes if frame_genes is not None else [f"gene_{j}" for j in range(n_genes)]
    else:
        genes = list(genes)
        if frame_genes is not None and list(frame_genes) != genes:
            raise ValueError(
                "genes differs from the columns of the Y_pred DataFrame; pass one or the "
                "other (or Y_pred.to_numpy() with genes)."
            )
    if len(genes) != n_genes:
        raise ValueError(
            f"genes has {len(genes)} name(s) but Y_pred has {n_genes} column(s)."
        )
    var_names = pd.Index([str(g) for g in genes])
    if not var_names.is_unique:
        dup = list(pd.unique(var_names[var_names.duplicated()]))[:5]
        raise ValueError(f"Gene names must be unique; duplicated: {dup}.")
    obs = X.copy()
    obs.index = pd.Index([str(i) for i in X.index])
    obs.columns = [str(c) for c in obs.columns]
    for col in obs.columns:
        if obs[col].dtype == object and not all(isinstance(v, str) for v in obs[col]):
            obs[col] = obs[col].map(str)
    return anndata.AnnData(
        X=values.astype(np.float32, copy=False), obs=obs, var=pd.DataFrame(index=var_names)
    )
