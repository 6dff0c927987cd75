"""Cross-validation splitters that hold out cellular contexts or (context, perturbation) pairs.

Every splitter follows scikit-learn's protocol (``split(X, y=None, groups=None)``
yielding ``(train, test)`` integer index arrays, ``get_n_splits``), so it can be
passed as ``cv=`` to :func:`~sklearn.model_selection.cross_val_score`,
:class:`~sklearn.model_selection.GridSearchCV` and friends.

``X`` is the package's *index table*: a DataFrame with one row per observed
(context, perturbation) pair. When ``groups`` is given it supplies the context
label of every row (and ``X`` then only needs the perturbation column);
otherwise the context column of ``X`` is used.

Shared conventions
------------------
- **Scored pairs are never seen in the target context.** A test row's
  perturbation is always observed in at least one *training* row of another
  context, so a model can transfer it; rows that fail this are dropped (they
  are neither train nor test).
- **Adaptation rows.** A held-out context keeps an adaptation part in
  training: ``round(adaptation_fraction * n_c)`` of its ``n_c`` rows (rounded
  half up), at least 1 when ``adaptation_fraction > 0`` and ``n_c >= 2``, and
  at most ``n_c - 1`` so a test row is always left. A context with a single row
  contributes it to the test side. ``adaptation_fraction=0`` is zero-shot.
- **Nesting.** With the same integer ``random_state`` the rows of every context
  are put in the same random order (one permutation of all rows is the first
  draw of every splitter), and the adaptation part is a prefix of that order:
  a larger adaptation fraction always contains a smaller one's adaptation
  rows, whatever the other parameters.
- **Validation.** ``validation_fraction`` moves ``round(validation_fraction *
  n_adaptation)`` adaptation rows (at least 1 when the fraction is positive and
  there are at least 2 adaptation rows, at most ``n_adaptation - 1``) into a
  validation set, taken from the end of the adaptation prefix among rows whose
  perturbation is observed in a training context. ``split`` yields ``(train ∪
  validation, test)``; ``split_validation`` yields the ``(train, validation,
  test)`` triples. ``adaptation_fraction=0.1, validation_fraction=0.2`` is the
  paper's 8% / 2% / 90% protocol.
- **Randomness.** ``random_state`` follows scikit-learn: an int gives the same
  splits on every call; a ``RandomState`` instance or ``None`` gives new draws.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import BaseCrossValidator
from sklearn.utils import check_random_state

from ._data import (
    check_index_table,
    check_label_columns,
    check_labels,
    check_no_duplicate_pairs,
    object_array,
    sorted_codes,
)

__all__ = ["ContextKFold", "LeaveOneContextOut", "PerturbationHoldout", "ScarcitySplit"]


# --------------------------------------------------------------------------- helpers


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


def _check_fraction(name: str, value, *, allow_zero: bool, allow_one: bool = False) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(value)
    low_ok = ok and (value >= 0 if allow_zero else value > 0)
    high_ok = ok and (value <= 1 if allow_one else value < 1)
    if not (low_ok and high_ok):
        interval = f"{'[' if allow_zero else '('}0, 1{']' if allow_one else ')'}"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}.")
    return float(value)


def _check_positive_int(name: str, value) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


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

    def _iter_records(self, X, groups) -> Iterator[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

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
    """Splits that hold out whole contexts except for an adaptation part."""

    def _check_common_params(self) -> tuple[float, float]:
        adaptation = _check_fraction(
            "adaptation_fraction", self.adaptation_fraction, allow_zero=True
        )
        validation = _check_fraction(
            "validation_fraction", self.validation_fraction, allow_zero=True
        )
        return adaptation, validation

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


# --------------------------------------------------------------------------- splitters


class LeaveOneContextOut(_HeldOutContextSplitter):
    """Hold out one context at a time, keeping a small adaptation part of it in training.

    For each test context ``c``: every row of every other context is training
    data; ``c``'s rows are shuffled and the first ``round(adaptation_fraction *
    n_c)`` of them (at least one when the fraction is positive) join the
    training set as the *adaptation* part. The remaining rows of ``c`` are the
    test set, restricted to rows whose perturbation is observed in another
    context (the others are dropped: they go to neither side). This is the
    paper's held-out-context protocol (section 5).

    Parameters
    ----------
    adaptation_fraction : float in [0, 1), default=0.1
        Fraction of the held-out context's rows put in training. ``0`` is
        zero-shot (the context is never seen in training).
    validation_fraction : float in [0, 1), default=0.0
        Fraction of the adaptation rows set aside by :meth:`split_validation`
        as validation rows. ``adaptation_fraction=0.1, validation_fraction=0.2``
        gives the paper's 8% train / 2% validation / 90% test. ``split`` keeps
        validation rows in the training set.
    n_test_contexts : int, default=None
        Hold out only this many contexts, drawn with ``random_state`` (the
        paper uses 5 for large data sets). ``None`` holds out every context in
        sorted order. Ignored when ``test_contexts`` is given.
    test_contexts : list of hashable, default=None
        Hold out exactly these contexts, in this order.
    context_col : hashable, default="context"
        Context column of ``X`` (unused when ``groups`` is passed to ``split``).
    perturbation_col : hashable, default="perturbation"
        Perturbation column of ``X``.
    random_state : int, RandomState instance or None, default=None
        Controls the order of every context's rows (hence its adaptation rows)
        and the choice of test contexts. With an int, a larger
        ``adaptation_fraction`` contains the adaptation rows of a smaller one.

    See Also
    --------
    ContextKFold : hold out several contexts per fold.
    ScarcitySplit : nested training-context sets crossed with adaptation fractions.

    Examples
    --------
    >>> import pandas as pd
    >>> from c3tl_sklearn.model_selection import LeaveOneContextOut
    >>> X = pd.DataFrame({"context": ["a"] * 10 + ["b"] * 10,
    ...                   "perturbation": [f"p{i}" for i in range(10)] * 2})
    >>> cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    >>> cv.get_n_splits(X)
    2
    >>> for train, test in cv.split(X):
    ...     print(len(train), len(test), sorted(set(X.context.iloc[test])))
    12 8 ['a']
    12 8 ['b']
    >>> cv.split_info(X)[["test_context", "n_adaptation", "n_test"]]
      test_context  n_adaptation  n_test
    0            a             2       8
    1            b             2       8
    """

    def __init__(
        self,
        adaptation_fraction: float = 0.1,
        validation_fraction: float = 0.0,
        n_test_contexts: int | None = None,
        test_contexts: Sequence[Hashable] | None = None,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        random_state=None,
    ):
        self.adaptation_fraction = adaptation_fraction
        self.validation_fraction = validation_fraction
        self.n_test_contexts = n_test_contexts
        self.test_contexts = test_contexts
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.random_state = random_state

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of splits: the number of test contexts.

        Parameters
        ----------
        X : pandas.DataFrame, default=None
            Index table; needed only when every context is held out (the
            default) and ``groups`` is not given.
        y : object, default=None
            Ignored.
        groups : array-like of shape (n_rows,), default=None
            Context labels replacing the context column of ``X``.

        Returns
        -------
        n_splits : int
        """
        if self.test_contexts is not None:
            return len(_normalise_labels(self.test_contexts))
        if self.n_test_contexts is not None:
            return _check_positive_int("n_test_contexts", self.n_test_contexts)
        return _context_count(X, groups, self.context_col)

    def _iter_records(self, X, groups):
        adaptation, validation = self._check_common_params()
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        if table.n_contexts < 2:
            raise ValueError(
                "LeaveOneContextOut needs at least 2 contexts (one to hold out, one to "
                f"learn from); got {table.n_contexts}: {list(table.context_labels)}."
            )
        rng = check_random_state(self.random_state)
        rows_by_context = _rows_by_context(rng, table)
        if self.test_contexts is not None:
            codes = _codes_of(
                "test_contexts", _normalise_labels(self.test_contexts), table
            )
        elif self.n_test_contexts is not None:
            n_test = _check_positive_int("n_test_contexts", self.n_test_contexts)
            if n_test > table.n_contexts:
                raise ValueError(
                    f"n_test_contexts={n_test} exceeds the {table.n_contexts} contexts of X."
                )
            codes = np.sort(rng.choice(table.n_contexts, size=n_test, replace=False))
        else:
            codes = np.arange(table.n_contexts)
        for code in codes:
            record = self._held_out_record(
                table, rows_by_context, np.array([code]), adaptation, validation
            )
            label = table.context_labels[code]
            if record["test"].size == 0:
                raise _empty_test_error(f"Test context {label!r}")
            record["info"] = {
                "test_context": label,
                "n_adaptation": record.pop("n_adaptation"),
                "n_dropped": record.pop("n_dropped"),
            }
            yield record


