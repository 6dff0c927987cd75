"""AnnData I/O: cells read from AnnData or .h5ad block by block, predictions written back.

A source gives uniform access to the obs label columns, the gene names and the
expression matrix of an in-memory AnnData, one opened with ``backed="r"``, or an
``.h5ad`` path read without loading it (only the label columns, the gene names
and the matrix, in blocks).
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._contract import check_index_table, check_response

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = ["to_anndata"]

_INSTALL_HINT = "pip install c3tl-sklearn[anndata]"
# Default block size: about this many stored values (non-zeros for sparse data)
# per block, i.e. ~64 MB of float32 values plus indices and a float64 copy.
_VALUES_PER_BLOCK = 2**24


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



def transform_block(block, transform: str | None, target_sum: float, totals=None):
    """Return a new transformed block (never modifies ``block``, which may be a view)."""
    if transform is None:
        return block
    if transform not in ("log1p", "normalize_log1p"):
        # callers validate first; an unknown name must not quietly mean log1p
        raise ValueError(f"Unknown transform {transform!r}: use None, 'log1p' or "
                         "'normalize_log1p'.")
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


# ----------------------------------------------------------------------------
# Predictions back to AnnData
# ----------------------------------------------------------------------------
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
    # the package's row rule: a DataFrame by index label, an array by position
    values, frame_genes = check_response(Y_pred, n_rows=len(X), name="Y_pred", index=X.index)
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

