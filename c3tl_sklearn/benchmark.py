"""Benchmark C3TL against the baselines with the paper's protocols (``c3tl-benchmark``).

Run from the shell (``c3tl-benchmark --help`` or ``python -m
c3tl_sklearn.benchmark --help``) or from Python with :func:`run_benchmark`.

Protocols
---------
``heldout`` (paper section 5, Table 1 and Figure 2)
    One test context at a time (:class:`~c3tl_sklearn.model_selection.LeaveOneContextOut`):
    every other context is training data, the test context keeps
    ``adaptation_fraction`` of its pairs (default 0.1, the paper's 8% + 2%) in
    training and the rest, restricted to perturbations observed in another
    context, is scored. With up to 10 contexts every context is a test
    context; with more, 5 are drawn (``n_test_contexts`` overrides). Every
    model is tuned on the first fold with the same number of trials and the
    selected parameters are applied to all folds.
``scarcity`` (Figure 3)
    Nested training-context sets of sizes ``n_train_contexts`` (default 5, 3,
    2) crossed with nested adaptation fractions (default 0.5, 0.2, 0.1, 0.05,
    0.02), for every test context
    (:class:`~c3tl_sklearn.model_selection.ScarcitySplit`; the test pairs of a
    context are the same in every cell, see its ``test_set``). When there are
    enough contexts, all test contexts share the same nested training sets,
    as in the paper; otherwise (for example LINCS: six contexts and up to five
    training contexts) each test context draws its own from the others.
    Models are tuned once, on the first test context with the largest
    training set and the adaptation fraction nearest ``adaptation_fraction``,
    or take their parameters from an earlier run's ``params.json``
    (``--params``).

How "tuned on the first fold" is done without touching the test pairs
---------------------------------------------------------------------
The search (:class:`~c3tl_sklearn.tuning.C3TLSearchCV`) only sees the
*training* rows of the first fold: all other contexts plus the test
context's adaptation rows. Within them it plays the same game again: an
inner :class:`~c3tl_sklearn.model_selection.LeaveOneContextOut` holds out
``inner_folds`` (default 2) of the *training* contexts, drawn with ``seed``,
each except for the same adaptation fraction, and scores the candidates on
their held-out pairs with ``tune_metric`` (default
``centered_pearson_delta``). The test context's few adaptation rows stay in
the inner training sets and are never scored, so no test pair, and no
held-out row of the first test context, informs the choice. C3TL candidates
that are clearly losing are pruned on their per-epoch validation loss.
:class:`~c3tl_sklearn.baselines.MeanBaseline` has nothing to tune and is not
searched.

Long runs, several workers
--------------------------
``--storage`` (an Optuna storage URL such as ``postgresql://...`` or
``sqlite:///tuning.db``, or a journal file ``tuning.log``) keeps every search
in one study per model, named ``{study-prefix}-{protocol}-{model}``. A stopped
benchmark restarted with the same command continues its searches where they
stopped, up to ``--n-trials`` finished trials per model. Several processes or
machines can fill the studies at once: run the same command with
``--tune-only`` in each, then once without it to evaluate (the searches are
then complete and run no new trial). With a storage the samplers are not
seeded, so that workers do not propose the same candidates; the splits and
the models' own seeds stay fixed.

Data
----
``--data lincs`` (default) is the shipped LINCS L1000 knockdowns;
``--data synthetic`` draws
:func:`~c3tl_sklearn.datasets.make_synthetic_perturbations` of shape
``--synthetic-shape C,P,G``. Your own data can come as

- one table (``--data table.csv`` or ``.parquet``; ``.tsv`` and ``.gz``
  work too) with a context column, a perturbation column and one numeric
  column per gene (every other column is a gene);
- an index table plus an effect matrix (``--index index.csv --effects
  effects.parquet``), row ``i`` of one describing row ``i`` of the other; extra
  index columns are ignored, every effect column is a gene;
- an ``.h5ad`` file of single cells (``--h5ad cells.h5ad --context-key
  cell_line --perturbation-key gene --control NTC``), pseudo-bulked with
  :func:`c3tl_sklearn.preprocessing.pseudobulk`.

A file with missing columns, non-numeric gene columns, NaN or infinite
effects, missing labels, repeated pairs or fewer than two contexts is
refused with a message that names the problem.

Outputs (in ``--out``)
----------------------
``scores.csv``
    One row per (model, split, metric): ``model``, ``split``,
    ``test_context``, ``n_train_contexts``, ``adaptation_fraction``,
    ``metric``, ``value``. Metrics: ``pearson_delta``,
    ``centered_pearson_delta``, ``discrimination_score``, ``top_k_overlap``
    (``k = min(50, n_genes)``) and ``mse``, each over the split's test pairs.
``fits.csv``
    One row per (model, split): fit and predict seconds, epochs and seconds
    per epoch (C3TL), numbers of training and test rows.
``table.md``
    heldout: the paper's Table 1 form, one row per model, mean ± standard
    deviation over folds per metric (best in bold), seconds per epoch, fit
    seconds per fold and tuning seconds. scarcity: one table per Pearson
    metric, rows (model, training contexts), columns adaptation fractions.
``scatter.png`` (heldout)
    Predicted against true effect values per model, a random subsample of
    (pair, gene) entries of all folds (Figure 2).
``scarcity.png`` (scarcity)
    One panel per training-set size, x the adaptation fraction, y Pearson
    (top) and centred Pearson (bottom), mean ± sd over test contexts, one line
    per model (Figure 3).
``params.json``
    The parameters every model was evaluated with, the tuning score and
    trial counts, and what they were tuned on.
``README.md``
    The command line, wall time, data, protocol, software versions, the
    table, and any warnings raised during the run.

Examples
--------
>>> from c3tl_sklearn.benchmark import run_benchmark
>>> from c3tl_sklearn.datasets import make_synthetic_perturbations
>>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
>>> result = run_benchmark(X, Y, models=["mean", "additive"], n_trials=0, progress=False)
>>> sorted(result.scores["model"].unique())
['additive', 'mean']
>>> result.scores.groupby("model")["split"].nunique().tolist()
[4, 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import sys
import time
import warnings
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._data import check_index_table, check_no_duplicate_pairs, check_response, unique_labels
from ._serialize import jsonable
from .metrics import score_table

__all__ = [
    "METRICS",
    "MODELS",
    "BenchmarkDataError",
    "BenchmarkResult",
    "check_benchmark_data",
    "load_benchmark_data",
    "main",
    "make_model",
    "run_benchmark",
]

#: Model names accepted by ``--models`` and :func:`run_benchmark`, with labels.
MODELS: dict[str, str] = {
    "c3tl": "C3TL",
    "mean": "Mean baseline",
    "closest": "Closest context",
    "additive": "Additive",
    "linear": "Linear transfer",
}

#: Metrics computed on every split (columns of :func:`~c3tl_sklearn.metrics.score_table`).
METRICS: tuple[str, ...] = (
    "pearson_delta",
    "centered_pearson_delta",
    "discrimination_score",
    "top_k_overlap",
    "mse",
)

_METRIC_LABELS = {
    "pearson_delta": "Pearson Δ",
    "centered_pearson_delta": "Centred Pearson Δ",
    "discrimination_score": "Discrimination",
    "top_k_overlap": "Top-{k} overlap",
    "mse": "MSE",
}
_LOWER_IS_BETTER = {"mse"}
_TUNE_METRICS = {
    "pearson_delta": "pearson_delta",
    "centered_pearson_delta": "centered_pearson_delta",
    "discrimination_score": "discrimination_score",
    "top_k_overlap": "top_k_overlap",
    "mse": "neg_mean_squared_error",
    "neg_mean_squared_error": "neg_mean_squared_error",
}
_SCORE_KEYS = ["model", "split", "test_context", "n_train_contexts", "adaptation_fraction"]
_MAX_ALL_TEST_CONTEXTS = 10  # up to this many contexts, every context is a test context
_PAPER_N_TEST_CONTEXTS = 5


class BenchmarkDataError(ValueError):
    """The benchmark's input data cannot be used; the message says why."""


