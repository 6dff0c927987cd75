"""Label coding: integer codes, the one ordering rule of labels, examples for messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "encode_labels",
    "label_examples",
    "object_array",
    "sorted_codes",
    "unique_labels",
]


def object_array(values: Iterable) -> np.ndarray:
    """1-D object array of labels; tuples stay single labels."""
    values = list(values)
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def encode_labels(values: np.ndarray, categories: Sequence) -> np.ndarray:
    """Integer codes of ``values`` in ``categories``; -1 for labels not in it."""
    index = pd.Index(categories, dtype=object, tupleize_cols=False)
    query = pd.Index(values, dtype=object, tupleize_cols=False)
    return np.asarray(index.get_indexer(query), dtype=np.int64)


def sorted_codes(labels) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of ``labels`` and the distinct labels, sorted when comparable.

    The one ordering rule of the package: distinct labels in sorted order, or in
    first-seen order when they cannot be compared with each other. Missing
    labels get code -1. Tuples stay single labels.

    Examples
    --------
    >>> from c3tl_sklearn._labels import sorted_codes
    >>> codes, uniques = sorted_codes(["b", "a", "b", None])
    >>> codes.tolist(), uniques.tolist()
    ([1, 0, 1, -1], ['a', 'b'])
    """
    if not isinstance(labels, np.ndarray) or labels.dtype != object:
        labels = (labels.to_numpy(dtype=object) if isinstance(labels, (pd.Series, pd.Index))
                  else object_array(labels))
    codes, uniques = pd.factorize(labels)
    uniques = object_array(uniques)
    try:
        order = np.array(sorted(range(uniques.size), key=uniques.__getitem__), dtype=np.intp)
    except TypeError:
        order = np.arange(uniques.size)
    position = np.empty(uniques.size + 1, dtype=np.intp)
    position[order] = np.arange(uniques.size)
    position[-1] = -1  # code -1 (missing) indexes the last slot
    return position[np.asarray(codes, dtype=np.intp)], uniques[order]


def unique_labels(values) -> np.ndarray:
    """Distinct labels, sorted when comparable (see :func:`sorted_codes`)."""
    return sorted_codes(values)[1]


def label_examples(values, k: int = 5) -> list:
    """The first ``k`` distinct labels of ``values``, for error messages."""
    return list(pd.unique(pd.Series(values, dtype=object))[:k])
