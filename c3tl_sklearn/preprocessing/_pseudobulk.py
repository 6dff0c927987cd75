"""Single cells to pseudo-bulk effects: the grouping plan, the streaming sums, pseudobulk()."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)

from .._labels import sorted_codes
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

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = ["PseudobulkOptions", "PseudobulkReport", "PseudobulkWarning", "pseudobulk"]

_HVG_ON = ("effects", "cells")
_TRANSFORMS = (None, "log1p", "normalize_log1p")
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
    files : pandas.DataFrame or None
        Several files: one row per file with ``path``, ``n_cells``,
        ``seconds`` (reading and summing it), ``worker`` (process id) and
        ``worker_peak_rss_mib`` (the worker's peak resident memory after the
        file). ``None`` for one file or AnnData.
    """

    groups: pd.DataFrame
    control_mean: pd.DataFrame
    gene_stats: pd.DataFrame | None
    looks_like_counts: bool
    n_cells_unlabelled: int
    files: pd.DataFrame | None = None


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
    """Code every cell's group and decide which groups are kept; warn about the others."""
    c_codes, contexts = _factorize(ctx_values)
    p_codes, perturbations = _factorize(pert_values)
    n_c, n_p = len(contexts), len(perturbations)
    is_control_label = _control_labels(perturbations, controls, perturbation_key)

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
    observed, observed_counts = _count_pairs(pair_code, n_c * n_p, dense_codes)
    labels = _GroupLabels(contexts, perturbations, controls, context_key, perturbation_key)
    sel = _select(labels, observed // n_p, observed % n_p, observed_counts, control_counts,
                  min_cells, n_unlabelled)
    obs_c, obs_p, kept = sel.obs_c, sel.obs_p, sel.kept

    # Accumulator rows: kept pairs (sorted by context, then perturbation), then controls.
    kept_idx = np.flatnonzero(kept)
    n_pairs = kept_idx.size
    kept_contexts = np.flatnonzero(sel.context_ok)
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
        groups=_groups_table(labels, sel),
        n_unlabelled=n_unlabelled,
    )


@dataclass(frozen=True)
class _Selection:
    """The observed pairs, the control counts, and what ``min_cells`` keeps of them."""

    obs_c: np.ndarray  # context code of each observed pair
    obs_p: np.ndarray  # perturbation code of each observed pair
    counts: np.ndarray  # cells of each observed pair
    control_counts: np.ndarray  # control cells of each context
    context_ok: np.ndarray  # per context: enough control cells
    enough: np.ndarray  # per observed pair: enough cells

    @property
    def has_control(self) -> np.ndarray:
        return self.context_ok[self.obs_c]

    @property
    def kept(self) -> np.ndarray:
        return self.enough & self.has_control

    @property
    def status(self) -> np.ndarray:
        return np.where(~self.has_control, "no_control",
                        np.where(self.enough, "kept", "too_few_cells"))


def _select(labels: _GroupLabels, obs_c, obs_p, counts, control_counts, min_cells: int,
            n_unlabelled: int) -> _Selection:
    """Apply ``min_cells`` to pairs and controls; refuse unusable data, warn about drops."""
    sel = _Selection(obs_c, obs_p, counts, control_counts,
                     context_ok=control_counts >= min_cells, enough=counts >= min_cells)
    _check_usable(labels, control_counts, counts, sel.kept, min_cells)
    _warn_dropped(labels, sel, min_cells, n_unlabelled)
    return sel


@dataclass(frozen=True)
class _GroupLabels:
    """The labels behind the group codes, and the names used in messages."""

    contexts: np.ndarray
    perturbations: np.ndarray
    controls: list
    context_key: Hashable
    perturbation_key: Hashable


def _control_labels(perturbations: np.ndarray, controls: list, perturbation_key) -> np.ndarray:
    """Boolean over perturbation codes: a control label; every control label must exist."""
    n_p = len(perturbations)
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
    return is_control_label


def _count_pairs(pair_code: np.ndarray, n_codes: int, dense: bool):
    """The pair codes that occur, sorted, and their cell counts."""
    if dense:
        counts_all = np.bincount(pair_code, minlength=n_codes)
        observed = np.flatnonzero(counts_all)
        return observed, counts_all[observed]
    # huge label spaces: sort instead of a table over every possible pair
    return np.unique(pair_code, return_counts=True)


def _check_usable(labels: _GroupLabels, control_counts, observed_counts, kept,
                  min_cells: int) -> None:
    """Refuse data in which no context has controls or no pair has enough cells."""
    if not (control_counts >= min_cells).any():
        best = int(np.argmax(control_counts))
        raise ValueError(
            f"No context has at least min_cells={min_cells} control cells "
            f"({_preview(labels.controls, 3)} in obs[{labels.perturbation_key!r}]); the most "
            f"is {int(control_counts[best])} in context {labels.contexts[best]!r}. Effects are "
            "measured against the controls of the same context: check control and "
            f"context_key={labels.context_key!r}, or lower min_cells."
        )
    if not kept.any():
        raise ValueError(
            f"No (context, perturbation) pair has at least min_cells={min_cells} cells in a "
            f"context with controls (largest pair: {int(observed_counts.max(initial=0))} "
            "cells). Lower min_cells."
        )


