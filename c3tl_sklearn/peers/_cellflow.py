"""CellFlow (flow matching on cells, Theis lab) as a peer: PCA space, one-hot conditions.

CellFlow learns a flow from control cells to perturbed cells in a
low-dimensional representation. ``fit`` fits a PCA on the training cells
(the training pairs' cells and every control cell) and keeps its loadings and
mean, writes the cells' PCA scores with one-hot encodings of the
perturbations and contexts (State's comparison in the paper gives every
model the labels only, no prior knowledge), and trains CellFlow in its own
environment (``_scripts/cellflow_runner.py``). ``predict`` sends each
context's control cells with the pairs to predict; the predicted cells come
back in PCA space and are mapped to genes through the kept loadings
(``scores @ components + mean``), then averaged per pair minus the observed
controls.
"""

from __future__ import annotations

import json
import os
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import Interval

from ._cells import CellData
from ._peer import PeerRegressor
from ._process import RunStats

__all__ = ["CellFlowPeer", "read_cellflow_predictions"]

_RUNNER = Path(__file__).resolve().parent / "_scripts" / "cellflow_runner.py"


def _one_hot(labels) -> dict:
    labels = list(labels)
    eye = np.eye(len(labels), dtype=np.float32)
    return {str(label): eye[i] for i, label in enumerate(labels)}


class CellFlowPeer(PeerRegressor):
    """CellFlow (``cellflow-tools``), trained and run in its own environment.

    Parameters
    ----------
    cells, context_col, perturbation_col
        As for :class:`StatePeer`.
    python : path, optional
        Interpreter or virtual environment with ``cellflow-tools``; ``None``
        uses ``C3TL_CELLFLOW_PYTHON`` or ``~/.cache/c3tl/peers/cellflow``
        (``c3tl peers install cellflow`` creates it).
    n_components : int, default=30
        PCA components CellFlow works in (capped by the cells and genes).
    hidden_dim : int, default=128
        Width of the velocity field's and time encoder's layers (CellFlow's
        defaults are 2,048-4,096; CPU-sized here).
    condition_dim : int, default=64
        Width of the condition embedding.
    num_iterations : int, default=1000
        Training iterations.
    batch_size : int, default=256
        Cells per iteration.
    lr : float, default=1e-3
        Adam's learning rate.
    workdir, keep_files, timeout, random_state
        As for :class:`StatePeer`.

    Notes
    -----
    CellFlow is licensed PolyForm Noncommercial 1.0.0; it is never a
    dependency of this package.
    """

    peer = "cellflow"

    _parameter_constraints: dict = {
        **PeerRegressor._parameter_constraints,
        **{name: [Interval(Integral, 1, None, closed="left")]
           for name in ("n_components", "hidden_dim", "condition_dim", "num_iterations",
                        "batch_size")},
        "lr": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, cells=None, *, context_col="context", perturbation_col="perturbation",
                 python=None, n_components: int = 30, hidden_dim: int = 128,
                 condition_dim: int = 64, num_iterations: int = 1000, batch_size: int = 256,
                 lr: float = 1e-3, workdir=None, keep_files: bool = False,
                 timeout: float | None = None, random_state: int = 0):
        self._common_init(cells, context_col, perturbation_col, python, workdir, keep_files,
                          timeout, random_state)
        # scikit-learn's rule: every parameter stored as given, under its own name
        self.n_components, self.hidden_dim, self.condition_dim = (
            n_components, hidden_dim, condition_dim)
        self.num_iterations, self.batch_size, self.lr = num_iterations, batch_size, lr

    def _config(self, workdir: Path) -> Path:
        path = workdir / "config.json"
        path.write_text(json.dumps({
            "folder": os.fspath(workdir.resolve()), "hidden_dim": int(self.hidden_dim),
            "condition_dim": int(self.condition_dim), "condition_dropout": 0.0,
            "time_freqs": 64, "num_iterations": int(self.num_iterations),
            "batch_size": int(self.batch_size), "lr": float(self.lr),
            "seed": int(self.random_state),
        }, indent=1), encoding="utf-8")
        return path

    def write_input(self, cells: CellData, rows: np.ndarray, workdir: Path) -> Path:
        """Fit the PCA on the training cells and write CellFlow's ``train.h5ad``.

        Sets ``pca_components_`` (components x genes) and ``pca_mean_``.

        Returns
        -------
        path : pathlib.Path
        """
        import anndata
        from sklearn.decomposition import PCA

        X = cells.X[rows]
        k = int(min(self.n_components, X.shape[0] - 1, X.shape[1]))
        pca = PCA(n_components=k, svd_solver="randomized", random_state=self.random_state)
        pca.fit(X)
        self.pca_components_ = pca.components_.astype(np.float32)
        self.pca_mean_ = pca.mean_.astype(np.float32)
        # the same linear map as for the query's controls (fit_transform's U * S of a
        # randomized SVD differs from the projection in the last digits)
        scores = ((X - self.pca_mean_) @ self.pca_components_.T).astype(np.float32)
        perturbations = cells.perturbations[rows].astype(str)
        contexts = cells.contexts[rows].astype(str)
        is_control = perturbations == cells.control
        treated = sorted(set(perturbations[~is_control]))
        # controls carry the first perturbation's label in the column CellFlow encodes, but
        # control=True keeps them out of its conditions (they are the flow's source cells)
        pert_column = np.where(is_control, treated[0] if treated else cells.control,
                               perturbations)
        obs = pd.DataFrame({
            "perturbation": pd.Categorical(pert_column, categories=treated),
            "context": pd.Categorical(contexts, categories=sorted(set(cells.contexts))),
            "control": is_control,
        }, index=[f"c{i}" for i in range(len(rows))])
        adata = anndata.AnnData(np.zeros((len(rows), 1), dtype=np.float32), obs=obs)
        adata.obsm["X_pca"] = scores
        adata.uns["pert_emb"] = _one_hot(treated)
        adata.uns["ctx_emb"] = _one_hot(sorted(set(cells.contexts)))
        path = workdir / "train.h5ad"
        adata.write_h5ad(path)
        self.train_perturbations_ = treated
        return path

    def _fit_peer(self, cells, rows, X, workdir) -> RunStats:
        self.write_input(cells, rows, workdir)
        config = self._config(workdir)
        return self._run([os.fspath(self.python_), os.fspath(_RUNNER), "train",
                          os.fspath(config)], log=workdir / "train.log", what="training",
                         env=_jax_env())

    def write_query(self, cells: CellData, X: pd.DataFrame, workdir: Path) -> pd.DataFrame:
        """Write ``query.h5ad`` (the contexts' controls in PCA space) and ``conditions.csv``."""
        import anndata

        pairs = pd.DataFrame({"context": X[self.context_col].astype(str).to_numpy(),
                              "perturbation": X[self.perturbation_col].astype(str).to_numpy()})
        unknown = sorted(set(pairs["perturbation"]) - set(self.train_perturbations_))
        if unknown:
            raise ValueError(f"CellFlow has no encoding for perturbation(s) {unknown[:5]} that "
                             "no training cell received.")
        rows = np.concatenate([cells.controls_of(c) for c in pd.unique(pairs["context"])])
        scores = (cells.X[rows] - self.pca_mean_) @ self.pca_components_.T
        obs = pd.DataFrame({
            "perturbation": pd.Categorical([self.train_perturbations_[0]] * rows.size,
                                           categories=self.train_perturbations_),
            "context": pd.Categorical(cells.contexts[rows].astype(str)),
            "control": np.ones(rows.size, dtype=bool),
        }, index=[f"q{i}" for i in range(rows.size)])
        query = anndata.AnnData(np.zeros((rows.size, 1), dtype=np.float32), obs=obs)
        query.obsm["X_pca"] = scores.astype(np.float32)
        query.write_h5ad(workdir / "query.h5ad")
        pairs.to_csv(workdir / "conditions.csv", index=False)
        return pairs

    def _predict_peer(self, cells, X, workdir):
        pairs = self.write_query(cells, X, workdir)
        config = self._config(workdir)
        stats = self._run([os.fspath(self.python_), os.fspath(_RUNNER), "predict",
                           os.fspath(config)], log=workdir / "predict.log",
                          what="prediction", env=_jax_env())
        means = read_cellflow_predictions(workdir / "predicted.npz", pairs,
                                          self.pca_components_, self.pca_mean_)
        return means, stats


