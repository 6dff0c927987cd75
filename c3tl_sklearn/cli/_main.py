"""The ``c3tl-benchmark`` command: its argument parser and entry point."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

# the parser needs only the names of the models and metrics; the benchmark's modules
# (pandas, scikit-learn, Optuna) are imported by main, after the arguments are parsed
from ._parsers import (
    MIN_CELLS,
    add_label_columns,
    add_output_flags,
    add_pseudobulk_options,
    control_labels,
)
from ._registry import _TUNE_METRICS, MODEL_LABELS, MODELS, PEER_MODELS

if TYPE_CHECKING:
    from ._config import BenchmarkConfig, H5adCells
    from ._report import BenchmarkResult

__all__ = ["build_parser", "main"]


def _number_list(cast, what: str):
    """An argparse type: comma-separated ``what`` converted by ``cast``."""

    def parse(text: str) -> list:
        try:
            values = [cast(v) for v in text.split(",") if v.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}s: {text!r}") from exc
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one {what}")
        return values

    return parse


_int_list = _number_list(int, "integer")
_float_list = _number_list(float, "number")


def _model_list(text: str) -> list[str]:
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    if names == ["all"]:
        return list(MODELS)
    bad = [n for n in names if n not in MODEL_LABELS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {bad}; choose from {', '.join(MODEL_LABELS)} (or 'all', "
            f"which means {','.join(MODELS)})"
        )
    return names


def _peer_option(text: str) -> tuple[str, str, object]:
    """``PEER.PARAM=VALUE`` (value parsed as JSON where it can be) for --peer-option."""
    key, sep, value = text.partition("=")
    peer, dot, param = key.strip().partition(".")
    if not sep or not dot or peer not in PEER_MODELS or not param:
        raise argparse.ArgumentTypeError(
            f"expected PEER.PARAM=VALUE with PEER one of {', '.join(PEER_MODELS)} (for example "
            f"state.max_steps=400): {text!r}")
    import json

    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return peer, param, parsed


def build_parser(prog: str = "c3tl-benchmark") -> argparse.ArgumentParser:
    """The ``c3tl-benchmark`` argument parser.

    Parameters
    ----------
    prog : str, default="c3tl-benchmark"
        Program name in the help and messages (``"c3tl benchmark"`` for the
        subcommand of ``c3tl``).

    Returns
    -------
    parser : argparse.ArgumentParser

    Examples
    --------
    >>> from c3tl_sklearn.cli import build_parser
    >>> build_parser().parse_args(["--protocol", "scarcity"]).protocol
    'scarcity'
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Tune and compare C3TL and the baselines with the paper's held-out-"
        "context protocol (Table 1, Figure 2) or data-scarcity protocol (Figure 3).",
        epilog=f"Example: {prog} --data lincs --protocol heldout --n-trials 20 "
        "--out benchmarks/results/lincs-heldout",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="lincs|synthetic|PATH",
                      help="'lincs' (shipped, the default without --index or --h5ad), "
                      "'synthetic', or one CSV/TSV/Parquet table with the label columns and "
                      "one numeric column per gene")
    data.add_argument("--index", metavar="PATH",
                      help="index table (CSV/TSV/Parquet) with the label columns; use with "
                      "--effects")
    data.add_argument("--effects", metavar="PATH",
                      help="effect matrix (CSV/TSV/Parquet), one numeric column per gene, "
                      "rows aligned with --index")
    add_label_columns(data, "context column of the table (default: context)",
                      "perturbation column of the table (default: perturbation)", default=True)
    data.add_argument("--synthetic-shape", type=_int_list, default=[6, 60, 50],
                      metavar="C,P,G", help="contexts,perturbations,genes of --data synthetic "
                      "(default: 6,60,50)")
    data.add_argument("--h5ad", metavar="PATH", help="single cells to pseudo-bulk (a quoted "
                      "glob such as 'plates/*.h5ad': all its files together)")
    data.add_argument("--context-key", help="obs column with the context of every cell")
    data.add_argument("--perturbation-key", help="obs column with the perturbation")
    data.add_argument("--control", action="append", metavar="LABEL",
                      help="control label in --perturbation-key (repeat to pool several)")
    add_pseudobulk_options(data, unset_defaults=True)

    proto = parser.add_argument_group("protocol")
    proto.add_argument("--protocol", choices=["heldout", "scarcity"], default="heldout")
    proto.add_argument("--models", type=_model_list, default=list(MODELS),
                       metavar="LIST", help=f"comma-separated, from {','.join(MODELS)} "
                       f"(default: all) and the peers {','.join(PEER_MODELS)} (with --h5ad; "
                       "see the peers options)")
    proto.add_argument("--n-trials", type=int, default=20,
                       help="Optuna trials per model, tuned on the first fold (default: 20; "
                       "0 keeps defaults)")
    proto.add_argument("--tune-metric", default="centered_pearson_delta",
                       choices=sorted(_TUNE_METRICS), help="tuning objective (default: "
                       "centered_pearson_delta)")
    proto.add_argument("--inner-folds", type=int, default=2,
                       help="training contexts held out by the tuning's inner CV (default: 2)")
    proto.add_argument("--adaptation-fraction", type=float, default=0.1,
                       help="fraction of a test context in training (heldout; default 0.1); "
                       "scarcity: the cell tuned on")
    proto.add_argument("--n-test-contexts", type=int,
                       help="test contexts drawn with --seed (default: all up to 10 "
                       "contexts, else 5)")
    proto.add_argument("--n-train-contexts", type=_int_list, default=[5, 3, 2],
                       metavar="LIST", help="scarcity: nested training-set sizes "
                       "(default: 5,3,2)")
    proto.add_argument("--adaptation-fractions", type=_float_list,
                       default=[0.5, 0.2, 0.1, 0.05, 0.02], metavar="LIST",
                       help="scarcity: adaptation fractions (default: 0.5,0.2,0.1,0.05,0.02)")
    proto.add_argument("--scarcity-test-set", choices=["common", "complement"],
                       default="common", help="scarcity: test pairs shared by all cells "
                       "(common, default) or each cell's complement (the paper)")
    proto.add_argument("--split", metavar="FILE.toml",
                       help="State TOML split file: its train/test split replaces the held-out "
                       "protocol's folds (contexts and perturbations by name; see "
                       "c3tl_sklearn.model_selection.StateSplit)")
    proto.add_argument("--split-dataset", metavar="NAME",
                       help="with --split: the dataset of the file's 'dataset.context' keys "
                       "(default: its only one)")
    proto.add_argument("--params", metavar="JSON",
                       help="use these parameters (a params.json of an earlier run) instead "
                       "of tuning the models it lists")

    peers = parser.add_argument_group(
        "peers", "State and CellFlow (--models ...,state,cellflow) train on the --h5ad cells in "
        "their own environments (`c3tl peers install state|cellflow`); non-commercial "
        "licences, never installed with c3tl-sklearn")
    for name in PEER_MODELS:
        peers.add_argument(f"--{name}-python", metavar="PATH",
                           help=f"Python (or virtual environment) with {PEER_MODELS[name]} "
                           f"(default: $C3TL_{name.upper()}_PYTHON, else "
                           f"$C3TL_PEERS_DIR/{name}, else ~/.cache/c3tl/peers/{name})")
    peers.add_argument("--peer-option", type=_peer_option, action="append", default=[],
                       metavar="PEER.PARAM=VALUE", help="a peer's parameter, e.g. "
                       "state.max_steps=400 or cellflow.num_iterations=1000 (repeat)")
    peers.add_argument("--peer-workdir", metavar="DIR", help="where the peers' input, models "
                       "and logs go (default: a temporary folder, removed afterwards)")
    peers.add_argument("--keep-peer-files", action="store_true",
                       help="keep the peers' work folders")
    peers.add_argument("--isolate", action="store_true",
                       help="fit and predict C3TL and the baselines in subprocesses too, so "
                       "that their peak memory is measured as the peers' is")

    run = parser.add_argument_group("run")
    run.add_argument("--max-epochs", type=int, help="override C3TL's max_epochs")
    run.add_argument("--device", default="cpu", help="C3TL's torch device (default: cpu)")
    run.add_argument("--threads", type=int,
                     help="CPU threads for torch and for BLAS/OpenMP (numpy, scipy, sklearn) "
                     "(default: each fit uses the cores other processes leave free)")
    run.add_argument("--n-jobs", type=int, default=1,
                     help="fits at once through joblib (evaluation splits, tuning folds); "
                     "each gets free cores/n_jobs threads (default: 1)")
    run.add_argument("--storage", metavar="URL|PATH",
                     help="Optuna storage (sqlite:///x.db, postgresql://..., or a .log "
                     "journal file) so tuning resumes and can be shared")
    run.add_argument("--study-prefix", default="c3tl-benchmark",
                     help="prefix of the study names in --storage")
    run.add_argument("--seed", type=int, default=0, help="seed of splits, tuning and C3TL")
    run.add_argument("--max-points", type=int, default=20_000,
                     help="points per panel of scatter.png (default: 20000)")
    run.add_argument("--out", metavar="DIR",
                     help="output folder (default: ./c3tl-benchmark-<protocol>-<time>); an "
                     "earlier run's results there are replaced")
    run.add_argument("--tune-only", action="store_true",
                     help="only tune (write params.json); with --storage, run several such "
                     "workers, then the same command without --tune-only to evaluate")
    add_output_flags(run, "no progress display")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "c3tl-benchmark") -> int:
    """Entry point of ``c3tl-benchmark`` and of ``c3tl benchmark``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``None`` reads ``sys.argv``.
    prog : str, default="c3tl-benchmark"
        Program name in the help, the messages and the recorded command line.

    Returns
    -------
    status : int
        0 on success, 2 for a usage or data error (the message is printed).
    """
    parser = build_parser(prog)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    from ..peers._env import PeerEnvironmentError
    from ..peers._process import PeerRunError
    from ._io import BenchmarkDataError

    if len(args.synthetic_shape) != 3:
        parser.error("--synthetic-shape needs three integers: contexts,perturbations,genes")
    if args.n_trials < 0:
        parser.error("--n-trials must be >= 0")
    # before the data are read: the flags' own messages, not a library's about its argument
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.n_jobs == 0:
        parser.error("--n-jobs 0 runs no fit; give 1 or more, or -1 for one per core")
    if args.split is not None and args.protocol != "heldout":
        parser.error("--split replaces the held-out protocol's folds; use it with "
                     "--protocol heldout")
    start_time = time.perf_counter()
    out = args.out or f"c3tl-benchmark-{args.protocol}-{datetime.now():%Y%m%d-%H%M%S}"
    if Path(out).exists() and not Path(out).is_dir():  # found before the run, not after it
        parser.error(f"--out {out!r} is a file; give a folder for the results.")
    problem = _data_flags_problem(args)
    if problem:
        parser.error(problem)
    command = f"{prog} " + shlex.join(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    from ._threads import thread_limits

    try:
        # the count stands for every fit in this process (torch, BLAS and the fits' own choice)
        with thread_limits(args.threads, uses_torch="c3tl" in args.models):
            result = _main_run(args, start_time, out, command)
    except (BenchmarkDataError, ValueError, ImportError, OSError, PeerEnvironmentError,
            PeerRunError) as exc:
        if args.traceback:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet and result.table:
        print(result.table)
    if not args.quiet:
        print(f"Results in {out} ({result.wall_seconds:.1f} s)")
    return 0


#: Flags that say how to read single cells: meaningless without --h5ad.
_CELL_FLAGS = ("context_key", "perturbation_key", "control", "layer", "min_cells",
               "n_top_genes", "transform")


def _data_flags_problem(args) -> str | None:
    """What is wrong with the data flags, as one sentence, or ``None``.

    One data source only, and the cells' flags only with cells: a flag the
    run would not use must not pass as if it had.
    """
    sources = [flag for flag, given in (("--data", args.data is not None),
                                        ("--index/--effects", args.index or args.effects),
                                        ("--h5ad", args.h5ad is not None)) if given]
    if len(sources) > 1:
        return f"give one data source; got {' and '.join(sources)}."
    if args.h5ad is None:
        unused = ["--" + name.replace("_", "-") for name in _CELL_FLAGS
                  if getattr(args, name) is not None]
        if unused:
            says, goes, them = (("says", "goes", "it") if len(unused) == 1
                                else ("say", "go", "them"))
            return (f"{', '.join(unused)} {says} how to read single cells and {goes} with "
                    f"--h5ad CELLS.h5ad; leave {them} out for an effect table.")
    return None


def _h5ad_cells(args, control) -> H5adCells | None:
    """The ``--h5ad`` cells and their pseudo-bulk flags, or ``None``."""
    if args.h5ad is None:
        return None
    from ..preprocessing import PseudobulkOptions
    from ._config import H5adCells
    from ._io import BenchmarkDataError

    try:
        min_cells = MIN_CELLS if args.min_cells is None else args.min_cells
        options = PseudobulkOptions(layer=args.layer, min_cells=min_cells,
                                    n_top_genes=args.n_top_genes, transform=args.transform)
    except ValueError as exc:  # as the pseudo-bulk's own errors read
        raise BenchmarkDataError(f"{args.h5ad}: {exc}") from exc
    return H5adCells(args.h5ad, args.context_key, args.perturbation_key, control, options)


def _main_run(args, start_time: float, out: str, command: str) -> BenchmarkResult:
    """Check the options, then load the data named on the command line and run the benchmark."""
    from ._io import load_benchmark_data
    from ._run import run_benchmark

    control = control_labels(args.control) if args.control else None
    # the options first: a bad flag is named before a large file is read
    config = _config(args, control)
    X, Y, description = load_benchmark_data(
        args.data, index=args.index, effects=args.effects, h5ad=_h5ad_cells(args, control),
        context_col=args.context_col, perturbation_col=args.perturbation_col,
        synthetic_shape=tuple(args.synthetic_shape), seed=args.seed,
    )
    return run_benchmark(X, Y, config, out_dir=out, progress=not args.quiet, command=command,
                         data_description=description, start_time=start_time)


_CONFIG_PARAMETER = re.compile(r"The '(\w+)' parameter of BenchmarkConfig")


def _config(args, control) -> BenchmarkConfig:
    """The run's ``BenchmarkConfig``; its refusals name the command-line flag."""
    from sklearn.utils._param_validation import InvalidParameterError

    from ._config import BenchmarkConfig
    from ._io import BenchmarkDataError, _read_params_file

    params = _read_params_file(args.params) if args.params else None
    cells, peer_options = _peer_setup(args, control)
    split = None
    if args.split is not None:
        from ..model_selection import StateSplit

        if not Path(args.split).is_file():
            raise BenchmarkDataError(f"--split {args.split!r}: the file does not exist.")
        # the loaded data carry the standard label names, whatever the file called them
        split = StateSplit(args.split, dataset=args.split_dataset)
    try:
        return BenchmarkConfig(
            protocol=args.protocol, models=args.models, n_trials=args.n_trials,
            tune_metric=args.tune_metric, inner_folds=args.inner_folds,
            adaptation_fraction=args.adaptation_fraction,
            n_test_contexts=args.n_test_contexts, n_train_contexts=args.n_train_contexts,
            adaptation_fractions=args.adaptation_fractions,
            scarcity_test_set=args.scarcity_test_set, params=params,
            max_epochs=args.max_epochs, device=args.device, storage=args.storage,
            study_prefix=args.study_prefix, seed=args.seed, max_points=args.max_points,
            tune_only=args.tune_only, n_jobs=args.n_jobs, split=split, cells=cells,
            peer_options=peer_options, isolate=args.isolate,
        )
    except InvalidParameterError as exc:
        text = _CONFIG_PARAMETER.sub(
            lambda m: "--" + m.group(1).replace("_", "-"), str(exc), count=1)
        raise BenchmarkDataError(text) from None


def _peer_setup(args, control):
    """The cells and options the peers of ``--models`` get (``None, {}`` without peers)."""
    wanted = [m for m in args.models if m in PEER_MODELS]
    options: dict[str, dict] = {name: {} for name in PEER_MODELS}
    for peer, param, value in args.peer_option:
        options[peer][param] = value
    if not wanted:
        return None, options
    from ._io import BenchmarkDataError

    if args.h5ad is None:
        raise BenchmarkDataError(
            f"--models {','.join(wanted)}: the peers train on single cells; give them with "
            "--h5ad cells.h5ad --context-key ... --perturbation-key ... --control ...")
    from ..peers import PeerCells, find_peer_python

    for name in wanted:
        python = getattr(args, f"{name}_python")
        options[name].setdefault("python", python)
        # fail before any model is fitted, with the command that creates the environment
        find_peer_python(name, options[name]["python"])
        if args.peer_workdir:
            options[name].setdefault("workdir", args.peer_workdir)
        if args.keep_peer_files:
            options[name].setdefault("keep_files", True)
    cells = PeerCells(args.h5ad, args.context_key, args.perturbation_key, control,
                      layer=args.layer, transform=args.transform)
    return cells, options