class ContextKFold(_HeldOutContextSplitter):
    """K-fold over contexts: all contexts of a fold are held out together.

    Contexts are shuffled (with ``shuffle=True``) and dealt into ``n_splits``
    folds of near-equal size, as :class:`~sklearn.model_selection.KFold` does.
    In each split the fold's contexts are held out; each keeps its own
    adaptation rows in training (see :class:`LeaveOneContextOut`). A test row's
    perturbation must be observed in a context *outside* the fold, so the
    test set does not depend on what the fold's other contexts adapt on. With
    few contexts the paper uses this with one context per fold (4-fold for 4
    contexts).

    Parameters
    ----------
    n_splits : int, default=4
        Number of folds, at least 2 and at most the number of contexts.
    adaptation_fraction : float in [0, 1), default=0.1
        Fraction of every held-out context's rows put in training.
    validation_fraction : float in [0, 1), default=0.0
        Fraction of the adaptation rows set aside by :meth:`split_validation`.
    shuffle : bool, default=True
        Shuffle the contexts before dealing them into folds; with ``False``
        folds follow the sorted context order.
    context_col : hashable, default="context"
        Context column of ``X``.
    perturbation_col : hashable, default="perturbation"
        Perturbation column of ``X``.
    random_state : int, RandomState instance or None, default=None
        Controls the row order within contexts (adaptation rows) and, with
        ``shuffle=True``, the folds.

    Examples
    --------
    >>> import pandas as pd
    >>> from c3tl_sklearn.model_selection import ContextKFold
    >>> X = pd.DataFrame({"context": [c for c in "abcd" for _ in range(10)],
    ...                   "perturbation": [f"p{i}" for i in range(10)] * 4})
    >>> cv = ContextKFold(n_splits=2, adaptation_fraction=0.1, random_state=0)
    >>> [len(test) for _, test in cv.split(X)]
    [18, 18]
    >>> cv.split_info(X)["test_contexts"].tolist()
    [('b', 'd'), ('a', 'c')]
    """

    def __init__(
        self,
        n_splits: int = 4,
        adaptation_fraction: float = 0.1,
        validation_fraction: float = 0.0,
        shuffle: bool = True,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        random_state=None,
    ):
        self.n_splits = n_splits
        self.adaptation_fraction = adaptation_fraction
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.random_state = random_state

    def _check_n_splits(self) -> int:
        n = self.n_splits
        if not isinstance(n, Integral) or isinstance(n, bool) or n < 2:
            raise ValueError(f"n_splits must be an integer >= 2; got {n!r}.")
        return int(n)

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
        return self._check_n_splits()

    def _iter_records(self, X, groups):
        n_splits = self._check_n_splits()
        adaptation, validation = self._check_common_params()
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        if n_splits > table.n_contexts:
            raise ValueError(
                f"n_splits={n_splits} exceeds the {table.n_contexts} contexts of X; every "
                "fold needs at least one context."
            )
        rng = check_random_state(self.random_state)
        rows_by_context = _rows_by_context(rng, table)
        order = rng.permutation(table.n_contexts) if self.shuffle else np.arange(table.n_contexts)
        for fold, codes in enumerate(np.array_split(order, n_splits)):
            codes = np.sort(codes)
            record = self._held_out_record(table, rows_by_context, codes, adaptation, validation)
            labels = tuple(table.context_labels[codes])
            if record["test"].size == 0:
                raise _empty_test_error(f"Fold {fold} (contexts {list(labels)})")
            record["info"] = {
                "test_contexts": labels,
                "n_adaptation": record.pop("n_adaptation"),
                "n_dropped": record.pop("n_dropped"),
            }
            yield record


