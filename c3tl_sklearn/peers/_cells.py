"""The user's single cells as the peers see them: the benchmark's values, genes and controls."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

__all__ = ["CellData", "PeerCells"]


@dataclass
class CellData:
    """Cells in memory: expression (dense float32), labels, gene names.

    ``perturbations`` holds ``control`` for every control cell, whatever
    label(s) the file used, so that the peers see one control condition.
    """

    X: np.ndarray
    contexts: np.ndarray
    perturbations: np.ndarray
    genes: pd.Index
    control: str

    def controls_of(self, context) -> np.ndarray:
        """Row numbers of the control cells of ``context``."""
        return np.flatnonzero((self.contexts == context) & (self.perturbations == self.control))

    def control_means(self) -> dict:
        """Mean control expression of every context that has controls (float64)."""
        out = {}
        for context in pd.unique(self.contexts):
            rows = self.controls_of(context)
            if rows.size:
                out[context] = self.X[rows].mean(axis=0, dtype=np.float64)
        return out


@dataclass
class PeerCells:
    """Where the peers find the cells that the benchmark pseudo-bulked, and how to read them.

    The values are those the effects were computed from: the same ``layer``
    and ``transform`` as :func:`~c3tl_sklearn.preprocessing.pseudobulk`, so
    that a peer's predicted cells, averaged and minus the same controls, are
    effects on the benchmark's scale.

    Parameters
    ----------
    adata : AnnData or path
        The cells (an ``.h5ad`` path is read when first needed).
    context_key, perturbation_key : hashable
        obs columns with the context and perturbation of every cell.
    control : hashable or sequence of hashable
        Control label(s); several are pooled as the pseudobulk pools them.
    layer : str, optional
        Use this layer instead of ``X``.
    transform : {None, "log1p", "normalize_log1p"}, optional
        As in :func:`~c3tl_sklearn.preprocessing.pseudobulk`.
    target_sum : float, default=1e4
        Total per cell for ``"normalize_log1p"``.
    """

    adata: object
    context_key: Hashable
    perturbation_key: Hashable
    control: Hashable | Sequence[Hashable]
    layer: str | None = None
    transform: str | None = None
    target_sum: float = 1e4
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        from ..preprocessing._options import check_options

        check_options({"layer": self.layer, "transform": self.transform,
                       "target_sum": self.target_sum}, caller_name="PeerCells")
        self.target_sum = float(self.target_sum)

    @property
    def controls(self) -> list:
        if isinstance(self.control, (list, tuple, set, frozenset, np.ndarray, pd.Index)):
            return list(self.control)
        return [self.control]

    def _adata(self):
        if isinstance(self.adata, (str, os.PathLike)):
            if "adata" not in self._cache:
                import anndata

                self._cache["adata"] = anndata.read_h5ad(os.fspath(self.adata))
            return self._cache["adata"]
        return self.adata

    def load(self, genes: Sequence[str] | None = None) -> CellData:
        """The cells with the benchmark's values, restricted to ``genes`` (in that order).

        Parameters
        ----------
        genes : sequence of str, optional
            Gene names (the effect matrix's columns); ``None`` keeps all.

        Returns
        -------
        cells : CellData
            Only cells with both labels; controls relabelled to one label.

        Raises
        ------
        ValueError
            A missing obs column, layer or gene, or no control cell.
        """
        from ..preprocessing._h5ad import transform_block

        key = None if genes is None else tuple(map(str, genes))
        if self._cache.get("key", object()) == key:
            return self._cache["cells"]
        adata = self._adata()
        for column in (self.context_key, self.perturbation_key):
            if column not in adata.obs.columns:
                raise ValueError(f"The cells have no obs column {column!r}; their columns are "
                                 f"{list(adata.obs.columns)[:20]}.")
        matrix = adata.X if self.layer is None else adata.layers[self.layer]
        contexts = adata.obs[self.context_key].to_numpy(dtype=object)
        perturbations = adata.obs[self.perturbation_key].to_numpy(dtype=object)
        labelled = ~(pd.isna(contexts) | pd.isna(perturbations))
        rows = np.flatnonzero(labelled)
        names = pd.Index(adata.var_names).astype(str)
        # the normalisation sees every gene of a cell (as the pseudobulk's does) before
        # the gene subset is taken
        block = matrix[rows]
        if hasattr(block, "to_memory"):
            block = block.to_memory()
        block = transform_block(block, self.transform, self.target_sum)
        if key is not None:
            missing = [g for g in key if g not in set(names)]
            if missing:
                raise ValueError(f"{len(missing)} gene(s) of the effects are not genes of the "
                                 f"cells, e.g. {missing[:5]}.")
            block = block[:, names.get_indexer(list(key))]
            names = pd.Index(list(key))
        X = block.toarray() if sparse.issparse(block) else np.asarray(block)
        controls = self.controls
        control = str(controls[0])
        perts = perturbations[rows].astype(str).astype(object)
        is_control = np.isin(perturbations[rows], np.array(controls, dtype=object))
        perts[is_control] = control
        if not is_control.any():
            raise ValueError(f"No cell has the control label(s) {controls!r} in "
                             f"obs[{self.perturbation_key!r}].")
        cells = CellData(X=np.ascontiguousarray(X, dtype=np.float32),
                         contexts=contexts[rows].astype(str).astype(object),
                         perturbations=perts, genes=names, control=control)
        self._cache.update(key=key, cells=cells)
        return cells


def select_cells(cells: CellData, X: pd.DataFrame, context_col, perturbation_col, *,
                 with_controls: bool = True) -> np.ndarray:
    """Rows of ``cells`` in the (context, perturbation) pairs of ``X``, plus every control.

    Labels are compared as strings, as the peers' files store them.
    """
    pairs = pd.MultiIndex.from_arrays([X[context_col].astype(str).to_numpy(),
                                       X[perturbation_col].astype(str).to_numpy()])
    cell_pairs = pd.MultiIndex.from_arrays([cells.contexts, cells.perturbations])
    keep = cell_pairs.isin(pairs)
    if with_controls:
        keep |= cells.perturbations == cells.control
    return np.flatnonzero(keep)


def effects_from_cells(pred_means: dict, control_means: dict, X: pd.DataFrame, context_col,
                       perturbation_col, what: str) -> np.ndarray:
    """Pseudo-bulk effects of predicted cells: the mean predicted cell minus the same controls.

    Parameters
    ----------
    pred_means : dict
        ``(context, perturbation)`` (strings) to the mean of the peer's
        predicted cells.
    control_means : dict
        Context (string) to the mean of its observed control cells, the
        controls the benchmark's effects were computed against.
    X : pandas.DataFrame
        The pairs to return, in order.
    what : str
        The peer's name, for the error.
    """
    out = []
    missing = []
    for c, p in zip(X[context_col].astype(str), X[perturbation_col].astype(str), strict=True):
        mean = pred_means.get((c, p))
        if mean is None or c not in control_means:
            missing.append((c, p))
            continue
        out.append(np.asarray(mean, dtype=np.float64) - control_means[c])
    if missing:
        raise ValueError(f"{what} returned no predicted cells for {len(missing)} pair(s), "
                         f"e.g. {missing[:3]}.")
    return np.vstack(out) if out else np.empty((0, 0))
