"""The benchmark's reports: its result object, Markdown tables and the files it writes.

The files are the scores, the fits, the parameters and a README with the
command, the data and the software versions.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path, atomic_write_text
from ..persistence import jsonable
from ._registry import _LOWER_IS_BETTER, METRICS, MODEL_LABELS, _metric_label

__all__ = ["BenchmarkResult"]


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured (and wrote, with ``out_dir``).

    Attributes
    ----------
    scores : pandas.DataFrame
        Long table: ``model``, ``split``, ``test_context``, ``n_train_contexts``,
        ``adaptation_fraction``, ``metric``, ``value``.
    fits : pandas.DataFrame
        One row per (model, split) with timings and sizes.
    params : dict
        Per model: parameters used, tuning score, trial counts, seconds.
    table : str
        The Markdown table.
    wall_seconds : float
        Duration of the run.
    files : dict
        Name to path of every file written (empty without ``out_dir``).
    warnings : dict
        ``"Category: message"`` to the number of times it was raised.
    """

    scores: pd.DataFrame
    fits: pd.DataFrame
    params: dict
    table: str
    wall_seconds: float
    files: dict = field(default_factory=dict)
    warnings: dict = field(default_factory=dict)


def _fmt(values: pd.Series, metric: str) -> tuple[str, float]:
    """``"mean ± sd"`` (sample sd over folds; the mean alone for one value) and the mean."""
    values = values.dropna()
    if values.empty:
        return "-", np.nan
    mean = float(values.mean())
    if metric == "mse":
        text = f"{mean:.4g}"
        sd = f"{values.std(ddof=1):.2g}" if len(values) > 1 else ""
    elif metric == "seconds":
        text = f"{mean:.3g}"
        sd = f"{values.std(ddof=1):.2g}" if len(values) > 1 else ""
    else:
        text = f"{mean:.3f}"
        sd = f"{values.std(ddof=1):.3f}" if len(values) > 1 else ""
    return (f"{text} ± {sd}" if sd else text), mean


def _heldout_table(scores, fits, params, models, k) -> str:
    header = ["Model", *(_metric_label(m, k) for m in METRICS), "s / epoch", "Fit s / fold",
              "Tuning s"]
    # measured subprocesses (the peers, --isolate) add their predict time and peak memory
    measured = "fit_peak_rss_mib" in fits and fits["fit_peak_rss_mib"].notna().any()
    if measured:
        header += ["Predict s / fold", "Peak MiB"]
    cells: dict[str, list[str]] = {}
    means: dict[str, list[float]] = {}
    for name in models:
        row, row_means = [], []
        sub = scores[scores["model"] == name]
        for metric in METRICS:
            text, mean = _fmt(sub.loc[sub["metric"] == metric, "value"], metric)
            row.append(text)
            row_means.append(mean)
        f = fits[fits["model"] == name]
        spe = f["seconds_per_epoch"].dropna()
        row.append(f"{spe.mean():.3g}" if len(spe) else "-")
        fit_text, _ = _fmt(f["fit_seconds"], "seconds")
        row.append(fit_text)
        tuning = params.get(name, {}).get("tuning_seconds")
        row.append(f"{tuning:.3g}" if tuning else "-")
        if measured:
            row.append(_fmt(f["predict_seconds"], "seconds")[0])
            peak = f[["fit_peak_rss_mib", "predict_peak_rss_mib"]].max(axis=1).dropna()
            row.append(f"{peak.max():.0f}" if len(peak) else "-")
        cells[name], means[name] = row, row_means
    for j, metric in enumerate(METRICS):  # bold the best model(s) of every metric column
        column = {n: means[n][j] for n in models if not math.isnan(means[n][j])}
        if len(column) < 2:
            continue
        best = (min if metric in _LOWER_IS_BETTER else max)(column.values())
        shown = cells[min(column, key=lambda n: abs(column[n] - best))][j].split(" ")[0]
        winners = [n for n in column if cells[n][j].split(" ")[0] == shown]
        if len(winners) < len(column):  # a tie of every model marks nothing
            for n in winners:
                cells[n][j] = f"**{cells[n][j]}**"
    lines = [
        "| " + " | ".join(header) + " |",
        "|:--" + "|--:" * (len(header) - 1) + "|",
    ]
    lines += [f"| {MODEL_LABELS[n]} | " + " | ".join(cells[n]) + " |" for n in models]
    return "\n".join(lines) + "\n"


