"""The input contract's rules that used to fail silently or blame the wrong thing (issue 13).

- Rows of a DataFrame/Series ``Y`` are matched to ``X`` by index label (the same
  labels in another order are aligned; different labels are an error); rows of
  arrays by position. The same for ``observed=(X_obs, Y_obs)`` and the metrics.
- Finite values beyond float32 get their own message; the NaN/infinity message
  is only for real NaN/infinity.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn import C3TLEnsemble, C3TLRegressor
from c3tl_sklearn._contract import check_response, match_rows
from c3tl_sklearn.baselines import AdditiveBaseline, MeanBaseline
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.metrics import (
    SCORERS,
    centered_pearson_delta,
    make_row_scorer,
    pearson_delta,
    pearson_scorer,
    score_table,
    top_k_overlap,
)

TINY = dict(max_epochs=2, hidden_dims=(4,), latent_dim=2, n_components=None, random_state=0)
MISMATCH_FIX = (
    "if Y holds the rows of X in another order (a splitter cuts both by position, so put them "
    "in one order before splitting), align it by label: Y = Y.loc[X.index]; only if row i of "
    "Y describes row i of X, reset both indexes (X.reset_index(drop=True), "
    "Y.reset_index(drop=True)) or pass Y as an array (Y.to_numpy()) to match rows by position."
)


@pytest.fixture(scope="module")
def data():
    return make_synthetic_perturbations(4, 30, 12, observed_fraction=0.9, random_state=0)


def _fit(model, X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.fit(X, Y)


# --------------------------------------------------------------------------- rows by index


# C3TL draws its validation pairs and batches by row, so row order moves it a little
@pytest.mark.parametrize("make, atol", [(AdditiveBaseline, 1e-9),
                                        (lambda: C3TLRegressor(**TINY), 1e-2)],
                         ids=["AdditiveBaseline", "C3TLRegressor"])
def test_sorted_x_with_y_in_the_original_order_fits_the_right_rows(data, make, atol):
    """The issue's case: X.sort_values('perturbation'), Y still in the original order."""
    X, Y = data
    X_sorted = X.sort_values("perturbation")
    X_before, Y_before = X_sorted.copy(), Y.copy()
    reference = _fit(make(), X, Y).predict(X)
    aligned = _fit(make(), X_sorted, Y).predict(X)
    np.testing.assert_allclose(aligned, reference, rtol=0, atol=atol)
    # by position (an array) the rows really are misaligned: the test can fail
    positional = _fit(make(), X_sorted, Y.to_numpy()).predict(X)
    assert np.abs(positional - reference).max() > 0.5
    pd.testing.assert_frame_equal(X_sorted, X_before)
    pd.testing.assert_frame_equal(Y, Y_before)


def test_different_row_indexes_are_an_error_naming_the_fix(data):
    X, Y = data
    shifted = Y.set_axis(Y.index + 1000)
    with pytest.raises(ValueError) as info:
        MeanBaseline().fit(X, shifted)
    assert str(info.value) == (
        f"X and Y have different row indexes ({len(X)} label(s) of X are not in Y's, the "
        "first 0); rows are matched by index label when both carry one: " + MISMATCH_FIX
    )
    # one label off
    renamed = Y.rename(index={5: "five"})
    with pytest.raises(ValueError, match=re.escape("(1 label(s) of X are not in Y's, "
                                                   "the first 5)")):
        MeanBaseline().fit(X, renamed)


def test_reordered_indexes_with_duplicate_labels_are_an_error(data):
    X, Y = data
    duplicated = Y.set_axis([0, *range(len(Y) - 1)])
    with pytest.raises(ValueError) as info:
        MeanBaseline().fit(X, duplicated)
    assert str(info.value) == (
        "X and Y have different row indexes and Y's has duplicate labels, so rows cannot be "
        "matched by label; " + MISMATCH_FIX
    )
    # the same duplicate labels in the same order are simply the same rows
    X_dup = X.set_axis(duplicated.index)
    np.testing.assert_allclose(_fit(MeanBaseline(), X_dup, duplicated).predict(X),
                               _fit(MeanBaseline(), X, Y).predict(X))


