"""``c3tl fit``: fit C3TL or a baseline on an effect file and save it in the safe format."""

from __future__ import annotations

import argparse
import ast
import time
from numbers import Integral
from pathlib import Path

from .._atomic import atomic_path
from ._files import (
    CommandError,
    _read_h5ad,
    _require_file,
    _suffix,
    check_output,
    read_effects,
    say,
    write_effects,
)
from ._progress import epoch_callback, progress_bar
from ._registry import make_model
from ._threads import check_threads, thread_limits

#: Parameters ``--set`` may not change, and what sets them instead.
_RESERVED = {"context_col": "--context-col", "perturbation_col": "--perturbation-col",
             "random_state": "--seed", "callbacks": "the command (its progress bar)"}


def parse_params(items: list[str]) -> dict:
    """``["lr=1e-3", "hidden_dims=(128,)"]`` -> ``{"lr": 0.001, "hidden_dims": (128,)}``.

    Examples
    --------
    >>> parse_params(["lr=1e-3", "hidden_dims=(128,)", "adaptation=ridge"])
    {'lr': 0.001, 'hidden_dims': (128,), 'adaptation': 'ridge'}
    """
    params = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise CommandError(f"--set {item!r} is not NAME=VALUE; write e.g. --set lr=1e-3.")
        try:
            params[name] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            # shells eat quotes, so `--set adaptation=ridge` must mean the string
            if not text.strip().isidentifier():
                raise CommandError(
                    f"--set {item!r}: {text!r} is not a Python literal; write numbers as 1e-3, "
                    "tuples as (128,64), strings as words or 'quoted'."
                ) from None
            params[name] = text.strip()
    return params


def _build_model(args: argparse.Namespace):
    params = parse_params(args.params)
    labels = {"context_col": args.context_col, "perturbation_col": args.perturbation_col}
    if args.model != "c3tl" and args.device != "cpu":
        raise CommandError(f"--device is C3TL's torch device; the {args.model} baseline runs "
                           "on the CPU, so leave --device out.")
    model = make_model(args.model, labels=labels, device=args.device, random_state=args.seed)
    known = model.get_params(deep=False)
    reserved = [n for n in params if n in _RESERVED and n in known]
    if reserved:
        raise CommandError("--set: " + "; ".join(f"{n} is set by {_RESERVED[n]}"
                                                 for n in reserved) + ", not by --set.")
    unknown = [n for n in params if n not in known]
    if unknown:
        allowed = ", ".join(sorted(n for n in known if n not in _RESERVED))
        raise CommandError(
            f"--set: {type(model).__name__} has no parameter {', '.join(map(repr, unknown))}"
            f"; its parameters: {allowed}."
        )
    try:
        model.set_params(**params)
    except (ValueError, TypeError) as exc:
        raise CommandError(f"--set: {exc}") from None
    return model


def _split_rows(args: argparse.Namespace, X, Y):
    """The training rows of ``--split``, and the ``--test-out`` writer (or ``None``).

    The test rows are written only once the model is, so that a fit that
    fails or is interrupted leaves no output at all.
    """
    from ..model_selection import StateSplit

    if args.split is None:
        if args.dataset or args.test_out:
            raise CommandError("--split-dataset and --test-out go with --split FILE.toml.")
        return X, Y, None
    test_out = None
    if args.test_out is not None:
        test_out = check_output(args.test_out, [args.effects, args.split],
                                [".h5ad", ".csv", ".tsv", ".parquet"], "test rows",
                                flag="--test-out", outputs={"-o": args.output})
    _require_file(args.split, "split")
    cv = StateSplit(args.split, dataset=args.dataset, context_col=args.context_col,
                    perturbation_col=args.perturbation_col)
    try:
        train, test = next(cv.split(X))
        dropped = int(cv.split_info(X).loc[0, "n_dropped"])
    except (ValueError, ImportError) as exc:  # ImportError: Python 3.10 without tomli
        raise CommandError(f"--split {args.split}: {str(exc).splitlines()[0]}") from None
    say(f"split {args.split}: {len(train)} training and {len(test)} test pairs"
        + (f", {dropped} held-out pair(s) dropped (their perturbation trains nowhere)"
           if dropped else ""), args.quiet)
    write_test = None
    if test_out is not None:
        if test.size == 0:
            raise CommandError(f"--split {args.split} has no test rows to write.")

        def write_test():
            _write_rows(args.effects, X, Y, test, test_out, args)
    return (X.iloc[train].reset_index(drop=True), Y.iloc[train].reset_index(drop=True),
            write_test)


def _write_rows(source, X, Y, rows, out, args) -> None:
    """Rows of the effect file, as .h5ad (the input's obs and uns kept) or as a table."""
    if _suffix(source) == ".h5ad" and _suffix(out) == ".h5ad":
        adata = _read_h5ad(Path(source), "effects")
        with atomic_path(out) as tmp:
            adata[rows].copy().write_h5ad(tmp)
    else:
        write_effects(X.iloc[rows], Y.iloc[rows].to_numpy(), Y.columns, out,
                      context_col=args.context_col, perturbation_col=args.perturbation_col)
    say(f"test rows ({len(rows)} pairs) -> {out}", args.quiet)


def run(args: argparse.Namespace) -> int:
    """Fit the chosen model on ``args.effects`` and save it to ``args.output``."""
    out = check_output(args.output, [args.effects, args.split], None, "model")
    # an option's own error, before any "cannot fit" could be put in front of it
    check_threads(args.threads)
    X, Y = read_effects(args.effects, args.context_col, args.perturbation_col)
    X, Y, write_test = _split_rows(args, X, Y)
    model = _build_model(args)
    bar = None
    if args.model == "c3tl":
        # "auto" bounds the epochs by the data: the bar learns its total when training starts
        total = model.max_epochs if isinstance(model.max_epochs, Integral) else None
        bar = progress_bar(total, "fit C3TL", "epoch", enabled=not args.quiet)
        if bar is not None:
            model.set_params(callbacks=[epoch_callback(bar)])
    start = time.perf_counter()
    try:
        with thread_limits(args.threads, args.model == "c3tl"):
            model.fit(X, Y)
    except (ValueError, MemoryError) as exc:
        raise CommandError(f"cannot fit {args.model} on {args.effects}: {exc}") from None
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    if bar is not None:
        # the progress callback is a live object, not a parameter a model file can hold
        model.set_params(callbacks=None)
    model.save(out)
    epochs = f", {model.n_epochs_} epochs" if hasattr(model, "n_epochs_") else ""
    say(f"fitted {type(model).__name__} on {len(X)} pairs in {X[args.context_col].nunique()} "
        f"contexts x {Y.shape[1]} genes ({seconds:.1f} s{epochs}) -> {out}", args.quiet)
    if write_test is not None:
        write_test()
    return 0

