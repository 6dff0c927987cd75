"""Measure C3TLRegressor settings on held-out LINCS cell lines, next to two baselines.

Each run fits on every other cell line plus 10% of the held-out line's pairs
(``LeaveOneContextOut(adaptation_fraction=0.1, random_state=0)``) and scores the
rest: mean per-pair Pearson, centred Pearson and MSE.

Usage::

    python benchmarks/ablation.py "n_components=None,context_balance=0.0" A375,HT29 --baselines

The first argument is a comma-separated list of ``C3TLRegressor`` keyword
arguments (Python literals), the second the held-out cell lines.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from _common import parse_kwargs  # beside this script
from threadpoolctl import threadpool_limits

from c3tl_sklearn import (
    AdditiveBaseline,
    C3TLRegressor,
    LeaveOneContextOut,
    LinearTransferBaseline,
    load_lincs_knockdowns,
)
from c3tl_sklearn.metrics import centered_pearson_delta, pearson_delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", nargs="?", default="", help="C3TLRegressor keyword arguments")
    parser.add_argument("contexts", nargs="?", default="A375", help="held-out cell lines")
    parser.add_argument("--baselines", action="store_true", help="also score two baselines")
    args = parser.parse_args()
    params = parse_kwargs(args.params)
    torch.set_num_threads(1)
    threadpool_limits(1)
    warnings.simplefilter("ignore", UserWarning)

    X, Y = load_lincs_knockdowns()
    values = Y.to_numpy()
    cv = LeaveOneContextOut(
        adaptation_fraction=0.1, test_contexts=args.contexts.split(","), random_state=0
    )
    for train, test in cv.split(X):
        truth, contexts = values[test], X["context"].to_numpy()[test]

        def scores(pred, truth=truth, contexts=contexts):
            return (f"{pearson_delta(truth, pred):.3f} "
                    f"{centered_pearson_delta(truth, pred, contexts):.3f} "
                    f"{((pred - truth) ** 2).mean():.4f}")

        line = f"{contexts[0]} {params} c3tl "
        start = time.perf_counter()
        model = C3TLRegressor(random_state=0, **params).fit(X.iloc[train], Y.iloc[train])
        seconds = time.perf_counter() - start
        line += scores(model.predict(X.iloc[test]))
        if args.baselines:
            for name, base in (("add", AdditiveBaseline()), ("lin", LinearTransferBaseline())):
                base.fit(X.iloc[train], Y.iloc[train])
                line += f" | {name} " + scores(base.predict(X.iloc[test]))
        print(f"{line} | epochs {model.n_epochs_} fit {seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main()
