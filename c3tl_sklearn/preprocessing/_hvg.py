"""Highly variable genes for :func:`~c3tl_sklearn.preprocessing.pseudobulk`: scores and selection.

``hvg_on="cells"`` reproduces scanpy's ``flavor="seurat"`` normalised dispersion
from per-gene moments accumulated while the cells stream by; scanpy's
:func:`scanpy.pp.highly_variable_genes` needs the whole matrix in memory, which
a backed file larger than memory does not allow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


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



def select_genes(effects: np.ndarray, s1, s2, n_used: float, n_top_genes: int | None,
                 hvg_on: str, genes: pd.Index):
    """Rank the genes and keep the ``n_top_genes`` most variable.

    Parameters
    ----------
    effects : ndarray of shape (n_pairs, n_genes)
        The effects, for ``hvg_on="effects"``: the variance across pairs.
    s1, s2 : ndarray of shape (n_genes,) or None
        Sums of ``expm1(x)`` and its square over the ``n_used`` cells, for
        ``hvg_on="cells"``: scanpy's Seurat normalised dispersion.
    n_used : float
        Number of cells the sums cover.
    n_top_genes : int or None
        How many genes to keep (all of them when it exceeds their number); ``None``
        keeps every gene.
    hvg_on : {"effects", "cells"}
    genes : pandas.Index
        Gene names, the index of the returned table.

    Returns
    -------
    gene_stats : pandas.DataFrame or None
        ``score`` (plus ``mean`` and ``variance`` on cells) and ``selected``;
        ``None`` without ``n_top_genes``.
    selected : ndarray of bool, shape (n_genes,)
    """
    n_vars = effects.shape[1]
    if n_top_genes is None:
        return None, np.ones(n_vars, dtype=bool)
    n_top = min(int(n_top_genes), n_vars)
    if hvg_on == "effects":
        score = effects.var(axis=0)
        gene_stats = pd.DataFrame({"score": score}, index=genes)
    else:
        mean = s1 / n_used
        var = np.maximum((s2 - n_used * mean**2) / max(n_used - 1.0, 1.0), 0.0)
        score, _ = _seurat_dispersion_norm(mean, var)
        gene_stats = pd.DataFrame({"score": score, "mean": mean, "variance": var},
                                  index=genes)
    selected = _top_genes(np.asarray(score, dtype=np.float64), n_top)
    gene_stats["selected"] = selected
    return gene_stats, selected
