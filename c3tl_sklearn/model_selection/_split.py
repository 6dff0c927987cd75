"""The splitters: held-out contexts, context folds, held-out pairs and data scarcity."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._base import (
    FRACTION,
    _adaptation_parts,
    _check_entries,
    _check_two_contexts,
    _codes_of,
    _context_count,
    _empty_test_error,
    _HeldOutContextSplitter,
    _IndexTableSplitter,
    _n_part,
    _normalise_labels,
    _observed,
    _read_table,
    _rows_by_context,
    _sorted,
    _ValidationSplitMixin,
)

__all__ = ["ContextKFold", "LeaveOneContextOut", "PerturbationHoldout", "ScarcitySplit"]

#: A number of training contexts.
_TRAIN_SIZE = Interval(Integral, 1, None, closed="left")


def _grid_axis(
    name: str, value, cast: type, constraint: Interval, item: str, entries: str
) -> list:
    """One axis of :class:`ScarcitySplit`'s grid as a list of distinct ``cast`` values.

    A single number is a one-entry axis; an empty axis, an entry outside
    ``constraint`` or a repeated entry is refused.
    """
    values = [value] if isinstance(value, constraint.type) else list(value)
    if not values:
        raise ValueError(f"{name} is empty; give at least one {item}.")
    _check_entries(name, values, constraint)
    values = [cast(v) for v in values]
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has repeated {entries}: {values}.")
    return values


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

    _parameter_constraints: ClassVar[dict] = {
        **_HeldOutContextSplitter._parameter_constraints,
        "n_test_contexts": [Interval(Integral, 1, None, closed="left"), None],
        "test_contexts": "no_validation",  # labels, checked against the contexts of X
    }

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
        self._validate_params()
        if self.test_contexts is not None:
            return len(_normalise_labels(self.test_contexts))
        if self.n_test_contexts is not None:
            return int(self.n_test_contexts)
        return _context_count(X, groups, self.context_col)

    def _check_table(self, table) -> None:
        _check_two_contexts(
            table,
            "LeaveOneContextOut needs at least 2 contexts (one to hold out, one to learn from)",
        )

    def _held_out_sets(self, table, rng):
        if self.test_contexts is not None:
            codes = _codes_of(
                "test_contexts", _normalise_labels(self.test_contexts), table
            )
        elif self.n_test_contexts is not None:
            n_test = int(self.n_test_contexts)
            if n_test > table.n_contexts:
                raise ValueError(
                    f"n_test_contexts={n_test} exceeds the {table.n_contexts} contexts of X."
                )
            codes = np.sort(rng.choice(table.n_contexts, size=n_test, replace=False))
        else:
            codes = np.arange(table.n_contexts)
        for code in codes:
            label = table.context_labels[code]
            yield np.array([code]), {"test_context": label}, f"Test context {label!r}"


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

    _parameter_constraints: ClassVar[dict] = {
        **_HeldOutContextSplitter._parameter_constraints,
        "n_splits": [Interval(Integral, 2, None, closed="left")],
        "shuffle": ["boolean"],
    }

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

    def _check_table(self, table) -> None:
        if int(self.n_splits) > table.n_contexts:
            raise ValueError(
                f"n_splits={int(self.n_splits)} exceeds the {table.n_contexts} contexts of X; "
                "every fold needs at least one context."
            )

    def _held_out_sets(self, table, rng):
        order = rng.permutation(table.n_contexts) if self.shuffle else np.arange(table.n_contexts)
        for fold, codes in enumerate(np.array_split(order, int(self.n_splits))):
            codes = np.sort(codes)
            labels = tuple(table.context_labels[codes])
            yield codes, {"test_contexts": labels}, f"Fold {fold} (contexts {list(labels)})"


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

    _parameter_constraints: ClassVar[dict] = {
        **_IndexTableSplitter._parameter_constraints,
        "n_splits": [Interval(Integral, 1, None, closed="left")],
        "test_fraction": [Interval(Real, 0, 1, closed="neither")],
        "max_test_fraction": [Interval(Real, 0, 1, closed="right")],
    }

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

    def _iter_records(self, X, groups):
        self._validate_params()
        n_splits = int(self.n_splits)
        test_fraction, max_fraction = float(self.test_fraction), float(self.max_test_fraction)
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        _check_two_contexts(
            table,
            "PerturbationHoldout needs at least 2 contexts to transfer perturbations between",
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

    _parameter_constraints: ClassVar[dict] = {
        **_IndexTableSplitter._parameter_constraints,
        "n_train_contexts": [_TRAIN_SIZE, "array-like"],
        "adaptation_fractions": [FRACTION, "array-like"],
        "validation_fraction": [FRACTION],
        "n_test_contexts": [Interval(Integral, 1, None, closed="left")],
        "test_contexts": "no_validation",  # labels, checked against the contexts of X
        "test_set": [StrOptions({"common", "complement"})],
    }

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
        self._validate_params()
        sizes = _grid_axis(
            "n_train_contexts", self.n_train_contexts, int, _TRAIN_SIZE, "size", "sizes"
        )
        fractions = _grid_axis(
            "adaptation_fractions", self.adaptation_fractions, float, FRACTION,
            "fraction", "values",
        )
        return sizes, fractions

    def _n_test(self) -> int:
        if self.test_contexts is not None:
            return len(_normalise_labels(self.test_contexts))
        self._validate_params()
        return int(self.n_test_contexts)

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

    def _test_codes(self, table, rng) -> np.ndarray:
        """Codes of the given test contexts, or of ``n_test_contexts`` drawn ones."""
        if self.test_contexts is not None:
            return _codes_of("test_contexts", _normalise_labels(self.test_contexts), table)
        n_test = int(self.n_test_contexts)
        if n_test >= table.n_contexts:
            raise ValueError(
                f"n_test_contexts={n_test} leaves no training context among the "
                f"{table.n_contexts} contexts of X."
            )
        return np.sort(rng.choice(table.n_contexts, size=n_test, replace=False))

    @staticmethod
    def _training_order(table, test_codes, largest: int, rng) -> np.ndarray:
        """The non-test contexts in random order; a training set of size k is a prefix."""
        is_test = np.zeros(table.n_contexts, dtype=bool)
        is_test[test_codes] = True
        available = np.flatnonzero(~is_test)
        if largest > available.size:
            raise ValueError(
                f"n_train_contexts asks for up to {largest} training contexts but only "
                f"{available.size} of the {table.n_contexts} contexts are not test contexts."
            )
        return available[rng.permutation(available.size)]

    def _iter_records(self, X, groups):
        sizes, fractions = self._check_grid()
        validation = float(self.validation_fraction)
        table = _read_table(X, groups, self.context_col, self.perturbation_col)
        rng = check_random_state(self.random_state)
        # the draws come in a fixed order: rows, test contexts, training order
        rows_by_context = _rows_by_context(rng, table)
        test_codes = self._test_codes(table, rng)
        train_order = self._training_order(table, test_codes, max(sizes), rng)
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
