"""``c3tl export``: predictions as the ``pred.h5ad``/``real.h5ad`` pair ``cell-eval run`` takes.

``c3tl predict ... --cell-eval DIR`` does the same right after predicting;
both take the truth options of ``_parsers.add_truth_arguments`` and share :func:`export`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from ._files import (
    CommandError,
    _read_h5ad,
    _require_file,
    _suffix,
    read_effects,
    same_path,
    say,
)

#: What an export writes into its folder.
_FILES = ("pred.h5ad", "real.h5ad")


def _n_cells(text) -> int | str:
    if text == "match":
        return "match"
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        raise CommandError(f"--n-cells {text!r}: give a number >= 1 or 'match'.")
    return value


def check_folder(folder, flag: str, others: dict) -> Path:
    """The folder for ``pred.h5ad`` and ``real.h5ad``, neither of them a file of ``others``.

    ``others``: the command's inputs and other outputs, by flag.
    """
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{flag} {str(out)!r} is a file; give a folder for "
                           "pred.h5ad and real.h5ad.")
    if not out.parent.exists():
        raise CommandError(f"the folder above {str(out)!r} does not exist; create it first.")
    for name in _FILES:
        for other_flag, other in others.items():
            if other is not None and same_path(out / name, other):
                raise CommandError(
                    f"{flag} {str(out)!r} would write {name} over the {other_flag} file "
                    f"{str(other)!r}; choose another folder (inputs are never overwritten).")
    return out


def check_truth_flags(args: argparse.Namespace) -> None:
    """Refuse the options of a cells truth beside ``--truth``: they would change nothing."""
    if args.cells is not None:
        return
    only_cells = [flag for flag, value in (
        ("--n-cells", args.n_cells), ("--export-seed", args.export_seed),
        ("--cells-context-key", args.cells_context_key),
        ("--cells-perturbation-key", args.cells_perturbation_key)) if value is not None]
    if only_cells:
        goes, them = ("goes", "it") if len(only_cells) == 1 else ("go", "them")
        raise CommandError(f"{', '.join(only_cells)} {goes} with --cells (single cells); with "
                           f"--truth there are no cells to draw, so leave {them} out.")


def export(X: pd.DataFrame, Y_pred: pd.DataFrame, args: argparse.Namespace, out: Path,
           ccol, pcol) -> None:
    """Export ``(X, Y_pred)`` and the truth ``args`` names into ``out``; print the command.

    ``out`` is a folder :func:`check_folder` accepted, for flags
    :func:`check_truth_flags` accepted.
    """
    from ..preprocessing import TruthCells, TruthEffects, to_cell_eval

    n_cells = _n_cells("match" if args.n_cells is None else args.n_cells)
    seed = 0 if args.export_seed is None else args.export_seed
    # the bounded means' warning reaches the user as `c3tl ...: warning:` (see c3tl_main)
    try:
        if args.cells is not None:
            if args.control is None:
                raise CommandError("--cells needs --control LABEL (the control label of the "
                                   "cells' perturbation column).")
            path = _require_file(args.cells, "cells")
            truth = TruthCells(_read_h5ad(path, "cells"), context_key=args.cells_context_key,
                               perturbation_key=args.cells_perturbation_key, n_cells=n_cells,
                               random_state=seed)
            files = to_cell_eval(X, Y_pred, truth, control=args.control, context_col=ccol,
                                 perturbation_col=pcol)
        else:
            Y_true, control_mean, control = _truth(args.truth, X, Y_pred, ccol, pcol)
            files = to_cell_eval(
                X, Y_pred, TruthEffects(Y_true, control_mean),
                control=args.control or control, context_col=ccol, perturbation_col=pcol,
            )
    except CommandError:
        raise
    except (ValueError, TypeError) as exc:
        raise CommandError(f"cannot export for cell-eval: {str(exc).splitlines()[0]}") from None
    pred_path, real_path = files.write(out)
    what = "cells" if args.cells is not None else "pseudo-bulk rows, one per pair"
    say(f"cell-eval files ({what}): {pred_path} ({files.pred.n_obs} rows), {real_path} "
        f"({files.real.n_obs} rows) x {files.pred.n_vars} genes", args.quiet)
    # the command is the result a user copies, so it goes to stdout
    print(files.command(out, out / "cell-eval-outdir"))


def _truth(path, X, Y_pred, ccol, pcol):
    """The truth's effects in the predictions' row and gene order, its control means and label."""
    from ._cmd_evaluate import align

    p = _require_file(path, "truth")
    if _suffix(p) != ".h5ad":
        raise CommandError(f"--truth {str(p)!r}: give the .h5ad file of `c3tl pseudobulk` (its "
                           "uns holds the control means); a table has no control means.")
    X_true, Y_true = read_effects(p, ccol, pcol, what="truth")
    adata = _read_h5ad(p, "truth")
    control_mean = adata.uns.get("pseudobulk_control_mean")
    if not isinstance(control_mean, pd.DataFrame):
        raise CommandError(
            f"--truth {str(p)!r} has no uns['pseudobulk_control_mean']; pass a file written "
            "by `c3tl pseudobulk`, or the cells with --cells."
        )
    control = None
    info = adata.uns.get("pseudobulk")
    if isinstance(info, str):
        labels = json.loads(info).get("control") or [None]
        control = labels[0] if len(labels) == 1 else "+".join(map(str, labels))
    Y_true = align(X, Y_pred, X_true, Y_true, ccol, pcol)
    return Y_true, control_mean, control or "control"


def run(args: argparse.Namespace) -> int:
    """Export ``args.predictions`` for cell-eval into ``args.output``."""
    from ._cmd_evaluate import label_columns

    out = check_folder(args.output, "-o", {"predictions": args.predictions,
                                           "--truth": args.truth, "--cells": args.cells})
    check_truth_flags(args)
    ccol, pcol = label_columns(args.predictions, args.context_col, args.perturbation_col)
    X, Y = read_effects(args.predictions, ccol, pcol, what="predictions")
    export(X, Y, args, out, ccol, pcol)
    return 0
