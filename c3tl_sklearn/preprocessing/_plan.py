"""The grouping plan of pseudo-bulk: which (context, perturbation) groups and controls are kept."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._labels import sorted_codes
from .._warnings import user_stacklevel
from ._options import PseudobulkWarning

# Up to this many possible (context, perturbation) pairs, pairs are counted with
# a table over all of them; beyond it, by sorting the observed ones.
_MAX_DENSE_PAIR_CODES = 50_000_000


def _factorize(values) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for missing) and the labels, sorted where comparable."""
    codes, uniques = sorted_codes(values)
    return codes.astype(np.int32), uniques


def _as_label_list(control) -> list:
    if isinstance(control, (list, set, frozenset, np.ndarray, pd.Index, pd.Series)):
        labels = list(control)
        if not labels:
            raise ValueError("control is empty; pass the label of the control perturbation.")
        return labels
    return [control]


def _preview(labels: Sequence, k: int = 8) -> str:
    shown = ", ".join(repr(x) for x in list(labels)[:k])
    return f"[{shown}{', ...' if len(labels) > k else ''}]"


@dataclass
class _Plan:
    cell_group: np.ndarray  # per cell: row of the accumulator, -1 to skip
    n_pairs: int  # rows 0..n_pairs-1 are pairs, then one row per kept context's controls
    pair_context: np.ndarray  # context code of each kept pair
    pair_perturbation: np.ndarray
    pair_counts: np.ndarray
    control_row_of_context: np.ndarray  # accumulator row of each context's controls (-1)
    control_counts: np.ndarray  # per context
    kept_contexts: np.ndarray  # context codes with enough controls
    contexts: np.ndarray  # labels
    perturbations: np.ndarray
    groups: pd.DataFrame
    n_unlabelled: int


def _plan_groups(ctx_values, pert_values, controls: list, min_cells: int, context_key,
                 perturbation_key) -> _Plan:
    """Code every cell's group and decide which groups are kept; warn about the others."""
    c_codes, contexts = _factorize(ctx_values)
    p_codes, perturbations = _factorize(pert_values)
    n_c, n_p = len(contexts), len(perturbations)
    is_control_label = _control_labels(perturbations, controls, perturbation_key)

    labelled = (c_codes >= 0) & (p_codes >= 0)
    n_unlabelled = int((~labelled).sum())
    is_control_cell = labelled & is_control_label[np.where(labelled, p_codes, 0)]
    is_pair_cell = labelled & ~is_control_cell
    del labelled

    control_counts = np.bincount(c_codes[is_control_cell], minlength=n_c)
    # (context, perturbation) code of every perturbed cell, as one integer
    pair_code = c_codes[is_pair_cell].astype(np.int64) * n_p + p_codes[is_pair_cell]
    del p_codes
    dense_codes = n_c * n_p <= _MAX_DENSE_PAIR_CODES
    observed, observed_counts = _count_pairs(pair_code, n_c * n_p, dense_codes)
    labels = _GroupLabels(contexts, perturbations, controls, context_key, perturbation_key)
    plan, kept_idx = kept_plan(labels, observed, observed_counts, control_counts, min_cells,
                               n_unlabelled)

    # every cell's accumulator row, through its observed pair's
    cell_group = np.full(c_codes.shape[0], -1, dtype=np.int32 if n_c * n_p < 2**31 else np.int64)
    row_of_observed = np.full(observed.size, -1, dtype=np.int64)
    row_of_observed[kept_idx] = np.arange(plan.n_pairs)
    if dense_codes:
        row_of_pair = np.full(n_c * n_p, -1, dtype=np.int64)
        row_of_pair[observed] = row_of_observed
        cell_group[is_pair_cell] = row_of_pair[pair_code]
    else:
        cell_group[is_pair_cell] = row_of_observed[np.searchsorted(observed, pair_code)]
    cell_group[is_control_cell] = plan.control_row_of_context[c_codes[is_control_cell]]
    plan.cell_group = cell_group
    return plan


