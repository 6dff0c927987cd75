"""Pseudo-bulk over many files (an atlas in plate files): per-file sums merged exactly.

Every file is streamed on its own (in parallel through joblib) into the sums of
*all* its groups, with no ``min_cells`` filter: a (context, perturbation) pair
may have cells in several files, and a context's controls may sit in other
files than its perturbed cells. The sums, cell counts (and, for
``hvg_on="cells"``, the per-group moments) are then added by label, and only
then are ``min_cells``, the controls and the gene selection applied, so the
result is the one a single file holding every cell would give.
"""

from __future__ import annotations

import glob
import os
import resource
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._labels import sorted_codes
from .._parallel import parallel_map
from .._warnings import user_stacklevel
from ._h5ad import _open_source
from ._hvg import _expm1_squares
from ._options import PseudobulkOptions
from ._plan import _factorize, _GroupLabels, _Plan, kept_plan
from ._pseudobulk import (
    _accumulate,
    _checked_matrix,
    _scatter_add,
    _Sums,
    _Totals,
    _unique_gene_names,
)

__all__ = ["file_list", "pseudobulk_files"]


def file_list(adata) -> list[str] | None:
    """The files of a list of paths or of a glob pattern; ``None`` for one source."""
    if isinstance(adata, (list, tuple)):
        if not adata:
            raise ValueError("The list of files is empty.")
        return [os.fspath(p) for p in adata]
    if isinstance(adata, str) and glob.has_magic(adata) and not os.path.exists(adata):
        paths = sorted(glob.glob(adata))
        if not paths:
            raise ValueError(f"No file matches {adata!r}.")
        return paths
    return None


class _GroupSums(_Sums):
    """Sums per group, plus per-group moments of ``expm1`` for ``hvg_on="cells"``.

    One file cannot know which groups survive ``min_cells`` after the merge, so
    the moments are kept per group (and summed over the kept groups later)
    instead of over the kept cells as for one file.
    """

    def __init__(self, plan: _Plan, n_obs: int, n_vars: int, *, cell_stats: bool):
        super().__init__(plan, n_obs, n_vars, cell_stats=False)
        shape = (self.n_groups, n_vars)
        self.m1 = np.zeros(shape) if cell_stats else None
        self.m2 = np.zeros(shape) if cell_stats else None

    def add_rows(self, block, start: int, stop: int) -> None:
        super().add_rows(block, start, stop)
        if self.m1 is None:
            return
        codes = self.plan.cell_group[start:stop]
        keep = codes >= 0
        if not keep.any():
            return
        rows_used, inverse = np.unique(codes[keep], return_inverse=True)
        indicator = sp.csr_matrix((np.ones(inverse.size), (inverse, np.flatnonzero(keep))),
                                  shape=(rows_used.size, block.shape[0]))
        e, sq = _expm1_squares(block)
        _scatter_add(self.m1, indicator @ e, rows_used, slice(None))
        _scatter_add(self.m2, indicator @ sq, rows_used, slice(None))

    def add_cols(self, block, start: int, stop: int) -> None:
        super().add_cols(block, start, stop)  # builds the cell-to-group indicator
        if self.m1 is not None:
            e, sq = _expm1_squares(block)
            rows = np.arange(self.n_groups)
            _scatter_add(self.m1, self._col_indicator @ e, rows, slice(start, stop))
            _scatter_add(self.m2, self._col_indicator @ sq, rows, slice(start, stop))


def _file_plan(ctx_values, pert_values, controls: list) -> tuple[_Plan, set]:
    """Every labelled group of one file (no filter), and the control labels it holds."""
    c_codes, contexts = _factorize(ctx_values)
    p_codes, perturbations = _factorize(pert_values)
    n_c, n_p = len(contexts), max(1, len(perturbations))
    # exact labels, as for one file: the string "0" is no control for a control 0
    is_control_label = pd.Index(perturbations, dtype=object).isin(
        pd.Index(controls, dtype=object))
    is_control_label = np.append(np.asarray(is_control_label, dtype=bool), False)
    labelled = (c_codes >= 0) & (p_codes >= 0)
    is_control_cell = labelled & is_control_label[np.where(labelled, p_codes, -1)]
    is_pair_cell = labelled & ~is_control_cell
    control_counts = np.bincount(c_codes[is_control_cell], minlength=n_c)
    pair_code = c_codes[is_pair_cell].astype(np.int64) * n_p + p_codes[is_pair_cell]
    observed, counts = np.unique(pair_code, return_counts=True)
    kept_contexts = np.flatnonzero(control_counts)
    control_row = np.full(n_c, -1, dtype=np.int64)
    control_row[kept_contexts] = observed.size + np.arange(kept_contexts.size)
    cell_group = np.full(c_codes.shape[0], -1, dtype=np.int64)
    cell_group[is_pair_cell] = np.searchsorted(observed, pair_code)
    cell_group[is_control_cell] = control_row[c_codes[is_control_cell]]
    plan = _Plan(
        cell_group=cell_group, n_pairs=observed.size, pair_context=observed // n_p,
        pair_perturbation=observed % n_p, pair_counts=counts,
        control_row_of_context=control_row, control_counts=control_counts,
        kept_contexts=kept_contexts, contexts=contexts, perturbations=perturbations,
        groups=pd.DataFrame(), n_unlabelled=int((~labelled).sum()),
    )
    return plan, set(perturbations[is_control_label[:-1]].tolist())


