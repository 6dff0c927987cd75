"""A new cell line without refit: ``predict(X, observed=...)`` against a refit, on LINCS.

For each held-out cell line ``c`` (``LeaveOneContextOut``, 10% adaptation
pairs, the rest of ``c`` is the test set):

- ``refit``: ``C3TLRegressor`` fitted on the other cell lines plus ``c``'s
  adaptation pairs (the paper's protocol; one fit per cell line);
- ``no refit, codes``: ``C3TLRegressor`` fitted on the other cell lines only;
  the adaptation pairs are passed as ``observed`` at predict time but only
  update the context code (``C3TLEnsemble(adapt_observed=False)`` around the
  same network; no gradient step);
- ``no refit, read-out``: the same network's own ``predict(observed=...)``,
  which also adds the pairs to its closed-form context read-out (no gradient
  step); with ``--n-estimators K > 1``, a K-member ensemble's;
- ``zero-shot``: the network fitted without ``c``, no measurement of ``c``;
- ``additive`` and ``linear transfer``: the baselines, refitted with the
  adaptation pairs.

Printed and written as ``new_context_without_refit.md`` in ``--out`` (default
``./c3tl-results/new_context_without_refit``; ``--out benchmarks/results``
regenerates the committed copy):
``pearson_delta`` and centred Pearson per cell line and their means, the
no-refit minus refit gap (aim: within 0.02) and the prediction time.

Run (two fits per cell line, about 1 minute each on two CPU cores)::

    python examples/new_context_without_refit.py --contexts A375 MCF7

Member parameters are ``C3TLRegressor`` defaults unless overridden with
``--params '{"n_components": 50}'`` or ``--max-epochs``; ``--n-estimators K``
uses a K-member ensemble for the read-out column (``K = 1`` by default, the
same single network as the other C3TL columns).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uncertainty_calibration import out_argument, write_report

from c3tl_sklearn import (
    AdditiveBaseline,
    C3TLRegressor,
    LeaveOneContextOut,
    LinearTransferBaseline,
    load_lincs_knockdowns,
)
from c3tl_sklearn.ensemble import C3TLEnsemble
from c3tl_sklearn.metrics import centered_pearson_delta, pearson_delta

METHODS = ("refit", "no refit, codes", "no refit, read-out", "zero-shot", "additive",
           "linear transfer")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contexts", nargs="*", default=None,
                        help="held-out cell lines (default: all six)")
    parser.add_argument("--n-estimators", type=int, default=1,
                        help="members of the read-out ensemble (1: the no-refit network)")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--params", type=json.loads, default={},
                        help="JSON dict of C3TLRegressor parameters")
    parser.add_argument("--adaptation", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    out_argument(parser, "new_context_without_refit")
    return parser.parse_args(argv)


def member_params(args) -> dict:
    params = dict(args.params)
    if args.max_epochs is not None:
        params["max_epochs"] = args.max_epochs
    return params


def timed_predict(func, repeats: int = 5):
    """Result of ``func()`` and its median wall time in milliseconds (after a warm-up)."""
    out = func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return out, 1000 * float(np.median(times))


def run_context(X, Y, context, train, test, args) -> list[dict]:
    params = member_params(args)
    ctx = X["context"].to_numpy()
    others = np.flatnonzero(ctx != context)
    adapt = train[ctx[train] == context]
    truth, test_ctx = Y[test], ctx[test]
    preds, seconds, ms = {}, {}, {}

    start = time.perf_counter()
    refit = C3TLRegressor(**params, random_state=args.seed).fit(X.iloc[train], Y[train])
    seconds["refit"] = time.perf_counter() - start
    preds["refit"] = refit.predict(X.iloc[test])

    start = time.perf_counter()
    ens = C3TLEnsemble(C3TLRegressor(**params), n_estimators=args.n_estimators,
                       calibration_fraction=0.0, random_state=args.seed)
    ens.fit(X.iloc[others], Y[others])
    seconds["no refit, read-out"] = time.perf_counter() - start
    network = ens.estimators_[0]
    seconds["no refit, codes"] = seconds["no refit, read-out"] / args.n_estimators
    adapt = adapt[np.isin(X["perturbation"].to_numpy()[adapt], network.perturbations_)]
    observed = (X.iloc[adapt], Y[adapt])
    adapting = network if args.n_estimators == 1 else ens
    preds["no refit, read-out"], ms["no refit, read-out"] = timed_predict(
        lambda: adapting.predict(X.iloc[test], observed=observed))
    codes_only = ens.set_params(adapt_observed=False)
    preds["no refit, codes"], ms["no refit, codes"] = timed_predict(
        lambda: codes_only.predict(X.iloc[test], observed=observed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        preds["zero-shot"] = network.predict(X.iloc[test])

    for name, model in (("additive", AdditiveBaseline()),
                        ("linear transfer", LinearTransferBaseline())):
        start = time.perf_counter()
        preds[name] = model.fit(X.iloc[train], Y[train]).predict(X.iloc[test])
        seconds[name] = time.perf_counter() - start
    rows = []
    for name in METHODS:
        rows.append({
            "context": context, "method": name, "n_observed": len(adapt), "n_test": len(test),
            "pearson": pearson_delta(truth, preds[name]),
            "centered": centered_pearson_delta(truth, preds[name], test_ctx),
            "fit s": seconds.get(name, np.nan), "predict ms": ms.get(name, np.nan),
        })
    return rows


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    torch.set_num_threads(1)
    threadpool_limits(1)
    X, Y_frame = load_lincs_knockdowns()
    Y = Y_frame.to_numpy()
    contexts = args.contexts or sorted(X["context"].unique())
    cv = LeaveOneContextOut(adaptation_fraction=args.adaptation, test_contexts=contexts,
                            random_state=args.seed)
    records = []
    for (train, test), context in zip(cv.split(X), contexts, strict=True):
        rows = run_context(X, Y, context, train, test, args)
        records.extend(rows)
        print(f"{context}: " + "  ".join(f"{r['method']} {r['pearson']:.4f}" for r in rows),
              flush=True)
    table = pd.DataFrame(records)
    report = render(table, args)
    print("\n" + report)
    write_report(args, "new_context_without_refit", report)
    return table


def render(table: pd.DataFrame, args) -> str:
    pearson = table.pivot(index="context", columns="method", values="pearson")[list(METHODS)]
    centered = table.pivot(index="context", columns="method", values="centered")[list(METHODS)]
    gap = pearson["no refit, read-out"] - pearson["refit"]
    lines = ["| context | " + " | ".join(METHODS) + " | read-out - refit |",
             "|" + "---|" * (len(METHODS) + 2)]
    for context, row in pearson.iterrows():
        lines.append(f"| {context} | " + " | ".join(f"{row[m]:.4f}" for m in METHODS)
                     + f" | {gap[context]:+.4f} |")
    mean, sd = pearson.mean(), pearson.std(ddof=1)
    lines.append("| **mean** | " + " | ".join(f"**{mean[m]:.4f}**" for m in METHODS)
                 + f" | **{gap.mean():+.4f}** |")
    if len(pearson) > 1:
        lines.append("| sd | " + " | ".join(f"{sd[m]:.4f}" for m in METHODS)
                     + f" | {gap.std(ddof=1):.4f} |")
    c_mean = centered.mean()
    lines_c = ["| | " + " | ".join(METHODS) + " |", "|" + "---|" * (len(METHODS) + 1),
               "| centred Pearson, mean | " + " | ".join(f"{c_mean[m]:.4f}" for m in METHODS)
               + " |"]
    timing = table.groupby("method")[["fit s", "predict ms"]].mean()
    n_obs = table.groupby("context")["n_observed"].first()
    command = "python examples/new_context_without_refit.py " + " ".join(sys.argv[1:])
    beats = int((pearson["no refit, read-out"] > pearson["additive"]).sum())
    return "\n".join([
        "# A new LINCS cell line without refit",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"`C3TLRegressor(**{member_params(args)})`, seed {args.seed}; "
        f"`LeaveOneContextOut(adaptation_fraction={args.adaptation})`: "
        f"{n_obs.mean():.0f} adaptation pairs per cell line on average. No-refit columns: "
        "one network fitted without the cell line, its adaptation pairs given at predict "
        "time; read-out: "
        + ("the same network" if args.n_estimators == 1
           else f"a {args.n_estimators}-member ensemble")
        + " with its closed-form context read-out (`predict(observed=...)`).",
        "",
        "Mean `pearson_delta` over the held-out pairs:",
        "",
        *lines,
        "",
        *lines_c,
        "",
        f"No refit with read-out beats the additive baseline in {beats} of {len(pearson)} "
        f"cell lines; its mean gap to the refit is {gap.mean():+.4f} (aim: within 0.02).",
        "",
        f"Time per cell line: refit {timing.loc['refit', 'fit s']:.0f} s; prediction "
        f"without refit {timing.loc['no refit, codes', 'predict ms']:.0f} ms (codes only) and "
        f"{timing.loc['no refit, read-out', 'predict ms']:.0f} ms (with read-out) for "
        f"{table['n_test'].mean():.0f} pairs, median of 5 after a warm-up.",
        "",
        f"Machine: {platform.machine()}, python {platform.python_version()}, torch "
        f"{torch.__version__} with 1 thread.",
        "",
    ])


if __name__ == "__main__":
    main()
