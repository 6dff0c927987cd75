"""The ``c3tl`` command: its subcommands, and errors as one line instead of a traceback."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

# light modules only: `c3tl --help` builds every parser; each command imports its own
# heavy modules (pandas, torch, anndata) when it runs (see _parsers.handler)
from ._errors import input_errors
from ._parsers import add_subcommands

__all__ = ["build_c3tl_parser", "c3tl_main"]

_COMMANDS = ("pseudobulk", "fit", "predict", "evaluate", "export", "benchmark", "peers")


def build_c3tl_parser() -> argparse.ArgumentParser:
    """The ``c3tl`` argument parser (``benchmark`` is handed to ``c3tl-benchmark``'s).

    Returns
    -------
    parser : argparse.ArgumentParser

    Examples
    --------
    >>> from c3tl_sklearn.cli import build_c3tl_parser
    >>> args = build_c3tl_parser().parse_args(["fit", "effects.h5ad", "-o", "model.c3tl"])
    >>> args.command, args.model, args.output
    ('fit', 'c3tl', 'model.c3tl')
    """
    parser = argparse.ArgumentParser(
        prog="c3tl",
        description="Predict perturbation effects in cellular contexts: single cells -> "
        "effects -> model -> predictions -> scores. Run `c3tl COMMAND --help` for each step.",
        epilog="A typical chain: c3tl pseudobulk cells.h5ad --context cell_line "
        "--perturbation perturbation --control control -o effects.h5ad; c3tl fit train.h5ad "
        "-o model.c3tl; c3tl predict model.c3tl --pairs test.h5ad -o predictions.h5ad; "
        "c3tl evaluate predictions.h5ad test.h5ad -o scores.csv; for cell-eval: c3tl export "
        "predictions.h5ad --truth test.h5ad -o cell-eval-input",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_subcommands(sub)
    # parsed by c3tl-benchmark's own parser (see c3tl_main); listed here for the help
    sub.add_parser("benchmark", add_help=False,
                   help="tune and compare C3TL and the baselines (= c3tl-benchmark)")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("c3tl-sklearn")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def c3tl_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``c3tl`` (and ``python -m c3tl_sklearn.cli``).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success; 2 for a usage error or an input the command cannot use,
        after printing one line ``c3tl COMMAND: error: ...`` that names the
        problem and the fix.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "benchmark":
        from ._main import main

        return main(argv[1:], prog="c3tl benchmark")
    args = build_c3tl_parser().parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            status = args.run(args)
    except input_errors() as exc:  # evaluated when an error arrives, after the imports
        if args.traceback:
            raise
        _print_warnings(caught, args)
        print(f"c3tl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a disk full, a folder without write permission, ...
        if args.traceback:
            raise
        _print_warnings(caught, args)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"c3tl {args.command}: error: {exc.strerror or exc}{where}; check the path, its "
              "permissions and the free space.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"c3tl {args.command}: interrupted; no half-written file was left (each output "
              "is written whole or not at all).", file=sys.stderr)
        return 130
    _print_warnings(caught, args)
    return status


def _print_warnings(caught: list, args: argparse.Namespace) -> None:
    """Warnings as ``c3tl COMMAND: warning: ...`` lines, each message once, not as tracebacks."""
    seen = set()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)):
            continue
        text = str(w.message)
        if text in seen:
            continue
        seen.add(text)
        print(f"c3tl {args.command}: warning: {text}", file=sys.stderr)
