"""Calibration of ``C3TLEnsemble(...).predict(X, return_std=True)`` on held-out LINCS cell lines.

For each held-out cell line ``c`` (``LeaveOneContextOut``, 10% adaptation
pairs): a ``C3TLEnsemble`` is fitted on the other cell lines only; the
adaptation pairs of ``c`` are handed over at predict time
(``observed=...``, no refit) and the remaining pairs of ``c`` are predicted
with a standard deviation. Reported per cell line and overall:

- ``coverage 95``: share of true values (pairs x genes) inside the predicted
  mean +- 1.96 standard deviations (aim: 90% to 97%), and ``coverage 68`` for
  +- 1 standard deviation;
- ``spearman``: Spearman correlation, over the held-out pairs, between the
  predicted standard deviation and the absolute error, each averaged over
  genes (aim: above 0.3);
- ``pearson``: ``pearson_delta`` of the ensemble mean.

The Markdown table is printed and written as ``uncertainty_calibration.md``
in ``--out`` (default ``./c3tl-results/uncertainty_calibration``;
``--out benchmarks/results`` regenerates the committed copy).

Run (about 1 minute per member and cell line on two CPU cores)::

    python examples/uncertainty_calibration.py --contexts A375 MCF7 --n-estimators 3

Member parameters are ``C3TLRegressor`` defaults unless overridden with
``--params '{"n_components": 50}'`` or ``--max-epochs``. ``--cache-dir DIR``
pickles the fitted ensembles so ``examples/suggest_experiments.py`` (same
options) reuses them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from c3tl_sklearn import C3TLRegressor, LeaveOneContextOut, load_lincs_knockdowns
from c3tl_sklearn.ensemble import C3TLEnsemble
from c3tl_sklearn.metrics import pearson_delta


def out_argument(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out DIR``: where ``{name}.md`` goes; never the committed results by default."""
    parser.add_argument(
        "--out", type=Path, default=Path("c3tl-results") / name,
        help=f"directory for {name}.md (default: ./c3tl-results/{name}; "
             "--out benchmarks/results regenerates the committed copy)")