class PerturbationHoldout(_IndexTableSplitter):
    """Hold out some perturbations in every context (PerturBench covariate transfer).

    In each split, every context ``c`` holds out up to ``round(test_fraction *
    n_c)`` of its rows as test (at most ``n_c - 1``, so every context keeps a
    training row). A perturbation observed in ``m_p`` contexts is held out in at
    most ``floor(max_test_fraction * m_p)`` and at most ``m_p - 1`` of them, so it
    always keeps a training row in another context and is never held out
    everywhere. Rows are visited in a random order and held out while both
    limits have room, so a context may get fewer test rows than its quota when
    its perturbations are rare. Each of the ``n_splits`` splits is a new draw.

    Parameters
    ----------
    test_fraction : float in (0, 1), default=0.3
        Target fraction of each context's rows in the test set.
    max_test_fraction : float in (0, 1], default=0.5
        Largest fraction of the contexts observing a perturbation in which it
        may be held out.
    n_splits : int, default=1
        Number of independent draws.
    context_col : hashable, default="context"
        Context column of ``X``.
    perturbation_col : hashable, default="perturbation"
        Perturbation column of ``X``.
    random_state : int, RandomState instance or None, default=None
        Controls the draws.

    Examples
    --------
    >>> import pandas as pd
    >>> from c3tl_sklearn.model_selection import PerturbationHoldout
    >>> X = pd.DataFrame({"context": [c for c in "abcd" for _ in range(10)],
    ...                   "perturbation": [f"p{i}" for i in range(10)] * 4})
    >>> cv = PerturbationHoldout(test_fraction=0.3, n_splits=2, random_state=0)
    >>> [(len(train), len(test)) for train, test in cv.split(X)]
    [(28, 12), (28, 12)]
    """

    def __init__(
        self,
        test_fraction: float = 0.3,
        max_test_fraction: float = 0.5,
        n_splits: int = 1,
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        random_state=None,
    ):
        self.test_fraction = test_fraction
        self.max_test_fraction = max_test_fraction
        self.n_splits = n_splits
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.random_state = random_state

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
        return _check_positive_int("n_splits", self.n_splits)

    def _iter_records(self, X, groups):
        n_splits = _check_positive_int("n_splits", self.n_splits)
        test_fraction = _check_fraction("test_fraction", self.test_fraction, allow_zero=False)
        max_fraction = _check_fraction(
            "max_test_fraction", self.max_test_fraction, allow_zero=False, allow_one=True
        )
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        if table.n_contexts < 2:
            raise ValueError(
                "PerturbationHoldout needs at least 2 contexts to transfer perturbations "
                f"between; got {table.n_contexts}: {list(table.context_labels)}."
            )
        c_codes, p_codes, n = table.c_codes, table.p_codes, table.n_rows
        m_p = np.bincount(p_codes, minlength=table.n_perturbations)
        cap_p = np.minimum(m_p - 1, np.floor(max_fraction * m_p + 1e-9).astype(np.intp))
        n_c = np.bincount(c_codes, minlength=table.n_contexts)
        quota_c = np.array([_n_part(test_fraction, int(k)) for k in n_c], dtype=np.intp)
        rng = check_random_state(self.random_state)
        p_list = p_codes.tolist()
        c_list = c_codes.tolist()
        for _ in range(n_splits):
            # greedy in a random order: a row is held out while both its context's
            # quota and its perturbation's cap have room
            room_c = quota_c.tolist()
            room_p = cap_p.tolist()
            chosen = []
            for row in rng.permutation(n).tolist():
                c, p = c_list[row], p_list[row]
                if room_c[c] > 0 and room_p[p] > 0:
                    room_c[c] -= 1
                    room_p[p] -= 1
                    chosen.append(row)
            test = np.sort(np.asarray(chosen, dtype=np.intp))
            if test.size == 0:
                raise ValueError(
                    "PerturbationHoldout found no row to hold out: no perturbation is "
                    "observed in enough contexts (raise max_test_fraction or test_fraction)."
                )
            is_test = np.zeros(n, dtype=bool)
            is_test[test] = True
            yield {
                "train": np.flatnonzero(~is_test).astype(np.intp),
                "validation": np.empty(0, dtype=np.intp),
                "test": test,
                "info": {
                    "n_test_perturbations": int(np.unique(p_codes[test]).size),
                    "n_test_contexts": int(np.unique(c_codes[test]).size),
                },
            }


