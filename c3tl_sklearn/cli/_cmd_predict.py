"""``c3tl predict``: effects of (context, perturbation) pairs from a saved model."""

from __future__ import annotations

import argparse
import inspect
import time

import numpy as np
import pandas as pd

from .._contract import match_genes
from ._cmd_export import check_folder, check_truth_flags, export
from ._files import (
    CommandError,
    _require_file,
    check_output,
    read_effects,
    read_pairs,
    say,
    write_effects,
)
from ._threads import check_threads, thread_limits

_EFFECT_SUFFIXES = [".h5ad", ".csv", ".tsv", ".parquet"]


def load_model(path, device: str = "cpu"):
    """Load a model file, turning every refusal into a message that says what to pass."""
    from .. import persistence

    p = _require_file(path, "model")
    with open(p, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":  # what .h5ad (and any HDF5) files start with
        raise CommandError(
            f"{str(p)!r} is a data file (HDF5/.h5ad), not a model; pass the model written by "
            "`c3tl fit ... -o MODEL` first, the data go to --pairs or --observed."
        )
    if device != "cpu":  # the machine's refusal, not the file's (torch only when asked)
        from .._device import check_device, describe_machine

        try:
            check_device(device)
        except ValueError:
            raise CommandError(f"--device {device} cannot be used here ({describe_machine()})"
                               "; pass --device cpu.") from None
    try:
        return persistence.load(p, device=device)
    except ValueError as exc:
        reason = str(exc).splitlines()[0].rstrip(".")
        raise CommandError(
            f"cannot load the model: {reason}. Pass a file written by `c3tl fit`."
        ) from None


def _query(args: argparse.Namespace, model, ccol, pcol) -> pd.DataFrame:
    """The pairs to predict, labelled with the model's own column names."""
    if args.pairs is not None:
        if args.all_perturbations:
            raise CommandError("--all-perturbations goes with --context, not with --pairs.")
        pairs = read_pairs(args.pairs, ccol, pcol)
        return pairs.rename(columns={ccol: model.context_col, pcol: model.perturbation_col})
    if not args.all_perturbations:
        raise CommandError("--context needs --all-perturbations (or list pairs with --pairs).")
    contexts = list(dict.fromkeys(args.context))
    if "" in contexts:
        raise CommandError("--context '': give the name of a context (an empty label names "
                           "nothing).")
    perturbations = list(model.perturbations_)
    return pd.DataFrame({
        model.context_col: np.repeat(np.array(contexts, dtype=object), len(perturbations)),
        model.perturbation_col: np.tile(np.array(perturbations, dtype=object), len(contexts)),
    })


def _observed(args: argparse.Namespace, model, ccol, pcol):
    """The ``observed=(X_obs, Y_obs)`` argument, genes in the model's order."""
    if "observed" not in inspect.signature(model.predict).parameters:
        raise CommandError(
            f"--observed needs a model that adapts without refitting (c3tl); a "
            f"{type(model).__name__} does not: fit it on effects that include these "
            "measurements instead."
        )
    X_obs, Y_obs = read_effects(args.observed, ccol, pcol, what="observed")
    if model.gene_names_ is not None:
        # a file's column names are text: the model's genes are matched as text
        genes = [str(g) for g in model.gene_names_]
        match = match_genes(Y_obs.columns, genes)  # the file's columns are unique
        if match.missing:
            raise CommandError(
                f"the observed file {args.observed!r} lacks {len(match.missing)} of the model's "
                f"{len(genes)} genes (e.g. {match.missing[:3]}); give measurements of the genes "
                "the model was fitted on."
            )
        Y_obs = Y_obs.iloc[:, match.positions]  # extra columns are other measurements
    elif Y_obs.shape[1] != model.n_genes_:
        raise CommandError(f"the observed file has {Y_obs.shape[1]} genes; the model has "
                           f"{model.n_genes_}.")
    X_obs = X_obs.rename(columns={ccol: model.context_col, pcol: model.perturbation_col})
    return X_obs, Y_obs.to_numpy()


def _as_model_labels(values, known) -> np.ndarray:
    """Text labels from a file or the command line as the model's own labels.

    The command line reads labels as text, exactly as written. A model fitted
    in Python may hold other labels (the integer 1); a text label that is
    written like exactly one of them means that label, so that ``--context 1``
    is not predicted zero-shot with a warning that ``'1'`` was never seen.
    Text labels the model holds as text are never translated.
    """
    values = np.asarray(values, dtype=object)
    known = list(known)
    if all(isinstance(k, str) for k in known):
        return values
    by_text: dict[str, list] = {}
    for k in known:
        by_text.setdefault(str(k), []).append(k)
    as_text = {k for k in known if isinstance(k, str)}
    out = values.copy()
    for i, v in enumerate(values):
        if isinstance(v, str) and v not in as_text and len(by_text.get(v, ())) == 1:
            out[i] = by_text[v][0]
    return out


def run(args: argparse.Namespace) -> int:
    """Predict the requested pairs and write them to ``args.output``."""
    inputs = {"model": args.model, "--pairs": args.pairs, "--observed": args.observed,
              "--truth": args.truth, "--cells": args.cells}
    out = check_output(args.output, list(inputs.values()), _EFFECT_SUFFIXES, "predictions")
    check_threads(args.threads)
    if args.cell_eval is None and (args.cells or args.truth):
        raise CommandError("--cells and --truth are the truth of a cell-eval export; add "
                           "--cell-eval DIR (or leave them out).")
    if args.cell_eval is not None and not (args.cells or args.truth):
        raise CommandError("--cell-eval DIR needs the truth of the predicted pairs: --cells "
                           "CELLS.h5ad --control LABEL, or --truth EFFECTS.h5ad.")
    cell_eval = None
    if args.cell_eval is not None:  # before the work, not after
        cell_eval = check_folder(args.cell_eval, "--cell-eval", {**inputs, "-o": out})
        check_truth_flags(args)
    model = load_model(args.model, args.device)
    ccol = args.context_col or model.context_col
    pcol = args.perturbation_col or model.perturbation_col
    X = _query(args, model, ccol, pcol)
    X[model.context_col] = _as_model_labels(X[model.context_col], model.contexts_)
    X[model.perturbation_col] = _as_model_labels(X[model.perturbation_col],
                                                 model.perturbations_)
    kwargs = {}
    if args.observed is not None:
        X_obs, Y_obs = _observed(args, model, ccol, pcol)
        X_obs = X_obs.assign(**{
            model.context_col: _as_model_labels(X_obs[model.context_col], model.contexts_),
            model.perturbation_col: _as_model_labels(X_obs[model.perturbation_col],
                                                     model.perturbations_),
        })
        kwargs["observed"] = (X_obs, Y_obs)
    start = time.perf_counter()
    try:
        with thread_limits(args.threads):  # a loaded network has imported torch
            Y_pred = model.predict(X, **kwargs)
    except ValueError as exc:
        raise CommandError(f"cannot predict: {str(exc).splitlines()[0]}") from None
    genes = (list(model.gene_names_) if model.gene_names_ is not None
             else [f"gene_{j}" for j in range(model.n_genes_)])
    X = X.rename(columns={model.context_col: ccol, model.perturbation_col: pcol})
    # the label names go with the file, so that `c3tl evaluate` and `export` need no flags
    write_effects(X, Y_pred, genes, out, context_col=ccol, perturbation_col=pcol,
                  uns={"c3tl": {"context_col": str(ccol), "perturbation_col": str(pcol)}})
    say(f"predicted {len(X)} pairs x {len(genes)} genes with {type(model).__name__} "
        f"({time.perf_counter() - start:.1f} s) -> {out}", args.quiet)
    if cell_eval is not None:
        export(X, pd.DataFrame(np.asarray(Y_pred), columns=[str(g) for g in genes]), args,
               cell_eval, ccol, pcol)
    return 0