def test_arrays_and_series_follow_the_documented_rule(data):
    X, Y = data
    # a Series response (one gene) is matched by label too
    column = Y.iloc[:, 0]
    out, _ = check_response(column.iloc[::-1], len(X), index=X.index)
    np.testing.assert_array_equal(out[:, 0], column.to_numpy())
    # an array is positional whatever X's index
    out, _ = check_response(Y.to_numpy()[::-1], len(X), index=X.index[::-1])
    np.testing.assert_array_equal(out, Y.to_numpy()[::-1])
    # a different row count keeps its own message
    with pytest.raises(ValueError, match="Y has 3 rows but the index table has"):
        check_response(Y.iloc[:3], len(X), index=X.index)
    # match_rows copies and leaves the caller's object alone
    reversed_Y = Y.iloc[::-1]
    matched = match_rows(reversed_Y, X.index)
    assert matched is not reversed_Y and matched.index.equals(X.index)
    assert reversed_Y.index[0] == len(Y) - 1


def test_labels_equal_as_strings_match_like_anndata_obs_names(data):
    X, Y = data
    as_text = X.set_axis(X.index.astype(str))  # what adata.obs holds
    reference = _fit(MeanBaseline(), X, Y).predict(X)
    np.testing.assert_array_equal(_fit(MeanBaseline(), as_text, Y).predict(X), reference)
    np.testing.assert_array_equal(
        _fit(MeanBaseline(), as_text.iloc[::-1], Y).predict(X), reference)
    # "1" and "01" are different labels: still an error
    with pytest.raises(ValueError, match="X and Y have different row indexes"):
        MeanBaseline().fit(X.set_axis([f"0{i}" for i in X.index]), Y)
    # labels whose text repeats (1 and "1") cannot be matched as text
    mixed = Y.set_axis([1, "1", *range(2, len(Y))])
    with pytest.raises(ValueError, match="X and Y have different row indexes"):
        MeanBaseline().fit(as_text, mixed)


