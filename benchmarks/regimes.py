"""Every estimator with default parameters over a suite of regimes: the evidence for defaults.

Defaults that win on one data set often lose on the next, so they are chosen
here, on many regimes at once (each a group of cells, each cell several
held-out target contexts):

- ``lincs``: the shipped LINCS knockdowns, 5, 3 and 2 training lines crossed
  with 2%, 5%, 10%, 20% and 50% of the target line measured (``ScarcitySplit``,
  every line a target). This is ``make scarcity``'s design: ``--lincs-scores``
  takes that run's ``scores.csv`` instead of fitting it all again;
- ``contexts``: synthetic data, 5 to 47 training contexts at fixed targets
  and 10% adaptation: more contexts must help;
- ``shapes``: synthetic data at the paper's shapes (Tahoe 48 x 1,138, Replogle
  4 x 1,677, Parse 24 x 90; 2,000 genes) with 10% and 2% adaptation;
- ``variants``: synthetic data that stress what real data does: contexts that
  differ mostly by a per-gene offset, rank-transformed signatures (signed
  normal scores), a high intrinsic dimension over 2,000 genes, heavy-tailed
  noise;
- ``small``: few contexts (3, 4, 6, 10) x few perturbations (20 to 60), 100
  to 2,000 genes, 2 to 10 measured pairs in the target, drawn from worlds that
  are *not* the model's assumption (``make_regime_perturbations``: the mean
  baseline's world, low-rank effects with context-specific mixing, offset-
  dominated contexts, no shared structure), plus LINCS subsampled to 30 and
  100 knockdowns; three seeds (data draws) per cell, two targets each.

Scores are on held-out pairs only: ``pearson_delta``, centred Pearson (the
target context's mean effect subtracted) and MSE, per target context; a cell
reports the mean and the standard error over its splits. Usage::

    python benchmarks/regimes.py --out c3tl-results/regimes             # everything
    python benchmarks/regimes.py --groups lincs variants --out DIR      # some groups
    python benchmarks/regimes.py --groups contexts shapes variants \
        --lincs-scores benchmarks/results/lincs-scarcity/scores.csv --out DIR
    python benchmarks/regimes.py --table --out DIR                      # table only

Writes ``scores.csv`` (one row per split and model; written after every cell
so a stopped run keeps what it finished, and a cell run again replaces its
earlier rows for the models it runs), ``table.md``, and ``runs.md``: one line
per invocation with its command, date, commit and threads, since the table
may gather several.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import parse_kwargs  # beside this script
from threadpoolctl import threadpool_limits

from c3tl_sklearn import (
    AdditiveBaseline,
    C3TLRegressor,
    ClosestContextBaseline,
    LinearTransferBaseline,
    MeanBaseline,
    load_lincs_knockdowns,
    make_synthetic_perturbations,
)
from c3tl_sklearn._atomic import atomic_path
from c3tl_sklearn.datasets import PerturbationDesign, make_regime_perturbations
from c3tl_sklearn.metrics import centered_pearson_delta, pearson_delta
from c3tl_sklearn.model_selection import LeaveOneContextOut, ScarcitySplit

MODELS: dict[str, Callable] = {
    "C3TL": lambda: C3TLRegressor(random_state=0),
    "Linear transfer": LinearTransferBaseline,
    "Additive": AdditiveBaseline,
    "Mean": MeanBaseline,
    "Closest context": ClosestContextBaseline,
}


@dataclass
class Cell:
    """One regime: a data set per seed and the splits of its target contexts.

    ``data(seed)`` draws the data set; ``splitters(seed)`` gives its splitters.
    """

    group: str
    name: str
    data: Callable[[int], tuple[pd.DataFrame, pd.DataFrame]]
    splitters: Callable[[int], list]
    seeds: tuple[int, ...] = (0,)


def _synthetic(n_ctx, n_pert, n_genes=2000, **kwargs):
    return lambda seed: make_synthetic_perturbations(n_ctx, n_pert, n_genes, random_state=seed,
                                                     **kwargs)


def _regime(regime, n_ctx, n_pert, n_genes):
    return lambda seed: make_regime_perturbations(regime, n_ctx, n_pert, n_genes,
                                                  random_state=seed)


def _lincs_subsample(n_knockdowns):
    """The six LINCS lines on a random subset of the knockdowns measured in all of them."""
    def data(seed):
        X, Y = load_lincs_knockdowns()
        counts = X["perturbation"].value_counts()
        shared = np.sort(counts.index[counts == X["context"].nunique()].to_numpy())
        keep = np.random.default_rng(seed).choice(shared, n_knockdowns, replace=False)
        rows = X["perturbation"].isin(keep).to_numpy()
        return X[rows].reset_index(drop=True), Y[rows].reset_index(drop=True)
    return data


def _fixed(splitters):
    return lambda seed: splitters


def _scarcity(test_contexts, n_train, fractions):
    """Nested training sets drawn from all the other contexts, one target at a time."""
    return [ScarcitySplit(n_train_contexts=n_train, adaptation_fractions=fractions,
                          test_contexts=[t], test_set="complement", random_state=0)
            for t in test_contexts]


def _held_out(test_contexts, fractions, seed=0):
    """Every other context trains (the other targets included), one fraction at a time."""
    return [LeaveOneContextOut(adaptation_fraction=f, test_contexts=test_contexts,
                               random_state=seed) for f in fractions]


#: The small cells' shapes: contexts, perturbations, genes, adaptation fraction
#: (about 20% of the pairs are missing, so the target measures 2 to 8 pairs).
SMALL_SHAPES = [(3, 60, 2000, 0.15), (4, 40, 500, 0.25), (6, 40, 300, 0.1), (10, 20, 100, 0.1)]
#: LINCS knockdown subsets of the small group, with the fraction the target measures.
LINCS_SUBSETS = [(30, 0.1), (100, 0.1)]
LINCS_LINES = ["A375", "A549", "HA1E", "HT29", "MCF7", "PC3"]


def small_cells() -> list[Cell]:
    """Few contexts x few perturbations, from worlds that are not the model's assumption."""
    out = []
    for regime in ("shared", "mixing", "offset", "unstructured"):
        for n_ctx, n_pert, n_genes, fraction in SMALL_SHAPES:
            out.append(Cell(
                "small", f"{regime} {n_ctx} x {n_pert} x {n_genes}",
                _regime(regime, n_ctx, n_pert, n_genes),
                lambda seed, f=fraction: _held_out(["ctx0", "ctx1"], (f,), seed),
                seeds=(0, 1, 2),
            ))
    for n_knockdowns, fraction in LINCS_SUBSETS:
        # each seed's two targets are other lines, so that every line is a target once
        out.append(Cell(
            "small", f"LINCS {n_knockdowns} knockdowns", _lincs_subsample(n_knockdowns),
            lambda seed, f=fraction: _held_out(LINCS_LINES[2 * seed:2 * seed + 2], (f,), seed),
            seeds=(0, 1, 2),
        ))
    return out


