"""What pseudo-bulk takes and returns besides data: its options, its report, its warning."""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import pandas as pd
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints

__all__ = ["PseudobulkOptions", "PseudobulkReport", "PseudobulkWarning"]

_HVG_ON = ("effects", "cells")
_TRANSFORMS = (None, "log1p", "normalize_log1p")


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


_OPTION_CONSTRAINTS = {
    "layer": [str, None],
    "min_cells": [Interval(Integral, 1, None, closed="left")],
    "n_top_genes": [Interval(Integral, 1, None, closed="left"), None],
    "hvg_on": [StrOptions(set(_HVG_ON))],
    "transform": [StrOptions({t for t in _TRANSFORMS if t is not None}), None],
    "target_sum": [Interval(Real, 0, None, closed="neither")],
    "chunk_size": [Interval(Integral, 1, None, closed="left"), None],
}


def check_options(values: dict, caller_name: str) -> None:
    """Validate some of the pseudo-bulk options for ``caller_name`` (which names them alike)."""
    validate_parameter_constraints(
        {name: _OPTION_CONSTRAINTS[name] for name in values}, values, caller_name=caller_name
    )


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
        check_options(
            {name: getattr(self, name) for name in _OPTION_CONSTRAINTS}, caller_name="pseudobulk"
        )
        object.__setattr__(self, "min_cells", int(self.min_cells))
        object.__setattr__(self, "target_sum", float(self.target_sum))

    @property
    def cell_stats(self) -> bool:
        """Whether the gene selection needs per-gene moments of the cells."""
        return self.n_top_genes is not None and self.hvg_on == "cells"
