"""The shipped real single cells, and the whole chain on them: cells to scores."""

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn import (
    C3TLRegressor,
    LeaveOneContextOut,
    MeanBaseline,
    load_glioblastoma_crispri,
)
from c3tl_sklearn.metrics import score_table
from c3tl_sklearn.preprocessing import pseudobulk, to_anndata

pytest.importorskip("anndata")

LINES = ["A172", "T98G", "U87MG"]
KNOCKDOWNS = ["MAP2K3", "MAP2K6", "MAP3K21", "MAP4K3", "MAP4K5", "MAPK1", "PLK4", "SGK1",
              "TGFBR2"]


@pytest.fixture(scope="module")
def cells():
    return load_glioblastoma_crispri()


def test_shape_labels_and_controls(cells):
    assert cells.shape == (2586, 500)
    assert cells.obs_names.is_unique and cells.var_names.is_unique
    assert list(cells.obs.columns) == ["cell_line", "perturbation", "ncounts", "ngenes"]
    assert sorted(cells.obs["cell_line"].unique()) == LINES
    assert sorted(cells.obs["perturbation"].unique()) == sorted([*KNOCKDOWNS, "control"])
    counts = pd.crosstab(cells.obs["perturbation"], cells.obs["cell_line"])
    # every knockdown in every line: the multi-context design the README of the source promises
    assert (counts.to_numpy() >= 46).all()
    assert counts.loc["control"].tolist() == [100, 100, 100]


def test_values_are_finite_log_normalised(cells):
    values = cells.X.data
    assert cells.X.dtype == np.float32
    assert np.isfinite(values).all()
    # log1p of library-size-normalised counts: non-negative, below log1p(1e4), not integers
    assert values.min() >= 0.0
    assert 5.0 < values.max() < np.log1p(1e4)
    assert not np.allclose(values, np.round(values))
    assert (cells.obs["ngenes"] > 0).all() and (cells.obs["ncounts"] > 0).all()


def test_arrays_form_matches_anndata(cells):
    X, obs, genes = load_glioblastoma_crispri(as_anndata=False)
    assert X.shape == cells.shape
    assert (X != cells.X).nnz == 0
    pd.testing.assert_frame_equal(obs, cells.obs)
    assert genes.tolist() == cells.var_names.tolist()


def test_each_call_returns_fresh_data(cells):
    first = load_glioblastoma_crispri()
    first.X.data[:] = -1.0
    first.obs["cell_line"] = "changed"
    again = load_glioblastoma_crispri()
    assert again.X.data.min() >= 0.0
    assert sorted(again.obs["cell_line"].unique()) == LINES


def test_cells_to_scores_leave_one_line_out(cells):
    """Pseudo-bulk, hold out each line with 2 of its 9 knockdowns, fit, predict, score."""
    X, Y = pseudobulk(cells, "cell_line", "perturbation", control="control")
    assert X.shape == (27, 4) and Y.shape == (27, 500)
    assert (X["n_control_cells"] == 100).all()

    cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    scores = {}
    for train, test in cv.split(X):
        line = X["context"].iloc[test[0]]
        for name, model in (
            ("C3TL", C3TLRegressor(max_epochs=100, random_state=0)),
            ("mean", MeanBaseline()),
        ):
            model.fit(X.iloc[train], Y.iloc[train])
            predicted = to_anndata(X.iloc[test], model.predict(X.iloc[test]), genes=Y.columns)
            assert predicted.shape == (len(test), 500)
            assert predicted.var_names.tolist() == Y.columns.tolist()
            table = score_table(predicted.obs, Y.iloc[test], predicted.X)
            assert table.index.tolist() == [line, "overall"]
            assert np.isfinite(table.drop(columns="n_rows").to_numpy()).all()
            scores[line, name] = table.loc[line, "pearson_delta"]

    assert {line for line, _ in scores} == set(LINES)
    better = [line for line in LINES if scores[line, "C3TL"] > scores[line, "mean"]]
    assert len(better) >= 2, scores