@pytest.mark.parametrize("make", [
    lambda: C3TLRegressor(**TINY),
    lambda: C3TLEnsemble(C3TLRegressor(**TINY), n_estimators=1, random_state=0),
], ids=["C3TLRegressor", "C3TLEnsemble"])
def test_observed_rows_and_genes_are_matched_by_label(data, make):
    X, Y = data
    fit = X["context"] != "ctx3"
    model = _fit(make(), X[fit], Y[fit])
    X_obs, Y_obs = X[~fit].iloc[:8], Y[~fit].iloc[:8]
    query = X[~fit].iloc[8:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = model.predict(query, observed=(X_obs, Y_obs))
        shuffled = model.predict(query, observed=(X_obs.iloc[::-1], Y_obs))
        genes = model.predict(query, observed=(X_obs, Y_obs[Y_obs.columns[::-1]]))
        positional = model.predict(query, observed=(X_obs.iloc[::-1], Y_obs.to_numpy()))
    np.testing.assert_allclose(shuffled, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(genes, reference, rtol=1e-5, atol=1e-6)
    assert not np.allclose(positional, reference, atol=1e-4)
    with pytest.raises(ValueError, match=re.escape(
            "X_obs and Y_obs have different row indexes (8 label(s) of X_obs are not in "
            "Y_obs's, the first")):
        model.predict(query, observed=(X_obs, Y_obs.reset_index(drop=True)))
    with pytest.raises(ValueError, match=re.escape(
            "Y_obs's columns are not the 12 genes the model was fitted on (e.g. ['other'] "
            "are not among them); give the effects of the fit genes, Y_obs[model.gene_names_]")):
        model.predict(query, observed=(X_obs, Y_obs.rename(columns={Y.columns[0]: "other"})))
    with pytest.raises(ValueError, match=re.escape("Y_obs has 11 genes but the model was "
                                                   "fitted on 12.")):
        model.predict(query, observed=(X_obs, Y_obs.iloc[:, 1:]))
    repeated = Y_obs[[Y.columns[1], Y.columns[0], *Y.columns[2:]]].set_axis(
        [Y.columns[0]] * 2 + list(Y.columns[2:]), axis=1)
    with pytest.raises(ValueError, match=re.escape(
            "Y_obs's columns differ from the fit genes and gene names repeat (in Y_obs or "
            "in fit), so they cannot be matched by name; give the effects of the fit genes")):
        model.predict(query, observed=(X_obs, repeated))


def test_metrics_match_rows_by_label(data):
    X, Y = data
    rng = np.random.RandomState(0)
    Y_pred = Y + rng.normal(scale=0.5, size=Y.shape)
    order = rng.permutation(len(X))
    reference = score_table(X, Y, Y_pred.to_numpy())
    # X reordered, both responses in the original order: same table
    pd.testing.assert_frame_equal(score_table(X.iloc[order], Y, Y_pred), reference)
    # an array Y_pred is positional: with X reordered it no longer matches
    assert not np.isclose(score_table(X.iloc[order], Y, Y_pred.to_numpy()).iloc[-1, 0],
                          reference.iloc[-1, 0])
    assert pearson_delta(Y, Y_pred.iloc[order]) == pytest.approx(pearson_delta(Y, Y_pred))
    contexts = X["context"]
    assert centered_pearson_delta(Y, Y_pred, contexts.iloc[order]) == pytest.approx(
        centered_pearson_delta(Y, Y_pred, contexts))
    with pytest.raises(ValueError, match=re.escape(
            "Y_true and Y_pred have different row indexes")):
        pearson_delta(Y, Y_pred.reset_index(drop=True).set_axis(Y.index + 1))
    with pytest.raises(ValueError, match=re.escape("X and Y_pred have different row indexes")):
        score_table(X, Y, Y_pred.set_axis(Y.index + 1))


def test_score_and_scorers_match_rows_by_label(data):
    X, Y = data
    model = _fit(AdditiveBaseline(), X, Y)
    order = np.random.RandomState(1).permutation(len(X))
    assert model.score(X.iloc[order], Y) == pytest.approx(model.score(X, Y))
    assert model.score(X.iloc[order], Y.to_numpy()) < model.score(X, Y) - 0.1  # positional
    # (12 genes here: top-k overlap over the top 5)
    for name, scorer in {**SCORERS, "top_k_overlap": make_row_scorer(top_k_overlap, k=5)}.items():
        assert scorer(model, X.iloc[order], Y) == pytest.approx(scorer(model, X, Y)), name
    # an array is matched by position, as everywhere in the package
    assert pearson_scorer(model, X.iloc[order], Y.to_numpy()) < pearson_scorer(model, X, Y) - 0.05
    with pytest.raises(ValueError, match="X and Y have different row indexes"):
        model.score(X, Y.set_axis(Y.index + 1))


# --------------------------------------------------------------------------- float32 range


def test_values_beyond_float32_have_their_own_message(data):
    X, Y = data
    big = Y.astype(np.float64)
    big.iloc[3, 2] = 1e39
    big.iloc[7, 0] = -2e39
    with pytest.raises(ValueError) as info:
        MeanBaseline().fit(X, big)
    assert str(info.value) == (
        "Y has 2 value(s) beyond the float32 range (largest magnitude 2e+39, first at row 3, "
        "column 2); the model computes in float32: rescale the effects."
    )
    # float32's own largest value is accepted
    fine = Y.astype(np.float64)
    fine.iloc[0, 0] = float(np.finfo(np.float32).max)
    _fit(MeanBaseline(), X, fine)
    # metrics compute in float64, where 1e39 is an ordinary number
    assert np.isfinite(pearson_delta(big.to_numpy(), big.to_numpy()))


def test_nan_and_inf_message_only_for_real_nan_and_inf(data):
    X, Y = data
    bad = Y.astype(np.float64)
    bad.iloc[4, 1] = np.nan
    bad.iloc[9, 0] = -np.inf
    with pytest.raises(ValueError) as info:
        MeanBaseline().fit(X, bad)
    assert str(info.value) == (
        "Y contains 2 NaN or infinite value(s) (first at row 4, column 1); impute or drop "
        "them first."
    )
    bad.iloc[0, 0] = 1e39  # NaN/inf take precedence: they are wrong at any scale
    with pytest.raises(ValueError, match="Y contains 2 NaN or infinite"):
        MeanBaseline().fit(X, bad)


def test_complex_effects_are_refused():
    with pytest.raises(TypeError, match=re.escape("Y must be real numbers; got values of "
                                                  "dtype complex128.")):
        check_response(np.ones((2, 2)) * 1j)
    with pytest.raises(TypeError, match=re.escape("Y must be numeric; column(s) ['g'] are not.")):
        check_response(pd.DataFrame({"g": [1j, 2j]}))


def test_missing_values_of_any_kind_get_the_nan_message():
    nullable = pd.DataFrame({"g0": pd.array([1.0, None], dtype="Float64"), "g1": [1.0, 2.0]})
    expected = ("Y contains 1 NaN or infinite value(s) (first at row 1, column 0); impute or "
                "drop them first.")
    for Y in (nullable, nullable["g0"].to_frame(), np.array([[1.0, 2.0], [None, 3.0]]),
              np.array([[1.0, 2.0], [pd.NA, 3.0]], dtype=object)):
        with pytest.raises(ValueError) as info:
            check_response(Y)
        assert str(info.value) == expected
    with pytest.raises(TypeError, match=re.escape("Y must be numeric; got values of dtype "
                                                  "datetime64[D].")):
        check_response(np.zeros((2, 2), dtype="datetime64[D]"))