def cells() -> list[Cell]:
    out = [Cell("lincs", "LINCS", lambda seed: load_lincs_knockdowns(),
                _fixed(_scarcity(LINCS_LINES, (5, 3, 2), (0.5, 0.2, 0.1, 0.05, 0.02))))]
    targets = [f"ctx{i}" for i in range(4)]
    out.append(Cell("contexts", "48 x 200 x 500", _synthetic(48, 200, 500),
                    _fixed(_scarcity(targets, (47, 20, 10, 5), (0.1,)))))
    shapes = [("Tahoe 48 x 1138", _synthetic(48, 1138), ["ctx0", "ctx1"]),
              ("Replogle 4 x 1677", _synthetic(4, 1677), [f"ctx{i}" for i in range(4)]),
              ("Parse 24 x 90", _synthetic(24, 90), [f"ctx{i}" for i in range(5)])]
    for name, data, tc in shapes:
        out.append(Cell("shapes", name, data, _fixed(_held_out(tc, (0.1, 0.02)))))
    variants = [
        ("offset-dominated", PerturbationDesign(context_offset=1.0)),
        ("rank-transformed", PerturbationDesign(rank_transform=True, context_scale=1.0)),
        ("high intrinsic dimension", PerturbationDesign(latent_dim=64, hidden_dim=512)),
        ("heavy-tailed noise", PerturbationDesign(noise=0.5, noise_df=2.5)),
    ]
    targets = [f"ctx{i}" for i in range(5)]
    for name, design in variants:
        out.append(Cell("variants", f"{name} 24 x 150", _synthetic(24, 150, design=design),
                        _fixed(_held_out(targets, (0.1, 0.05)))))
    return out + small_cells()


def run_cell(cell: Cell, models: list[str]) -> Iterator[dict]:
    for seed in cell.seeds:
        X, Y = cell.data(seed)
        values = np.asarray(Y, dtype=np.float64)
        n_contexts = X["context"].nunique()
        for cv in cell.splitters(seed):
            for row in _run_splits(cell, cv, X, Y, values, n_contexts, models):
                yield {"seed": seed, **row}