def kept_plan(labels: _GroupLabels, observed: np.ndarray, observed_counts: np.ndarray,
              control_counts: np.ndarray, min_cells: int,
              n_unlabelled: int) -> tuple[_Plan, np.ndarray]:
    """``min_cells`` and the controls applied to the observed groups: the plan's rows.

    ``observed`` are the sorted pair codes (``context * n_perturbations +
    perturbation``) that occur. The accumulator rows are the kept pairs (by
    context, then perturbation), then one per context with enough controls.

    Returns the plan, whose ``cell_group`` is empty for the caller to fill
    (the files' merge has no cells), and the kept pairs' positions in
    ``observed``.
    """
    n_p = len(labels.perturbations)
    sel = _select(labels, observed // n_p, observed % n_p, observed_counts, control_counts,
                  min_cells, n_unlabelled)
    kept_idx = np.flatnonzero(sel.kept)
    kept_contexts = np.flatnonzero(sel.context_ok)
    control_row = np.full(len(labels.contexts), -1, dtype=np.int64)
    control_row[kept_contexts] = kept_idx.size + np.arange(kept_contexts.size)
    return _Plan(
        cell_group=np.empty(0, dtype=np.int64),
        n_pairs=kept_idx.size,
        pair_context=sel.obs_c[kept_idx],
        pair_perturbation=sel.obs_p[kept_idx],
        pair_counts=observed_counts[kept_idx],
        control_row_of_context=control_row,
        control_counts=control_counts,
        kept_contexts=kept_contexts,
        contexts=labels.contexts,
        perturbations=labels.perturbations,
        groups=_groups_table(labels, sel),
        n_unlabelled=n_unlabelled,
    ), kept_idx


@dataclass(frozen=True)
class _Selection:
    """The observed pairs, the control counts, and what ``min_cells`` keeps of them."""

    obs_c: np.ndarray  # context code of each observed pair
    obs_p: np.ndarray  # perturbation code of each observed pair
    counts: np.ndarray  # cells of each observed pair
    control_counts: np.ndarray  # control cells of each context
    context_ok: np.ndarray  # per context: enough control cells
    enough: np.ndarray  # per observed pair: enough cells

    @property
    def has_control(self) -> np.ndarray:
        return self.context_ok[self.obs_c]

    @property
    def kept(self) -> np.ndarray:
        return self.enough & self.has_control

    @property
    def status(self) -> np.ndarray:
        return np.where(~self.has_control, "no_control",
                        np.where(self.enough, "kept", "too_few_cells"))


def _select(labels: _GroupLabels, obs_c, obs_p, counts, control_counts, min_cells: int,
            n_unlabelled: int) -> _Selection:
    """Apply ``min_cells`` to pairs and controls; refuse unusable data, warn about drops."""
    sel = _Selection(obs_c, obs_p, counts, control_counts,
                     context_ok=control_counts >= min_cells, enough=counts >= min_cells)
    _check_usable(labels, sel, min_cells)
    _warn_dropped(labels, sel, min_cells, n_unlabelled)
    return sel


@dataclass(frozen=True)
class _GroupLabels:
    """The labels behind the group codes, and the names used in messages."""

    contexts: np.ndarray
    perturbations: np.ndarray
    controls: list
    context_key: Hashable
    perturbation_key: Hashable


def _control_labels(perturbations: np.ndarray, controls: list, perturbation_key) -> np.ndarray:
    """Boolean over perturbation codes: a control label; every control label must exist."""
    n_p = len(perturbations)
    where = pd.Index(perturbations, dtype=object).get_indexer(pd.Index(controls, dtype=object))
    missing = [lab for lab, i in zip(controls, where, strict=True) if i < 0]
    if missing:
        raise ValueError(
            f"control label(s) {missing} not found in obs[{perturbation_key!r}]; it has "
            f"{n_p} distinct label(s), e.g. {_preview(perturbations)}. Check the spelling "
            "and the type (a string '0' is not the integer 0)."
        )
    is_control_label = np.zeros(n_p, dtype=bool)
    is_control_label[where] = True
    if is_control_label.all():
        raise ValueError(
            f"Every perturbation label in obs[{perturbation_key!r}] is a control; there is "
            "no perturbation to compute an effect for."
        )
    return is_control_label


def _count_pairs(pair_code: np.ndarray, n_codes: int, dense: bool):
    """The pair codes that occur, sorted, and their cell counts."""
    if dense:
        counts_all = np.bincount(pair_code, minlength=n_codes)
        observed = np.flatnonzero(counts_all)
        return observed, counts_all[observed]
    # huge label spaces: sort instead of a table over every possible pair
    return np.unique(pair_code, return_counts=True)