# --------------------------------------------------------------------------- data


def _read_frame(path, what: str) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file into a DataFrame, with clear errors."""
    p = Path(path)
    if not p.exists():
        raise BenchmarkDataError(f"The {what} file {str(p)!r} does not exist.")
    if p.is_dir():
        raise BenchmarkDataError(f"The {what} path {str(p)!r} is a folder, not a file.")
    name = p.name.lower()
    for compression in (".gz", ".bz2", ".xz", ".zst"):
        if name.endswith(compression):
            name = name[: -len(compression)]
    try:
        if name.endswith((".csv", ".txt")):
            frame = pd.read_csv(p)
        elif name.endswith(".tsv"):
            frame = pd.read_csv(p, sep="\t")
        elif name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(p)
        elif name.endswith(".h5ad"):
            raise BenchmarkDataError(
                f"{str(p)!r} is an .h5ad file: pass it with --h5ad together with "
                "--context-key, --perturbation-key and --control."
            )
        else:
            raise BenchmarkDataError(
                f"Cannot read the {what} file {str(p)!r}: use .csv, .tsv or .parquet."
            )
    except BenchmarkDataError:
        raise
    except ImportError as exc:
        raise BenchmarkDataError(
            f"Reading {str(p)!r} needs an optional dependency ({exc}); "
            "pip install c3tl-sklearn[benchmark]"
        ) from exc
    except Exception as exc:
        raise BenchmarkDataError(
            f"Cannot parse the {what} file {str(p)!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if len(frame.columns) and str(frame.columns[0]).startswith("Unnamed: 0"):
        frame = frame.drop(columns=frame.columns[0])  # an index written by DataFrame.to_csv
    if frame.empty:
        raise BenchmarkDataError(f"The {what} file {str(p)!r} has no rows.")
    return frame


def _gene_matrix(frame: pd.DataFrame, source: str, hint: str) -> pd.DataFrame:
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])
           or pd.api.types.is_bool_dtype(frame[c])]
    if bad:
        shown = ", ".join(repr(c) for c in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise BenchmarkDataError(
            f"{source}: {len(bad)} column(s) are not numeric but every effect column must "
            f"be a gene: {shown}. {hint}"
        )
    genes = frame.astype(np.float32)
    genes.columns = pd.Index([str(c) for c in frame.columns], name="gene")
    return genes.reset_index(drop=True)


def check_benchmark_data(
    X: pd.DataFrame,
    Y,
    *,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
    source: str = "data",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check an index table and effect matrix for the benchmark; return clean copies.

    Parameters
    ----------
    X : pandas.DataFrame
        Index table with ``context_col`` and ``perturbation_col``.
    Y : array-like or DataFrame of shape (n_rows, n_genes)
        Effects, row ``i`` for row ``i`` of ``X``.
    context_col, perturbation_col : hashable
        Label columns of ``X``.
    source : str, default="data"
        How to name the data in error messages (for example a file name).

    Returns
    -------
    X : pandas.DataFrame
        The two label columns (labels as given), a fresh ``RangeIndex``.
    Y : pandas.DataFrame
        float32 effects with string gene names.

    Raises
    ------
    BenchmarkDataError
        Missing columns, a row-count mismatch, non-numeric or non-finite
        effects, fewer than 2 genes, missing labels, repeated (context,
        perturbation) pairs, or fewer than two contexts.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.benchmark import check_benchmark_data
    >>> X = pd.DataFrame({"context": ["a", "a"], "perturbation": ["p", "q"]})
    >>> check_benchmark_data(X, np.zeros((2, 3)))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    c3tl_sklearn.benchmark.BenchmarkDataError: data: only one context ('a'); ...
    """
    if isinstance(Y, pd.DataFrame):
        Y = _gene_matrix(Y, source, "Drop metadata columns from the effect matrix.")
    try:
        contexts, perturbations = check_index_table(
            X, context_col, perturbation_col, name="the index table",
            column_hint="Name the label columns with --context-col and --perturbation-col.",
        )
        check_no_duplicate_pairs(contexts, perturbations)
        values, _ = check_response(Y, n_rows=len(contexts), name="the effect matrix")
    except (TypeError, ValueError) as exc:
        raise BenchmarkDataError(f"{source}: {exc}") from exc
    if not isinstance(Y, pd.DataFrame):
        Y = pd.DataFrame(values, columns=pd.Index(
            [f"gene{i}" for i in range(values.shape[1])], name="gene"))
    if Y.shape[1] < 2:
        raise BenchmarkDataError(
            f"{source}: the effects have {Y.shape[1]} gene column(s); the correlation "
            "metrics need at least 2 genes."
        )
    if len(unique_labels(contexts)) < 2:
        raise BenchmarkDataError(
            f"{source}: only one context ({contexts[0]!r}); a held-out-context benchmark "
            "needs at least 2 contexts (3 with tuning). Is --context-col the right column?"
        )
    return X[[context_col, perturbation_col]].reset_index(drop=True), Y