def write_report(args: argparse.Namespace, name: str, report: str) -> Path:
    """Write ``report`` as ``{name}.md`` in ``args.out``; refuse a file name for ``--out``."""
    if args.out.suffix == ".md":
        raise SystemExit(f"--out takes a directory (the report is {name}.md in it); "
                         f"got {args.out}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.md"
    path.write_text(report)
    print(f"written to {path}")
    return path


def make_parser(description: str, name: str) -> argparse.ArgumentParser:
    """Options shared with ``examples/suggest_experiments.py`` (same ensembles)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--contexts", nargs="*", default=None,
                        help="held-out cell lines (default: all six)")
    parser.add_argument("--n-estimators", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="member max_epochs (default: the C3TLRegressor default)")
    parser.add_argument("--params", type=json.loads, default={},
                        help="JSON dict of C3TLRegressor parameters")
    parser.add_argument("--calibration-fraction", type=float, default=0.1)
    parser.add_argument("--adaptation", type=float, default=0.1,
                        help="fraction of the held-out cell line measured (observed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    out_argument(parser, name)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__.split("\n")[0], "uncertainty_calibration")
    return parser.parse_args(argv)


def member_params(args) -> dict:
    params = dict(args.params)
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    return params


def fit_ensemble_without(X, Y, context, args) -> tuple[C3TLEnsemble, float]:
    """A ``C3TLEnsemble`` fitted on every cell line but ``context`` (cached on disk)."""
    params = member_params(args)
    config = {"context": context, "params": params, "n_estimators": args.n_estimators,
              "calibration_fraction": args.calibration_fraction, "seed": args.seed}
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    path = None if args.cache_dir is None else args.cache_dir / f"ensemble-{key}.pkl"
    if path is not None and path.exists():
        with path.open("rb") as fh:
            return pickle.load(fh)
    rows = X["context"].to_numpy() != context
    ens = C3TLEnsemble(
        C3TLRegressor(**params),
        n_estimators=args.n_estimators,
        calibration_fraction=args.calibration_fraction,
        random_state=args.seed,
    )
    start = time.perf_counter()
    ens.fit(X[rows], Y[rows])
    seconds = time.perf_counter() - start
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            pickle.dump((ens, seconds), fh)
    return ens, seconds


def evaluate(truth: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict:
    err = np.abs(truth - mean)
    return {
        "n_test": len(truth),
        "pearson": pearson_delta(truth, mean),
        "coverage 95": float(np.mean(err <= 1.959964 * std)),
        "coverage 68": float(np.mean(err <= std)),
        "spearman": float(spearmanr(std.mean(axis=1), err.mean(axis=1)).statistic),
        "mean std": float(std.mean()),
        "rmse": float(np.sqrt(np.mean(err**2))),
    }


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    X, Y_frame = load_lincs_knockdowns()
    Y = Y_frame.to_numpy()
    contexts = args.contexts or sorted(X["context"].unique())
    cv = LeaveOneContextOut(adaptation_fraction=args.adaptation, test_contexts=contexts,
                            random_state=args.seed)
    rows, pooled = [], []
    for (train, test), context in zip(cv.split(X), contexts, strict=True):
        ens, fit_seconds = fit_ensemble_without(X, Y, context, args)
        adapt = train[X["context"].to_numpy()[train] == context]
        adapt = adapt[np.isin(X["perturbation"].to_numpy()[adapt], ens.perturbations_)]
        observed = (X.iloc[adapt], Y[adapt])
        times = []
        for _ in range(3):  # the first call warms up; report the last
            start = time.perf_counter()
            mean, std = ens.predict(X.iloc[test], return_std=True, observed=observed)
            times.append(time.perf_counter() - start)
        predict_ms = 1000 * times[-1]
        row = {"context": context, "n_observed": len(adapt), **evaluate(Y[test], mean, std),
               "fit s": fit_seconds, "predict ms": predict_ms}
        rows.append(row)
        pooled.append((Y[test], mean, std))
        print(f"{context}: coverage95 {row['coverage 95']:.3f} coverage68 "
              f"{row['coverage 68']:.3f} spearman {row['spearman']:.3f} pearson "
              f"{row['pearson']:.3f} (fit {fit_seconds:.0f} s, predict {predict_ms:.0f} ms)",
              flush=True)
    table = pd.DataFrame(rows)
    truth, mean, std = (np.vstack(parts) for parts in zip(*pooled, strict=True))
    overall = {"context": "all pairs pooled", "n_observed": int(table.n_observed.sum()),
               **evaluate(truth, mean, std), "fit s": table["fit s"].sum(),
               "predict ms": table["predict ms"].sum()}
    average = {"context": "mean over contexts", **table.drop(columns="context").mean()}
    table = pd.concat([table, pd.DataFrame([average, overall])], ignore_index=True)
    report = render(table, args)
    print("\n" + report)
    write_report(args, "uncertainty_calibration", report)
    return table


def render(table: pd.DataFrame, args) -> str:
    cols = ["context", "n_observed", "n_test", "coverage 95", "coverage 68", "spearman",
            "pearson", "mean std", "rmse", "fit s", "predict ms"]
    fmt = {"coverage 95": "{:.3f}", "coverage 68": "{:.3f}", "spearman": "{:.3f}",
           "pearson": "{:.4f}", "mean std": "{:.3f}", "rmse": "{:.3f}", "fit s": "{:.0f}",
           "predict ms": "{:.0f}", "n_observed": "{:.0f}", "n_test": "{:.0f}"}
    # pooled time is the sum over cell lines
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [str(row["context"])] + [fmt[c].format(row[c]) for c in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    command = "python examples/uncertainty_calibration.py " + " ".join(sys.argv[1:])
    return "\n".join([
        "# Uncertainty calibration on held-out LINCS cell lines",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Members: `C3TLRegressor(**{member_params(args)})`, {args.n_estimators} per "
        f"ensemble, calibration_fraction={args.calibration_fraction}, seed {args.seed}. "
        f"Each ensemble is fitted without the held-out cell line; {args.adaptation:.0%} of "
        "its pairs are passed as `observed` at predict time (no refit) and the rest "
        "(knockdowns measured elsewhere) are scored.",
        "",
        "coverage 95 / 68: share of true values (pairs x genes) within 1.96 / 1 predicted "
        "standard deviations (aim for 95: 0.90 to 0.97). spearman: over held-out pairs, "
        "predicted std (mean over genes) against absolute error (mean over genes); aim "
        "above 0.3.",
        "",
        *lines,
        "",
        f"Machine: {platform.machine()}, python {platform.python_version()}, torch "
        f"{torch.__version__} with 1 thread.",
        "",
    ])


if __name__ == "__main__":
    main()