def _check_usable(labels: _GroupLabels, sel: _Selection, min_cells: int) -> None:
    """Refuse data in which no context has controls or no pair has enough cells."""
    control_counts = sel.control_counts
    if not sel.context_ok.any():
        best = int(np.argmax(control_counts))
        raise ValueError(
            f"No context has at least min_cells={min_cells} control cells "
            f"({_preview(labels.controls, 3)} in obs[{labels.perturbation_key!r}]); the most "
            f"is {int(control_counts[best])} in context {labels.contexts[best]!r}. Effects are "
            "measured against the controls of the same context: check control and "
            f"context_key={labels.context_key!r}, or lower min_cells."
        )
    if not sel.kept.any():
        raise ValueError(
            f"No (context, perturbation) pair has at least min_cells={min_cells} cells in a "
            f"context with controls (largest pair: {int(sel.counts.max(initial=0))} "
            "cells). Lower min_cells."
        )


def _warn_dropped(labels: _GroupLabels, sel: _Selection, min_cells: int,
                  n_unlabelled: int) -> None:
    """Say which pairs were dropped, and why."""
    obs_c, obs_p, observed_counts = sel.obs_c, sel.obs_p, sel.counts
    control_counts, has_control = sel.control_counts, sel.has_control
    too_few = ~sel.enough & has_control
    if too_few.any():
        idx = np.flatnonzero(too_few)
        examples = ", ".join(
            f"({labels.contexts[obs_c[i]]!r}, {labels.perturbations[obs_p[i]]!r}): "
            f"{observed_counts[i]}"
            for i in idx[:5]
        )
        warnings.warn(
            f"Dropped {idx.size} of {obs_c.size} (context, perturbation) pairs with fewer "
            f"than min_cells={min_cells} cells (e.g. {examples}"
            f"{', ...' if idx.size > 5 else ''}). Pass return_report=True for the full list.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )
    bad_contexts = np.flatnonzero(control_counts < min_cells)
    if bad_contexts.size:
        described = ", ".join(
            f"{labels.contexts[c]!r} ({int(control_counts[c])})" for c in bad_contexts[:5]
        )
        warnings.warn(
            f"{bad_contexts.size} context(s) have fewer than min_cells={min_cells} control "
            f"cells: {described}{', ...' if bad_contexts.size > 5 else ''}. Their "
            f"{int((~has_control).sum())} (context, perturbation) pair(s) were dropped: an "
            "effect needs the controls of its own context.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )
    if n_unlabelled:
        warnings.warn(
            f"{n_unlabelled} cell(s) have no label in obs[{labels.context_key!r}] or "
            f"obs[{labels.perturbation_key!r}] and were ignored.",
            PseudobulkWarning,
            stacklevel=user_stacklevel(),
        )


def _groups_table(labels: _GroupLabels, sel: _Selection) -> pd.DataFrame:
    """Every group present in the data with its cell count and fate (the report's table)."""
    obs_c, obs_p, control_counts = sel.obs_c, sel.obs_p, sel.control_counts
    ctrl_ctx = np.flatnonzero(control_counts)
    return pd.DataFrame(
        {
            "context": np.concatenate([labels.contexts[obs_c], labels.contexts[ctrl_ctx]]),
            "perturbation": np.concatenate(
                [labels.perturbations[obs_p],
                 np.full(ctrl_ctx.size, _control_name(labels.controls), dtype=object)]
            ),
            "n_cells": np.concatenate([sel.counts, control_counts[ctrl_ctx]]),
            "is_control": np.concatenate(
                [np.zeros(obs_c.size, bool), np.ones(ctrl_ctx.size, bool)]
            ),
            "status": np.concatenate(
                [sel.status, np.where(sel.context_ok[ctrl_ctx], "kept", "too_few_cells")]
            ),
        }
    )


def _control_name(controls: list):
    return controls[0] if len(controls) == 1 else "+".join(str(c) for c in controls)


def _labels_column(labels: np.ndarray) -> pd.Series:
    return pd.Series(labels, dtype=object).infer_objects()
