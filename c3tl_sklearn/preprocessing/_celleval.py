"""cell-eval's file layout: predictions exported as its ``pred.h5ad``/``real.h5ad``, and read back.

``cell-eval run -ap pred.h5ad -ar real.h5ad`` (ArcInstitute's evaluation
suite) scores expression, not effects: both files hold cells (or pseudo-bulk
rows) labelled in a shared perturbation column, the control cells of every
context in *both* files, identical ``var_names``, and log-normalised values
in ``[0, 15)``. It takes every effect as a group's mean minus the mean of the
controls of the same file, one context per run (``--celltype-col`` splits
the files by context).
"""

from __future__ import annotations

import os
import shlex
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._atomic import atomic_path
from .._contract import check_index_table, check_no_duplicate_pairs, check_response
from .._labels import sorted_codes
from .._warnings import user_stacklevel
from ._h5ad import _import_anndata

if TYPE_CHECKING:  # pragma: no cover
    from anndata import AnnData

__all__ = ["CellEvalEffects", "CellEvalFiles", "TruthCells", "TruthEffects", "read_cell_eval",
           "to_cell_eval"]

# cell-eval refuses values from this on as "not log-normalised" (utils.guess_is_lognorm)
_CELL_EVAL_MAX = 15.0
# a mean below 0 by less than this is float32 rounding of an effect file (a gene no cell
# of the pair expresses), set to 0 without a warning
_ROUNDING = 1e-5
# expression below this is no expression (log-normalised values are of order 1)
_TINY = 1e-12


