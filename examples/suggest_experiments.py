"""Which knockdowns to measure next: ``suggest_perturbations`` against random picks on LINCS.

Simulated active learning, one held-out cell line ``c`` at a time. A
``C3TLEnsemble`` is fitted on the other cell lines only (no refit afterwards:
every measurement of ``c`` is passed as ``observed`` at predict time). For
each seed:

1. a random 2% of ``c``'s pairs are the starting measurements;
2. 5% more are chosen, by each strategy, among ``c``'s other pairs:
   ``random``; ``suggest`` (``suggest_perturbations``, default method: expected
   reduction of the predictive variance of the others); ``uncertainty``
   (``suggest_perturbations(method="uncertainty")``, the most uncertain ones);
3. every strategy is scored on the same test pairs: ``c``'s pairs chosen by
   none of them (and knockdowns measured elsewhere), predicted with
   ``observed`` = start + its picks. ``start only`` predicts them from the
   2% alone.

The Markdown table (mean ``pearson_delta`` per cell line over seeds, then the
mean over cell lines and seeds, and how often ``suggest`` beats ``random``) is
printed and written as ``suggest_experiments.md`` in ``--out`` (default
``./c3tl-results/suggest_experiments``; ``--out benchmarks/results``
regenerates the committed copy).

Run (the ensembles are those of ``examples/uncertainty_calibration.py`` with
the same options; ``--cache-dir`` shares them)::

    python examples/suggest_experiments.py --contexts A375 MCF7 --n-estimators 3 --seeds 0 1
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uncertainty_calibration import (
    fit_ensemble_without,
    make_parser,
    member_params,
    write_report,
)

from c3tl_sklearn import load_lincs_knockdowns
from c3tl_sklearn.metrics import pearson_delta

STRATEGIES = ("start only", "random", "uncertainty", "suggest")


def parse_args(argv=None):
    parser = make_parser(__doc__.split("\n")[0], "suggest_experiments")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="seeds of the start sets and random picks")
    parser.add_argument("--start", type=float, default=0.02,
                        help="fraction of the cell line measured at the start")
    parser.add_argument("--add", type=float, default=0.05,
                        help="fraction added by each strategy")
    return parser.parse_args(argv)


def simulate(ens, X, Y, context, seed, args) -> list[dict]:
    rows_c = np.flatnonzero(X["context"].to_numpy() == context)
    n_c = len(rows_c)
    pool = rows_c[np.isin(X["perturbation"].to_numpy()[rows_c], ens.perturbations_)]
    rng = np.random.RandomState(seed)
    pool = pool[rng.permutation(len(pool))]
    n_start = max(1, round(args.start * n_c))
    n_add = max(1, round(args.add * n_c))
    start, rest = pool[:n_start], pool[n_start:]
    pert = X["perturbation"].to_numpy()
    row_of = dict(zip(pert[rest], rest, strict=True))
    observed = (X.iloc[start], Y[start])
    picks = {"start only": np.empty(0, dtype=np.int64),
             "random": rng.choice(rest, n_add, replace=False)}
    seconds = {}
    for name, method in (("suggest", "variance_reduction"), ("uncertainty", "uncertainty")):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            table = ens.suggest_perturbations(context, n_add, candidates=pert[rest],
                                              observed=observed, method=method)
        seconds[name] = time.perf_counter() - t0
        picks[name] = np.array([row_of[p] for p in table["perturbation"]])
    chosen = np.unique(np.concatenate(list(picks.values())))
    test = np.setdiff1d(rest, chosen)
    out = []
    for name in STRATEGIES:
        obs = np.concatenate([start, picks[name]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pred = ens.predict(X.iloc[test], observed=(X.iloc[obs], Y[obs]))
        out.append({"context": context, "seed": seed, "strategy": name,
                    "n_observed": len(obs), "n_test": len(test),
                    "pearson": pearson_delta(Y[test], pred),
                    "suggest s": seconds.get(name, np.nan)})
    return out


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    X, Y_frame = load_lincs_knockdowns()
    Y = Y_frame.to_numpy()
    contexts = args.contexts or sorted(X["context"].unique())
    records = []
    for context in contexts:
        ens, fit_seconds = fit_ensemble_without(X, Y, context, args)
        for seed in args.seeds:
            rows = simulate(ens, X, Y, context, seed, args)
            records.extend(rows)
            print(f"{context} seed {seed}: " + "  ".join(
                f"{r['strategy']} {r['pearson']:.4f}" for r in rows
            ) + f"  (fit {fit_seconds:.0f} s)", flush=True)
    table = pd.DataFrame(records)
    report = render(table, args)
    print("\n" + report)
    write_report(args, "suggest_experiments", report)
    return table


def render(table: pd.DataFrame, args) -> str:
    wide = table.pivot_table(index=["context", "seed"], columns="strategy",
                             values="pearson")[list(STRATEGIES)]
    per_context = wide.groupby(level="context").mean()
    overall = wide.mean()
    gain = wide["suggest"] - wide["random"]
    gain_unc = wide["uncertainty"] - wide["random"]
    head = "| context | " + " | ".join(STRATEGIES) + " | suggest - random |"
    lines = [head, "|" + "---|" * (len(STRATEGIES) + 2)]
    for context, row in per_context.iterrows():
        diff = row["suggest"] - row["random"]
        lines.append(f"| {context} | " + " | ".join(f"{row[s]:.4f}" for s in STRATEGIES)
                     + f" | {diff:+.4f} |")
    lines.append("| **mean** | " + " | ".join(f"**{overall[s]:.4f}**" for s in STRATEGIES)
                 + f" | **{gain.mean():+.4f}** |")
    n_obs = table.groupby("strategy")["n_observed"].mean()
    n_test = table["n_test"].mean()
    timing = table.groupby("strategy")["suggest s"].mean()
    command = "python examples/suggest_experiments.py " + " ".join(sys.argv[1:])
    return "\n".join([
        "# Suggested against random measurements in a new LINCS cell line",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Members: `C3TLRegressor(**{member_params(args)})`, {args.n_estimators} per "
        f"ensemble, calibration_fraction={args.calibration_fraction}, fitted without the "
        f"cell line (seed {args.seed}). Start: {args.start:.0%} of its pairs at random "
        f"({n_obs['start only']:.0f} on average); each strategy adds {args.add:.0%} "
        f"({n_obs['random'] - n_obs['start only']:.0f}); all are scored by "
        f"`pearson_delta` on the same {n_test:.0f} test pairs on average (chosen by no "
        f"strategy). Seeds (start set and random picks): {args.seeds}.",
        "",
        *lines,
        "",
        f"suggest beats random in {int((gain > 0).sum())} of {len(gain)} (cell line, seed) "
        f"runs, mean gain {gain.mean():+.4f} (sd {gain.std(ddof=1):.4f}); uncertainty "
        f"sampling beats random in {int((gain_unc > 0).sum())} of {len(gain_unc)}, mean "
        f"{gain_unc.mean():+.4f}.",
        "",
        f"suggest_perturbations time: {timing['suggest']:.2f} s (variance reduction), "
        f"{timing['uncertainty']:.2f} s (uncertainty), mean per call.",
        "",
    ])


if __name__ == "__main__":
    main()
