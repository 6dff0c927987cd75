"""The real LINCS L1000 shRNA knockdown effects shipped with the package."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

__all__ = ["load_lincs_knockdowns"]

_FILE = "lincs_shrna6.npz"


def load_lincs_knockdowns(*, as_frame: bool = True):
    """Load LINCS L1000 shRNA knockdown effects in six cancer cell lines.

    Real bulk data: knockdowns of 944 landmark genes measured in six cell lines
    (A375, A549, HA1E, HT29, MCF7, PC3), 5,125 (cell line, knockdown) rows over
    the 593 genes measured in all six lines. Each row is the log2 fold change of
    the knockdown against the LUCIFERASE shRNA control of the same cell line.
    Data from LINCS (Subramanian et al., Cell 2017) as aggregated by
    meyer-lab/DE-learning (MIT licence, shipped beside the data).

    Parameters
    ----------
    as_frame : bool, default=True
        If True, ``Y`` is a DataFrame with gene symbols as columns; otherwise a
        float32 array.

    Returns
    -------
    X : pandas.DataFrame of shape (5125, 2)
        Index table with columns ``context`` (cell line) and ``perturbation``
        (knocked-down gene).
    Y : pandas.DataFrame or ndarray of shape (5125, 593)
        Effects, float32.

    Examples
    --------
    >>> from c3tl_sklearn.datasets import load_lincs_knockdowns
    >>> X, Y = load_lincs_knockdowns()
    >>> X.shape, Y.shape
    ((5125, 2), (5125, 593))
    >>> sorted(X["context"].unique())
    ['A375', 'A549', 'HA1E', 'HT29', 'MCF7', 'PC3']
    """
    path = resources.files("c3tl_sklearn.datasets").joinpath("data", _FILE)
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as f:
        effects = (f["effects"].astype(np.float32) / np.float32(f["scale"])).astype(np.float32)
        X = pd.DataFrame(
            {"context": f["context"].astype(str).astype(object),
             "perturbation": f["perturbation"].astype(str).astype(object)}
        )
        genes = f["genes"].astype(str)
    if not as_frame:
        return X, effects
    return X, pd.DataFrame(effects, columns=pd.Index(genes, name="gene"))