def _jax_env() -> dict:
    # one core per process, as every other model of the benchmark gets
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    return {"JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                        f"intra_op_parallelism_threads={threads}")}


def read_cellflow_predictions(path: str | os.PathLike, pairs: pd.DataFrame,
                              components: np.ndarray, mean: np.ndarray) -> dict:
    """Mean predicted cell per pair, in gene space, from the runner's ``predicted.npz``.

    Parameters
    ----------
    path : path
        ``predicted.npz``: ``"pair<i>"`` to the predicted cells (PCA scores)
        of row ``i`` of ``pairs``.
    pairs : pandas.DataFrame
        ``context`` and ``perturbation`` of the predicted pairs (strings).
    components : ndarray of shape (n_components, n_genes)
        The PCA loadings the training input was made with.
    mean : ndarray of shape (n_genes,)
        The PCA's gene means.

    Returns
    -------
    means : dict
        ``(context, perturbation)`` to the mean predicted expression; the map
        back is linear, so the mean of the mapped cells is the mapped mean.

    Raises
    ------
    ValueError
        A pair without predictions, or scores of the wrong width.
    """
    out = {}
    with np.load(path) as data:
        for i, (c, p) in enumerate(zip(pairs["context"], pairs["perturbation"], strict=True)):
            key = f"pair{i}"
            if key not in data:
                raise ValueError(f"{path}: CellFlow wrote no prediction for ({c}, {p}).")
            scores = np.asarray(data[key], dtype=np.float64)
            if scores.ndim != 2 or scores.shape[1] != components.shape[0]:
                raise ValueError(f"{path}: the prediction for ({c}, {p}) has shape "
                                 f"{scores.shape}, not (cells, {components.shape[0]}).")
            out[(str(c), str(p))] = scores.mean(axis=0) @ components + mean
    return out
