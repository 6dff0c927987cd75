"""Real single cells shipped with the package: CRISPRi in three glioblastoma lines."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
from scipy import sparse

from ._cellmatrix import _cells_result

__all__ = ["load_glioblastoma_crispri"]

_FILE = "glioblastoma_crispri.npz"


def load_glioblastoma_crispri(*, as_anndata: bool = True):
    """Load real single cells: CRISPRi knockdowns in three glioblastoma cell lines.

    2,586 cells from McFaline-Figueroa et al. (2023): knockdowns of nine
    genes (MAP2K3, MAP2K6, MAP3K21, MAP4K3, MAP4K5, MAPK1, PLK4, SGK1,
    TGFBR2) and non-targeting ``"control"`` cells, in each of the cell lines
    A172, T98G and U87MG, with 46 to 100 cells per (line, perturbation) and
    100 controls per line. Expression is ``log1p`` of library-size-normalised
    counts over 500 highly variable genes. The cells are the multi-context
    part of PerturBench's development file (Altos Labs, BSD 3-Clause licence,
    shipped beside the data with its attribution).

    Every knockdown is measured in every line, so holding out one line and
    predicting its knockdowns from the other two is the package's transfer
    problem on real cells; :func:`~c3tl_sklearn.preprocessing.pseudobulk`
    turns the cells into the effects the estimators take.

    Parameters
    ----------
    as_anndata : bool, default=True
        If True, return an :class:`anndata.AnnData` (needs the optional
        dependency anndata: ``pip install c3tl-sklearn[anndata]``).
        Otherwise return the matrix, the cell table and the gene names.

    Returns
    -------
    adata : anndata.AnnData of shape (2586, 500)
        With ``as_anndata=True``. ``X``: CSR float32 log-normalised
        expression; ``obs`` (indexed by cell barcode): ``cell_line``,
        ``perturbation`` (the knocked-down gene or ``"control"``),
        ``ncounts`` (the cell's total counts before gene selection) and
        ``ngenes`` (genes detected); ``var_names``: gene symbols.
    (X, obs, genes) : tuple
        With ``as_anndata=False``: ``X`` a :class:`scipy.sparse.csr_matrix`
        of shape (2586, 500), ``obs`` the cell table as a DataFrame and
        ``genes`` a :class:`pandas.Index` of gene symbols.

    Examples
    --------
    >>> from c3tl_sklearn.datasets import load_glioblastoma_crispri
    >>> adata = load_glioblastoma_crispri()
    >>> adata.shape
    (2586, 500)
    >>> sorted(adata.obs["cell_line"].unique())
    ['A172', 'T98G', 'U87MG']
    >>> (adata.obs["perturbation"] == "control").sum()
    np.int64(300)

    Effects per (cell line, knockdown), each against its own line's controls:

    >>> from c3tl_sklearn.preprocessing import pseudobulk
    >>> X, Y = pseudobulk(adata, "cell_line", "perturbation", control="control")
    >>> X.shape, Y.shape
    ((27, 4), (27, 500))
    """
    path = resources.files("c3tl_sklearn.datasets").joinpath("data", _FILE)
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as f:
        X = sparse.csr_matrix(
            (f["data"], f["indices"].astype(np.int32), f["indptr"]),
            shape=tuple(int(s) for s in f["shape"]),
        )
        obs = pd.DataFrame(
            {
                "cell_line": pd.Categorical(f["cell_line"].astype(str)),
                "perturbation": pd.Categorical(f["perturbation"].astype(str)),
                "ncounts": f["ncounts"],
                "ngenes": f["ngenes"],
            },
            index=pd.Index(f["obs_names"].astype(str), name="cell"),
        )
        genes = pd.Index(f["genes"].astype(str), name="gene")
    return _cells_result(X, obs, genes, as_anndata=as_anndata,
                         caller="load_glioblastoma_crispri")
