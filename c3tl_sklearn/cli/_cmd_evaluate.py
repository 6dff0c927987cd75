"""``c3tl evaluate``: every metric per context and overall, predictions against the truth."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from .._atomic import atomic_path
from ._files import CommandError, _require_file, _suffix, check_output, read_effects


def recorded_labels(path) -> dict:
    """The label names a ``c3tl`` command recorded in a file (``uns['c3tl']`` of an .h5ad).

    A table written by ``c3tl predict`` has its two label columns first; they
    are returned when the default names are not among its columns.
    """
    p = Path(path)
    if not p.is_file():
        return {}
    if _suffix(p) == ".h5ad":
        try:
            import anndata

            adata = anndata.read_h5ad(p, backed="r")
        except Exception:  # unreadable files are reported by the reader that needs them
            return {}
        try:
            info = adata.uns.get("c3tl", {})
            return {k: str(v) for k, v in dict(info).items()} if hasattr(info, "items") else {}
        finally:
            adata.file.close()
    columns: list = []
    try:
        if _suffix(p) in (".csv", ".tsv", ".txt"):
            columns = list(pd.read_csv(p, nrows=0, sep="\t" if _suffix(p) == ".tsv" else ","))
        elif _suffix(p) in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            columns = list(pq.read_schema(p).names)
    except Exception:
        return {}
    if len(columns) >= 2 and not {"context", "perturbation"} & set(columns):
        return {"context_col": columns[0], "perturbation_col": columns[1]}
    return {}


def label_columns(path, context_col, perturbation_col) -> tuple[str, str]:
    """The label columns: as given, else as recorded in ``path``, else the defaults."""
    recorded = {} if context_col and perturbation_col else recorded_labels(path)
    return (context_col or recorded.get("context_col") or "context",
            perturbation_col or recorded.get("perturbation_col") or "perturbation")


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


def _cell_eval_effects(args: argparse.Namespace):
    """The effects of a cell-eval pair, with the label columns to score them by."""
    from ..preprocessing import read_cell_eval

    recorded = recorded_labels(args.predictions)
    pcol = args.perturbation_col or recorded.get("perturbation_col") or "target_gene"
    ccol = args.context_col or recorded.get("context_col")
    control = args.control or recorded.get("control") or "non-targeting"
    for path, what in ((args.predictions, "pred"), (args.truth, "real")):
        p = _require_file(path, f"cell-eval {what}")
        if _suffix(p) != ".h5ad":
            raise CommandError(f"--cell-eval reads cell-eval's .h5ad files; {str(p)!r} is not "
                               "one.")
    try:
        X, Y_true, Y_pred = read_cell_eval(args.predictions, args.truth, perturbation_col=pcol,
                                           control=control, context_col=ccol)
    except ValueError as exc:
        raise CommandError(f"cannot read the cell-eval files: {exc}") from None
    return X, Y_true, Y_pred, ccol or "context"


def run(args: argparse.Namespace) -> int:
    """Score ``args.predictions`` against ``args.truth``."""
    from ..metrics import score_table

    out = None
    if args.output is not None:
        out = check_output(args.output, [args.predictions, args.truth], [".csv", ".tsv"],
                           "scores")
    if args.k < 1:
        raise CommandError(f"--k {args.k}: give a number >= 1.")
    if args.cell_eval:
        X_pred, Y_true, Y_pred, ccol = _cell_eval_effects(args)
    else:
        if args.control is not None:
            raise CommandError("--control goes with --cell-eval (cell-eval's control label).")
        ccol, pcol = label_columns(args.predictions, args.context_col, args.perturbation_col)
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
