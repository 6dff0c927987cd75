"""The parsers of the ``c3tl`` subcommands, and the options several commands share.

This module imports only :mod:`argparse` and the model names of
``_registry``: ``c3tl --help`` and ``c3tl COMMAND --help`` build every parser,
so a parser must not pay for pandas, scikit-learn, torch or anndata. What a
command does lives in its ``_cmd_*`` module, imported by :func:`handler` only
when that command runs.
"""

from __future__ import annotations

import argparse
from importlib import import_module

from ._registry import MODELS

__all__ = ["add_label_columns", "add_output_flags", "add_subcommands", "add_truth_arguments"]

_AS_CONTEXT_COL = "perturbation column, as --context-col"


def handler(command: str):
    """``args.run`` of ``command``: imports ``_cmd_{command}`` when the command runs, not before.

    The module is looked up at each call, so that a test replacing a function
    of it (``monkeypatch.setattr(_cmd_fit, ...)``) is what runs.
    """

    def run(args: argparse.Namespace) -> int:
        return import_module(f"{__package__}._cmd_{command}").run(args)

    return run


def add_label_columns(parser, context_help: str, perturbation_help: str = _AS_CONTEXT_COL, *,
                      default: bool = False) -> None:
    """``--context-col`` and ``--perturbation-col``.

    With ``default`` they default to ``context`` and ``perturbation``; without,
    they default to ``None`` (metavar ``NAME``) and the command finds the
    columns itself (the model's, or the ones ``c3tl predict`` recorded).
    """
    context, perturbation = (({"default": "context"}, {"default": "perturbation"}) if default
                             else ({"metavar": "NAME"}, {"metavar": "NAME"}))
    parser.add_argument("--context-col", **context, help=context_help)
    parser.add_argument("--perturbation-col", **perturbation, help=perturbation_help)


def add_output_flags(group, quiet_help: str) -> None:
    """``--quiet`` and ``--traceback``, the last options of every command."""
    group.add_argument("--quiet", action="store_true", help=quiet_help)
    group.add_argument("--traceback", action="store_true",
                       help="show the full traceback of an error")


def control_labels(values: list[str]):
    """The labels of a repeatable ``--control``: one label, or the list to pool."""
    return values[0] if len(values) == 1 else list(values)


#: ``--min-cells`` when it is not given.
MIN_CELLS = 10


def add_pseudobulk_options(group, *, unset_defaults: bool = False) -> None:
    """How cells become effects: ``--min-cells``, ``--n-top-genes``, ``--layer``, ``--transform``.

    With ``unset_defaults`` every default is ``None``, so that a command can
    tell whether the user gave one (``MIN_CELLS`` is then the caller's to apply).
    """
    group.add_argument("--min-cells", type=int, default=None if unset_defaults else MIN_CELLS,
                       help=f"drop pairs (and contexts' controls) with fewer cells (default: "
                       f"{MIN_CELLS})")
    group.add_argument("--n-top-genes", type=int, metavar="N",
                       help="keep the N genes whose effects vary most (default: all genes)")
    group.add_argument("--layer", help="use this layer instead of X")
    group.add_argument("--transform", choices=["log1p", "normalize_log1p"],
                       help="transform raw counts before averaging (default: use values as "
                       "given)")


def _command(subparsers, name: str, help: str, description: str, epilog: str):
    p = subparsers.add_parser(name, help=help, description=description, epilog=epilog)
    p.set_defaults(run=handler(name))
    return p


def add_subcommands(subparsers) -> None:
    """Register every ``c3tl`` subcommand but ``benchmark`` (``c3tl-benchmark``'s parser)."""
    for add in (_pseudobulk, _fit, _predict, _evaluate, _export, _peers):
        add_output_flags(add(subparsers).add_argument_group("output"),
                         "no progress bar, no status lines")


