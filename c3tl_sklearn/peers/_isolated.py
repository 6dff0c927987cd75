"""Fit and predict any estimator in a fresh subprocess, measured as the peers are.

The peers run as subprocesses whose peak resident memory ``wait4`` reports;
C3TL and the baselines run in-process, where the benchmark's own memory
(the data, other models) would be counted with theirs. Wrapped in
:class:`IsolatedRegressor`, each ``fit`` and ``predict`` runs in a new
interpreter of this environment (the estimator, the data and the fitted
model pass through pickle files), so every model's figures include the same
things: an interpreter, its imports, its data and its work.

Run as ``python -m c3tl_sklearn.peers._isolated fit|predict IN OUT``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._process import run_measured

__all__ = ["IsolatedRegressor"]


class IsolatedRegressor(RegressorMixin, BaseEstimator):
    """Run ``estimator``'s ``fit`` and ``predict`` in subprocesses; record time and peak memory.

    Parameters
    ----------
    estimator : estimator
        Any picklable regressor.
    threads : int, default=1
        ``OMP_NUM_THREADS`` (and torch's threads) of the subprocess.

    Attributes
    ----------
    estimator_ : estimator
        The fitted clone (loaded back from the subprocess).
    fit_seconds_, predict_seconds_ : float
        Wall time of the subprocesses (interpreter start and imports included,
        as for the peers).
    fit_peak_rss_mib_, predict_peak_rss_mib_ : float
        Peak resident memory of the subprocesses (MiB).

    Examples
    --------
    >>> from c3tl_sklearn.baselines import MeanBaseline
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> from c3tl_sklearn.peers import IsolatedRegressor
    >>> X, Y = make_synthetic_perturbations(3, 10, 5, random_state=0)
    >>> model = IsolatedRegressor(MeanBaseline()).fit(X, Y)
    >>> model.predict(X).shape
    (30, 5)
    >>> model.fit_peak_rss_mib_ > 0
    True
    """

    def __init__(self, estimator, *, threads: int = 1):
        self.estimator = estimator
        self.threads = threads

    def _call(self, action: str, payload, folder: Path):
        inp, out = folder / f"{action}.in.pkl", folder / f"{action}.out.pkl"
        with open(inp, "wb") as fh:
            pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
        # the package must import in the child as it does here (a source checkout included)
        root = os.fspath(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        stats = run_measured(
            [sys.executable, "-m", "c3tl_sklearn.peers._isolated", action, inp, out],
            log=folder / f"{action}.log", what=f"{type(self.estimator).__name__}.{action}",
            env={"OMP_NUM_THREADS": str(self.threads), "PYTHONPATH": path,
                 "C3TL_ISOLATED_THREADS": str(self.threads)},
        )
        with open(out, "rb") as fh:
            return pickle.load(fh), stats

    def fit(self, X, y):
        """Fit a clone of ``estimator`` in a subprocess.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table with the label columns ``estimator`` reads.
        y : array-like of shape (n_rows, n_genes)
            Effects of the rows of ``X``, pickled to the subprocess with it.

        Returns
        -------
        self
        """
        folder = Path(tempfile.mkdtemp(prefix="c3tl-isolated-"))
        try:
            self.estimator_, stats = self._call("fit", (clone(self.estimator), X, y), folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.fit_seconds_, self.fit_peak_rss_mib_ = stats.seconds, stats.peak_rss_mib
        history = getattr(self.estimator_, "history_", None)
        if history is not None:
            self.history_ = history
        return self

    def predict(self, X) -> np.ndarray:
        """Predict with the fitted estimator in a subprocess.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table of the pairs to predict.

        Returns
        -------
        y : ndarray of shape (n_rows, n_genes)
        """
        check_is_fitted(self, "estimator_")
        folder = Path(tempfile.mkdtemp(prefix="c3tl-isolated-"))
        try:
            pred, stats = self._call("predict", (self.estimator_, X), folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.predict_seconds_, self.predict_peak_rss_mib_ = stats.seconds, stats.peak_rss_mib
        return pred


def _main(argv) -> int:
    action, inp, out = argv
    threads = int(os.environ.get("C3TL_ISOLATED_THREADS", "1"))
    from threadpoolctl import threadpool_limits

    with open(inp, "rb") as fh:
        payload = pickle.load(fh)
    if "torch" in sys.modules or action == "fit":
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    with threadpool_limits(limits=threads):
        if action == "fit":
            estimator, X, y = payload
            result = estimator.fit(X, y)
        elif action == "predict":
            estimator, X = payload
            result = np.asarray(estimator.predict(X))
        else:
            raise SystemExit(f"unknown action {action!r}")
    with open(out, "wb") as fh:
        pickle.dump(result, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
