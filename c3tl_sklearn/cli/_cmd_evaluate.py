"""``c3tl evaluate``: every metric per context and overall, predictions against the truth."""

from __future__ import annotations

import argparse

import pandas as pd

from .._atomic import atomic_path
from ._files import CommandError, check_output, read_effects


def add_parser(subparsers) -> None:
    """Register ``c3tl evaluate``."""
    p = subparsers.add_parser(
        "evaluate", help="score predictions against measured effects, per context and overall",
        description="Match the rows of the predictions and of the truth by (context, "
        "perturbation) and compute every metric (pearson_delta, centered_pearson_delta, "
        "discrimination_score, top_k_overlap, mse) per context and overall "
        "(c3tl_sklearn.metrics.score_table). Both files must hold the same pairs and genes "
        "(in any order). The table is printed and, with -o, written as CSV.",
        epilog="Example: c3tl evaluate predictions.h5ad truth.h5ad -o scores.csv",
    )
    p.add_argument("predictions", help="predicted effects (.h5ad, .csv, .tsv or .parquet)")
    p.add_argument("truth", help="measured effects of the same pairs, same formats")
    p.add_argument("-o", "--output", metavar="SCORES.csv",
                   help="write the table here (.csv or .tsv)")
    p.add_argument("--context-col", default="context",
                   help="context column of both files (default: context)")
    p.add_argument("--perturbation-col", default="perturbation",
                   help="perturbation column of both files (default: perturbation)")
    p.add_argument("--k", type=int, default=50,
                   help="genes compared by top_k_overlap (default: 50, at most all genes)")
    p.set_defaults(run=run)


def _pairs_preview(index: pd.MultiIndex) -> str:
    return ", ".join(f"({c}, {p})" for c, p in list(index)[:3])


def align(X_pred, Y_pred, X_true, Y_true, ccol, pcol) -> pd.DataFrame:
    """The truth's effects in the predictions' row and gene order; errors when they differ."""
    if set(Y_pred.columns) != set(Y_true.columns):
        only_pred = [g for g in Y_pred.columns if g not in set(Y_true.columns)]
        only_true = [g for g in Y_true.columns if g not in set(Y_pred.columns)]
        raise CommandError(
            f"the files have different genes ({len(only_pred)} only in the predictions, e.g. "
            f"{only_pred[:3]}; {len(only_true)} only in the truth, e.g. {only_true[:3]}); "
            "predict with a model fitted on the truth's genes."
        )
    pred_pairs = pd.MultiIndex.from_frame(X_pred[[ccol, pcol]].astype(str))
    true_pairs = pd.MultiIndex.from_frame(X_true[[ccol, pcol]].astype(str))
    missing = pred_pairs.difference(true_pairs)
    extra = true_pairs.difference(pred_pairs)
    if len(missing) or len(extra):
        raise CommandError(
            f"the pairs do not match: {len(missing)} predicted pair(s) are not in the truth "
            f"({_pairs_preview(missing)}), {len(extra)} truth pair(s) are not predicted "
            f"({_pairs_preview(extra)}); predict exactly the truth's pairs "
            "(c3tl predict MODEL --pairs TRUTH -o PREDICTIONS)."
        )
    order = true_pairs.get_indexer(pred_pairs)
    return Y_true.iloc[order][list(Y_pred.columns)].reset_index(drop=True)


def run(args: argparse.Namespace) -> int:
    """Score ``args.predictions`` against ``args.truth``."""
    from ..metrics import score_table

    out = None
    if args.output is not None:
        out = check_output(args.output, [args.predictions, args.truth], [".csv", ".tsv"],
                           "scores")
    if args.k < 1:
        raise CommandError(f"--k {args.k}: give a number >= 1.")
    ccol, pcol = args.context_col, args.perturbation_col
    X_pred, Y_pred = read_effects(args.predictions, ccol, pcol, what="predictions")
    X_true, Y_true = read_effects(args.truth, ccol, pcol, what="truth")
    Y_true = align(X_pred, Y_pred, X_true, Y_true, ccol, pcol)
    table = score_table(X_pred, Y_true, Y_pred, context_col=ccol, k=args.k)
    table.index = table.index.map(str)
    table.index.name = ccol
    if out is not None:
        with atomic_path(out) as tmp:  # an interrupted run leaves no half-written scores
            table.to_csv(tmp, sep="\t" if out.suffix == ".tsv" else ",")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    return 0
