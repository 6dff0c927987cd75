"""Writes ``c3tl_format_v2.c3tl`` and its predictions: a model file of format version 2.

Run with the code of c3tl-sklearn at commit d0f0db8 (format version 2, whose
context read-out stored dense sums) on the import path::

    PYTHONPATH=<checkout at d0f0db8> python tests/data/persistence/make_format_v2.py

``tests/test_persistence.py`` loads the file with today's code and checks the
predictions saved beside it.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from c3tl_sklearn import C3TLRegressor

HERE = Path(__file__).parent


def data():
    """Six contexts x eight perturbations x twelve genes, with one context half measured."""
    rng = np.random.default_rng(7)
    pairs = [(f"c{c}", f"p{p}") for c in range(6) for p in range(8) if c < 5 or p < 4]
    X = pd.DataFrame(pairs, columns=["context", "perturbation"])
    base, offset = rng.normal(size=(8, 12)), rng.normal(size=(6, 12))
    Y = np.array([base[int(p[1:])] + offset[int(c[1:])] for c, p in pairs])
    Y = Y + 0.1 * rng.normal(size=Y.shape)
    query = pd.DataFrame([("c5", f"p{p}") for p in range(4, 8)], columns=X.columns)
    return X, Y, query


if __name__ == "__main__":
    X, Y, query = data()
    model = C3TLRegressor(max_epochs=5, hidden_dims=(8,), latent_dim=4, n_components=None,
                          fallback=None, random_state=0).fit(X, Y)
    model.save(HERE / "c3tl_format_v2.c3tl")
    np.save(HERE / "c3tl_format_v2_pred.npy", model.predict(query))