def _pseudobulk(subparsers) -> argparse.ArgumentParser:
    p = _command(
        subparsers, "pseudobulk", "single cells (.h5ad) -> effects per (context, perturbation)",
        "Average the cells of every (context, perturbation) pair and subtract the "
        "mean of the same context's control cells, gene by gene. Writes an AnnData with "
        "one row per pair (obs: context, perturbation, n_cells, n_control_cells; var: genes) "
        "and, in its uns, the report of every group (kept or dropped, with its cell count) "
        "and the control means. Dropped pairs are also printed.",
        "Example: c3tl pseudobulk cells.h5ad --context cell_line --perturbation "
        "perturbation --control control -o effects.h5ad",
    )
    p.add_argument("cells", help="single cells, an .h5ad file (read in blocks, never modified)")
    p.add_argument("--context", required=True, metavar="COLUMN",
                   help="obs column with each cell's context (cell line, donor, ...)")
    p.add_argument("--perturbation", required=True, metavar="COLUMN",
                   help="obs column with each cell's perturbation")
    p.add_argument("--control", required=True, action="append", metavar="LABEL",
                   help="control label in the perturbation column (repeat to pool several)")
    add_pseudobulk_options(p)
    p.add_argument("-o", "--output", required=True, metavar="EFFECTS.h5ad",
                   help="output AnnData of effects (.h5ad)")
    return p


def _fit(subparsers) -> argparse.ArgumentParser:
    p = _command(
        subparsers, "fit", "fit a model on effects and save it (safe format, no pickle)",
        "Fit C3TL (default) or a baseline on an effect file and save the fitted "
        "model as one safetensors file that loads without executing code. The effect file "
        "is an AnnData (.h5ad: obs with the label columns, var = genes, as written by "
        "`c3tl pseudobulk`) or a table (.csv, .tsv, .parquet) with the two label columns "
        "and one numeric column per gene.",
        "Example: c3tl fit effects.h5ad -o model.c3tl --set max_epochs=200 "
        "--set 'hidden_dims=(128,)'",
    )
    p.add_argument("effects", help="effects to fit on (.h5ad, .csv, .tsv or .parquet)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL",
                   help="model file to write (any name; .c3tl or .safetensors is usual)")
    p.add_argument("--model", default="c3tl", choices=list(MODELS),
                   help="c3tl (default) or a baseline: " + ", ".join(
                       f"{k} ({v})" for k, v in MODELS.items() if k != "c3tl"))
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="params",
                   help="set a model parameter; VALUE is a Python literal (1e-3, True, "
                   "'ridge', or quoted for the shell: --set 'hidden_dims=(128, 64)'); a bare "
                   "word is taken as a string. Repeat for several")
    add_label_columns(p, "context column of the effects (default: context)",
                      "perturbation column of the effects (default: perturbation)", default=True)
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch and BLAS (default: the cores other processes "
                   "leave free, at most torch's own setting)")
    p.add_argument("--seed", type=int, default=0, help="C3TL's random seed (default: 0)")
    p.add_argument("--device", default="cpu", help="C3TL's torch device (default: cpu)")
    split = p.add_argument_group(
        "split file", "fit on the training rows of a State TOML split file ([zeroshot], "
        "[fewshot.\"dataset.context\"] val = [...] test = [...]); contexts and "
        "perturbations are matched by name")
    split.add_argument("--split", metavar="FILE.toml",
                       help="fit only on the file's training rows (validation rows too, "
                       "unless they are test rows)")
    split.add_argument("--split-dataset", "--dataset", metavar="NAME", dest="dataset",
                       help="the dataset of the file's 'dataset.context' keys (default: its "
                       "only one); --split-dataset as in `c3tl benchmark`")
    split.add_argument("--test-out", metavar="FILE",
                       help="write the file's test rows here (.h5ad keeps the input's uns, "
                       "e.g. the control means; or .csv/.tsv/.parquet), for `c3tl predict "
                       "--pairs` and `c3tl evaluate`")
    return p


