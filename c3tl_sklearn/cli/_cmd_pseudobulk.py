"""``c3tl pseudobulk``: single cells in an ``.h5ad`` file to an AnnData of effects."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pandas as pd

from ._files import CommandError, _require_file, _suffix, check_output, write_effects
from ._parsers import control_labels
from ._progress import progress_bar


def run(args: argparse.Namespace) -> int:
    """Pseudo-bulk ``args.cells`` into ``args.output`` and print the dropped pairs."""
    from ..preprocessing import PseudobulkOptions, pseudobulk

    cells = _require_file(args.cells, "cells")
    if _suffix(cells) != ".h5ad":
        raise CommandError(f"{str(cells)!r} is not an .h5ad file; pseudobulk reads single cells "
                           "from an AnnData .h5ad file.")
    out = check_output(args.output, [cells], [".h5ad"], "effects")
    control = control_labels(args.control)
    bar = progress_bar(None, "pseudo-bulk", "it", enabled=not args.quiet)

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        with warnings.catch_warnings():
            # the dropped pairs are all printed below; the warning would list five of them
            warnings.filterwarnings("ignore", message=r"Dropped \d+ of \d+ \(context, pert")
            options = PseudobulkOptions(layer=args.layer, min_cells=args.min_cells,
                                        n_top_genes=args.n_top_genes, transform=args.transform)
            X, Y, report = pseudobulk(
                str(cells), args.context, args.perturbation, control, options,
                return_report=True, progress=advance if bar is not None else None,
            )
    except (ValueError, TypeError, KeyError) as exc:
        raise CommandError(f"{cells}: {_first_line(exc)}") from None
    finally:
        if bar is not None:
            bar.close()
    uns = _report_uns(report, args, cells)
    write_effects(X, Y, Y.columns, out, uns=uns)
    _print_report(report.groups, X, Y, out, args.quiet)
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _report_uns(report, args: argparse.Namespace, cells: Path) -> dict:
    """What pseudobulk did, in the form anndata writes to ``uns``."""
    groups = report.groups.copy()
    for col in ("context", "perturbation"):
        groups[col] = groups[col].map(str)
    control_mean = report.control_mean.copy()
    control_mean.index = control_mean.index.map(str)
    return {
        "pseudobulk_groups": groups,
        "pseudobulk_control_mean": control_mean,
        # a JSON string, because anndata refuses None values (n_top_genes, layer) in uns
        "pseudobulk": json.dumps({
            "source": str(cells), "context_key": args.context,
            "perturbation_key": args.perturbation, "control": list(args.control),
            "min_cells": args.min_cells, "n_top_genes": args.n_top_genes, "layer": args.layer,
            "transform": args.transform, "looks_like_counts": bool(report.looks_like_counts),
            "n_cells_unlabelled": int(report.n_cells_unlabelled),
        }),
    }


def _print_report(groups: pd.DataFrame, X: pd.DataFrame, Y: pd.DataFrame, out: Path,
                  quiet: bool) -> None:
    """One summary line, then one line per dropped group (stdout: it is the result)."""
    dropped = groups[groups["status"] != "kept"]
    print(f"{len(X)} pairs in {X['context'].nunique()} contexts x {Y.shape[1]} genes -> {out}; "
          f"{len(dropped)} group(s) dropped (report in uns['pseudobulk_groups'])")
    if quiet:
        return
    for row in dropped.itertuples(index=False):
        what = "control" if row.is_control else "pair"
        print(f"  dropped {what} ({row.context}, {row.perturbation}): {row.n_cells} cells, "
              f"{row.status}")
