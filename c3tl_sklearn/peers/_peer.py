"""What every peer adapter shares: the estimator API over cells, the work folder, the timings.

A peer adapter is a scikit-learn regressor on the package's contract (an
index table of (context, perturbation) pairs and their effects), so the
benchmark fits, predicts and scores it like C3TL. Underneath it works on
cells: ``fit`` hands the peer the cells of the training pairs and every
control cell, ``predict`` asks it for cells of the new pairs, and the
predicted cells, averaged per pair minus the *same* observed controls the
benchmark's pseudobulk used, are the predicted effects.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from ._cells import CellData, PeerCells, effects_from_cells, select_cells
from ._env import PEERS, check_peer_python, find_peer_python
from ._process import RunStats, run_measured

__all__ = ["PeerRegressor"]


class PeerRegressor(RegressorMixin, BaseEstimator):
    """Base class of the peer adapters; subclasses write the peer's input and read its output.

    Subclasses set ``peer`` (a key of :data:`~c3tl_sklearn.peers.PEERS`) and
    implement ``_fit_peer(cells, rows, X, workdir)`` and
    ``_predict_peer(cells, X, workdir)`` (the second returns
    ``{(context, perturbation): mean predicted cell}``, labels as strings).

    Attributes
    ----------
    genes_ : pandas.Index
        The genes (the effect matrix's columns).
    control_means_ : dict
        Context to the mean of its observed control cells.
    fit_seconds_, predict_seconds_ : float
        Wall time of the peer's training and prediction subprocesses.
    fit_peak_rss_mib_, predict_peak_rss_mib_ : float
        Their peak resident memory (MiB), as :func:`run_measured` reports it.
    peer_version_ : str
        The peer's installed version.
    workdir_ : pathlib.Path
        The folder with the peer's input, model and output (removed with the
        estimator unless ``keep_files``).
    """

    peer: str = ""

    # the cells and label columns are checked where they are read, with the fix
    _parameter_constraints: dict = {
        "cells": "no_validation",
        "context_col": "no_validation",
        "perturbation_col": "no_validation",
        "python": [str, os.PathLike, None],
        "workdir": [str, os.PathLike, None],
        "keep_files": ["boolean"],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": [Interval(Integral, 0, None, closed="left")],
    }

    def _common_init(self, cells, context_col, perturbation_col, python, workdir, keep_files,
                     timeout, random_state):
        self.cells = cells
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.python = python
        self.workdir = workdir
        self.keep_files = keep_files
        self.timeout = timeout
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _python(self) -> Path:
        return find_peer_python(self.peer, self.python)

    def _cell_source(self) -> PeerCells:
        if isinstance(self.cells, PeerCells):
            return self.cells
        raise TypeError(
            f"{type(self).__name__}(cells=...) must be a c3tl_sklearn.peers.PeerCells naming the "
            "cells, their obs columns and the control label; got "
            f"{type(self.cells).__name__}."
        )

    def _run(self, command, *, log: Path, env=None, what: str) -> RunStats:
        env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "PYTHONNOUSERSITE": "1", **(env or {})}
        return run_measured(command, log=log, env=env, cwd=self.workdir_,
                            timeout=self.timeout, what=f"{PEERS[self.peer].label} {what}")

    def _make_workdir(self) -> Path:
        if self.workdir is not None:
            path = Path(self.workdir)
            path.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix=f"{self.peer}-", dir=path))
        else:
            path = Path(tempfile.mkdtemp(prefix=f"c3tl-{self.peer}-"))
        if not self.keep_files:
            self._finalizer = weakref.finalize(self, shutil.rmtree, path, True)
        return path

    # ------------------------------------------------------------------ API
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: pd.DataFrame, y):
        """Train the peer on the cells of the pairs in ``X`` (and every control cell).

        Parameters
        ----------
        X : pandas.DataFrame
            Index table of the training pairs.
        y : DataFrame of shape (n_pairs, n_genes)
            Their effects; only the gene names (columns) are used: the peer
            learns from the cells.

        Returns
        -------
        self
        """
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__}.fit takes the index table as a DataFrame.")
        source = self._cell_source()
        python = self._python()
        self.peer_version_ = check_peer_python(self.peer, python)
        genes = list(map(str, y.columns)) if isinstance(y, pd.DataFrame) else None
        cells = source.load(genes)
        if genes is None and np.shape(y)[1] != cells.X.shape[1]:
            raise ValueError(f"y has {np.shape(y)[1]} columns but the cells {cells.X.shape[1]} "
                             "genes; pass y as a DataFrame with gene names.")
        self.genes_ = cells.genes
        self.control_means_ = cells.control_means()
        rows = select_cells(cells, X, self.context_col, self.perturbation_col)
        self.workdir_ = self._make_workdir()
        self.python_ = python
        stats = self._fit_peer(cells, rows, X, self.workdir_)
        self.fit_seconds_, self.fit_peak_rss_mib_ = stats.seconds, stats.peak_rss_mib
        self.n_train_cells_ = int(rows.size)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted effects of the pairs of ``X``: mean predicted cell minus the controls.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table; every context needs control cells in the data.

        Returns
        -------
        effects : ndarray of shape (n_pairs, n_genes)
        """
        check_is_fitted(self, "workdir_")
        cells = self._cell_source().load(list(self.genes_))
        missing = sorted({str(c) for c in X[self.context_col].astype(str)}
                         - set(self.control_means_))
        if missing:
            raise ValueError(f"No control cells for context(s) {missing[:5]}: the peers predict "
                             "a context's cells from its controls.")
        means, stats = self._predict_peer(cells, X, self.workdir_)
        self.predict_seconds_, self.predict_peak_rss_mib_ = stats.seconds, stats.peak_rss_mib
        return effects_from_cells(means, self.control_means_, X, self.context_col,
                                  self.perturbation_col, PEERS[self.peer].label)

    # ------------------------------------------------------------------ subclasses
    def _fit_peer(self, cells: CellData, rows: np.ndarray, X: pd.DataFrame,
                  workdir: Path) -> RunStats:  # pragma: no cover - abstract
        raise NotImplementedError

    def _predict_peer(self, cells: CellData, X: pd.DataFrame,
                      workdir: Path) -> tuple[dict, RunStats]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = True
        return tags


def _pair_means(X: np.ndarray, contexts, perturbations) -> dict:
    """``(context, perturbation)`` to the mean row of ``X`` over the rows with those labels."""
    frame = pd.DataFrame({"c": np.asarray(contexts, dtype=str),
                          "p": np.asarray(perturbations, dtype=str)})
    out = {}
    for (c, p), index in frame.groupby(["c", "p"], sort=False).indices.items():
        out[(c, p)] = np.asarray(X[index], dtype=np.float64).mean(axis=0)
    return out
