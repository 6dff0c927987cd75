"""Shared machinery of the splitters: the coded index table, adaptation parts, base classes."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    validate_parameter_constraints,
)

from .._contract import (
    check_index_table,
    check_label_columns,
    check_labels,
    check_no_duplicate_pairs,
)
from .._labels import object_array, sorted_codes

#: A fraction of rows that may be 0 but must leave something: [0, 1).
FRACTION = Interval(Real, 0, 1, closed="left")


@dataclass(frozen=True)
class _Table:
    """Integer-coded view of an index table (internal)."""

    c_codes: np.ndarray  # (n_rows,) codes into context_labels (sorted labels)
    p_codes: np.ndarray  # (n_rows,) codes of the perturbations
    context_labels: np.ndarray
    n_perturbations: int

    @property
    def n_rows(self) -> int:
        return self.c_codes.size

    @property
    def n_contexts(self) -> int:
        return self.context_labels.size


def _read_table(X, groups, context_col: Hashable, perturbation_col: Hashable) -> _Table:
    """Validate ``X`` (and ``groups``) and code contexts and perturbations as integers."""
    if groups is None:
        contexts, perturbations = check_index_table(X, context_col, perturbation_col)
    else:
        # groups replaces the context column, so X needs only the perturbation column
        (perturbations,) = check_label_columns(
            X, [perturbation_col],
            column_hint="Set perturbation_col to the name of your table's perturbation column.",
        )
        contexts = check_labels(groups, len(X), name="groups", against="X")
    check_no_duplicate_pairs(contexts, perturbations)
    c_codes, context_labels = sorted_codes(contexts)
    p_codes, p_uniques = pd.factorize(perturbations)
    return _Table(
        c_codes=c_codes,
        p_codes=np.asarray(p_codes, dtype=np.intp),
        context_labels=context_labels,
        n_perturbations=len(p_uniques),
    )


def _check_entries(name: str, values: list, constraint) -> None:
    """Hold every entry of a list parameter to one of scikit-learn's constraints."""
    bad = [v for v in values if not constraint.is_satisfied_by(v)]
    if bad:
        raise InvalidParameterError(
            f"Every entry of {name} must be {constraint}; got {bad[0]!r} in {values}."
        )


def _round_half_up(x: float) -> int:
    # the tiny epsilon makes products such as 0.35 * 10 round like the decimal value
    return int(np.floor(x + 0.5 + 1e-9))


def _n_part(fraction: float, n: int) -> int:
    """Size of a fraction of ``n`` items: rounded, >= 1 when positive, leaving one out."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(1, _round_half_up(fraction * n)), n - 1)


def _rows_by_context(rng: np.random.RandomState, table: _Table) -> list[np.ndarray]:
    """Rows of every context in one random order drawn from a permutation of all rows."""
    rank = np.empty(table.n_rows, dtype=np.intp)
    rank[rng.permutation(table.n_rows)] = np.arange(table.n_rows)
    order = np.lexsort((rank, table.c_codes))
    counts = np.bincount(table.c_codes, minlength=table.n_contexts)
    return np.split(order, np.cumsum(counts)[:-1])


def _observed(table: _Table, rows: np.ndarray) -> np.ndarray:
    """Boolean over perturbation codes: observed in ``rows``."""
    seen = np.zeros(table.n_perturbations, dtype=bool)
    seen[table.p_codes[rows]] = True
    return seen


def _adaptation_parts(
    rows: np.ndarray,
    n_adaptation: int,
    validation_fraction: float,
    observed: np.ndarray,
    p_codes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the adaptation prefix of ``rows`` into (train part, validation part)."""
    adaptation = rows[:n_adaptation]
    n_val = _n_part(validation_fraction, n_adaptation)
    eligible = adaptation[observed[p_codes[adaptation]]]
    n_val = min(n_val, eligible.size)
    validation = eligible[eligible.size - n_val :]
    train = adaptation[~np.isin(adaptation, validation)]
    return train, validation


def _normalise_labels(labels) -> list:
    """A list of labels; a single string (or non-iterable hashable) is one label."""
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        return [labels]
    if isinstance(labels, (pd.Series, pd.Index, np.ndarray)):
        labels = labels.tolist()
    return list(labels)


