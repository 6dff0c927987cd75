"""What the single-cell loaders return: an AnnData, or the matrix, cell table and genes."""

from __future__ import annotations

import pandas as pd


def _cells_result(X, obs: pd.DataFrame, genes: pd.Index, *, as_anndata: bool, caller: str):
    """``anndata.AnnData(X, obs, var=genes)``, or ``(X, obs, genes)`` without ``as_anndata``.

    One place for the optional import, so that every loader names itself and
    the way around it in the same words.
    """
    if not as_anndata:
        return X, obs, genes
    hint = f"{caller}(as_anndata=True) needs the optional dependency anndata: "
    try:
        import anndata
    except ImportError as exc:  # pragma: no cover - exercised only without anndata
        raise ImportError(hint + "pip install c3tl-sklearn[anndata]; or pass as_anndata=False."
                          ) from exc
    return anndata.AnnData(X=X, obs=obs, var=pd.DataFrame(index=genes))