def _predict(subparsers) -> argparse.ArgumentParser:
    p = _command(
        subparsers, "predict",
        "predict effects of (context, perturbation) pairs with a saved model",
        "Predict the effect of (context, perturbation) pairs with a model written "
        "by `c3tl fit`. Name the pairs with --pairs (a table, or an .h5ad whose obs lists "
        "them, e.g. a truth file) or ask for every perturbation the model knows in one or "
        "more contexts. --observed passes a new context's few measured effects: the model "
        "uses them without refitting (C3TL models only).",
        "Examples: c3tl predict model.c3tl --pairs test.h5ad -o predictions.h5ad; "
        "c3tl predict model.c3tl --context U87MG --all-perturbations --observed "
        "u87mg_measured.csv -o u87mg.csv",
    )
    p.add_argument("model", help="model file written by `c3tl fit`")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pairs", metavar="FILE",
                       help="pairs to predict: .csv/.tsv/.parquet with the label columns, or "
                       ".h5ad (its obs); other columns are ignored")
    which.add_argument("--context", action="append", metavar="NAME",
                       help="predict in this context (repeat for several); needs "
                       "--all-perturbations")
    p.add_argument("--all-perturbations", action="store_true",
                   help="with --context: every perturbation the model was fitted on")
    p.add_argument("--observed", metavar="FILE",
                   help="measured effects in new or known contexts (.h5ad/.csv/.tsv/.parquet, "
                   "same genes as the model), used without refitting")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="predictions with gene names: .h5ad (obs = pairs, var = genes), "
                   ".csv, .tsv or .parquet")
    add_label_columns(p, "context column of --pairs/--observed and of the output (default: "
                      "the model's, 'context' for files of `c3tl pseudobulk`)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch and BLAS (default: the libraries' own)")
    p.add_argument("--device", default="cpu", help="torch device of C3TL (default: cpu)")
    p.add_argument("--cell-eval", metavar="DIR",
                   help="also write the predictions as cell-eval's pred.h5ad and real.h5ad "
                   "into DIR (needs --cells or --truth; see `c3tl export --help`)")
    add_truth_arguments(p, required=False)
    return p


def _evaluate(subparsers) -> argparse.ArgumentParser:
    p = _command(
        subparsers, "evaluate",
        "score predictions against measured effects, per context and overall",
        "Match the rows of the predictions and of the truth by (context, "
        "perturbation) and compute every metric (pearson_delta, centered_pearson_delta, "
        "discrimination_score, top_k_overlap, mse) per context and overall "
        "(c3tl_sklearn.metrics.score_table). Both files must hold the same pairs and genes "
        "(in any order). The label columns are the ones `c3tl predict` recorded in its "
        "output (or given with --context-col/--perturbation-col). With --cell-eval the two "
        "files are cell-eval's pred.h5ad and real.h5ad, from any tool: every group's mean "
        "minus the same file's control mean, as cell-eval computes effects. The table is "
        "printed and, with -o, written as CSV.",
        "Examples: c3tl evaluate predictions.h5ad truth.h5ad -o scores.csv; c3tl "
        "evaluate --cell-eval pred.h5ad real.h5ad --perturbation-col target_gene --control "
        "non-targeting --context-col cell_type",
    )
    p.add_argument("predictions", help="predicted effects (.h5ad, .csv, .tsv or .parquet); "
                   "with --cell-eval, cell-eval's pred.h5ad")
    p.add_argument("truth", help="measured effects of the same pairs, same formats; with "
                   "--cell-eval, cell-eval's real.h5ad")
    p.add_argument("-o", "--output", metavar="SCORES.csv",
                   help="write the table here (.csv or .tsv)")
    add_label_columns(
        p, "context column of both files (default: the one `c3tl predict` recorded in the "
        "predictions, else context; with --cell-eval: cell-eval's --celltype-col, default one "
        "context)",
        "perturbation column of both files (default: as --context-col, else perturbation; "
        "with --cell-eval: cell-eval's --pert-col, default target_gene)")
    p.add_argument("--k", type=int, default=50,
                   help="genes compared by top_k_overlap (default: 50, at most all genes)")
    ce = p.add_argument_group("cell-eval files")
    ce.add_argument("--cell-eval", action="store_true",
                    help="the two files are cell-eval's pred.h5ad and real.h5ad (cells or "
                    "pseudo-bulk rows with control rows in each file)")
    ce.add_argument("--control", metavar="LABEL",
                    help="with --cell-eval: cell-eval's --control-pert (default: the one "
                    "`c3tl export` recorded, else non-targeting)")
    return p