def _codes_of(name: str, requested: Sequence, table: _Table) -> np.ndarray:
    """Context codes of user-given labels, with clear errors."""
    if len(requested) == 0:
        raise ValueError(f"{name} is empty; give at least one context label.")
    lookup = {label: code for code, label in enumerate(table.context_labels)}
    unknown = []
    for label in requested:
        try:
            found = label in lookup
        except TypeError:  # unhashable
            found = False
        if not found:
            unknown.append(label)
    if unknown:
        shown = list(table.context_labels[:20])
        raise ValueError(
            f"{name} contains label(s) {unknown} that are not contexts of X; the "
            f"{table.n_contexts} contexts are {shown}{' ...' if table.n_contexts > 20 else ''}."
        )
    codes = np.array([lookup[label] for label in requested], dtype=np.intp)
    if np.unique(codes).size != codes.size:
        raise ValueError(f"{name} lists a context more than once: {list(requested)}.")
    return codes


def _context_count(X, groups, context_col) -> int:
    """Number of distinct contexts, for ``get_n_splits``."""
    if groups is not None:
        return len(pd.unique(pd.Series(object_array(groups), dtype=object)))
    if X is None:
        raise ValueError(
            "The 'X' parameter should not be None: the number of splits depends on the "
            "contexts of X (or pass groups)."
        )
    if not isinstance(X, pd.DataFrame) or context_col not in X.columns:
        raise ValueError(
            f"X must be a DataFrame with the context column {context_col!r} (or pass groups)."
        )
    return int(X[context_col].nunique(dropna=False))


def _sorted(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=np.intp)
    return np.sort(np.concatenate(parts)).astype(np.intp, copy=False)


def _check_two_contexts(table: _Table, needs: str) -> None:
    """Refuse a table with fewer than 2 contexts; ``needs`` says who needs them, and why."""
    if table.n_contexts < 2:
        raise ValueError(f"{needs}; got {table.n_contexts}: {list(table.context_labels)}.")


def _empty_test_error(where: str) -> ValueError:
    return ValueError(
        f"{where} has no test rows: none of its held-out rows has a perturbation observed "
        "in a training context. Lower the adaptation fraction, or choose other test contexts."
    )


# --------------------------------------------------------------------------- base classes