def _run_splits(cell, cv, X, Y, values, n_contexts, models) -> Iterator[dict]:
    info = cv.split_info(X)
    fraction = getattr(cv, "adaptation_fraction", None)
    for (train, test), (_, row) in zip(cv.split(X), info.iterrows(), strict=True):
        truth = values[test]
        ctx = X["context"].to_numpy()[test]
        for name in models:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                model = MODELS[name]().fit(X.iloc[train], Y.iloc[train])
                pred = np.asarray(model.predict(X.iloc[test]), dtype=np.float64)
            yield {
                "group": cell.group, "cell": cell.name, "target": row["test_context"],
                "n_train_contexts": int(row.get("n_train_contexts", n_contexts - 1)),
                "adaptation_fraction": float(row.get("adaptation_fraction", fraction)),
                "n_adaptation": int(row["n_adaptation"]), "n_test": len(test), "model": name,
                "pearson_delta": pearson_delta(truth, pred),
                "centered_pearson": centered_pearson_delta(truth, pred, ctx),
                "mse": float(np.mean((pred - truth) ** 2)),
                "fit_predict_s": time.perf_counter() - start,
            }


#: The ``c3tl-benchmark`` metrics the lincs rows keep.
LINCS_METRICS = ["pearson_delta", "centered_pearson_delta", "mse"]
#: Model keys of ``c3tl-benchmark`` and their names here.
BENCHMARK_MODELS = {"c3tl": "C3TL", "linear": "Linear transfer", "additive": "Additive",
                    "mean": "Mean", "closest": "Closest context"}


def lincs_from_benchmark(path: str | Path) -> pd.DataFrame:
    """The ``lincs`` rows from a ``c3tl-benchmark --protocol scarcity`` ``scores.csv``."""
    long = pd.read_csv(path)
    long = long[long["metric"].isin(LINCS_METRICS)]
    wide = long.pivot_table(
        index=["model", "split", "test_context", "n_train_contexts", "adaptation_fraction"],
        columns="metric", values="value",
    ).reset_index().reindex(columns=["model", "split", "test_context", "n_train_contexts",
                                     "adaptation_fraction", *LINCS_METRICS])
    return pd.DataFrame({
        "group": "lincs", "cell": "LINCS", "target": wide["test_context"],
        "n_train_contexts": wide["n_train_contexts"],
        "adaptation_fraction": wide["adaptation_fraction"],
        "model": wide["model"].map(BENCHMARK_MODELS),
        "pearson_delta": wide["pearson_delta"],
        "centered_pearson": wide["centered_pearson_delta"], "mse": wide["mse"],
    }).sort_values(["n_train_contexts", "adaptation_fraction"], ascending=False, kind="stable")


#: The scores of a cell, each with whether higher is better.
METRICS = {"pearson_delta": True, "centered_pearson": True, "mse": False}


def _verdict(stats: pd.DataFrame, ours: str, higher: bool) -> tuple[str, bool]:
    """C3TL's standing on one metric: first, within one SE of the first, or behind."""
    best = stats["mean"].idxmax() if higher else stats["mean"].idxmin()
    gap = (stats.loc[best, "mean"] - stats.loc[ours, "mean"]) * (1 if higher else -1)
    if best == ours:
        return "first", True
    if gap <= stats.loc[best, "se"] + 1e-12:
        return "within 1 SE", True
    return f"behind {best}", False


def table(scores: pd.DataFrame) -> str:
    """Markdown: per cell, each model's mean ± standard error over splits; C3TL's standing.

    C3TL's verdict holds on all three metrics (``pearson_delta``, centred
    Pearson, MSE): first, or within one standard error (the first's) of it.
    """
    keys = ["group", "cell", "n_train_contexts", "adaptation_fraction"]
    models = [m for m in dict.fromkeys(scores["model"]) if m in MODELS or m.startswith("C3TL")]
    lines = ["| group | cell | training contexts | adaptation | metric | "
             + " | ".join(models) + " | C3TL verdict |",
             "|" + "---|" * (len(models) + 6)]
    n_ok = n_cells = 0
    for key, cell in scores.groupby(keys, sort=False):
        ours = "C3TL" if "C3TL" in set(cell["model"]) else next(
            m for m in models if m.startswith("C3TL"))
        ok_all = True
        for metric, higher in METRICS.items():
            if metric not in cell or cell[metric].isna().all():
                continue
            stats = cell.groupby("model")[metric].agg(["mean", "std", "count"])
            stats["se"] = stats["std"].fillna(0) / np.sqrt(stats["count"])
            verdict, ok = _verdict(stats, ours, higher)
            ok_all &= ok
            digits = 4 if metric == "mse" else 3
            values = " | ".join(
                f"{stats.loc[m, 'mean']:.{digits}f} ± {stats.loc[m, 'se']:.{digits}f}"
                if m in stats.index else "-" for m in models)
            lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]:.0%} | {metric} | "
                         f"{values} | {verdict} |")
        n_cells += 1
        n_ok += ok_all
    lines.append("")
    lines.append(f"C3TL first or within one standard error of the first on every metric: "
                 f"{n_ok} of {n_cells} cells.")
    return "\n".join(lines) + "\n"


