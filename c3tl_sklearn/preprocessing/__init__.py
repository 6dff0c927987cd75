"""From single cells to pseudo-bulk effects, and from predictions back to AnnData.

C3TL works on *effects*: for a perturbation ``p`` in a context ``c`` (a cell
line, donor, cell type), the mean expression of the cells that received ``p``
in ``c`` minus the mean expression of the control cells of the same context.
:func:`pseudobulk` turns a single-cell :class:`anndata.AnnData` (in memory,
opened with ``backed="r"``, or a path to an ``.h5ad`` file larger than memory)
into the package's data contract: an index table ``X`` and an effect matrix
``Y``. :func:`to_anndata` packs predictions into an AnnData so that they drop
into scanpy plotting and cell-eval-style tools. :func:`to_cell_eval` writes
predictions as the ``pred.h5ad``/``real.h5ad`` pair that ``cell-eval run``
accepts (the truth as :class:`TruthCells` or :class:`TruthEffects`), and
:func:`read_cell_eval` reads any such pair back as effects for
:func:`~c3tl_sklearn.metrics.score_table`.

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

from ._celleval import (
    CellEvalEffects,
    CellEvalFiles,
    TruthCells,
    TruthEffects,
    read_cell_eval,
    to_cell_eval,
)
from ._h5ad import to_anndata
from ._options import PseudobulkOptions, PseudobulkReport, PseudobulkWarning
from ._pseudobulk import pseudobulk

__all__ = [
    "CellEvalEffects",
    "CellEvalFiles",
    "PseudobulkOptions",
    "PseudobulkReport",
    "PseudobulkWarning",
    "TruthCells",
    "TruthEffects",
    "pseudobulk",
    "read_cell_eval",
    "to_anndata",
    "to_cell_eval",
]