def add_truth_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    """The options that say where the truth of a cell-eval export comes from."""
    group = p.add_argument_group(
        "cell-eval export", "the truth of the exported pairs: their single cells (--cells, for "
        "every cell-eval metric, the DE-based ones included) or pseudo-bulk effects with the "
        "control means (--truth, a file of `c3tl pseudobulk`)")
    which = group.add_mutually_exclusive_group(required=required)
    which.add_argument("--cells", metavar="CELLS.h5ad",
                       help="log-normalised single cells of the exported pairs and their "
                       "contexts' controls")
    which.add_argument("--truth", metavar="EFFECTS.h5ad",
                       help="measured effects of the exported pairs, written by `c3tl "
                       "pseudobulk` (its uns holds the control means)")
    group.add_argument("--control", metavar="LABEL",
                       help="control label of the cells (needed with --cells; written as the "
                       "control label of both files; default with --truth: the one "
                       "pseudobulk used)")
    group.add_argument("--cells-context-key", metavar="COLUMN",
                       help="obs column of the cells' contexts (default: the context column)")
    group.add_argument("--cells-perturbation-key", metavar="COLUMN",
                       help="obs column of the cells' perturbations (default: the "
                       "perturbation column)")
    # None by default: given with --truth, they would change nothing, which is an error
    group.add_argument("--n-cells", metavar="N|match",
                       help="predicted cells per pair with --cells (default: match, as many "
                       "as the pair's real cells)")
    group.add_argument("--export-seed", type=int, metavar="SEED",
                       help="with --cells, draws the control cells behind the predicted cells "
                       "(default: 0)")


def _export(subparsers) -> argparse.ArgumentParser:
    p = _command(
        subparsers, "export", "write predictions as cell-eval's pred.h5ad and real.h5ad",
        "Write predicted effects as the two files `cell-eval run` accepts as "
        "they are: predicted expression = the real controls' mean + the predicted effect, "
        "the real control cells copied into both files (so every metric is taken against "
        "the same controls), identical genes, a shared perturbation column, the context "
        "column for --celltype-col, values in [0, 15). Prints the cell-eval command.",
        "Example: c3tl export predictions.h5ad --cells cells.h5ad --control control "
        "--cells-context-key cell_line -o cell-eval-input; then run the printed "
        "`cell-eval run ...` line",
    )
    p.add_argument("predictions", help="predicted effects (.h5ad, .csv, .tsv or .parquet), "
                   "e.g. written by `c3tl predict`")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for pred.h5ad and real.h5ad (created if needed)")
    add_label_columns(p, "context column of the predictions (default: the one `c3tl predict` "
                      "recorded, else context)")
    add_truth_arguments(p, required=True)
    return p


def _peers(subparsers) -> argparse.ArgumentParser:
    p = _command(
        subparsers, "peers", "install or show the peers' environments (State, CellFlow)",
        "The peers of the head-to-head (c3tl benchmark --models c3tl,state,cellflow) "
        "run in their own virtual environments. `install` creates one and pip-installs the "
        "pinned peer (State: torch 2.13.0 + arc-state 0.11.1, about 2.5 GB; CellFlow: "
        "cellflow-tools 0.0.9 + requests, about 1.6 GB); `list` shows where they are. Both "
        "peers are licensed for non-commercial use only (State CC BY-NC-SA 4.0, CellFlow "
        "PolyForm Noncommercial): installing them is your decision.",
        "Example: c3tl peers install state --prefix /opt/peers/state",
    )
    p.add_argument("action", choices=["install", "list"], help="what to do")
    p.add_argument("peer", nargs="*", metavar="NAME",
                   help="state and/or cellflow (install: at least one; list: default both)")
    p.add_argument("--prefix", metavar="DIR",
                   help="install: the environment's folder (one peer; default "
                   "$C3TL_PEERS_DIR/NAME or ~/.cache/c3tl/peers/NAME)")
    p.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for pip install (repeat), e.g. --pip-arg=--no-cache-dir")
    return p
