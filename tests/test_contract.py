"""Tests of ``c3tl_sklearn._contract``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn._contract import check_index_table, check_label_columns, check_labels


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
