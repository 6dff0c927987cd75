"""The benchmark's figures: predicted against true effects, and the data-scarcity curves."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ._registry import MODEL_LABELS, _metric_label


def _figure(n_rows: int, n_cols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def _plot_scatter(samples: dict, scores: pd.DataFrame, models: list, path: Path) -> None:
    n = len(models)
    n_cols = min(n, 3)
    n_rows = math.ceil(n / n_cols)
    fig, axes = _figure(n_rows, n_cols, 3.4, 3.4)
    every = np.concatenate(
        [np.concatenate([samples[m][0], samples[m][1]]) for m in models]
    )
    lo, hi = np.quantile(every, [0.001, 0.999]) if every.size else (-1.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    for ax, name in zip(axes.flat, models, strict=False):
        true, pred = samples[name]
        ax.scatter(true, pred, s=2, alpha=0.25, linewidths=0, rasterized=True)
        ax.plot([lo, hi], [lo, hi], "--", color="black", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        r = scores[(scores["model"] == name) & (scores["metric"] == "pearson_delta")]["value"]
        ax.set_title(f"{MODEL_LABELS[name]}\nPearson Δ {r.mean():.3f}", fontsize=10)
        ax.set_xlabel("true effect")
        ax.set_ylabel("predicted effect")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.savefig(path, dpi=110)


def _plot_scarcity(scores: pd.DataFrame, models: list, k: int, path: Path) -> None:
    metrics = ("pearson_delta", "centered_pearson_delta")
    sizes = sorted(scores["n_train_contexts"].unique(), reverse=True)
    fractions = sorted(scores["adaptation_fraction"].unique(), reverse=True)
    fig, axes = _figure(len(metrics), len(sizes), 3.2, 2.8)
    for i, metric in enumerate(metrics):
        sub = scores[scores["metric"] == metric]
        for j, size in enumerate(sizes):
            ax = axes[i, j]
            for name in models:
                cell = sub[(sub["model"] == name) & (sub["n_train_contexts"] == size)]
                stats = cell.groupby("adaptation_fraction")["value"].agg(["mean", "std"])
                stats = stats.sort_index(ascending=False)
                ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0),
                            marker="o", markersize=3, capsize=2, linewidth=1.2,
                            label=MODEL_LABELS[name])
            positive = [f for f in fractions if f > 0]
            if positive and len(positive) == len(fractions):
                ax.set_xscale("log")
            ax.set_xticks(fractions)
            ax.set_xticklabels([f"{f:.0%}" if f >= 0.01 else f"{f:.1%}" for f in fractions],
                               fontsize=8)
            ax.minorticks_off()
            ax.invert_xaxis()
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"{size} training contexts", fontsize=10)
            if i == len(metrics) - 1:
                ax.set_xlabel("adaptation data in the test context")
            if j == 0:
                ax.set_ylabel(_metric_label(metric, k))
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(models), 5),
               fontsize=9)
    fig.savefig(path, dpi=110)