def _scarcity_tables(scores, models, k) -> str:
    parts = []
    fractions = sorted(scores["adaptation_fraction"].unique(), reverse=True)
    sizes = sorted(scores["n_train_contexts"].unique(), reverse=True)
    for metric in ("pearson_delta", "centered_pearson_delta"):
        parts.append(f"### {_metric_label(metric, k)}\n")
        header = ["Model", "Training contexts", *(f"{f:.0%}" if f * 100 == round(f * 100)
                                                    else f"{f:.1%}" for f in fractions)]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|:--|--:" + "|--:" * len(fractions) + "|")
        sub = scores[scores["metric"] == metric]
        for name in models:
            for size in sizes:
                row = [MODEL_LABELS[name], str(size)]
                for f in fractions:
                    sel = sub[(sub["model"] == name) & (sub["n_train_contexts"] == size)
                              & np.isclose(sub["adaptation_fraction"], f)]
                    row.append(_fmt(sel["value"], metric)[0])
                parts.append("| " + " | ".join(row) + " |")
        parts.append("")
    return "\n".join(parts)


#: Every file a benchmark run may write into its folder.
RESULT_FILES = ("scores.csv", "fits.csv", "table.md", "params.json", "scatter.png",
                "scarcity.png", "README.md")


def _write_outputs(out: Path, result: BenchmarkResult, plots: dict, *, config, record,
                   data, bar) -> dict:
    """Write the run's files to ``out``; ``record`` is its RunRecord, ``data`` its (X, Y).

    An earlier run's files that this run does not write are removed, so that
    the folder never mixes two runs (its README describes this one).
    """
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    caption = ""
    if not config["tune_only"]:
        path = out / "scores.csv"
        with atomic_path(path) as tmp:
            result.scores.to_csv(tmp, index=False)
        files["scores.csv"] = path
        path = out / "fits.csv"
        with atomic_path(path) as tmp:
            result.fits.to_csv(tmp, index=False)
        files["fits.csv"] = path
        path = out / "table.md"
        caption = _caption(config, result)
        atomic_write_text(path, result.table + "\n" + caption + "\n")
        files["table.md"] = path
    path = out / "params.json"
    payload = {"protocol": config["protocol"], "tune_metric": config["tune_metric"],
               "n_trials": config["n_trials"], "seed": config["seed"],
               "models": jsonable(result.params)}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
    files["params.json"] = path
    plot_notes = []
    for name, draw in plots.items():
        try:
            with atomic_path(out / name) as tmp:
                draw(tmp)
        except ImportError:
            plot_notes.append(f"{name} was not drawn: matplotlib is not installed "
                              "(pip install c3tl-sklearn[plots]).")
            continue
        files[name] = out / name
    wall = time.perf_counter() - record.t_start
    readme = _readme(config, result, record, data,
                     _Written(files=files, plot_notes=plot_notes, caption=caption, wall=wall))
    path = out / "README.md"
    atomic_write_text(path, readme)
    files["README.md"] = path
    stale = [name for name in RESULT_FILES if name not in files and (out / name).is_file()]
    for name in stale:
        (out / name).unlink()
    bar.note(f"wrote {', '.join(files)} to {out} ({wall:.1f} s)"
             + (f"; removed the earlier run's {', '.join(stale)}" if stale else ""))
    return files


def _caption(config, result) -> str:
    n_splits = result.scores["split"].nunique()
    if config.get("split_file"):
        return (
            f"Mean ± standard deviation over the {n_splits} split(s) of "
            f"{config['split_file']} (scored only on its test pairs whose perturbation "
            "trains in another context). Best in bold (lowest MSE). s / epoch: mean seconds "
            "per C3TL epoch; Fit s / fold: seconds per fit; Tuning s: seconds for "
            f"{config['n_trials']} Optuna trials on the first split's training data."
        )
    measured = ""
    if "fit_peak_rss_mib" in result.fits and result.fits["fit_peak_rss_mib"].notna().any():
        measured = (" Predict s / fold: seconds per prediction; Peak MiB: the largest peak "
                    "resident memory of a fit or predict subprocess (measured with wait4; "
                    "models without a subprocess show -).")
    if config["protocol"] == "heldout":
        return (
            f"Mean ± standard deviation over {n_splits} held-out contexts "
            f"({config['adaptation_fraction']:.0%} of each test context in training; "
            "scored only on pairs never seen in the test context). Best in bold (lowest "
            "MSE). s / epoch: mean seconds per C3TL epoch; Fit s / fold: seconds per fit; "
            f"Tuning s: seconds for {config['n_trials']} Optuna trials on the first fold's "
            "training data." + measured
        )
    return (
        "Mean ± standard deviation over test contexts; columns are the fraction of each "
        "test context available for adaptation, rows the number of training contexts. "
        "Scored only on pairs never seen in the test context."
    )


@dataclass(frozen=True)
class _Written:
    """What the README reports of the files written before it, and the wall time then."""

    files: dict
    plot_notes: list
    caption: str
    wall: float


