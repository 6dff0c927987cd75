"""Tests of ``c3tl_sklearn._labels``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from c3tl_sklearn._labels import encode_labels, sorted_codes, unique_labels


def test_sorted_codes_sorts_codes_missing_and_keeps_tuples_whole():
    codes, uniques = sorted_codes(np.array(["b", "a", None, "b"], dtype=object))
    assert uniques.tolist() == ["a", "b"] and codes.tolist() == [1, 0, -1, 1]
    labels = np.empty(3, dtype=object)
    labels[:] = [("b", 2), ("a", 1), ("b", 2)]
    codes, uniques = sorted_codes(labels)
    assert uniques.tolist() == [("a", 1), ("b", 2)] and codes.tolist() == [1, 0, 1]
    # labels that cannot be ordered keep their first-seen order
    codes, uniques = sorted_codes(["b", 1, "b", 0.5])
    assert uniques.tolist() == ["b", 1, 0.5] and codes.tolist() == [0, 1, 0, 2]
    # a categorical column is ordered by value, not by its categories
    column = pd.Series(pd.Categorical(["y", "x"], categories=["y", "x"]))
    assert sorted_codes(column)[1].tolist() == ["x", "y"]
    assert unique_labels(["c", "a", "c"]).tolist() == ["a", "c"]


def test_encode_labels_marks_unknown_labels():
    assert encode_labels(np.array(["b", "z"], dtype=object), ["a", "b"]).tolist() == [1, -1]
