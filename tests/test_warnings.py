"""Tests of ``c3tl_sklearn._warnings``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from c3tl_sklearn._warnings import warn_unknown_contexts


def test_warn_unknown_contexts_points_at_the_caller():
    def predict():
        warn_unknown_contexts(np.array([True, False, True]),
                              np.array(["new", "a", "new"], dtype=object),
                              "they get the mean.")

    with pytest.warns(UserWarning, match=r"2 row\(s\) .*e\.g\. \['new'\]; they get the mean"):
        predict()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict()
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unknown_contexts(np.zeros(2, dtype=bool), np.array(["a", "b"]), "unused")