class CellEvalFiles(NamedTuple):
    """The two AnnData objects of a cell-eval run, and how to write and run them.

    Attributes
    ----------
    pred, real : anndata.AnnData
        ``-ap`` and ``-ar`` of ``cell-eval run``.
    perturbation_col, context_col, control : str
        The obs columns and the control label, for ``--pert-col``,
        ``--celltype-col`` and ``--control-pert``.
    """

    pred: AnnData
    real: AnnData
    perturbation_col: str
    context_col: str
    control: str

    def write(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``pred.h5ad`` and ``real.h5ad`` into ``folder`` (created if needed).

        Returns
        -------
        pred_path, real_path : pathlib.Path
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = folder / "pred.h5ad", folder / "real.h5ad"
        for adata, path in zip((self.pred, self.real), paths, strict=True):
            with atomic_path(path) as tmp:  # an interruption leaves no half-written file
                adata.write_h5ad(tmp)
        return paths

    def command_args(self, folder: str | os.PathLike = ".",
                     outdir: str | os.PathLike = "cell-eval-outdir") -> list[str]:
        """The ``cell-eval run`` arguments for the files written into ``folder``."""
        folder = Path(folder)
        return [
            "cell-eval", "run", "-ap", str(folder / "pred.h5ad"), "-ar",
            str(folder / "real.h5ad"), "--pert-col", self.perturbation_col,
            "--control-pert", self.control, "--celltype-col", self.context_col,
            "-o", str(outdir),
        ]

    def command(self, folder: str | os.PathLike = ".",
                outdir: str | os.PathLike = "cell-eval-outdir") -> str:
        """The ``cell-eval run`` command line (quoted for a POSIX shell)."""
        return shlex.join(self.command_args(folder, outdir))


class CellEvalEffects(NamedTuple):
    """Effects read from a cell-eval pair, in :func:`~c3tl_sklearn.metrics.score_table`'s order.

    ``score_table(*read_cell_eval(pred, real), context_col=...)`` scores them.
    """

    X: pd.DataFrame
    Y_true: pd.DataFrame
    Y_pred: pd.DataFrame


def _dense(matrix) -> np.ndarray:
    if hasattr(matrix, "toarray"):
        return np.asarray(matrix.toarray(), dtype=np.float64)
    return np.asarray(matrix, dtype=np.float64)


def _group_means(matrix, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group means of the rows of a dense or sparse matrix; one sparse product."""
    n = codes.size
    indicator = sp.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))
    counts = np.asarray(indicator.sum(axis=1)).ravel()
    sums = indicator @ (matrix.astype(np.float64) if sp.issparse(matrix)
                        else np.asarray(matrix, dtype=np.float64))
    sums = _dense(sums)
    return sums / np.maximum(counts, 1)[:, None]


def _check_expression(values, where: str, *, integers: bool = True) -> None:
    """What cell-eval accepts: log-normalised values, finite, in [0, 15)."""
    data = values.data if sp.issparse(values) else np.asarray(values)
    if data.size == 0:
        return
    if not np.isfinite(data).all():
        raise ValueError(f"{where}: NaN or infinite values; remove or impute them.")
    low, high = data.min(), data.max()
    if sp.issparse(values) and values.nnz < np.prod(values.shape):
        low, high = min(low, 0.0), max(high, 0.0)  # the zeros a sparse matrix does not store
    if low < 0 or high >= _CELL_EVAL_MAX:
        raise ValueError(
            f"{where}: values in [{low:.3g}, {high:.3g}], but cell-eval takes "
            "log-normalised expression in [0, 15). Normalise and log-transform the cells "
            "first (scanpy: sc.pp.normalize_total then sc.pp.log1p)."
        )
    if integers and np.array_equal(data, np.floor(data)):
        raise ValueError(
            f"{where}: only integers (raw counts?), but cell-eval expects log-normalised "
            "expression, and the predicted expression would mix scales. Normalise and "
            "log-transform the cells first (sc.pp.normalize_total then sc.pp.log1p)."
        )


def _obs(perturbations, contexts, perturbation_col, context_col, names) -> pd.DataFrame:
    obs = pd.DataFrame({
        str(perturbation_col): pd.Categorical([str(p) for p in perturbations]),
        str(context_col): pd.Categorical([str(c) for c in contexts]),
    })
    index = pd.Index([str(n) for n in names], dtype=object)
    if not index.is_unique:  # anndata needs unique obs names; the user's may repeat
        index = pd.Index([f"{n}#{i}" for i, n in enumerate(index)], dtype=object)
    obs.index = index
    return obs


@dataclass(frozen=True, eq=False)
class TruthCells:
    """The truth of :func:`to_cell_eval` as single cells (recommended): every cell-eval metric.

    ``real.h5ad`` holds the cells of the scored pairs and the control cells
    of their contexts; ``pred.h5ad`` the same control cells and, per pair,
    ``n_cells`` predicted cells (control cells of the context, drawn with
    ``random_state`` and shifted to the predicted mean). The cells
    themselves (an AnnData or a path) passed as :func:`to_cell_eval`'s
    ``truth`` are ``TruthCells(cells)``. The values are checked when the
    truth is made, with the messages :func:`to_cell_eval` gives; the cells'
    columns, genes and values are checked against the predictions there.

    Parameters
    ----------
    cells : anndata.AnnData or path
        Log-normalised single cells with the contexts in ``obs[context_key]``
        and the perturbations in ``obs[perturbation_key]``, controls labelled
        as :func:`to_cell_eval`'s ``control``; the predicted genes must be
        among its ``var_names``. A path is read when the files are made.
    context_key, perturbation_key : hashable, optional
        obs columns of ``cells``; default :func:`to_cell_eval`'s
        ``context_col`` and ``perturbation_col``.
    n_cells : int or "match", default="match"
        Predicted cells per pair: ``"match"`` takes as many as the real pair
        has.
    random_state : int or None, default=0
        Draws the control cells behind the predicted cells.

    Examples
    --------
    >>> from c3tl_sklearn.preprocessing import TruthCells
    >>> truth = TruthCells("cells.h5ad", context_key="cell_line", n_cells=50)
    >>> truth.perturbation_key is None, truth.random_state
    (True, 0)
    >>> try:
    ...     TruthCells("cells.h5ad", n_cells=0)
    ... except ValueError as exc:
    ...     print(exc)
    n_cells=0 must be 'match' or an integer >= 1.
    """

    cells: AnnData | str | os.PathLike
    context_key: Hashable | None = None
    perturbation_key: Hashable | None = None
    n_cells: int | str = "match"
    random_state: int | None = 0

    def __post_init__(self):
        if not isinstance(self.cells, (str, os.PathLike)):
            anndata = _import_anndata()
            if not isinstance(self.cells, anndata.AnnData):
                raise TypeError(f"cells must be an AnnData or an .h5ad path; got "
                                f"{type(self.cells).__name__}.")
        n_cells = self.n_cells
        whole = isinstance(n_cells, Integral) and not isinstance(n_cells, bool)
        if not (whole and n_cells >= 1) and not (isinstance(n_cells, str) and n_cells == "match"):
            raise ValueError(f"n_cells={n_cells!r} must be 'match' or an integer >= 1.")
        if whole:
            object.__setattr__(self, "n_cells", int(n_cells))


@dataclass(frozen=True, eq=False)
class TruthEffects:
    """The truth of :func:`to_cell_eval` as pseudo-bulk effects and the control means.

    Each file gets one row per pair and one control row per context (the
    control mean, plus the true or predicted effect): cell-eval's
    pseudo-bulk metrics (``pearson_delta``, ``mse_delta``, the
    discrimination scores, ...) are exact, its DE metrics are not
    meaningful (one "cell" per group). ``control_mean`` is checked when the
    truth is made, with the message :func:`to_cell_eval` gives; the effects
    are checked against the predictions there.

    Parameters
    ----------
    Y_true : array-like or pandas.DataFrame of shape (n_pairs, n_genes)
        True effects of the predicted pairs, row ``i`` for row ``i`` of
        :func:`to_cell_eval`'s ``X`` (a DataFrame by index label).
    control_mean : pandas.DataFrame
        The control mean of every context (index: contexts, columns:
        genes), as ``pseudobulk(..., return_report=True)`` returns it in
        ``report.control_mean`` and ``c3tl pseudobulk`` stores it in
        ``uns["pseudobulk_control_mean"]``.

    Examples
    --------
    >>> import pandas as pd
    >>> from c3tl_sklearn.preprocessing import TruthEffects
    >>> Y_true = pd.DataFrame([[0.5, -0.2]], columns=["g1", "g2"])
    >>> controls = pd.DataFrame([[1.5, 2.5]], index=["A"], columns=["g1", "g2"])
    >>> float(TruthEffects(Y_true, controls).control_mean.loc["A", "g2"])
    2.5
    >>> try:
    ...     TruthEffects(Y_true, controls.to_numpy())
    ... except TypeError as exc:
    ...     print(str(exc).split(" (")[0])
    control_mean must be a DataFrame of every context's control mean
    """

    Y_true: object
    control_mean: pd.DataFrame

    def __post_init__(self):
        if not isinstance(self.control_mean, pd.DataFrame):
            raise TypeError(
                "control_mean must be a DataFrame of every context's control mean (index: "
                "contexts, columns: genes): report.control_mean of pseudobulk(..., "
                "return_report=True), or uns['pseudobulk_control_mean'] of a `c3tl pseudobulk` "
                f"file; got {type(self.control_mean).__name__}."
            )


@dataclass(frozen=True, eq=False)
class _Export:
    """What both truths' files are made of: the checked predictions and the labels."""

    index: pd.Index  # of X, to align a DataFrame Y_true
    contexts: np.ndarray
    perturbations: np.ndarray
    values: np.ndarray  # the predicted effects, (n_pairs, n_genes)
    genes: list[str] | None  # None: the truth's genes
    control: Hashable
    context_col: Hashable
    perturbation_col: Hashable


def _as_truth(truth, anndata) -> TruthCells | TruthEffects:
    if isinstance(truth, (TruthCells, TruthEffects)):
        return truth
    if isinstance(truth, (str, os.PathLike, anndata.AnnData)):
        return TruthCells(truth)
    raise TypeError(
        "Give the truth as TruthCells(cells, ...) or the cells themselves (an AnnData or an "
        ".h5ad path; single cells, for every cell-eval metric) or as "
        f"TruthEffects(Y_true, control_mean) (pseudo-bulk); got {type(truth).__name__}."
    )


def to_cell_eval(
    X: pd.DataFrame,
    Y_pred,
    truth: TruthCells | TruthEffects | AnnData | str | os.PathLike,
    *,
    control: Hashable = "control",
    genes: Sequence[Hashable] | None = None,
    context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation",
) -> CellEvalFiles:
    """Predicted effects as the ``pred.h5ad``/``real.h5ad`` pair that ``cell-eval run`` accepts.

    The predicted expression of a pair is its context's *real* control mean
    plus the predicted effect, and the real control rows are copied into
    both files, so cell-eval takes every effect, predicted and true, against
    the same controls (otherwise a predicted file's own controls shift every
    predicted delta, cell-eval #196). Genes, pairs and label names are the
    same in both files; every context keeps its control rows, so
    ``--celltype-col`` can split the files by context.

    The truth comes in one of two forms:

    :class:`TruthCells` ``(cells, ...)`` (single cells, recommended)
        ``real.h5ad`` holds the cells of the scored pairs and the control
        cells of their contexts. ``pred.h5ad`` holds the same control cells
        and, per pair, ``n_cells`` predicted cells: control cells of the
        context drawn with ``random_state``, shifted so that their mean is
        the control mean plus the predicted effect. cell-eval's
        differential-expression metrics (``overlap_at_N``,
        ``de_spearman_*``, ``pr_auc``, ...) test cells against controls and
        need such cells; the predicted cells carry the controls' spread, not
        the truth's. The cells alone (an AnnData or a path) are
        ``TruthCells(cells)``.
    :class:`TruthEffects` ``(Y_true, control_mean)`` (pseudo-bulk)
        One row per pair and one control row per context in each file (the
        control mean, plus the true or predicted effect). The pseudo-bulk
        metrics (``pearson_delta``, ``mse_delta``, the discrimination
        scores, ...) are exact; the DE metrics have one "cell" per group
        and are not meaningful.

    A predicted mean below 0 (an effect more negative than the control
    mean) is set to 0, since cell-eval refuses negative values (with
    cells, one above the largest measured value is set to it), with a
    warning that counts the entries; the effects cell-eval then sees are
    :func:`read_cell_eval`'s.

    Parameters
    ----------
    X : pandas.DataFrame of shape (n_pairs, n_columns)
        Index table of the predicted pairs, with ``context_col`` and
        ``perturbation_col``.
    Y_pred : array-like or pandas.DataFrame of shape (n_pairs, n_genes)
        Predicted effects, row ``i`` for row ``i`` of ``X`` (a DataFrame by
        index label).
    truth : TruthCells, TruthEffects, anndata.AnnData or path
        The single cells (with their obs columns, the number of predicted
        cells and the seed) or the true effects with the control means; an
        AnnData or an ``.h5ad`` path is ``TruthCells(truth)``, the cells
        with obs columns ``context_col`` and ``perturbation_col``.
    control : hashable, default="control"
        The control label (in the cells, and in the written files).
    genes : sequence of hashable, optional
        Gene names of ``Y_pred``; default its DataFrame columns, else the
        columns of ``control_mean`` or all genes of the cells.
    context_col, perturbation_col : hashable
        Label columns of ``X``; the written files use the same names.

    Returns
    -------
    files : CellEvalFiles
        ``pred`` and ``real`` AnnData objects (their ``uns["c3tl"]`` records
        the label columns and the control label); ``files.write(folder)``
        writes them, ``files.command(folder)`` is the ``cell-eval run`` line.

    Raises
    ------
    TypeError
        A truth of neither form.
    ValueError
        Pairs or genes missing from the truth, expression outside
        cell-eval's range (raw counts, negative values), a context without
        control cells.

    See Also
    --------
    read_cell_eval : the effects of a cell-eval pair, for our metrics.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from c3tl_sklearn.preprocessing import TruthEffects, read_cell_eval, to_cell_eval
    >>> X = pd.DataFrame({"context": ["A", "A"], "perturbation": ["p", "q"]})
    >>> Y_true = pd.DataFrame([[0.5, -0.2], [0.1, 0.3]], columns=["g1", "g2"])
    >>> controls = pd.DataFrame([[1.5, 2.5]], index=["A"], columns=["g1", "g2"])
    >>> files = to_cell_eval(X, Y_true * 0.5, TruthEffects(Y_true, controls))
    >>> files.pred.obs["perturbation"].tolist(), files.pred.X[1].tolist()
    (['control', 'p', 'q'], [1.75, 2.4000000953674316])
    >>> back = read_cell_eval(files.pred, files.real, perturbation_col="perturbation",
    ...                       control="control", context_col="context")
    >>> np.allclose(back.Y_pred, Y_true * 0.5, atol=1e-6)
    True

    With single cells whose obs columns have other names:
    ``to_cell_eval(X, Y_pred, TruthCells(cells, context_key="cell_line"))``;
    with cells labelled ``context`` and ``perturbation``:
    ``to_cell_eval(X, Y_pred, "cells.h5ad")``.
    """
    anndata = _import_anndata()
    contexts, perturbations = check_index_table(X, context_col, perturbation_col)
    check_no_duplicate_pairs(contexts, perturbations)
    values, frame_genes = check_response(Y_pred, n_rows=len(X), name="Y_pred", index=X.index)
    truth = _as_truth(truth, anndata)
    if genes is None:
        genes = frame_genes if frame_genes is not None else (
            truth.control_mean.columns if isinstance(truth, TruthEffects) else None)
    if genes is not None:
        genes = [str(g) for g in genes]
        if len(genes) != values.shape[1]:
            raise ValueError(f"genes has {len(genes)} names for {values.shape[1]} columns of "
                             "Y_pred.")
    if str(control) in {str(p) for p in perturbations}:
        raise ValueError(
            f"The control label {control!r} is also a predicted perturbation; pass the label "
            "of the control cells as control=..."
        )
    export = _Export(X.index, contexts, perturbations, values, genes, control, context_col,
                     perturbation_col)
    if isinstance(truth, TruthCells):
        files = _from_cells(export, truth)
    else:
        files = _from_pseudobulk(export, truth)
    # the names travel with the files, so `c3tl evaluate --cell-eval` needs no flags
    for adata in (files.pred, files.real):
        adata.uns["c3tl"] = {"perturbation_col": files.perturbation_col,
                             "context_col": files.context_col, "control": files.control}
    return files


def _clip(pred: np.ndarray) -> np.ndarray:
    negative = pred < -_ROUNDING
    if negative.any():
        warnings.warn(
            f"{int(negative.sum())} of {negative.size} predicted (pair, gene) expression means "
            f"({negative.mean():.2%}) are below 0 (an effect more negative than the control "
            "mean) and are set to 0, since cell-eval refuses negative values; the "
            "effects cell-eval scores differ there (read_cell_eval reads them back).",
            UserWarning, stacklevel=user_stacklevel(),
        )
    return np.maximum(pred, 0.0)


def _from_pseudobulk(export: _Export, truth: TruthEffects) -> CellEvalFiles:
    anndata = _import_anndata()
    values, contexts, perturbations = export.values, export.contexts, export.perturbations
    control, context_col, perturbation_col = (export.control, export.context_col,
                                              export.perturbation_col)
    true, true_genes = check_response(truth.Y_true, n_rows=len(export.index), name="Y_true",
                                      index=export.index)
    if true.shape != values.shape:
        raise ValueError(f"Y_true has shape {true.shape}, Y_pred {values.shape}; give the "
                         "effects of the same pairs and genes.")
    genes = export.genes if export.genes is not None else (
        [str(g) for g in true_genes] if true_genes is not None else None)
    means = truth.control_mean.copy()
    means.columns = [str(c) for c in means.columns]
    means.index = [str(c) for c in means.index]
    if genes is None:
        genes = list(means.columns)
    missing = [g for g in genes if g not in set(means.columns)]
    if missing:
        raise ValueError(f"control_mean lacks {len(missing)} gene(s) of the effects, e.g. "
                         f"{missing[:3]}; pass the control means of the same genes.")
    if true_genes is not None and [str(g) for g in true_genes] != list(genes):
        raise ValueError("Y_true's columns are not the genes of Y_pred (same names, same "
                         "order); align them first.")
    order = list(dict.fromkeys(str(c) for c in contexts))
    absent = [c for c in order if c not in set(means.index)]
    if absent:
        raise ValueError(f"control_mean has no row for context(s) {absent[:5]}; every "
                         "predicted context needs its control mean.")
    base = means.loc[order, genes].to_numpy(dtype=np.float64)
    _check_expression(base, "control_mean", integers=False)
    row_of = {c: i for i, c in enumerate(order)}
    rows = np.array([row_of[str(c)] for c in contexts], dtype=np.intp)
    real_values = np.vstack([base, np.maximum(base[rows] + true, 0.0)])
    _check_expression(real_values, "the true expression (control_mean + Y_true)")
    pred_values = np.vstack([base, _clip(base[rows] + values)])
    labels = [control] * len(order) + list(perturbations)
    where = order + [str(c) for c in contexts]
    names = [f"control|{c}" for c in order] + [f"{c}|{p}" for c, p in
                                               zip(contexts, perturbations, strict=True)]
    var = pd.DataFrame(index=pd.Index(genes, dtype=object))

    def make(values: np.ndarray):
        obs = _obs(labels, where, perturbation_col, context_col, names)
        return anndata.AnnData(X=values.astype(np.float32), obs=obs, var=var.copy())

    return CellEvalFiles(make(pred_values), make(real_values), str(perturbation_col),
                         str(context_col), str(control))


def _max_value(matrix) -> float:
    if sp.issparse(matrix):
        return float(matrix.max()) if matrix.nnz else 0.0
    return float(np.max(matrix)) if np.size(matrix) else 0.0


def _cells_with_mean(drawn: np.ndarray, target: np.ndarray, cap: float) -> np.ndarray:
    """Control cells mapped, gene by gene, onto the mean ``target`` (in ``[0, cap]``).

    Each gene's cells become ``a * cell + b`` with ``a, b >= 0`` and mean
    ``target``: scaling (``b = 0``) keeps the zeros of log-normalised
    controls, where a shift would push them below 0; ``a`` is lowered (and
    ``b`` raised) only as far as keeps the largest cell at most ``cap``, the
    largest real value, so that a rarely expressed gene is not scaled into
    values cell-eval refuses (15 and more).
    """
    drawn_mean = drawn.mean(axis=0)
    spread = drawn.max(axis=0) - drawn_mean
    # a gene the drawn cells (all but) never express is set to its target in every cell;
    # dividing by a denormal mean would overflow
    expressed = drawn_mean > _TINY
    varies = spread > _TINY
    scale = np.zeros_like(drawn_mean)
    scale[expressed] = target[expressed] / drawn_mean[expressed]
    room = np.full_like(drawn_mean, np.inf)
    room[varies] = (cap - target[varies]) / spread[varies]
    a = np.clip(np.minimum(scale, room), 0.0, None)
    b = np.maximum(target - a * drawn_mean, 0.0)
    return drawn * a + b


class _TruthCells(NamedTuple):
    """The truth cells as the export reads them: the predicted genes, in their order."""

    matrix: object  # cells x predicted genes, sparse or dense, as the file holds it
    genes: list[str]
    contexts: np.ndarray  # each cell's context label, as text
    perturbations: np.ndarray  # each cell's perturbation label, as text
    names: np.ndarray  # obs_names
    perturbation_key: Hashable


def _read_truth_cells(export: _Export, truth: TruthCells, anndata) -> _TruthCells:
    """The cells of ``truth``, their labels and the predicted genes, after checking them."""
    cells = truth.cells
    if isinstance(cells, (str, os.PathLike)):
        cells = anndata.read_h5ad(cells)
    ckey = export.context_col if truth.context_key is None else truth.context_key
    pkey = export.perturbation_col if truth.perturbation_key is None else truth.perturbation_key
    for key, flag in ((ckey, "context_key"), (pkey, "perturbation_key")):
        if key not in cells.obs.columns:
            raise ValueError(
                f"cells.obs has no column {key!r} (its columns: {list(cells.obs.columns)[:12]}); "
                f"name the column as TruthCells(cells, {flag}=...)."
            )
    var_names = [str(g) for g in cells.var_names]
    genes = var_names if export.genes is None else export.genes
    position = {g: j for j, g in enumerate(var_names)}
    missing = [g for g in genes if g not in position]
    if missing:
        raise ValueError(f"The cells lack {len(missing)} predicted gene(s), e.g. {missing[:3]}; "
                         "predict the genes the cells measure.")
    if len(genes) != export.values.shape[1]:
        raise ValueError(f"The cells have {len(genes)} genes, Y_pred {export.values.shape[1]}; "
                         "pass genes=... (the predicted genes' names).")
    matrix = cells.X[:, np.array([position[g] for g in genes], dtype=np.intp)]
    # before anything is computed: the cells must be what cell-eval reads as log-normalised
    _check_expression(matrix, "the cells")
    return _TruthCells(
        matrix, genes,
        cells.obs[ckey].astype(object).map(str).to_numpy(),
        cells.obs[pkey].astype(object).map(str).to_numpy(),
        np.asarray(cells.obs_names, dtype=object), pkey,
    )


class _PredictedCells(NamedTuple):
    """The drawn cells of every exported pair, in the pairs' order."""

    blocks: list  # one sparse (k, n_genes) block per pair
    perturbations: list[str]  # per cell
    contexts: list[str]
    names: list[str]


def _draw_predicted_cells(export: _Export, truth: TruthCells, matrix, control_cells,
                          sizes: list[int]) -> _PredictedCells:
    """Each pair's control cells, resampled and rescaled to the control mean plus its effect.

    ``control_cells[c]`` is the dense block of context ``c``'s control cells
    and its mean; ``sizes`` the cells to draw per pair. Warns once about the
    means set to the bounds cell-eval accepts.
    """
    rng = np.random.RandomState(truth.random_state)
    cap = _max_value(matrix)
    out = _PredictedCells([], [], [], [])
    n_clipped = 0
    for i, (c, p, k) in enumerate(zip(map(str, export.contexts), map(str, export.perturbations),
                                      sizes, strict=True)):
        block, mean = control_cells[c]
        drawn = block[rng.choice(block.shape[0], size=k, replace=k > block.shape[0])]
        target = mean + export.values[i]
        n_clipped += int(((target < -_ROUNDING) | (target > cap + _ROUNDING)).sum())
        # stored sparse block by block: the rescaled controls keep their zeros, and the
        # predicted cells of a large atlas would not fit in memory dense
        cells_k = _cells_with_mean(drawn, np.clip(target, 0.0, cap), cap)
        out.blocks.append(sp.csr_matrix(np.maximum(cells_k, 0.0).astype(np.float32)))
        out.perturbations.extend([p] * k)
        out.contexts.extend([c] * k)
        out.names.extend(f"pred|{c}|{p}|{j}" for j in range(k))
    if n_clipped:
        total = len(sizes) * export.values.shape[1]
        warnings.warn(
            f"{n_clipped} of {total} predicted (pair, gene) expression means "
            f"({n_clipped / total:.2%}) are below 0 (an effect more negative than the "
            f"control mean) or above the largest measured value {cap:.3g}, and are set to "
            "that bound, since cell-eval refuses negative values; the effects cell-eval "
            "scores differ there (read_cell_eval reads them back).",
            UserWarning, stacklevel=user_stacklevel(),
        )
    return out


def _from_cells(export: _Export, truth: TruthCells) -> CellEvalFiles:
    anndata = _import_anndata()
    control, context_col, perturbation_col = (export.control, export.context_col,
                                              export.perturbation_col)
    cells = _read_truth_cells(export, truth, anndata)
    # the rows of every (context, perturbation) group, in one pass over the cells
    rows_of = pd.DataFrame({"c": cells.contexts, "p": cells.perturbations}).groupby(
        ["c", "p"], sort=False).indices
    empty = np.empty(0, dtype=np.intp)
    order = list(dict.fromkeys(str(c) for c in export.contexts))
    control_rows, control_cells = {}, {}
    for c in order:
        rows = rows_of.get((c, str(control)), empty)
        if rows.size == 0:
            raise ValueError(
                f"Context {c!r} has no control cells labelled {control!r} in "
                f"obs[{cells.perturbation_key!r}]; pass the control label as control=..."
            )
        block = _dense(cells.matrix[rows])
        control_rows[c], control_cells[c] = rows, (block, block.mean(axis=0))
    real_rows = []
    for c, p in zip(map(str, export.contexts), map(str, export.perturbations), strict=True):
        rows = rows_of.get((c, p), empty)
        if rows.size == 0:
            raise ValueError(f"The cells have no cell of the pair ({c!r}, {p!r}); export "
                             "pairs that were measured.")
        real_rows.append(rows)
    sizes = [rows.size if truth.n_cells == "match" else int(truth.n_cells) for rows in real_rows]
    predicted = _draw_predicted_cells(export, truth, cells.matrix, control_cells, sizes)

    ctrl_all = np.concatenate([control_rows[c] for c in order])
    real_all = np.concatenate([ctrl_all, *real_rows])
    real_matrix = cells.matrix[real_all]
    real_matrix = sp.csr_matrix(real_matrix, dtype=np.float32) if sp.issparse(real_matrix) \
        else np.asarray(real_matrix, dtype=np.float32)
    real_obs = _obs(cells.perturbations[real_all], cells.contexts[real_all], perturbation_col,
                    context_col, cells.names[real_all])
    var = pd.DataFrame(index=pd.Index(cells.genes, dtype=object))
    real = anndata.AnnData(X=real_matrix, obs=real_obs, var=var.copy())
    # the real control cells themselves, so both files hold identical controls
    ctrl_values = sp.csr_matrix(real_matrix[: ctrl_all.size], dtype=np.float32)
    pred_values = sp.vstack([ctrl_values, *predicted.blocks], format="csr")
    pred_obs = _obs(
        [str(control)] * ctrl_all.size + predicted.perturbations,
        list(cells.contexts[ctrl_all]) + predicted.contexts, perturbation_col, context_col,
        [f"control|{n}" for n in cells.names[ctrl_all]] + predicted.names,
    )
    pred = anndata.AnnData(X=pred_values, obs=pred_obs, var=var.copy())
    return CellEvalFiles(pred, real, str(perturbation_col), str(context_col), str(control))


def read_cell_eval(
    pred,
    real,
    *,
    perturbation_col: Hashable = "target_gene",
    control: Hashable = "non-targeting",
    context_col: Hashable | None = None,
) -> CellEvalEffects:
    """The effects of a cell-eval pair of files, as cell-eval computes them, for our metrics.

    Every group of each file (cells with one perturbation in one context) is
    averaged, and its context's control mean *in the same file* is
    subtracted, as cell-eval does; so our metrics on the result are
    cell-eval's on the files (``pearson_delta``, ``mse_delta``, the
    discrimination scores; see :mod:`c3tl_sklearn.metrics`). A prediction
    made by any tool in cell-eval's layout can be scored this way.

    Parameters
    ----------
    pred, real : anndata.AnnData or path
        cell-eval's ``-ap`` and ``-ar`` files; they are only read.
    perturbation_col : hashable, default="target_gene"
        cell-eval's ``--pert-col`` (its default).
    control : hashable, default="non-targeting"
        cell-eval's ``--control-pert`` (its default).
    context_col : hashable, optional
        cell-eval's ``--celltype-col``; ``None`` treats each file as one
        context, named ``"all"``, in a column ``"context"``.

    Returns
    -------
    effects : CellEvalEffects
        ``(X, Y_true, Y_pred)``: the index table (context and perturbation
        columns, pairs sorted) and the true and predicted effects as
        DataFrames with the genes as columns, so that
        ``score_table(*effects, context_col=...)`` scores them.

    Raises
    ------
    ValueError
        A missing column, different genes or different pairs in the two
        files, or a context without control rows.

    Examples
    --------
    >>> import anndata, numpy as np, pandas as pd
    >>> from c3tl_sklearn.preprocessing import read_cell_eval
    >>> obs = pd.DataFrame({"target_gene": ["non-targeting", "non-targeting", "KO1"]},
    ...                    index=["c0", "c1", "c2"])
    >>> real = anndata.AnnData(np.array([[1.0, 2.0], [3.0, 2.0], [4.0, 1.0]]), obs=obs)
    >>> pred = anndata.AnnData(np.array([[2.0, 2.0], [2.0, 2.0], [3.0, 2.0]]), obs=obs)
    >>> X, Y_true, Y_pred = read_cell_eval(pred, real)
    >>> X.values.tolist(), Y_true.values.tolist(), Y_pred.values.tolist()
    ([['all', 'KO1']], [[2.0, -1.0]], [[1.0, 0.0]])
    """
    anndata = _import_anndata()
    adatas = []
    for adata, name in ((pred, "pred"), (real, "real")):
        if isinstance(adata, (str, os.PathLike)):
            if not Path(adata).is_file():
                raise FileNotFoundError(f"The {name} file {str(adata)!r} does not exist.")
            adata = anndata.read_h5ad(adata)
        if not isinstance(adata, anndata.AnnData):
            raise TypeError(f"{name} must be an AnnData or an .h5ad path; got "
                            f"{type(adata).__name__}.")
        adatas.append(adata)
    out_ccol = "context" if context_col is None else context_col
    pred_genes = [str(g) for g in adatas[0].var_names]
    real_genes = [str(g) for g in adatas[1].var_names]
    if set(pred_genes) != set(real_genes) or len(pred_genes) != len(real_genes):
        only = sorted(set(pred_genes) ^ set(real_genes))[:3]
        raise ValueError(f"pred and real have different genes (e.g. {only}); cell-eval needs "
                         "identical var_names.")
    effects = []
    for adata, name in zip(adatas, ("pred", "real"), strict=True):
        for key, flag in ((perturbation_col, "perturbation_col (--pert-col)"),
                          (context_col, "context_col (--celltype-col)")):
            if key is not None and key not in adata.obs.columns:
                raise ValueError(
                    f"The {name} file has no obs column {key!r} (its columns: "
                    f"{list(adata.obs.columns)[:12]}); pass {flag}."
                )
        pert = adata.obs[perturbation_col].astype(object).map(str).to_numpy()
        ctx = (np.full(adata.n_obs, "all", dtype=object) if context_col is None
               else adata.obs[context_col].astype(object).map(str).to_numpy())
        keys = pd.MultiIndex.from_arrays([ctx, pert])
        codes, uniques = pd.factorize(keys)
        means = _group_means(adata.X, codes, len(uniques))
        groups = pd.DataFrame(means, index=pd.MultiIndex.from_tuples(list(uniques)),
                              columns=[str(g) for g in adata.var_names])
        is_control = groups.index.get_level_values(1) == str(control)
        controls = groups[is_control].droplevel(1)
        pairs = groups[~is_control]
        lacking = sorted(set(pairs.index.get_level_values(0)) - set(controls.index))
        if lacking:
            raise ValueError(
                f"The {name} file has no {control!r} rows in context(s) {lacking[:5]}; "
                "cell-eval takes every effect against the controls of the same file. Is "
                "control (--control-pert) the control label?"
            )
        delta = pairs.to_numpy() - controls.loc[pairs.index.get_level_values(0)].to_numpy()
        effects.append(pd.DataFrame(delta, index=pairs.index, columns=groups.columns))
    pred_fx, real_fx = effects
    if set(pred_fx.index) != set(real_fx.index):
        only_pred = sorted(set(pred_fx.index) - set(real_fx.index))[:3]
        only_real = sorted(set(real_fx.index) - set(pred_fx.index))[:3]
        raise ValueError(
            f"pred and real hold different (context, perturbation) groups: only in pred "
            f"{only_pred}, only in real {only_real}; cell-eval needs the same perturbations."
        )
    codes_c, _ = sorted_codes(real_fx.index.get_level_values(0))
    order = np.lexsort((np.asarray(real_fx.index.get_level_values(1), dtype=str), codes_c))
    index = real_fx.index[order]
    Y_true = real_fx.loc[index, real_genes].reset_index(drop=True)
    Y_pred = pred_fx.loc[index, real_genes].reset_index(drop=True)
    X = pd.DataFrame({out_ccol: index.get_level_values(0).to_numpy(dtype=object),
                      perturbation_col: index.get_level_values(1).to_numpy(dtype=object)})
    return CellEvalEffects(X, Y_true, Y_pred)