def load_benchmark_data(
    data: str | os.PathLike | None = "lincs",
    *,
    index: str | os.PathLike | None = None,
    effects: str | os.PathLike | None = None,
    h5ad: str | os.PathLike | None = None,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
    context_key: Hashable | None = None,
    perturbation_key: Hashable | None = None,
    control: Hashable | Sequence[Hashable] | None = None,
    layer: str | None = None,
    min_cells: int = 10,
    n_top_genes: int | None = None,
    transform: str | None = None,
    synthetic_shape: tuple[int, int, int] = (6, 60, 50),
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Load the benchmark's data from one of the supported sources.

    Parameters
    ----------
    data : {"lincs", "synthetic"} or path, default="lincs"
        The shipped LINCS knockdowns, a synthetic draw, or one table (CSV,
        TSV or Parquet) with the label columns and one numeric column per
        gene. Ignored when ``index``/``effects`` or ``h5ad`` is given.
    index, effects : path, optional
        An index table and a row-aligned effect matrix (both CSV/TSV/Parquet).
    h5ad : path, optional
        Single cells, pseudo-bulked with
        :func:`c3tl_sklearn.preprocessing.pseudobulk` using ``context_key``,
        ``perturbation_key``, ``control``, ``layer``, ``min_cells``,
        ``n_top_genes`` and ``transform``.
    context_col, perturbation_col : hashable
        Label columns of a table (``index`` or ``data``).
    context_key, perturbation_key, control, layer, min_cells, n_top_genes, transform
        Passed to :func:`~c3tl_sklearn.preprocessing.pseudobulk`.
    synthetic_shape : (int, int, int), default=(6, 60, 50)
        Contexts, perturbations, genes of the synthetic draw.
    seed : int, default=0
        Seed of the synthetic draw.

    Returns
    -------
    X : pandas.DataFrame
        Index table with the columns ``"context"`` and ``"perturbation"``
        (renamed from ``context_col`` and ``perturbation_col``).
    Y : pandas.DataFrame
        float32 effects, gene names as columns.
    description : str
        One line describing the data, for the report.

    Raises
    ------
    BenchmarkDataError
        For an unreadable or invalid file (see :func:`check_benchmark_data`).

    Examples
    --------
    >>> from c3tl_sklearn.benchmark import load_benchmark_data
    >>> X, Y, text = load_benchmark_data("synthetic", synthetic_shape=(3, 10, 5))
    >>> X.shape, Y.shape, text
    ((30, 2), (30, 5), 'synthetic: 3 contexts x 10 perturbations x 5 genes (seed 0)')
    """
    if h5ad is not None:
        if context_key is None or perturbation_key is None or control is None:
            raise BenchmarkDataError(
                "--h5ad needs --context-key, --perturbation-key and --control (the obs "
                "columns with the labels and the control label)."
            )
        if not Path(h5ad).exists():
            raise BenchmarkDataError(f"The .h5ad file {str(h5ad)!r} does not exist.")
        from .preprocessing import pseudobulk

        try:
            X, Y = pseudobulk(
                os.fspath(h5ad), context_key, perturbation_key, control,
                layer=layer, min_cells=min_cells, n_top_genes=n_top_genes, transform=transform,
            )
        except (ValueError, TypeError, ImportError, KeyError) as exc:
            raise BenchmarkDataError(f"{h5ad}: {exc}") from exc
        description = (
            f"{h5ad}, pseudo-bulked by obs[{context_key!r}] x obs[{perturbation_key!r}] "
            f"against control {control!r}"
        )
        X, Y = check_benchmark_data(X, Y, source=str(h5ad))
        return X, Y, description
    if (index is None) != (effects is None):
        raise BenchmarkDataError("--index and --effects must be given together.")
    if index is not None:
        X = _read_frame(index, "index")
        Y = _gene_matrix(
            _read_frame(effects, "effects"), str(effects),
            "The effect matrix must hold only gene columns; put labels in the index file.",
        )
        X, Y = check_benchmark_data(
            X, Y, context_col=context_col, perturbation_col=perturbation_col,
            source=f"{index} + {effects}",
        )
        return _standard_labels(X, context_col, perturbation_col), Y, (
            f"index {index} + effects {effects}"
        )
    if data is None or str(data) == "lincs":
        from .datasets import load_lincs_knockdowns

        X, Y = load_lincs_knockdowns()
        return X, Y, "LINCS L1000 shRNA knockdowns in six cell lines (shipped with the package)"
    if str(data) == "synthetic":
        from .datasets import make_synthetic_perturbations

        c, p, g = (int(v) for v in synthetic_shape)
        X, Y = make_synthetic_perturbations(c, p, g, random_state=seed)
        return X, Y, f"synthetic: {c} contexts x {p} perturbations x {g} genes (seed {seed})"
    frame = _read_frame(data, "data")
    missing = [c for c in (context_col, perturbation_col) if c not in frame.columns]
    if missing:
        raise BenchmarkDataError(
            f"{data}: missing column(s) {missing}; the columns are "
            f"{list(frame.columns)[:20]}{' ...' if len(frame.columns) > 20 else ''}. Name the "
            "label columns with --context-col and --perturbation-col."
        )
    Y = _gene_matrix(
        frame.drop(columns=[context_col, perturbation_col]), str(data),
        "In a single table every column other than the context and perturbation columns "
        "is a gene; drop metadata columns or use --index and --effects.",
    )
    X, Y = check_benchmark_data(
        frame, Y, context_col=context_col, perturbation_col=perturbation_col, source=str(data)
    )
    return _standard_labels(X, context_col, perturbation_col), Y, f"table {data}"


def _standard_labels(X: pd.DataFrame, context_col, perturbation_col) -> pd.DataFrame:
    out = pd.DataFrame({"context": X[context_col].to_numpy(),
                        "perturbation": X[perturbation_col].to_numpy()})
    return out


# --------------------------------------------------------------------------- models


def make_model(
    name: str,
    params: dict | None = None,
    *,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
    max_epochs: int | None = None,
    device: str = "cpu",
    random_state: int | None = 0,
):
    """Build one of the benchmark's models.

    Parameters
    ----------
    name : {"c3tl", "mean", "closest", "additive", "linear"}
        Model name (see :data:`MODELS`).
    params : dict, optional
        Parameters set on the model (for example tuned ones).
    context_col, perturbation_col : hashable
        Label columns of the index table.
    max_epochs : int, optional
        Overrides C3TL's ``max_epochs`` (quick runs).
    device : str, default="cpu"
        C3TL's torch device.
    random_state : int or None, default=0
        C3TL's seed.

    Returns
    -------
    estimator : estimator
        An unfitted estimator.

    Examples
    --------
    >>> from c3tl_sklearn.benchmark import make_model
    >>> make_model("additive", {"shrinkage": 0.5})
    AdditiveBaseline(shrinkage=0.5)
    """
    labels = {"context_col": context_col, "perturbation_col": perturbation_col}
    if name == "c3tl":
        from .estimator import C3TLRegressor

        model = C3TLRegressor(**labels, device=device, random_state=random_state)
        if max_epochs is not None:
            model.set_params(max_epochs=int(max_epochs))
    else:
        from . import baselines

        classes = {
            "mean": baselines.MeanBaseline,
            "closest": baselines.ClosestContextBaseline,
            "additive": baselines.AdditiveBaseline,
            "linear": baselines.LinearTransferBaseline,
        }
        if name not in classes:
            raise ValueError(f"Unknown model {name!r}; choose from {sorted(MODELS)}.")
        model = classes[name](**labels)
    if params:
        model.set_params(**params)
    return model


# --------------------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar on a terminal, otherwise one line per step with the elapsed time."""

    def __init__(self, total: int, enabled: bool, stream=None):
        self.total = max(int(total), 1)
        self.done = 0
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:  # pragma: no cover - tqdm comes with optuna
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, file=self.stream, unit="step",
                                dynamic_ncols=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def step(self, message: str) -> None:
        self.done += 1
        if self.total < self.done:
            self.total = self.done
            if self.bar is not None:
                self.bar.total = self.total
        if self.bar is not None:
            self.bar.set_description_str(message[:70])
            self.bar.update(1)
        elif self.enabled:
            width = len(str(self.total))
            print(f"[{self.elapsed():8.1f}s] {self.done:>{width}}/{self.total} {message}",
                  file=self.stream, flush=True)

    def note(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"[{self.elapsed():8.1f}s] {message}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- splits


def _choose_test_contexts(labels: np.ndarray, n_test: int | None, seed: int) -> list:
    n = labels.size
    if n_test is None:
        n_test = n if n <= _MAX_ALL_TEST_CONTEXTS else _PAPER_N_TEST_CONTEXTS
    if not 1 <= n_test <= n:
        raise ValueError(f"n_test_contexts={n_test} must be between 1 and the {n} contexts.")
    if n_test == n:
        return list(labels)
    chosen = np.sort(np.random.RandomState(seed).choice(n, size=n_test, replace=False))
    return list(labels[chosen])


@dataclass
class _Split:
    index: int
    train: np.ndarray
    test: np.ndarray
    test_context: Any
    n_train_contexts: int
    adaptation_fraction: float


def _heldout_splits(X, *, test_contexts, adaptation_fraction, seed, labels) -> list[_Split]:
    from .model_selection import LeaveOneContextOut

    cv = LeaveOneContextOut(
        adaptation_fraction=adaptation_fraction, test_contexts=test_contexts,
        random_state=seed, **labels,
    )
    info = cv.split_info(X)
    n_ctx = X[labels["context_col"]].nunique()
    return [
        _Split(i, train, test, info.at[i, "test_context"], n_ctx - 1, adaptation_fraction)
        for i, (train, test) in enumerate(cv.split(X))
    ]


def _scarcity_splits(X, *, test_contexts, n_train_contexts, adaptation_fractions,
                     test_set, seed, labels) -> tuple[list[_Split], str]:
    from .model_selection import ScarcitySplit

    n_ctx = X[labels["context_col"]].nunique()
    largest = max(n_train_contexts)
    if largest > n_ctx - 1:
        raise ValueError(
            f"n_train_contexts asks for {largest} training contexts but the data have "
            f"{n_ctx} contexts, so at most {n_ctx - 1} can train while one is tested."
        )
    common = {
        "n_train_contexts": list(n_train_contexts),
        "adaptation_fractions": list(adaptation_fractions),
        "test_set": test_set, "random_state": seed, **labels,
    }
    if n_ctx - len(test_contexts) >= largest:
        splitters = [ScarcitySplit(test_contexts=test_contexts, **common)]
        design = "shared nested training sets drawn from the non-test contexts (as the paper)"
    else:
        splitters = [ScarcitySplit(test_contexts=[t], **common) for t in test_contexts]
        design = (
            "each test context draws its own nested training sets from the other contexts "
            "(too few contexts to keep all test contexts out of training)"
        )
    splits = []
    for cv in splitters:
        info = cv.split_info(X)
        for i, (train, test) in enumerate(cv.split(X)):
            splits.append(_Split(
                len(splits), train, test, info.at[i, "test_context"],
                int(info.at[i, "n_train_contexts"]), float(info.at[i, "adaptation_fraction"]),
            ))
    return splits, design


def _inner_cv(X_train, *, exclude, n_folds, adaptation_fraction, seed, labels):
    """LeaveOneContextOut over ``n_folds`` training contexts (never ``exclude``)."""
    from .model_selection import LeaveOneContextOut

    candidates = [c for c in unique_labels(X_train[labels["context_col"]]) if c not in exclude]
    if len(candidates) < 2:
        raise ValueError(
            "Tuning needs at least 3 contexts (a test context, a training context to hold "
            f"out, one to learn from); the training data have {len(candidates) + 1}. Use "
            "n_trials=0 (--n-trials 0) to skip tuning."
        )
    k = min(max(int(n_folds), 1), len(candidates))
    chosen = np.sort(np.random.RandomState(seed).choice(len(candidates), size=k, replace=False))
    inner = [candidates[i] for i in chosen]
    return LeaveOneContextOut(
        adaptation_fraction=adaptation_fraction, test_contexts=inner, random_state=seed,
        **labels,
    ), inner


# --------------------------------------------------------------------------- results


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured (and wrote, with ``out_dir``).

    Attributes
    ----------
    scores : pandas.DataFrame
        Long table: ``model``, ``split``, ``test_context``, ``n_train_contexts``,
        ``adaptation_fraction``, ``metric``, ``value``.
    fits : pandas.DataFrame
        One row per (model, split) with timings and sizes.
    params : dict
        Per model: parameters used, tuning score, trial counts, seconds.
    table : str
        The Markdown table.
    wall_seconds : float
        Duration of the run.
    files : dict
        Name to path of every file written (empty without ``out_dir``).
    warnings : dict
        ``"Category: message"`` to the number of times it was raised.
    """

    scores: pd.DataFrame
    fits: pd.DataFrame
    params: dict
    table: str
    wall_seconds: float
    files: dict = field(default_factory=dict)
    warnings: dict = field(default_factory=dict)


def _fmt(values: pd.Series, metric: str) -> tuple[str, float]:
    """``"mean ± sd"`` (sample sd over folds; the mean alone for one value) and the mean."""
    values = values.dropna()
    if values.empty:
        return "-", np.nan
    mean = float(values.mean())
    if metric == "mse":
        text = f"{mean:.4g}"
        sd = f"{values.std(ddof=1):.2g}" if len(values) > 1 else ""
    elif metric == "seconds":
        text = f"{mean:.3g}"
        sd = f"{values.std(ddof=1):.2g}" if len(values) > 1 else ""
    else:
        text = f"{mean:.3f}"
        sd = f"{values.std(ddof=1):.3f}" if len(values) > 1 else ""
    return (f"{text} ± {sd}" if sd else text), mean


def _metric_label(metric: str, k: int) -> str:
    return _METRIC_LABELS[metric].format(k=k)


def _heldout_table(scores, fits, params, models, k) -> str:
    header = ["Model", *(_metric_label(m, k) for m in METRICS), "s / epoch", "Fit s / fold",
              "Tuning s"]
    cells: dict[str, list[str]] = {}
    means: dict[str, list[float]] = {}
    for name in models:
        row, row_means = [], []
        sub = scores[scores["model"] == name]
        for metric in METRICS:
            text, mean = _fmt(sub.loc[sub["metric"] == metric, "value"], metric)
            row.append(text)
            row_means.append(mean)
        f = fits[fits["model"] == name]
        spe = f["seconds_per_epoch"].dropna()
        row.append(f"{spe.mean():.3g}" if len(spe) else "-")
        fit_text, _ = _fmt(f["fit_seconds"], "seconds")
        row.append(fit_text)
        tuning = params.get(name, {}).get("tuning_seconds")
        row.append(f"{tuning:.3g}" if tuning else "-")
        cells[name], means[name] = row, row_means
    for j, metric in enumerate(METRICS):  # bold the best model(s) of every metric column
        column = {n: means[n][j] for n in models if not math.isnan(means[n][j])}
        if len(column) < 2:
            continue
        best = (min if metric in _LOWER_IS_BETTER else max)(column.values())
        shown = cells[min(column, key=lambda n: abs(column[n] - best))][j].split(" ")[0]
        winners = [n for n in column if cells[n][j].split(" ")[0] == shown]
        if len(winners) < len(column):  # a tie of every model marks nothing
            for n in winners:
                cells[n][j] = f"**{cells[n][j]}**"
    lines = [
        "| " + " | ".join(header) + " |",
        "|:--" + "|--:" * (len(header) - 1) + "|",
    ]
    lines += [f"| {MODELS[n]} | " + " | ".join(cells[n]) + " |" for n in models]
    return "\n".join(lines) + "\n"


def _scarcity_tables(scores, models, k) -> str:
    parts = []
    fractions = sorted(scores["adaptation_fraction"].unique(), reverse=True)
    sizes = sorted(scores["n_train_contexts"].unique(), reverse=True)
    for metric in ("pearson_delta", "centered_pearson_delta"):
        parts.append(f"### {_metric_label(metric, k)}\n")
        header = ["Model", "Training contexts", *(f"{f:.0%}" if f * 100 == round(f * 100)
                                                    else f"{f:.1%}" for f in fractions)]
        parts.append("| " + " | ".join(header) + " |")
        parts.append("|:--|--:" + "|--:" * len(fractions) + "|")
        sub = scores[scores["metric"] == metric]
        for name in models:
            for size in sizes:
                row = [MODELS[name], str(size)]
                for f in fractions:
                    sel = sub[(sub["model"] == name) & (sub["n_train_contexts"] == size)
                              & np.isclose(sub["adaptation_fraction"], f)]
                    row.append(_fmt(sel["value"], metric)[0])
                parts.append("| " + " | ".join(row) + " |")
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots


def _figure(n_rows: int, n_cols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    return fig, axes


def _plot_scatter(samples: dict, scores: pd.DataFrame, models: list, path: Path) -> None:
    n = len(models)
    n_cols = min(n, 3)
    n_rows = math.ceil(n / n_cols)
    fig, axes = _figure(n_rows, n_cols, 3.4, 3.4)
    every = np.concatenate(
        [np.concatenate([samples[m][0], samples[m][1]]) for m in models]
    )
    lo, hi = np.quantile(every, [0.001, 0.999]) if every.size else (-1.0, 1.0)
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad
    for ax, name in zip(axes.flat, models, strict=False):
        true, pred = samples[name]
        ax.scatter(true, pred, s=2, alpha=0.25, linewidths=0, rasterized=True)
        ax.plot([lo, hi], [lo, hi], "--", color="black", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")
        r = scores[(scores["model"] == name) & (scores["metric"] == "pearson_delta")]["value"]
        ax.set_title(f"{MODELS[name]}\nPearson Δ {r.mean():.3f}", fontsize=10)
        ax.set_xlabel("true effect")
        ax.set_ylabel("predicted effect")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.savefig(path, dpi=110)


def _plot_scarcity(scores: pd.DataFrame, models: list, k: int, path: Path) -> None:
    metrics = ("pearson_delta", "centered_pearson_delta")
    sizes = sorted(scores["n_train_contexts"].unique(), reverse=True)
    fractions = sorted(scores["adaptation_fraction"].unique(), reverse=True)
    fig, axes = _figure(len(metrics), len(sizes), 3.2, 2.8)
    for i, metric in enumerate(metrics):
        sub = scores[scores["metric"] == metric]
        for j, size in enumerate(sizes):
            ax = axes[i, j]
            for name in models:
                cell = sub[(sub["model"] == name) & (sub["n_train_contexts"] == size)]
                stats = cell.groupby("adaptation_fraction")["value"].agg(["mean", "std"])
                stats = stats.sort_index(ascending=False)
                ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0),
                            marker="o", markersize=3, capsize=2, linewidth=1.2,
                            label=MODELS[name])
            positive = [f for f in fractions if f > 0]
            if positive and len(positive) == len(fractions):
                ax.set_xscale("log")
            ax.set_xticks(fractions)
            ax.set_xticklabels([f"{f:.0%}" if f >= 0.01 else f"{f:.1%}" for f in fractions],
                               fontsize=8)
            ax.minorticks_off()
            ax.invert_xaxis()
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"{size} training contexts", fontsize=10)
            if i == len(metrics) - 1:
                ax.set_xlabel("adaptation data in the test context")
            if j == 0:
                ax.set_ylabel(_metric_label(metric, k))
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=min(len(models), 5),
               fontsize=9)
    fig.savefig(path, dpi=110)


# --------------------------------------------------------------------------- running


def _read_params_file(path) -> dict[str, dict]:
    try:
        with open(path, encoding="utf-8") as fh:
            content = json.load(fh)
    except FileNotFoundError as exc:
        raise BenchmarkDataError(f"The parameter file {str(path)!r} does not exist.") from exc
    except json.JSONDecodeError as exc:
        raise BenchmarkDataError(f"The parameter file {str(path)!r} is not JSON: {exc}") from exc
    models = content.get("models", content) if isinstance(content, dict) else None
    if not isinstance(models, dict):
        raise BenchmarkDataError(
            f"The parameter file {str(path)!r} must map model names to parameters (as the "
            "params.json a benchmark writes)."
        )
    out = {}
    for name, entry in models.items():
        params = entry.get("params", entry) if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            raise BenchmarkDataError(f"{path}: the parameters of {name!r} are not a dict.")
        out[name] = params
    return out


def _tune_scoring(tune_metric: str, k: int):
    if tune_metric not in _TUNE_METRICS:
        raise ValueError(
            f"Unknown tune_metric {tune_metric!r}; choose from {sorted(_TUNE_METRICS)}."
        )
    name = _TUNE_METRICS[tune_metric]
    if name == "top_k_overlap":
        from sklearn.metrics import make_scorer

        from .metrics import top_k_overlap

        return {name: make_scorer(top_k_overlap, k=k)}
    return name


def run_benchmark(
    X: pd.DataFrame,
    Y,
    *,
    protocol: str = "heldout",
    models: Sequence[str] = tuple(MODELS),
    n_trials: int = 20,
    tune_metric: str = "centered_pearson_delta",
    inner_folds: int = 2,
    adaptation_fraction: float = 0.1,
    n_test_contexts: int | None = None,
    n_train_contexts: Sequence[int] = (5, 3, 2),
    adaptation_fractions: Sequence[float] = (0.5, 0.2, 0.1, 0.05, 0.02),
    scarcity_test_set: str = "common",
    params: dict[str, dict] | None = None,
    max_epochs: int | None = None,
    device: str = "cpu",
    storage=None,
    study_prefix: str = "c3tl-benchmark",
    seed: int = 0,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
    max_points: int = 20_000,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    command: str | None = None,
    data_description: str | None = None,
    start_time: float | None = None,
    tune_only: bool = False,
) -> BenchmarkResult:
    """Tune and evaluate models with the paper's held-out-context or data-scarcity protocol.

    Parameters
    ----------
    X : pandas.DataFrame
        Index table.
    Y : array-like or DataFrame of shape (n_rows, n_genes)
        Effects.
    protocol : {"heldout", "scarcity"}, default="heldout"
        See the module documentation.
    models : sequence of str, default=all of :data:`MODELS`
        Models to compare, in table order.
    n_trials : int, default=20
        Optuna trials per model (the same for every model); ``0`` keeps the
        default parameters. A model without a search space is not searched.
    tune_metric : str, default="centered_pearson_delta"
        Objective of the search: a metric of :data:`METRICS`.
    inner_folds : int, default=2
        Training contexts held out, one at a time, by the tuning's inner
        cross-validation.
    adaptation_fraction : float, default=0.1
        heldout: fraction of the test context in training. scarcity: the
        cell nearest to it is tuned on, and the inner cross-validation uses it.
    n_test_contexts : int, optional
        Test contexts, drawn with ``seed``; ``None``: every context with up
        to 10 contexts, else 5.
    n_train_contexts : sequence of int, default=(5, 3, 2)
        scarcity: nested training-set sizes.
    adaptation_fractions : sequence of float, default=(0.5, 0.2, 0.1, 0.05, 0.02)
        scarcity: nested adaptation fractions.
    scarcity_test_set : {"common", "complement"}, default="common"
        scarcity: see :class:`~c3tl_sklearn.model_selection.ScarcitySplit`.
    params : dict, optional
        ``{model: {param: value}}`` to use instead of tuning those models.
    max_epochs : int, optional
        Overrides C3TL's ``max_epochs``.
    device : str, default="cpu"
        C3TL's torch device.
    storage : str or optuna storage, optional
        Optuna storage for the searches (one study per model named
        ``"{study_prefix}-{protocol}-{model}"``), so a stopped benchmark
        resumes its tuning, and several processes can share it.
    study_prefix : str, default="c3tl-benchmark"
        Prefix of the study names.
    seed : int, default=0
        Seeds the splits, the samplers and C3TL.
    context_col, perturbation_col : hashable
        Label columns of ``X``.
    max_points : int, default=20000
        Points per panel of ``scatter.png``.
    out_dir : path, optional
        Folder for the files; ``None`` writes nothing.
    progress : bool, default=True
        Report progress on stderr.
    command : str, optional
        The command line, for ``README.md``.
    data_description : str, optional
        One line about the data, for ``README.md``.
    start_time : float, optional
        ``time.perf_counter()`` when the run began, so that the reported wall
        time includes loading the data (the command line passes it); ``None``
        starts the clock here.
    tune_only : bool, default=False
        Only tune (and write ``params.json`` and ``README.md``). With a shared
        ``storage``, several ``tune_only`` workers fill the studies up to
        ``n_trials`` each; a final run with the same storage then finds them
        complete and only evaluates.

    Returns
    -------
    result : BenchmarkResult

    Examples
    --------
    >>> from c3tl_sklearn.benchmark import run_benchmark
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> X, Y = make_synthetic_perturbations(5, 30, 20, random_state=0)
    >>> result = run_benchmark(X, Y, protocol="scarcity", models=["additive"],
    ...                        n_train_contexts=(3, 2), adaptation_fractions=(0.5, 0.2),
    ...                        n_test_contexts=2, n_trials=2, progress=False)
    >>> len(result.scores)  # 2 test contexts x 2 sizes x 2 fractions x 5 metrics
    40
    >>> result.params["additive"]["n_trials"]
    2
    """
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter() if start_time is None else start_time
    if protocol not in ("heldout", "scarcity"):
        raise ValueError(f"protocol must be 'heldout' or 'scarcity'; got {protocol!r}.")
    models = list(models)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"Unknown model(s) {unknown}; choose from {sorted(MODELS)}.")
    if len(set(models)) != len(models):
        raise ValueError(f"models lists a model twice: {models}.")
    if not isinstance(n_trials, int) or n_trials < 0:
        raise ValueError(f"n_trials must be a non-negative integer; got {n_trials!r}.")
    labels = {"context_col": context_col, "perturbation_col": perturbation_col}
    X, Y = check_benchmark_data(X, Y, **labels)
    n_genes = Y.shape[1]
    k = min(50, n_genes)
    scoring = _tune_scoring(tune_metric, k) if n_trials else None
    given = dict(params or {})

    context_labels = unique_labels(X[context_col])
    test_contexts = _choose_test_contexts(context_labels, n_test_contexts, seed)
    if protocol == "heldout":
        splits = _heldout_splits(X, test_contexts=test_contexts,
                                 adaptation_fraction=adaptation_fraction, seed=seed,
                                 labels=labels)
        design = "one test context at a time; all other contexts train"
        tune_split = splits[0]
        tune_fraction = adaptation_fraction
    else:
        splits, design = _scarcity_splits(
            X, test_contexts=test_contexts, n_train_contexts=n_train_contexts,
            adaptation_fractions=adaptation_fractions, test_set=scarcity_test_set,
            seed=seed, labels=labels,
        )
        first = splits[0].test_context
        largest = max(n_train_contexts)
        nearest = min(adaptation_fractions, key=lambda f: (abs(f - adaptation_fraction), -f))
        tune_split = next(
            s for s in splits
            if s.test_context == first and s.n_train_contexts == largest
            and math.isclose(s.adaptation_fraction, nearest)
        )
        tune_fraction = nearest

    make = {
        name: (lambda name, p=None: make_model(
            name, p, **labels, max_epochs=max_epochs, device=device, random_state=seed))
        for name in models
    }
    to_tune = []
    if n_trials:
        from .tuning import default_search_space

        for name in models:
            if name not in given and default_search_space(make[name](name)):
                to_tune.append(name)
    n_steps = len(to_tune) * n_trials + (0 if tune_only else len(models) * len(splits))
    bar = _Progress(n_steps, progress)
    bar.note(
        f"{protocol} protocol: {len(models)} model(s) x {len(splits)} split(s), "
        f"{n_trials} trial(s) per tuned model; {X.shape[0]} pairs, "
        f"{len(context_labels)} contexts, {n_genes} genes"
    )

    model_info: dict[str, dict] = {}
    score_rows, fit_rows = [], []
    samples: dict[str, list] = {m: [[], []] for m in models}
    per_split_points = max(1, max_points // max(1, len(splits)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # ------------------------------------------------------------- tuning
        for name in models:
            info: dict[str, Any] = {"label": MODELS[name]}
            if name in given:
                info.update(params=dict(given[name]), source="given")
            elif name not in to_tune:
                info.update(params={}, source="default",
                            reason="no tuning requested" if not n_trials
                            else "nothing to tune")
            else:
                info.update(_tune_model(
                    name, make[name](name), X, Y, tune_split, tune_fraction,
                    n_trials=n_trials, inner_folds=inner_folds, scoring=scoring,
                    storage=storage, study_name=f"{study_prefix}-{protocol}-{name}",
                    seed=seed, labels=labels, bar=bar,
                ))
            model_info[name] = info
        # --------------------------------------------------------- evaluation
        for name in [] if tune_only else models:
            for split in splits:
                model = make[name](name, model_info[name]["params"])
                X_tr, X_te = X.iloc[split.train], X.iloc[split.test]
                Y_tr, Y_te = Y.iloc[split.train], Y.iloc[split.test]
                t0 = time.perf_counter()
                model.fit(X_tr, Y_tr)
                fit_seconds = time.perf_counter() - t0
                t0 = time.perf_counter()
                pred = np.asarray(model.predict(X_te), dtype=np.float64)
                predict_seconds = time.perf_counter() - t0
                truth = Y_te.to_numpy(dtype=np.float64)
                overall = score_table(X_te, truth, pred, context_col, k=k).iloc[-1]
                where = {
                    "model": name, "split": split.index, "test_context": split.test_context,
                    "n_train_contexts": split.n_train_contexts,
                    "adaptation_fraction": split.adaptation_fraction,
                }
                for metric in METRICS:
                    score_rows.append({**where, "metric": metric,
                                       "value": float(overall[metric])})
                history = getattr(model, "history_", None)
                n_epochs = len(history) if history is not None else np.nan
                spe = float(np.mean(history[:, "dur"])) if history is not None else np.nan
                fit_rows.append({**where, "fit_seconds": fit_seconds,
                                 "predict_seconds": predict_seconds, "n_epochs": n_epochs,
                                 "seconds_per_epoch": spe, "n_train": split.train.size,
                                 "n_test": split.test.size})
                if protocol == "heldout":
                    rng = np.random.RandomState(seed + split.index)
                    flat = rng.choice(truth.size, size=min(per_split_points, truth.size),
                                      replace=False)
                    samples[name][0].append(truth.ravel()[flat])
                    samples[name][1].append(pred.ravel()[flat])
                bar.step(
                    f"{name}: split {split.index + 1}/{len(splits)} "
                    f"({_split_text(split, protocol)}) pearson "
                    f"{overall['pearson_delta']:.3f}, centred "
                    f"{overall['centered_pearson_delta']:.3f}, fit {fit_seconds:.1f}s"
                )
    bar.close()
    scores = pd.DataFrame(score_rows, columns=[*_SCORE_KEYS, "metric", "value"])
    fits = pd.DataFrame(fit_rows)
    if tune_only:
        table = ""
    elif protocol == "heldout":
        table = _heldout_table(scores, fits, model_info, models, k)
    else:
        table = _scarcity_tables(scores, models, k)
    counts = Counter(
        f"{w.category.__name__}: {str(w.message).splitlines()[0][:300]}" for w in caught
    )
    if counts:
        bar.note(f"{sum(counts.values())} warning(s) raised during the run; "
                 "README.md lists them" if out_dir is not None else
                 f"{sum(counts.values())} warning(s) raised; see result.warnings")
    wall = time.perf_counter() - t_start
    result = BenchmarkResult(scores=scores, fits=fits, params=model_info, table=table,
                             wall_seconds=wall, warnings=dict(counts.most_common()))
    if out_dir is not None:
        plots = {}
        if tune_only:
            pass
        elif protocol == "heldout":
            plots["scatter.png"] = lambda path: _plot_scatter(
                {m: (np.concatenate(samples[m][0]), np.concatenate(samples[m][1]))
                 for m in models}, scores, models, path)
        else:
            plots["scarcity.png"] = lambda path: _plot_scarcity(scores, models, k, path)
        config = {
            "protocol": protocol, "design": design, "models": models,
            "n_trials": n_trials, "tune_metric": tune_metric, "inner_folds": inner_folds,
            "adaptation_fraction": adaptation_fraction,
            "test_contexts": test_contexts, "seed": seed, "max_epochs": max_epochs,
            "device": device, "top_k": k, "tune_only": tune_only,
        }
        if protocol == "scarcity":
            config.update(n_train_contexts=list(n_train_contexts),
                          adaptation_fractions=list(adaptation_fractions),
                          scarcity_test_set=scarcity_test_set)
        result.files = _write_outputs(
            Path(out_dir), result, plots, config=config, started=started,
            command=command, data_description=data_description, X=X, Y=Y, bar=bar,
            t_start=t_start,
        )
        result.wall_seconds = time.perf_counter() - t_start
    return result


def _split_text(split: _Split, protocol: str) -> str:
    if protocol == "heldout":
        return f"test {split.test_context}"
    return (f"test {split.test_context}, {split.n_train_contexts} contexts, "
            f"{split.adaptation_fraction:g} adaptation")


def _tune_model(name, base, X, Y, split, fraction, *, n_trials, inner_folds, scoring,
                storage, study_name, seed, labels, bar) -> dict:
    """Tune one model on the training rows of ``split``; return its params.json entry."""
    from .tuning import C3TLSearchCV

    X_tr = X.iloc[split.train].reset_index(drop=True)
    Y_tr = Y.iloc[split.train].reset_index(drop=True)
    inner, inner_contexts = _inner_cv(
        X_tr, exclude={split.test_context}, n_folds=inner_folds,
        adaptation_fraction=fraction, seed=seed, labels=labels,
    )
    objective = scoring if isinstance(scoring, str) else next(iter(scoring))

    def report(study, trial):
        value = "pruned" if trial.value is None else f"{objective} {trial.value:.4f}"
        try:
            best = f", best {study.best_value:.4f}"
        except ValueError:
            best = ""
        bar.step(f"{name}: tuning trial {trial.number + 1} ({trial.state.name.lower()}): "
                 f"{value}{best}")

    search = C3TLSearchCV(
        base, n_trials=n_trials, max_trials=n_trials if storage is not None else None,
        cv=inner, scoring=scoring, refit=False, storage=storage,
        study_name=study_name if storage is not None else None,
        # workers sharing a stored study must not propose the same candidates
        random_state=seed if storage is None else None, callbacks=[report],
    )
    t0 = time.perf_counter()
    search.fit(X_tr, Y_tr)
    seconds = time.perf_counter() - t0
    states = pd.Series(search.cv_results_["state"]).value_counts().to_dict()
    return {
        "params": search.best_params_,
        "source": "tuned",
        "best_score": search.best_score_,
        "tune_metric": objective,
        "n_trials": len(search.cv_results_["trial"]),
        "n_complete": int(states.get("COMPLETE", 0)),
        "n_pruned": int(states.get("PRUNED", 0)),
        "n_failed": int(states.get("FAIL", 0)),
        "tuning_seconds": seconds,
        "tuned_on": {
            "split": split.index, "test_context": split.test_context,
            "n_train_contexts": split.n_train_contexts,
            "adaptation_fraction": fraction, "inner_test_contexts": inner_contexts,
            "n_rows": len(X_tr),
        },
        "study_name": search.study_.study_name if storage is not None else None,
    }


def _git_commit() -> str | None:
    """Commit of the package's checkout (with a mark for local changes), if it is one."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, timeout=10,
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "c3tl_sklearn"],
                               cwd=root, timeout=10, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}{' with uncommitted changes to c3tl_sklearn' if dirty else ''}" or None


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    commit = _git_commit()
    if commit:
        out["git commit"] = commit
    for package in ("c3tl-sklearn", "numpy", "pandas", "scikit-learn", "torch", "skorch",
                    "optuna", "matplotlib"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _write_outputs(out: Path, result: BenchmarkResult, plots: dict, *, config, started,
                   command, data_description, X, Y, bar, t_start) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    caption = ""
    if not config["tune_only"]:
        path = out / "scores.csv"
        result.scores.to_csv(path, index=False)
        files["scores.csv"] = path
        path = out / "fits.csv"
        result.fits.to_csv(path, index=False)
        files["fits.csv"] = path
        path = out / "table.md"
        caption = _caption(config, result)
        path.write_text(result.table + "\n" + caption + "\n", encoding="utf-8")
        files["table.md"] = path
    path = out / "params.json"
    payload = {"protocol": config["protocol"], "tune_metric": config["tune_metric"],
               "n_trials": config["n_trials"], "seed": config["seed"],
               "models": jsonable(result.params)}
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    files["params.json"] = path
    plot_notes = []
    for name, draw in plots.items():
        try:
            draw(out / name)
        except ImportError:
            plot_notes.append(f"{name} was not drawn: matplotlib is not installed "
                              "(pip install c3tl-sklearn[plots]).")
            continue
        files[name] = out / name
    wall = time.perf_counter() - t_start
    readme = _readme(config, result, started, wall, command, data_description, X, Y,
                     files, plot_notes, caption)
    path = out / "README.md"
    path.write_text(readme, encoding="utf-8")
    files["README.md"] = path
    bar.note(f"wrote {', '.join(files)} to {out} ({wall:.1f} s)")
    return files


def _caption(config, result) -> str:
    n_splits = result.scores["split"].nunique()
    if config["protocol"] == "heldout":
        return (
            f"Mean ± standard deviation over {n_splits} held-out contexts "
            f"({config['adaptation_fraction']:.0%} of each test context in training; "
            "scored only on pairs never seen in the test context). Best in bold (lowest "
            "MSE). s / epoch: mean seconds per C3TL epoch; Fit s / fold: seconds per fit; "
            f"Tuning s: seconds for {config['n_trials']} Optuna trials on the first fold's "
            "training data."
        )
    return (
        "Mean ± standard deviation over test contexts; columns are the fraction of each "
        "test context available for adaptation, rows the number of training contexts. "
        "Scored only on pairs never seen in the test context."
    )


def _readme(config, result, started, wall, command, data_description, X, Y, files,
            plot_notes, caption) -> str:
    versions = _versions()
    threads = "n/a"
    if "torch" in sys.modules:
        threads = str(sys.modules["torch"].get_num_threads())
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(sorted({f"{i['internal_api']} {i['num_threads']}"
                                 for i in threadpool_info()})) or "n/a"
    except Exception:  # pragma: no cover - informational only
        blas = "n/a"
    title = {"heldout": "held-out contexts (Table 1, Figure 2)",
             "scarcity": "data scarcity (Figure 3)"}[config["protocol"]]
    lines = [
        f"# C3TL benchmark: {title}",
        "",
        "Command:",
        "",
        "```",
        command or "(run from Python with c3tl_sklearn.benchmark.run_benchmark)",
        "```",
        "",
        f"- Wall time: {wall:.1f} s ({_hms(wall)}), started {started:%Y-%m-%d %H:%M:%S} UTC",
        f"- Data: {data_description or 'given in Python'}; {len(X)} (context, perturbation) "
        f"pairs, {X.iloc[:, 0].nunique()} contexts, {X.iloc[:, 1].nunique()} perturbations, "
        f"{Y.shape[1]} genes",
        f"- Protocol: {config['protocol']}; {config['design']}",
        f"- Test contexts: {', '.join(map(str, config['test_contexts']))}",
    ]
    if config["protocol"] == "heldout":
        lines.append(f"- Adaptation fraction: {config['adaptation_fraction']}")
    else:
        lines.append(
            f"- Training-context sets: {config['n_train_contexts']}; adaptation fractions: "
            f"{config['adaptation_fractions']}; test set: {config['scarcity_test_set']}"
        )
    lines += [
        f"- Tuning: {config['n_trials']} Optuna trial(s) per model, objective "
        f"{config['tune_metric']}, inner cross-validation over {config['inner_folds']} "
        "training context(s) of the tuning split (see params.json)",
        f"- Seed: {config['seed']}; C3TL max_epochs: {config['max_epochs'] or 'default'}; "
        f"device: {config['device']}",
        f"- Machine: {platform.platform()}, {os.cpu_count()} CPU(s); threads: torch "
        f"{threads}, {blas}",
        "- Software: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    if config["tune_only"]:
        lines += ["Tuning only (--tune-only): no evaluation was run.", ""]
    else:
        lines += ["## Results", "", result.table, caption, ""]
    lines += ["## Parameters", ""]
    for info in result.params.values():
        params = ", ".join(f"{k}={v!r}" for k, v in info["params"].items()) or "defaults"
        extra = ""
        if info.get("source") == "tuned":
            extra = (f" (tuned: {info['tune_metric']} {info['best_score']:.4f} on "
                     f"{info['tuned_on']['test_context']}'s training data, "
                     f"{info['n_complete']} complete / {info['n_pruned']} pruned / "
                     f"{info['n_failed']} failed trials, {info['tuning_seconds']:.1f} s)")
        elif info.get("source") == "given":
            extra = " (given)"
        lines.append(f"- {info['label']}: {params}{extra}")
    lines += ["", "## Files", ""]
    lines += [f"- `{name}`" for name in [*files, "README.md"]]
    lines += [f"- {note}" for note in plot_notes]
    if result.warnings:
        lines += ["", "## Warnings raised during the run", ""]
        for message, count in list(result.warnings.items())[:30]:
            lines.append(f"- {count} x {message}")
    return "\n".join(lines) + "\n"


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# --------------------------------------------------------------------------- command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers: {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def _model_list(text: str) -> list[str]:
    names = [v.strip().lower() for v in text.split(",") if v.strip()]
    if names == ["all"]:
        return list(MODELS)
    bad = [n for n in names if n not in MODELS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {bad}; choose from {', '.join(MODELS)} (or 'all')"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    """The ``c3tl-benchmark`` argument parser.

    Returns
    -------
    parser : argparse.ArgumentParser

    Examples
    --------
    >>> from c3tl_sklearn.benchmark import build_parser
    >>> build_parser().parse_args(["--protocol", "scarcity"]).protocol
    'scarcity'
    """
    parser = argparse.ArgumentParser(
        prog="c3tl-benchmark",
        description="Tune and compare C3TL and the baselines with the paper's held-out-"
        "context protocol (Table 1, Figure 2) or data-scarcity protocol (Figure 3).",
        epilog="Example: c3tl-benchmark --data lincs --protocol heldout --n-trials 20 "
        "--out benchmarks/results/lincs-heldout",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", default="lincs", metavar="lincs|synthetic|PATH",
                      help="'lincs' (shipped, default), 'synthetic', or one CSV/TSV/Parquet "
                      "table with the label columns and one numeric column per gene")
    data.add_argument("--index", metavar="PATH",
                      help="index table (CSV/TSV/Parquet) with the label columns; use with "
                      "--effects")
    data.add_argument("--effects", metavar="PATH",
                      help="effect matrix (CSV/TSV/Parquet), one numeric column per gene, "
                      "rows aligned with --index")
    data.add_argument("--context-col", default="context",
                      help="context column of the table (default: context)")
    data.add_argument("--perturbation-col", default="perturbation",
                      help="perturbation column of the table (default: perturbation)")
    data.add_argument("--synthetic-shape", type=_int_list, default=[6, 60, 50],
                      metavar="C,P,G", help="contexts,perturbations,genes of --data synthetic "
                      "(default: 6,60,50)")
    data.add_argument("--h5ad", metavar="PATH", help="single cells to pseudo-bulk")
    data.add_argument("--context-key", help="obs column with the context of every cell")
    data.add_argument("--perturbation-key", help="obs column with the perturbation")
    data.add_argument("--control", action="append", metavar="LABEL",
                      help="control label in --perturbation-key (repeat to pool several)")
    data.add_argument("--layer", help="use this layer instead of X")
    data.add_argument("--min-cells", type=int, default=10,
                      help="drop pairs with fewer cells (default: 10)")
    data.add_argument("--n-top-genes", type=int, help="keep this many highly variable genes")
    data.add_argument("--transform", choices=["log1p", "normalize_log1p"],
                      help="transform the cells before averaging")

    proto = parser.add_argument_group("protocol")
    proto.add_argument("--protocol", choices=["heldout", "scarcity"], default="heldout")
    proto.add_argument("--models", type=_model_list, default=list(MODELS),
                       metavar="LIST", help=f"comma-separated, from {','.join(MODELS)} "
                       "(default: all)")
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
    proto.add_argument("--params", metavar="JSON",
                       help="use these parameters (a params.json of an earlier run) instead "
                       "of tuning the models it lists")

    run = parser.add_argument_group("run")
    run.add_argument("--max-epochs", type=int, help="override C3TL's max_epochs")
    run.add_argument("--device", default="cpu", help="C3TL's torch device (default: cpu)")
    run.add_argument("--threads", type=int,
                     help="CPU threads for torch and for BLAS/OpenMP (numpy, scipy, sklearn); "
                     "1 is much faster on a busy machine")
    run.add_argument("--storage", metavar="URL|PATH",
                     help="Optuna storage (sqlite:///x.db, postgresql://..., or a .log "
                     "journal file) so tuning resumes and can be shared")
    run.add_argument("--study-prefix", default="c3tl-benchmark",
                     help="prefix of the study names in --storage")
    run.add_argument("--seed", type=int, default=0, help="seed of splits, tuning and C3TL")
    run.add_argument("--max-points", type=int, default=20_000,
                     help="points per panel of scatter.png (default: 20000)")
    run.add_argument("--out", metavar="DIR",
                     help="output folder (default: ./c3tl-benchmark-<protocol>-<time>)")
    run.add_argument("--tune-only", action="store_true",
                     help="only tune (write params.json); with --storage, run several such "
                     "workers, then the same command without --tune-only to evaluate")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--traceback", action="store_true",
                     help="show the full traceback of an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``c3tl-benchmark`` (and ``python -m c3tl_sklearn.benchmark``).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 for a usage or data error (the message is printed).
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if len(args.synthetic_shape) != 3:
        parser.error("--synthetic-shape needs three integers: contexts,perturbations,genes")
    if args.n_trials < 0:
        parser.error("--n-trials must be >= 0")
    start_time = time.perf_counter()
    out = args.out or f"c3tl-benchmark-{args.protocol}-{datetime.now():%Y%m%d-%H%M%S}"
    command = "c3tl-benchmark " + shlex.join(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    limits = contextlib.nullcontext()
    if args.threads:
        from threadpoolctl import threadpool_limits  # a scikit-learn dependency

        limits = threadpool_limits(limits=args.threads)
        if "c3tl" in args.models:
            import torch

            torch.set_num_threads(args.threads)
    try:
        with limits:
            result = _main_run(args, start_time, out, command)
    except (BenchmarkDataError, ValueError, ImportError, OSError) as exc:
        if args.traceback:
            raise
        print(f"c3tl-benchmark: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet and result.table:
        print(result.table)
    if not args.quiet:
        print(f"Results in {out} ({result.wall_seconds:.1f} s)")
    return 0


def _main_run(args, start_time: float, out: str, command: str) -> BenchmarkResult:
    """Load the data named on the command line and run the benchmark."""
    control = None
    if args.control:
        control = args.control[0] if len(args.control) == 1 else list(args.control)
    X, Y, description = load_benchmark_data(
        args.data, index=args.index, effects=args.effects, h5ad=args.h5ad,
        context_col=args.context_col, perturbation_col=args.perturbation_col,
        context_key=args.context_key, perturbation_key=args.perturbation_key,
        control=control, layer=args.layer, min_cells=args.min_cells,
        n_top_genes=args.n_top_genes, transform=args.transform,
        synthetic_shape=tuple(args.synthetic_shape), seed=args.seed,
    )
    params = _read_params_file(args.params) if args.params else None
    return run_benchmark(
        X, Y, protocol=args.protocol, models=args.models, n_trials=args.n_trials,
        tune_metric=args.tune_metric, inner_folds=args.inner_folds,
        adaptation_fraction=args.adaptation_fraction,
        n_test_contexts=args.n_test_contexts, n_train_contexts=args.n_train_contexts,
        adaptation_fractions=args.adaptation_fractions,
        scarcity_test_set=args.scarcity_test_set, params=params,
        max_epochs=args.max_epochs, device=args.device, storage=args.storage,
        study_prefix=args.study_prefix, seed=args.seed, max_points=args.max_points,
        out_dir=out, progress=not args.quiet, command=command,
        data_description=description, start_time=start_time, tune_only=args.tune_only,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
