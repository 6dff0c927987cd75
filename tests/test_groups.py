"""Tests of ``c3tl_sklearn._groups``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from c3tl_sklearn._groups import segment_means


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