class ScarcitySplit(_ValidationSplitMixin, _IndexTableSplitter):
    """The paper's data-scarcity design (Figure 3): nested training sets x adaptation fractions.

    Test contexts are drawn with ``random_state`` (or given). The remaining
    contexts are put in one random order and the training set of size ``k`` is
    its first ``k`` contexts, so smaller training sets are nested in larger
    ones. Every test context's rows are put in one random order and its
    adaptation rows for fraction ``f`` are the first ``round(f * n_c)`` (see
    :class:`LeaveOneContextOut` for the rounding), so smaller adaptation sets
    are nested in larger ones. One split is yielded per (test context, ``k``,
    ``f``), looping over test contexts, then ``n_train_contexts``, then
    ``adaptation_fractions`` in the given orders; only the test context is
    held out in a split, and the other test contexts and the unused training
    contexts take no part.

    **Test sets.** With ``test_set="common"`` (default) the test set of a test
    context is the same in every (``k``, ``f``) cell, so that cells compare
    on identical pairs: its rows *outside the largest adaptation set* whose
    perturbation is observed in the *smallest training set* (hence in every
    training set). Rows outside a smaller adaptation set but inside the largest
    are then neither train nor test. With ``test_set="complement"`` (the
    paper's choice) the test set of a cell is every row outside its
    adaptation set whose perturbation is observed in its training contexts;
    test sets are then nested (a larger ``f`` gives a smaller test set).

    Parameters
    ----------
    n_train_contexts : int or sequence of int, default=(5, 3, 2)
        Sizes of the nested training-context sets (the paper: 43, 20, 10, 5).
    adaptation_fractions : float or sequence of float in [0, 1), \
default=(0.5, 0.2, 0.1, 0.05, 0.02)
        Fractions of each test context's rows available for adaptation.
    n_test_contexts : int, default=1
        Number of test contexts drawn with ``random_state``; ignored when
        ``test_contexts`` is given.
    test_contexts : list of hashable, default=None
        Explicit test contexts, in this order.
    validation_fraction : float in [0, 1), default=0.0
        Fraction of each adaptation set that :meth:`split_validation` sets
        aside for validation (the paper's Figure 3 uses 0.25).
    test_set : {"common", "complement"}, default="common"
        How test sets are defined (see above).
    context_col : hashable, default="context"
        Context column of ``X``.
    perturbation_col : hashable, default="perturbation"
        Perturbation column of ``X``.
    random_state : int, RandomState instance or None, default=None
        Controls test contexts, training-context order and row orders.

    Examples
    --------
    >>> import pandas as pd
    >>> from c3tl_sklearn.model_selection import ScarcitySplit
    >>> X = pd.DataFrame({"context": [c for c in "abcdef" for _ in range(20)],
    ...                   "perturbation": [f"p{i}" for i in range(20)] * 6})
    >>> cv = ScarcitySplit(n_train_contexts=(4, 2), adaptation_fractions=(0.5, 0.1),
    ...                    random_state=0)
    >>> cv.get_n_splits()
    4
    >>> info = cv.split_info(X)
    >>> info[["n_train_contexts", "adaptation_fraction", "n_train", "n_test"]]
       n_train_contexts  adaptation_fraction  n_train  n_test
    0                 4                  0.5       90      10
    1                 4                  0.1       82      10
    2                 2                  0.5       50      10
    3                 2                  0.1       42      10
    """

    def __init__(
        self,
        n_train_contexts: int | Sequence[int] = (5, 3, 2),
        adaptation_fractions: float | Sequence[float] = (0.5, 0.2, 0.1, 0.05, 0.02),
        n_test_contexts: int = 1,
        test_contexts: Sequence[Hashable] | None = None,
        validation_fraction: float = 0.0,
        test_set: str = "common",
        context_col: Hashable = "context",
        perturbation_col: Hashable = "perturbation",
        random_state=None,
    ):
        self.n_train_contexts = n_train_contexts
        self.adaptation_fractions = adaptation_fractions
        self.n_test_contexts = n_test_contexts
        self.test_contexts = test_contexts
        self.validation_fraction = validation_fraction
        self.test_set = test_set
        self.context_col = context_col
        self.perturbation_col = perturbation_col
        self.random_state = random_state

    def _check_grid(self) -> tuple[list[int], list[float]]:
        sizes = self.n_train_contexts
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if not sizes:
            raise ValueError("n_train_contexts is empty; give at least one size.")
        sizes = [_check_positive_int("every entry of n_train_contexts", k) for k in sizes]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"n_train_contexts has repeated sizes: {sizes}.")
        fractions = self.adaptation_fractions
        fractions = [fractions] if isinstance(fractions, Real) else list(fractions)
        if not fractions:
            raise ValueError("adaptation_fractions is empty; give at least one fraction.")
        fractions = [
            _check_fraction("every entry of adaptation_fractions", f, allow_zero=True)
            for f in fractions
        ]
        if len(set(fractions)) != len(fractions):
            raise ValueError(f"adaptation_fractions has repeated values: {fractions}.")
        return sizes, fractions

    def _n_test(self) -> int:
        if self.test_contexts is not None:
            return len(_normalise_labels(self.test_contexts))
        return _check_positive_int("n_test_contexts", self.n_test_contexts)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        """Number of splits: test contexts x training-set sizes x adaptation fractions.

        Parameters
        ----------
        X, y, groups : object
            Ignored; present for API compatibility.

        Returns
        -------
        n_splits : int
        """
        sizes, fractions = self._check_grid()
        return self._n_test() * len(sizes) * len(fractions)

    def _iter_records(self, X, groups):
        sizes, fractions = self._check_grid()
        validation = _check_fraction(
            "validation_fraction", self.validation_fraction, allow_zero=True
        )
        if self.test_set not in ("common", "complement"):
            raise ValueError(
                f"test_set must be 'common' or 'complement'; got {self.test_set!r}."
            )
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        rng = check_random_state(self.random_state)
        rows_by_context = _rows_by_context(rng, table)
        if self.test_contexts is not None:
            test_codes = _codes_of(
                "test_contexts", _normalise_labels(self.test_contexts), table
            )
        else:
            n_test = _check_positive_int("n_test_contexts", self.n_test_contexts)
            if n_test >= table.n_contexts:
                raise ValueError(
                    f"n_test_contexts={n_test} leaves no training context among the "
                    f"{table.n_contexts} contexts of X."
                )
            test_codes = np.sort(rng.choice(table.n_contexts, size=n_test, replace=False))
        is_test = np.zeros(table.n_contexts, dtype=bool)
        is_test[test_codes] = True
        available = np.flatnonzero(~is_test)
        if max(sizes) > available.size:
            raise ValueError(
                f"n_train_contexts asks for up to {max(sizes)} training contexts but only "
                f"{available.size} of the {table.n_contexts} contexts are not test contexts."
            )
        train_order = available[rng.permutation(available.size)]
        rows_of = {int(c): rows_by_context[c] for c in train_order[: max(sizes)]}
        smallest_observed = _observed(
            table, _sorted([rows_of[int(c)] for c in train_order[: min(sizes)]])
        )
        for t in test_codes:
            rows = rows_by_context[t]
            label = table.context_labels[t]
            n_max = max(_n_part(f, rows.size) for f in fractions)
            rest = rows[n_max:]
            common_test = np.sort(rest[smallest_observed[table.p_codes[rest]]]).astype(np.intp)
            if self.test_set == "common" and common_test.size == 0:
                raise _empty_test_error(f"Test context {label!r}")
            for k in sizes:
                train_codes = train_order[:k]
                reference = _sorted([rows_of[int(c)] for c in train_codes])
                observed = _observed(table, reference)
                for f in fractions:
                    n_adapt = _n_part(f, rows.size)
                    train_adapt, val = _adaptation_parts(
                        rows, n_adapt, validation, observed, table.p_codes
                    )
                    if self.test_set == "common":
                        test = common_test
                    else:
                        tail = rows[n_adapt:]
                        test = np.sort(tail[observed[table.p_codes[tail]]]).astype(np.intp)
                        if test.size == 0:
                            raise _empty_test_error(
                                f"Test context {label!r} with {k} training contexts and "
                                f"adaptation_fraction={f}"
                            )
                    yield {
                        "train": _sorted([reference, train_adapt]),
                        "validation": np.sort(val).astype(np.intp),
                        "test": test,
                        "info": {
                            "test_context": label,
                            "n_train_contexts": k,
                            "adaptation_fraction": f,
                            "train_contexts": tuple(table.context_labels[np.sort(train_codes)]),
                            "n_adaptation": n_adapt,
                        },
                    }