def _warn_dropped(labels: _GroupLabels, sel: _Selection, min_cells: int,
                  n_unlabelled: int) -> None:
    """Say which pairs were dropped, and why."""
    obs_c, obs_p, observed_counts = sel.obs_c, sel.obs_p, sel.counts
    control_counts, has_control = sel.control_counts, sel.has_control
    too_few = ~sel.enough & has_control
    if too_few.any():
        idx = np.flatnonzero(too_few)
        examples = ", ".join(
            f"({labels.contexts[obs_c[i]]!r}, {labels.perturbations[obs_p[i]]!r}): "
            f"{observed_counts[i]}"
            for i in idx[:5]
        )
        warnings.warn(
            f"Dropped {idx.size} of {obs_c.size} (context, perturbation) pairs with fewer "
            f"than min_cells={min_cells} cells (e.g. {examples}"
            f"{', ...' if idx.size > 5 else ''}). Pass return_report=True for the full list.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )
    bad_contexts = np.flatnonzero(control_counts < min_cells)
    if bad_contexts.size:
        described = ", ".join(
            f"{labels.contexts[c]!r} ({int(control_counts[c])})" for c in bad_contexts[:5]
        )
        warnings.warn(
            f"{bad_contexts.size} context(s) have fewer than min_cells={min_cells} control "
            f"cells: {described}{', ...' if bad_contexts.size > 5 else ''}. Their "
            f"{int((~has_control).sum())} (context, perturbation) pair(s) were dropped: an "
            "effect needs the controls of its own context.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )
    if n_unlabelled:
        warnings.warn(
            f"{n_unlabelled} cell(s) have no label in obs[{labels.context_key!r}] or "
            f"obs[{labels.perturbation_key!r}] and were ignored.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )


def _groups_table(labels: _GroupLabels, sel: _Selection) -> pd.DataFrame:
    """Every group present in the data with its cell count and fate (the report's table)."""
    obs_c, obs_p, control_counts = sel.obs_c, sel.obs_p, sel.control_counts
    ctrl_ctx = np.flatnonzero(control_counts)
    return pd.DataFrame(
        {
            "context": np.concatenate([labels.contexts[obs_c], labels.contexts[ctrl_ctx]]),
            "perturbation": np.concatenate(
                [labels.perturbations[obs_p],
                 np.full(ctrl_ctx.size, _control_name(labels.controls), dtype=object)]
            ),
            "n_cells": np.concatenate([sel.counts, control_counts[ctrl_ctx]]),
            "is_control": np.concatenate(
                [np.zeros(obs_c.size, bool), np.ones(ctrl_ctx.size, bool)]
            ),
            "status": np.concatenate(
                [sel.status, np.where(sel.context_ok[ctrl_ctx], "kept", "too_few_cells")]
            ),
        }
    )


def _control_name(controls: list):
    return controls[0] if len(controls) == 1 else "+".join(str(c) for c in controls)


def _labels_column(labels: np.ndarray) -> pd.Series:
    return pd.Series(labels, dtype=object).infer_objects()


_OPTION_CONSTRAINTS = {
    "min_cells": [Interval(Integral, 1, None, closed="left")],
    "n_top_genes": [Interval(Integral, 1, None, closed="left"), None],
    "hvg_on": [StrOptions(set(_HVG_ON))],
    "transform": [StrOptions({t for t in _TRANSFORMS if t is not None}), None],
    "target_sum": [Interval(Real, 0, None, closed="neither")],
    "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
}


@dataclass(frozen=True)
class PseudobulkOptions:
    """How :func:`pseudobulk` turns cells into effects: values, filters, genes, blocks.

    One frozen value for the recipe, so that the same recipe serves several
    calls (the training and the test cells, one file and a glob of plates)
    and the ``c3tl`` commands; the data, their label columns and the control
    label stay arguments of :func:`pseudobulk`. The values are checked when
    the options are made, with the messages :func:`pseudobulk` gives.

    Parameters
    ----------
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

    Examples
    --------
    >>> from c3tl_sklearn.preprocessing import PseudobulkOptions
    >>> raw_counts = PseudobulkOptions(transform="normalize_log1p", n_top_genes=2000)
    >>> raw_counts.min_cells
    10
    >>> try:
    ...     PseudobulkOptions(min_cells=0)
    ... except ValueError as exc:
    ...     print(exc)
    The 'min_cells' parameter of pseudobulk must be an int in the range [1, inf). Got 0 instead.
    """

    layer: str | None = None
    min_cells: int = 10
    n_top_genes: int | None = None
    hvg_on: str = "effects"
    transform: str | None = None
    target_sum: float = 1e4
    chunk_size: int | None = None

    def __post_init__(self):
        # named after pseudobulk, whose arguments these were: the messages stay the same
        validate_parameter_constraints(
            _OPTION_CONSTRAINTS,
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            caller_name="pseudobulk",
        )
        object.__setattr__(self, "min_cells", int(self.min_cells))
        object.__setattr__(self, "target_sum", float(self.target_sum))

    @property
    def cell_stats(self) -> bool:
        """Whether the gene selection needs per-gene moments of the cells."""
        return self.n_top_genes is not None and self.hvg_on == "cells"


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

    totals = _Totals(sums.sums, sums.s1, sums.s2, float(sums.used.sum()))
    return _results(plan, totals, genes, options, looks_like_counts=checks.looks_like_counts,
                    return_report=return_report)


@dataclass(frozen=True)
class _Totals:
    """The kept groups' sums (plan row order) and the cells' per-gene moments, if kept."""

    group_sums: np.ndarray
    s1: np.ndarray | None  # per-gene sum of expm1 over the kept groups' cells
    s2: np.ndarray | None  # and of its square
    n_used: float  # cells in the kept groups


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
    gene_stats, selected = select_genes(effects, totals.s1, totals.s2, totals.n_used,
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