def _replace_rows(path: Path, rows: pd.DataFrame) -> None:
    """Add a cell's rows to ``path``, dropping its earlier rows of the same models first.

    Appending a rerun would count its splits twice and shrink every standard error.
    """
    if rows.empty:
        return
    if path.exists():
        old = pd.read_csv(path)
        again = (old["group"].eq(rows["group"].iloc[0]) & old["cell"].eq(rows["cell"].iloc[0])
                 & old["model"].isin(rows["model"].unique()))
        rows = pd.concat([old[~again], rows], ignore_index=True)
    with atomic_path(path) as tmp:  # a stopped run keeps the file it had
        rows.to_csv(tmp, index=False)


def _record_run(out: Path, threads: int | None) -> None:
    """One line in ``out/runs.md`` for this invocation: command, date, commit, threads.

    ``threads`` is ``None`` for a run that fits nothing (``--table``).
    """
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).parent), "log", "-1",
                                 "--format=%h"], capture_output=True, text=True,
                                timeout=30).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    runs = out / "runs.md"
    if not runs.exists():
        runs.write_text("# The runs behind scores.csv and table.md\n\n", encoding="utf-8")
    with runs.open("a", encoding="utf-8") as f:
        how = "table only" if threads is None else f"{threads} thread(s)"
        f.write(f"- {datetime.now():%Y-%m-%d %H:%M}, commit {commit}, {how}: `"
                + shlex.join(["python", "benchmarks/regimes.py", *sys.argv[1:]]) + "`\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="c3tl-results/regimes", help="output directory")
    parser.add_argument("--groups", nargs="*", default=None,
                        help="lincs, contexts, shapes, variants, small (default: all)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, default=None,
                        help="at most this many seeds per cell (a quick look)")
    parser.add_argument("--cells", default=None,
                        help="only cells whose name contains this text")
    parser.add_argument("--c3tl", nargs="*", default=[],
                        help="C3TLRegressor keyword arguments to try beside the defaults, "
                             "e.g. 'fallback=None' (rows labelled 'C3TL <arguments>')")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--table", action="store_true", help="only rebuild table.md")
    parser.add_argument("--lincs-scores", default=None,
                        help="scores.csv of `make scarcity`, used for the lincs group")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scores.csv"
    _record_run(out, None if args.table else args.threads)
    if not args.table:
        # OMP_NUM_THREADS too: a fit keeps a count above 1 only when the variable says so
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
        for spec in args.c3tl:
            label = f"C3TL {spec}"
            kwargs = parse_kwargs(spec)
            MODELS[label] = lambda kwargs=kwargs: C3TLRegressor(random_state=0, **kwargs)
            args.models.append(label)
        for cell in cells():
            if args.groups and cell.group not in args.groups:
                continue
            if args.cells and args.cells not in cell.name:
                continue
            if args.seeds is not None:
                cell.seeds = cell.seeds[:args.seeds]
            start = time.perf_counter()
            rows = pd.DataFrame(run_cell(cell, args.models))
            _replace_rows(path, rows)
            print(f"{cell.group} / {cell.name}: {len(rows)} fits, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
    if args.lincs_scores:
        lincs = lincs_from_benchmark(args.lincs_scores)
        lincs.to_csv(out / "lincs_scores.csv", index=False)
    scores = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["group"])
    if (out / "lincs_scores.csv").exists():
        # `make scarcity`'s rows are the lincs group: they replace any fitted here
        scores = pd.concat([pd.read_csv(out / "lincs_scores.csv"),
                            scores[scores["group"] != "lincs"]], ignore_index=True)
    (out / "table.md").write_text(table(scores))
    print(table(scores))


if __name__ == "__main__":
    main()
