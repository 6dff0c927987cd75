"""Tests of the package's input contract (``c3tl_sklearn._data``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn._data import (
    check_index_table,
    check_label_columns,
    check_labels,
    encode_labels,
    segment_means,
    sorted_codes,
    unique_labels,
    warn_unknown_contexts,
)


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


def test_check_labels_accepts_1d_labels_and_names_the_problem():
    out = check_labels(pd.Series(["a", "b"]), 2, name="groups", against="X")
    assert out.dtype == object and out.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="groups has 1 labels but X has 2 rows"):
        check_labels(["a"], 2, name="groups", against="X")
    with pytest.raises(ValueError, match=r"1-D .*got shape \(2, 2\)"):
        check_labels(np.zeros((2, 2)), 2, name="groups", against="X")
    with pytest.raises(ValueError, match="1-D"):
        check_labels(pd.DataFrame({"a": [1, 2]}), 2, name="groups", against="X")
    with pytest.raises(ValueError, match=r"groups has 1 missing label.*first in row 1"):
        check_labels(["a", None], 2, name="groups", against="X")


def test_check_index_table_copies_and_suggests_the_fix():
    X = pd.DataFrame({"context": ["a", "b"], "perturbation": ["p", "q"]})
    contexts, _ = check_index_table(X, "context", "perturbation")
    contexts[0] = "changed"
    assert X["context"].tolist() == ["a", "b"]
    with pytest.raises(ValueError, match=r"missing the column\(s\) \['cell'\].*Use --cell"):
        check_index_table(X, "cell", "perturbation", column_hint="Use --cell.")
    with pytest.raises(ValueError, match="X column 'perturbation' has 1 missing label"):
        check_label_columns(X.assign(perturbation=["p", None]), ["perturbation"])
    with pytest.raises(TypeError, match="pandas DataFrame"):
        check_index_table(X.to_numpy(), "context", "perturbation")


def test_segment_means_match_a_groupby():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=50)
    codes[codes == 2] = 3  # group 2 stays empty
    values = rng.normal(size=(50, 3))
    means, counts = segment_means(codes, 5, values)
    expected = pd.DataFrame(values).groupby(codes).mean()
    np.testing.assert_allclose(means[expected.index], expected.to_numpy())
    assert counts.tolist() == np.bincount(codes, minlength=5).tolist()
    assert (means[[2, 4]] == 0).all()


def test_warn_unknown_contexts_points_at_the_caller():
    def predict():
        warn_unknown_contexts(np.array([True, False, True]),
                              np.array(["new", "a", "new"], dtype=object),
                              "they get the mean.", stacklevel=1)

    with pytest.warns(UserWarning, match=r"2 row\(s\) .*e\.g\. \['new'\]; they get the mean"):
        predict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict()
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unknown_contexts(np.zeros(2, dtype=bool), np.array(["a", "b"]), "unused")
