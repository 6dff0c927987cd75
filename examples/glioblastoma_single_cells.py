"""Real single cells to scores: leave one glioblastoma line out, C3TL against the baselines.

The shipped cells (:func:`~c3tl_sklearn.datasets.load_glioblastoma_crispri`:
CRISPRi knockdowns of nine genes and controls in A172, T98G and U87MG) are
pseudo-bulked into 27 (line, knockdown) effects against each line's own
controls. Each line is held out in turn with ``n`` of its nine knockdowns kept
for adaptation (``LeaveOneContextOut(adaptation_fraction=n / 9)``); the other
knockdowns of that line are predicted and scored, for several split seeds.

Printed and written to ``glioblastoma_single_cells.md`` in ``--out`` (default
``./c3tl-results/glioblastoma_single_cells``; ``--out benchmarks/results``
regenerates the committed copy):
mean ``pearson_delta`` (and its range over seeds) per held-out line, for
default ``C3TLRegressor`` and the mean, additive and linear transfer
baselines. Run (well under a minute on two CPU cores)::

    python examples/glioblastoma_single_cells.py
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from c3tl_sklearn import (
    AdditiveBaseline,
    C3TLRegressor,
    LeaveOneContextOut,
    LinearTransferBaseline,
    MeanBaseline,
    load_glioblastoma_crispri,
)
from c3tl_sklearn.metrics import pearson_delta
from c3tl_sklearn.preprocessing import pseudobulk

NAME = "glioblastoma_single_cells"


def models(seed: int) -> dict:
    return {
        "C3TL": C3TLRegressor(random_state=seed),
        "mean baseline": MeanBaseline(),
        "additive": AdditiveBaseline(),
        "linear transfer": LinearTransferBaseline(),
    }


def run(adaptation: list[int], seeds: list[int]) -> pd.DataFrame:
    X, Y = pseudobulk(load_glioblastoma_crispri(), "cell_line", "perturbation", "control")
    n_per_line = int(X["context"].value_counts().min())
    rows = []
    for n in adaptation:
        for seed in seeds:
            cv = LeaveOneContextOut(adaptation_fraction=n / n_per_line, random_state=seed)
            for train, test in cv.split(X):
                line = X["context"].iloc[test[0]]
                for name, model in models(seed).items():
                    model.fit(X.iloc[train], Y.iloc[train])
                    score = pearson_delta(Y.iloc[test], model.predict(X.iloc[test]))
                    rows.append({"adaptation knockdowns": n, "seed": seed, "held out": line,
                                 "model": name, "pearson_delta": score})
    return pd.DataFrame(rows)


def table(scores: pd.DataFrame) -> pd.DataFrame:
    def cell(values: pd.Series) -> str:
        return f"{values.mean():.3f} ({values.min():.3f} to {values.max():.3f})"

    return scores.pivot_table(
        index=["adaptation knockdowns", "held out"], columns="model", values="pearson_delta",
        aggfunc=cell,
    )[["C3TL", "mean baseline", "additive", "linear transfer"]]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adaptation", type=int, nargs="+", default=[1, 2, 3],
                        help="knockdowns of the held-out line kept for training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("c3tl-results") / NAME,
                        help=f"directory for {NAME}.md (default: ./c3tl-results/{NAME})")
    args = parser.parse_args(argv)
    if args.out.suffix == ".md":
        parser.error(f"--out takes a directory (the report is {NAME}.md in it); got {args.out}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scores = run(args.adaptation, args.seeds)
    elapsed = time.perf_counter() - start
    result = table(scores)
    text = (
        "# Glioblastoma CRISPRi single cells: leave one line out\n\n"
        f"Command: `{' '.join(['python', f'examples/{Path(__file__).name}', *sys.argv[1:]])}`"
        f" ({elapsed:.0f} s, {args.threads} thread(s)).\n\n"
        "pearson_delta on the held-out line's other knockdowns: mean over split seeds "
        f"{args.seeds} (range). Default parameters for every model.\n\n"
        + result.reset_index().to_markdown(index=False) + "\n"
    )
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.md").write_text(text)
    print(f"written to {args.out / f'{NAME}.md'}")


if __name__ == "__main__":
    main()