class _IndexTableSplitter(BaseCrossValidator):
    """Shared machinery: ``split`` and ``split_info`` built on ``_iter_records``.

    Subclasses implement ``_iter_records(X, groups)`` yielding dicts with the keys
    ``train``, ``validation``, ``test`` (sorted integer arrays) and ``info`` (a
    dict of descriptive columns for :meth:`split_info`).
    """

    # ``groups`` is optional but meaningful: request it under metadata routing.
    __metadata_request__split = {"groups": True}
    _parameter_constraints: ClassVar[dict] = {
        "context_col": [Hashable],
        "perturbation_col": [Hashable],
        "random_state": ["random_state"],
    }

    def _validate_params(self) -> None:
        """Check the parameters against ``_parameter_constraints``, as estimators do in fit."""
        validate_parameter_constraints(
            self._parameter_constraints,
            {name: getattr(self, name) for name in self._parameter_constraints},
            caller_name=type(self).__name__,
        )

    def _iter_records(self, X, groups) -> Iterator[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of splits, ``n_splits``.

        Parameters
        ----------
        X, y, groups : object
            Ignored; present for API compatibility.

        Returns
        -------
        n_splits : int
        """
        self._validate_params()
        return int(self.n_splits)

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Generate indices to split the index table into training and test set.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_rows, n_columns)
            Index table with the context and perturbation columns.
        y : object, default=None
            Ignored; present for API compatibility.
        groups : array-like of shape (n_rows,), default=None
            Context label of every row. When given it replaces the context
            column of ``X``.

        Yields
        ------
        train : ndarray of int
            Training row indices (validation rows included), sorted.
        test : ndarray of int
            Test row indices, sorted.
        """
        for record in self._iter_records(X, groups):
            train = record["train"]
            if record["validation"].size:
                train = np.union1d(train, record["validation"]).astype(np.intp)
            yield train, record["test"]

    def split_info(self, X, y=None, groups=None) -> pd.DataFrame:
        """Describe every split: one row per split, in the order ``split`` yields them.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table.
        y : object, default=None
            Ignored.
        groups : array-like of shape (n_rows,), default=None
            Context labels replacing the context column of ``X``.

        Returns
        -------
        info : pandas.DataFrame
            Columns describing the split (which contexts are held out, for
            :class:`ScarcitySplit` the ``n_train_contexts`` and
            ``adaptation_fraction`` of the cell) and the sizes ``n_train``,
            ``n_validation`` and ``n_test`` of the sets that
            :meth:`split_validation` yields (``split``'s training set has
            ``n_train + n_validation`` rows).
        """
        rows = []
        for i, record in enumerate(self._iter_records(X, groups)):
            rows.append(
                {
                    "split": i,
                    **record["info"],
                    "n_train": int(record["train"].size),
                    "n_validation": int(record["validation"].size),
                    "n_test": int(record["test"].size),
                }
            )
        return pd.DataFrame(rows)


class _ValidationSplitMixin:
    """``split_validation`` for splitters with a ``validation_fraction``."""

    def split_validation(
        self, X, y=None, groups=None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Generate (train, validation, test) indices, for early stopping or tuning.

        Validation rows come from the adaptation part of the held-out context(s)
        (``validation_fraction`` of it); their perturbations are observed in a
        training context, like the test rows'. ``split`` yields the same test
        sets with ``train ∪ validation`` as training set.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table.
        y : object, default=None
            Ignored.
        groups : array-like of shape (n_rows,), default=None
            Context labels replacing the context column of ``X``.

        Yields
        ------
        train, validation, test : ndarray of int
            Disjoint sorted row indices. ``validation`` is empty when
            ``validation_fraction=0`` or the adaptation part has fewer than two
            rows.
        """
        for record in self._iter_records(X, groups):
            yield record["train"], record["validation"], record["test"]


class _HeldOutContextSplitter(_ValidationSplitMixin, _IndexTableSplitter):
    """Splits that hold out whole contexts except for an adaptation part.

    Subclasses implement ``_check_table(table)`` (refuse a table the splitter
    cannot split, before any random draw) and ``_held_out_sets(table, rng)``
    yielding, per split, the held-out context codes, the ``info`` columns naming
    them and the words that name them in an empty-test-set error.
    """

    _parameter_constraints: ClassVar[dict] = {
        **_IndexTableSplitter._parameter_constraints,
        "adaptation_fraction": [FRACTION],
        "validation_fraction": [FRACTION],
    }

    @staticmethod
    def _held_out_record(
        table: _Table,
        rows_by_context: list[np.ndarray],
        held_codes: np.ndarray,
        adaptation_fraction: float,
        validation_fraction: float,
    ) -> dict[str, Any]:
        held = np.zeros(table.n_contexts, dtype=bool)
        held[held_codes] = True
        reference = np.flatnonzero(~held[table.c_codes])  # every row of every kept context
        observed = _observed(table, reference)
        train_parts, val_parts, test_parts = [reference], [], []
        n_adaptation = n_dropped = 0
        for code in held_codes:
            rows = rows_by_context[code]
            n_adapt = _n_part(adaptation_fraction, rows.size)
            train_adapt, validation = _adaptation_parts(
                rows, n_adapt, validation_fraction, observed, table.p_codes
            )
            rest = rows[n_adapt:]
            test = rest[observed[table.p_codes[rest]]]
            train_parts.append(train_adapt)
            val_parts.append(validation)
            test_parts.append(test)
            n_adaptation += n_adapt
            n_dropped += rest.size - test.size
        return {
            "train": _sorted(train_parts),
            "validation": _sorted(val_parts),
            "test": _sorted(test_parts),
            "n_adaptation": n_adaptation,
            "n_dropped": n_dropped,
        }

    def _check_table(self, table: _Table) -> None:  # pragma: no cover
        raise NotImplementedError

    def _held_out_sets(
        self, table: _Table, rng: np.random.RandomState
    ) -> Iterator[tuple[np.ndarray, dict[str, Any], str]]:  # pragma: no cover
        raise NotImplementedError

    def _iter_records(self, X, groups) -> Iterator[dict[str, Any]]:
        self._validate_params()
        adaptation, validation = float(self.adaptation_fraction), float(self.validation_fraction)
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        self._check_table(table)
        rng = check_random_state(self.random_state)
        # the rows' order is drawn before the held-out contexts, whatever the splitter
        rows_by_context = _rows_by_context(rng, table)
        for codes, info, where in self._held_out_sets(table, rng):
            record = self._held_out_record(table, rows_by_context, codes, adaptation, validation)
            if record["test"].size == 0:
                raise _empty_test_error(where)
            record["info"] = {
                **info,
                "n_adaptation": record.pop("n_adaptation"),
                "n_dropped": record.pop("n_dropped"),
            }
            yield record
