"""The benchmark's folds: test contexts, held-out and scarcity splits, the tuning's inner CV."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._labels import unique_labels

_MAX_ALL_TEST_CONTEXTS = 10  # up to this many contexts, every context is a test context
_PAPER_N_TEST_CONTEXTS = 5


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
    # every held-out context, for a split that holds out several (a State split file)
    held_out: tuple = ()


def _split_text(split: _Split, protocol: str) -> str:
    if protocol == "heldout":
        return f"test {split.test_context}"
    return (f"test {split.test_context}, {split.n_train_contexts} contexts, "
            f"{split.adaptation_fraction:g} adaptation")


def _heldout_splits(X, *, test_contexts, adaptation_fraction, seed, labels) -> list[_Split]:
    from ..model_selection import LeaveOneContextOut

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
    from ..model_selection import ScarcitySplit

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


def _given_splits(X, cv, *, labels) -> list[_Split]:
    """The splits of a given splitter (a State split file), described as held-out splits.

    A split's test contexts are those of its test rows; its adaptation fraction
    is the share of those contexts' rows that train.
    """
    contexts = X[labels["context_col"]].to_numpy(dtype=object)
    splits = []
    for i, (train, test) in enumerate(cv.split(X)):
        held = tuple(unique_labels(contexts[test]))
        if not held:
            raise ValueError(f"Split {i} of {type(cv).__name__} has no test rows.")
        in_held = np.isin(contexts, np.array(held, dtype=object))
        n_adapt = int(in_held[train].sum())
        fraction = n_adapt / int(in_held.sum())
        name = held[0] if len(held) == 1 else "+".join(map(str, held))
        n_train = len(unique_labels(contexts[train]))
        splits.append(_Split(i, np.asarray(train), np.asarray(test), name, n_train, fraction,
                             held_out=held))
    return splits


def _inner_cv(X_train, *, exclude, n_folds, adaptation_fraction, seed, labels):
    """LeaveOneContextOut over ``n_folds`` training contexts (never ``exclude``)."""
    from ..model_selection import LeaveOneContextOut

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