def _file_sums(path: str, context_key, perturbation_key, controls: list,
               options: PseudobulkOptions) -> dict:
    """Stream one file into the sums of all its groups (runs in a joblib worker)."""
    t0 = time.perf_counter()
    source = _open_source(path, options.layer)
    try:
        matrix, fmt = _checked_matrix(source)
        plan, found_controls = _file_plan(source.column(context_key),
                                          source.column(perturbation_key), controls)
        sums = _GroupSums(plan, source.n_obs, len(source.var_names),
                          cell_stats=options.cell_stats)
        checks = _accumulate(sums, matrix, fmt, source, options)
        var_names = pd.Index(source.var_names).astype(str)
        n_obs = source.n_obs
    finally:
        source.close()
    kept = plan.kept_contexts
    return {
        "path": path, "var_names": var_names, "n_obs": n_obs,
        "pair_context": plan.contexts[plan.pair_context],
        "pair_perturbation": plan.perturbations[plan.pair_perturbation],
        "pair_counts": plan.pair_counts, "control_context": plan.contexts[kept],
        "control_counts": plan.control_counts[kept], "sums": sums.sums,
        "m1": sums.m1, "m2": sums.m2, "found_controls": found_controls,
        "n_unlabelled": plan.n_unlabelled,
        "checks": (checks.n_values, checks.all_integer, checks.any_negative,
                   checks.max_value),
        "seconds": time.perf_counter() - t0, "worker": os.getpid(),
        # ru_maxrss is KiB on Linux: the worker's peak, this file included
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def read_files(paths: list[str], context_key, perturbation_key, controls: list,
               options: PseudobulkOptions, *, n_jobs) -> list[dict]:
    """The per-file sums, in the order of ``paths`` (``n_jobs`` files at once)."""
    tasks = [(p, context_key, perturbation_key, controls, options) for p in paths]
    parts = parallel_map(_file_sums, tasks, n_jobs)
    first = parts[0]["var_names"]
    for part in parts[1:]:
        if not part["var_names"].equals(first):
            raise ValueError(
                f"{part['path']} has other genes (or another gene order) than "
                f"{parts[0]['path']}; every file must have the same var_names."
            )
    return parts


def merged_plan(parts: list[dict], controls: list, min_cells: int, context_key,
                perturbation_key) -> tuple[_Plan, dict]:
    """Add the files' groups by label, then keep groups as for one file; warn likewise."""
    found = set().union(*(p["found_controls"] for p in parts))
    missing = [c for c in controls if c not in found]
    if missing:
        raise ValueError(f"control label(s) {missing} not found in obs[{perturbation_key!r}] "
                         "of any file. Check the spelling and the type.")
    pair_ctx = np.concatenate([p["pair_context"] for p in parts])
    all_ctx = np.concatenate([pair_ctx, *(p["control_context"] for p in parts)])
    codes, contexts = sorted_codes(pd.Series(all_ctx, dtype=object).infer_objects())
    codes = np.asarray(codes, dtype=np.int64)
    pert_codes, perturbations = sorted_codes(pd.Series(
        np.concatenate([p["pair_perturbation"] for p in parts]),
        dtype=object).infer_objects())
    if not len(perturbations):
        raise ValueError(f"Every perturbation label in obs[{perturbation_key!r}] is a control; "
                         "there is no perturbation to compute an effect for.")
    n_p = len(perturbations)
    pair_code = codes[: pair_ctx.size] * n_p + np.asarray(pert_codes, dtype=np.int64)
    observed, inverse = np.unique(pair_code, return_inverse=True)
    observed_counts = np.bincount(inverse, weights=np.concatenate(
        [p["pair_counts"] for p in parts]), minlength=observed.size).astype(np.int64)
    control_codes = codes[pair_ctx.size:]
    control_counts = np.bincount(control_codes, weights=np.concatenate(
        [p["control_counts"] for p in parts]), minlength=len(contexts)).astype(np.int64)
    positions = {"pairs": np.split(inverse, np.cumsum([p["pair_counts"].size
                                                       for p in parts])[:-1]),
                 "controls": np.split(control_codes, np.cumsum([p["control_counts"].size
                                                                for p in parts])[:-1])}
    labels = _GroupLabels(np.asarray(contexts), np.asarray(perturbations), controls,
                          context_key, perturbation_key)
    plan, positions["kept_pairs"] = kept_plan(
        labels, observed, observed_counts, control_counts, min_cells,
        sum(p["n_unlabelled"] for p in parts))
    return plan, positions


def merged_sums(parts: list[dict], plan: _Plan, positions: dict, key: str) -> np.ndarray:
    """The files' ``key`` arrays (sums or moments) added into the plan's kept rows."""
    n_vars = parts[0]["sums"].shape[1]
    n_observed = max((int(p.max(initial=-1)) for p in positions["pairs"]), default=-1) + 1
    pairs = np.zeros((n_observed, n_vars))
    controls = np.zeros((len(plan.contexts), n_vars))
    for part, at_pair, at_control in zip(parts, positions["pairs"], positions["controls"],
                                         strict=True):
        values = part[key]
        n = part["pair_counts"].size
        # a group occurs once per file, so these fancy-index additions never collide
        pairs[at_pair] += values[:n]
        controls[at_control] += values[n:]
    return np.concatenate([pairs[positions["kept_pairs"]], controls[plan.kept_contexts]])


def files_table(parts: list[dict]) -> pd.DataFrame:
    """One row per file: its cells, the seconds it took, the worker and its peak memory."""
    return pd.DataFrame({
        "path": [p["path"] for p in parts], "n_cells": [p["n_obs"] for p in parts],
        "seconds": [p["seconds"] for p in parts], "worker": [p["worker"] for p in parts],
        "worker_peak_rss_mib": [p["peak_rss_mib"] for p in parts],
    })


def looks_like_counts(parts: list[dict]) -> tuple[bool, float]:
    """Whether every value of every file is a non-negative integer; the largest value."""
    n_values = sum(p["checks"][0] for p in parts)
    integer = all(p["checks"][1] for p in parts)
    negative = any(p["checks"][2] for p in parts)
    max_value = max(p["checks"][3] for p in parts)
    return bool(n_values > 0 and integer and not negative and max_value > 0), max_value


def gene_names(parts: list[dict]) -> pd.Index:
    return _unique_gene_names(parts[0]["var_names"])


def pseudobulk_files(paths: list[str], context_key, perturbation_key, controls: list,
                     options: PseudobulkOptions, *, return_report: bool, n_jobs):
    """:func:`~c3tl_sklearn.preprocessing.pseudobulk` of the cells of several files."""
    from ._options import PseudobulkWarning
    from ._pseudobulk import _results

    parts = read_files(paths, context_key, perturbation_key, controls, options, n_jobs=n_jobs)
    counts_like, max_value = looks_like_counts(parts)
    if options.transform is None and counts_like:
        warnings.warn(
            f"The {len(paths)} files look like raw counts (every value is a non-negative "
            f"integer, max {max_value:g}). Effects are differences of means of the values "
            "as given; C3TL, like the paper, expects log-normalised expression. Pass "
            "transform='normalize_log1p' to normalise and log-transform on the fly.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )
    plan, positions = merged_plan(parts, controls, options.min_cells, context_key,
                                  perturbation_key)
    group_sums = merged_sums(parts, plan, positions, "sums")
    s1 = s2 = None
    if options.cell_stats:  # the moments of the kept groups' cells, as for one file
        s1 = merged_sums(parts, plan, positions, "m1").sum(axis=0)
        s2 = merged_sums(parts, plan, positions, "m2").sum(axis=0)
    return _results(plan, _Totals(group_sums, s1, s2), gene_names(parts), options,
                    looks_like_counts=counts_like, return_report=return_report,
                    files=files_table(parts))
