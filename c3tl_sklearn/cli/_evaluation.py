"""Fitting, predicting and scoring the models on the benchmark's splits, through joblib."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .._parallel import parallel_map
from ..metrics import score_table
from ._plots import _plot_scarcity, _plot_scatter
from ._registry import METRICS
from ._splits import _Split, _split_text

__all__ = ["_Evaluation", "_fit_split"]

_SCORE_KEYS = ["model", "split", "test_context", "n_train_contexts", "adaptation_fraction"]


def _fit_split(model, X: pd.DataFrame, Y: pd.DataFrame, split: _Split, context_col,
               k: int) -> dict:
    """Fit, predict and score one model on one split; a plain function for joblib."""
    t0 = time.perf_counter()
    model.fit(X.iloc[split.train], Y.iloc[split.train])
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = np.asarray(model.predict(X.iloc[split.test]), dtype=np.float64)
    predict_seconds = time.perf_counter() - t0
    truth = Y.iloc[split.test].to_numpy(dtype=np.float64)
    overall = score_table(X.iloc[split.test], truth, pred, context_col, k=k).iloc[-1]
    history = getattr(model, "history_", None)
    return {
        "pred": pred, "overall": {m: float(overall[m]) for m in METRICS},
        "fit_seconds": fit_seconds, "predict_seconds": predict_seconds,
        "n_epochs": len(history) if history is not None else np.nan,
        "seconds_per_epoch": (float(np.mean(history[:, "dur"])) if history is not None
                              else np.nan),
        # set by the peers and by IsolatedRegressor, which run in measured subprocesses
        "fit_peak_rss_mib": float(getattr(model, "fit_peak_rss_mib_", np.nan)),
        "predict_peak_rss_mib": float(getattr(model, "predict_peak_rss_mib_", np.nan)),
        "peer_version": getattr(model, "peer_version_", None),
    }


class _Evaluation:
    """Fit, predict and score models on splits; collect scores, timings and plot samples."""

    def __init__(self, X, Y, config, *, k, bar, n_splits):
        # ``config`` is the run's BenchmarkConfig: protocol, seed, label and plot options
        self.X, self.Y = X, Y
        self.protocol = config.protocol
        self.k = k
        self.seed = config.seed
        self.bar = bar
        self.context_col = config.context_col
        self.n_splits = n_splits
        self.per_split_points = max(1, config.max_points // max(1, n_splits))
        self.score_rows: list[dict] = []
        self.fit_rows: list[dict] = []
        self.samples: dict[str, list] = {}

    def run_all(self, jobs: list[tuple[str, object, _Split]], n_jobs: int | None) -> None:
        """Fit every ``(name, model, split)``, ``n_jobs`` at a time; record in job order."""
        tasks = [(model, self.X, self.Y, split, self.context_col, self.k)
                 for _, model, split in jobs]
        if n_jobs == 1:  # one at a time, so the progress display moves with every fit
            for (name, _, split), task in zip(jobs, tasks, strict=True):
                self.record(name, split, _fit_split(*task))
            return
        outcomes = parallel_map(_fit_split, tasks, n_jobs)
        for (name, _, split), outcome in zip(jobs, outcomes, strict=True):
            self.record(name, split, outcome)

    def record(self, name: str, split: _Split, outcome: dict) -> None:
        """Add the scores, timings and plot sample of one fitted split."""
        Y = self.Y
        pred, overall = outcome["pred"], outcome["overall"]
        fit_seconds = outcome["fit_seconds"]
        truth = Y.iloc[split.test].to_numpy(dtype=np.float64)
        where = {
            "model": name, "split": split.index, "test_context": split.test_context,
            "n_train_contexts": split.n_train_contexts,
            "adaptation_fraction": split.adaptation_fraction,
        }
        for metric in METRICS:
            self.score_rows.append({**where, "metric": metric, "value": float(overall[metric])})
        self.fit_rows.append({
            **where, "fit_seconds": fit_seconds,
            "predict_seconds": outcome["predict_seconds"], "n_epochs": outcome["n_epochs"],
            "seconds_per_epoch": outcome["seconds_per_epoch"],
            "n_train": split.train.size, "n_test": split.test.size,
            **{key: outcome[key] for key in ("fit_peak_rss_mib", "predict_peak_rss_mib",
                                             "peer_version") if key in outcome},
        })
        if self.protocol == "heldout":
            rng = np.random.RandomState(self.seed + split.index)
            flat = rng.choice(truth.size, size=min(self.per_split_points, truth.size),
                              replace=False)
            sample = self.samples.setdefault(name, [[], []])
            sample[0].append(truth.ravel()[flat])
            sample[1].append(pred.ravel()[flat])
        self.bar.step(
            f"{name}: split {split.index + 1}/{self.n_splits} "
            f"({_split_text(split, self.protocol)}) pearson "
            f"{overall['pearson_delta']:.3f}, centred "
            f"{overall['centered_pearson_delta']:.3f}, fit {fit_seconds:.1f}s"
        )

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The long score table and the per-fit table."""
        scores = pd.DataFrame(self.score_rows, columns=[*_SCORE_KEYS, "metric", "value"])
        return scores, pd.DataFrame(self.fit_rows)

    def plots(self, models: list[str], tune_only: bool) -> dict:
        """File name to a function drawing it; none for a tuning-only run."""
        if tune_only:
            return {}
        scores = self.tables()[0]
        if self.protocol == "heldout":
            samples = {m: (np.concatenate(self.samples[m][0]),
                           np.concatenate(self.samples[m][1])) for m in models}
            return {"scatter.png": lambda path: _plot_scatter(samples, scores, models, path)}
        return {"scarcity.png": lambda path: _plot_scarcity(scores, models, self.k, path)}