def _readme(config, result, record, data, written: _Written) -> str:
    X, Y = data
    started, command, data_description = record.started, record.command, record.data_description
    wall, files, plot_notes, caption = (written.wall, written.files, written.plot_notes,
                                        written.caption)
    versions = _versions()
    threads = "n/a"
    if "torch" in sys.modules:
        threads = str(sys.modules["torch"].get_num_threads())
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(sorted({f"{i['internal_api']} {i['num_threads']}"
                                 for i in threadpool_info()})) or "n/a"
    except Exception:  # pragma: no cover - informational only
        blas = "n/a"
    title = {"heldout": "held-out contexts (Table 1, Figure 2)",
             "scarcity": "data scarcity (Figure 3)"}[config["protocol"]]
    lines = [
        f"# C3TL benchmark: {title}",
        "",
        "Command:",
        "",
        "```",
        command or "(run from Python with c3tl_sklearn.cli.run_benchmark)",
        "```",
        "",
        f"- Wall time: {wall:.1f} s ({_hms(wall)}), started {started:%Y-%m-%d %H:%M:%S} UTC",
        f"- Data: {data_description or 'given in Python'}; {len(X)} (context, perturbation) "
        f"pairs, {X.iloc[:, 0].nunique()} contexts, {X.iloc[:, 1].nunique()} perturbations, "
        f"{Y.shape[1]} genes",
        f"- Protocol: {config['protocol']}; {config['design']}",
        f"- Test contexts: {', '.join(map(str, config['test_contexts']))}",
    ]
    if config.get("split_file"):
        lines.append(f"- Splits: {config['split_file']}; the test contexts' share of rows in "
                     f"training: {config['split_adaptation']}")
    elif config["protocol"] == "heldout":
        lines.append(f"- Adaptation fraction: {config['adaptation_fraction']}")
    else:
        lines.append(
            f"- Training-context sets: {config['n_train_contexts']}; adaptation fractions: "
            f"{config['adaptation_fractions']}; test set: {config['scarcity_test_set']}"
        )
    lines += [
        f"- Tuning: {config['n_trials']} Optuna trial(s) per model, objective "
        f"{config['tune_metric']}, inner cross-validation over {config['inner_folds']} "
        "training context(s) of the tuning split (see params.json)",
        f"- Seed: {config['seed']}; C3TL max_epochs: {config['max_epochs'] or 'default'}; "
        f"device: {config['device']}",
        f"- Machine: {platform.platform()}, {os.cpu_count()} CPU(s); threads: torch "
        f"{threads}, {blas}",
        "- Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        *_peer_lines(result.fits),
        "",
    ]
    if config["tune_only"]:
        lines += ["Tuning only (--tune-only): no evaluation was run.", ""]
    else:
        lines += ["## Results", "", result.table, caption, ""]
    lines += ["## Parameters", "", *_parameter_lines(result.params)]
    lines += ["", "## Files", ""]
    lines += [f"- `{name}`" for name in [*files, "README.md"]]
    lines += [f"- {note}" for note in plot_notes]
    if result.warnings:
        lines += ["", "## Warnings raised during the run", ""]
        for message, count in list(result.warnings.items())[:30]:
            lines.append(f"- {count} x {message}")
    return "\n".join(lines) + "\n"


def _peer_lines(fits: pd.DataFrame) -> list[str]:
    """The peers' versions (from their environments) and licences, for the README."""
    if "peer_version" not in fits or fits["peer_version"].isna().all():
        return []
    from ..peers import PEERS

    lines = []
    for name, version in fits.dropna(subset=["peer_version"]).groupby("model")["peer_version"]:
        spec = PEERS[name]
        lines.append(f"- Peer: {spec.label} {', '.join(sorted(set(version)))} ({spec.url}; "
                     f"licence {spec.licence}, run in its own environment)")
    return lines


def _parameter_lines(models: dict) -> list[str]:
    """One README line per model: its parameters and where they came from."""
    lines = []
    for info in models.values():
        params = ", ".join(f"{k}={v!r}" for k, v in info["params"].items()) or "defaults"
        extra = ""
        if info.get("source") == "tuned":
            extra = (f" (tuned: {info['tune_metric']} {info['best_score']:.4f} on "
                     f"{info['tuned_on']['test_context']}'s training data, "
                     f"{info['n_complete']} complete / {info['n_pruned']} pruned / "
                     f"{info['n_failed']} failed trials, {info['tuning_seconds']:.1f} s)")
        elif info.get("source") == "given":
            extra = " (given)"
        lines.append(f"- {info['label']}: {params}{extra}")
    return lines


def _git_commit() -> str | None:
    """Commit of the package's checkout (with a mark for local changes), if it is one."""
    import subprocess

    root = Path(__file__).resolve().parents[2]  # c3tl_sklearn/cli/_report.py -> checkout
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, timeout=10,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "c3tl_sklearn"],
                               cwd=root, timeout=10, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}{' with uncommitted changes to c3tl_sklearn' if dirty else ''}" or None


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    commit = _git_commit()
    if commit:
        out["git commit"] = commit
    for package in ("c3tl-sklearn", "numpy", "pandas", "scikit-learn", "torch", "skorch",
                    "optuna", "matplotlib"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
