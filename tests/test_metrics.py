"""Tests of the effect-prediction metrics and their scikit-learn scorers."""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from scipy.stats import pearsonr
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import get_scorer as sklearn_get_scorer
from sklearn.metrics import get_scorer_names, mean_squared_error
from sklearn.model_selection import GridSearchCV, cross_val_score, cross_validate

from c3tl_sklearn.baselines import MeanBaseline
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.metrics import (
    SCORERS,
    centered_pearson_delta,
    centered_pearson_scorer,
    discrimination_score,
    discrimination_scorer,
    get_scorer,
    make_context_scorer,
    make_row_scorer,
    mse_scorer,
    pearson_delta,
    pearson_scorer,
    score_table,
    top_k_overlap,
    top_k_scorer,
)
from c3tl_sklearn.model_selection import LeaveOneContextOut

from .conftest import warns_at

PROPERTY = settings(max_examples=40, deadline=None)


# --------------------------------------------------------------------------- references


def ref_pearson(Y_true, Y_pred):
    return np.array([pearsonr(t, p)[0] for t, p in zip(Y_true, Y_pred, strict=True)])


def ref_centered(Y_true, Y_pred, contexts):
    contexts = np.asarray(contexts, dtype=object)
    out = np.empty(len(Y_true))
    for c in set(contexts):
        rows = np.flatnonzero(contexts == c)
        mu = Y_true[rows].mean(axis=0)
        if rows.size == 1:  # undefined: the centred truth is zero
            out[rows] = np.nan
            continue
        for i in rows:
            out[i] = pearsonr(Y_true[i] - mu, Y_pred[i] - mu)[0]
    return out


def ref_discrimination(Y_true, Y_pred, contexts):
    out = np.full(len(Y_true), np.nan)
    for i in range(len(Y_true)):
        own = np.linalg.norm(Y_pred[i] - Y_true[i])
        total, n = 0.0, 0
        for j in range(len(Y_true)):
            if j == i or contexts[j] != contexts[i]:
                continue
            other = np.linalg.norm(Y_pred[i] - Y_true[j])
            total += 1.0 if other > own else 0.5 if other == own else 0.0
            n += 1
        if n:
            out[i] = total / n
    return out


def ref_top_k(Y_true, Y_pred, k):
    out = []
    for t, p in zip(Y_true, Y_pred, strict=True):
        top_t = sorted(range(len(t)), key=lambda j: (-abs(t[j]), j))[:k]
        top_p = sorted(range(len(p)), key=lambda j: (-abs(p[j]), j))[:k]
        out.append(len(set(top_t) & set(top_p)) / k)
    return np.array(out)


@st.composite
def effect_pairs(draw, min_rows=1, max_rows=12, min_genes=2, max_genes=30):
    n = draw(st.integers(min_rows, max_rows))
    g = draw(st.integers(min_genes, max_genes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    Y_true = scale * rng.normal(size=(n, g))
    Y_pred = 0.6 * Y_true + scale * rng.normal(size=(n, g))
    contexts = rng.integers(0, draw(st.integers(1, 4)), size=n).astype(str).astype(object)
    return Y_true, Y_pred, contexts


def random_pair(n=20, g=30, seed=0):
    rng = np.random.default_rng(seed)
    Y_true = rng.normal(size=(n, g))
    return Y_true, Y_true + rng.normal(size=(n, g))


# --------------------------------------------------------------------------- pearson_delta


@PROPERTY
@given(effect_pairs())
def test_pearson_matches_scipy(pair):
    Y_true, Y_pred, _ = pair
    expected = ref_pearson(Y_true, Y_pred)
    np.testing.assert_allclose(pearson_delta(Y_true, Y_pred, per_row=True), expected,
                               atol=1e-10)
    assert pearson_delta(Y_true, Y_pred) == pytest.approx(expected.mean(), abs=1e-10)


@PROPERTY
@given(effect_pairs(), st.integers(0, 2**32 - 1))
def test_pearson_invariant_to_positive_affine_maps_of_each_prediction(pair, seed):
    Y_true, Y_pred, _ = pair
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.01, 100, size=(len(Y_pred), 1))
    shift = rng.normal(size=(len(Y_pred), 1))
    base = pearson_delta(Y_true, Y_pred, per_row=True)
    np.testing.assert_allclose(pearson_delta(Y_true, scale * Y_pred + shift, per_row=True),
                               base, atol=1e-9)
    np.testing.assert_allclose(pearson_delta(Y_true, -Y_pred, per_row=True), -base,
                               atol=1e-12)


def test_pearson_constant_rows_are_zero_with_warning():
    Y_true, Y_pred = random_pair(5, 10)
    Y_true[1] = 3.0  # constant truth
    Y_pred[3] = 0.0  # constant prediction
    with pytest.warns(UserWarning, match="2 of 5 row"):
        per_row = pearson_delta(Y_true, Y_pred, per_row=True)
    assert per_row[1] == 0.0 and per_row[3] == 0.0
    assert np.isfinite(per_row).all()
    keep = [0, 2, 4]
    np.testing.assert_allclose(per_row[keep], ref_pearson(Y_true[keep], Y_pred[keep]))
    with pytest.warns(UserWarning):
        mean = pearson_delta(Y_true, Y_pred)
    assert mean == pytest.approx(per_row.mean())
    with pytest.warns(UserWarning, match="1 of 1"):
        assert pearson_delta(np.ones((1, 4)), np.ones((1, 4))) == 0.0


def _constant_row_cases():
    Y_true, Y_pred = random_pair(4, 10)
    Y_true[1] = 3.0
    X = pd.DataFrame({"context": ["a", "a", "b", "c"], "perturbation": list("pqrs")})
    return [
        lambda: pearson_delta(Y_true, Y_pred),
        lambda: centered_pearson_delta(Y_true, Y_pred, X["context"]),
        lambda: discrimination_score(Y_true, Y_pred, X["context"]),
        lambda: score_table(X, Y_true, Y_pred, k=3),  # several package frames deep
    ]


@pytest.mark.parametrize("case", range(4))
def test_undefined_metric_warnings_name_the_callers_line(case):
    with warns_at(__file__, UndefinedMetricWarning):
        _constant_row_cases()[case]()


def test_pearson_no_warning_for_regular_rows_and_extreme_scales():
    Y_true, Y_pred = random_pair(4, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny = pearson_delta(1e-200 * Y_true, 1e-200 * Y_pred)
        huge = pearson_delta(1e200 * Y_true, 1e200 * Y_pred)
    assert tiny == pytest.approx(pearson_delta(Y_true, Y_pred))
    assert huge == pytest.approx(pearson_delta(Y_true, Y_pred))


def test_pearson_accepts_dataframes_and_lists_without_modifying_them():
    Y_true, Y_pred = random_pair(3, 5)
    df_true = pd.DataFrame(Y_true, columns=list("abcde"))
    list_pred = Y_pred.tolist()
    before = df_true.copy()
    score = pearson_delta(df_true, list_pred)
    assert score == pytest.approx(ref_pearson(Y_true, Y_pred).mean())
    pd.testing.assert_frame_equal(df_true, before)
    assert list_pred == Y_pred.tolist()
    arr = Y_true.astype(np.float32)
    copy = arr.copy()
    centered_pearson_delta(arr, arr + 1, ["a", "a", "a"])
    np.testing.assert_array_equal(arr, copy)


@pytest.mark.parametrize(
    "metric",
    [
        pearson_delta,
        lambda t, p: centered_pearson_delta(t, p, None),
        lambda t, p: discrimination_score(t, p, None),
        lambda t, p: top_k_overlap(t, p, k=2),
    ],
    ids=["pearson", "centered", "discrimination", "top_k"],
)
def test_input_validation(metric):
    Y = np.arange(12.0).reshape(3, 4)
    with pytest.raises(ValueError, match="same shape"):
        metric(Y, Y[:2])
    with pytest.raises(ValueError, match="same shape"):
        metric(Y, Y[:, :3])
    with pytest.raises(ValueError, match="Y_true must be 2-D"):
        metric(Y[0], Y[0])
    with pytest.raises(ValueError, match="Y_pred must be 2-D"):
        metric(Y, Y[None])
    bad = Y.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="Y_pred contains 1 NaN or infinite"):
        metric(Y, bad)
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="Y_true contains 1 NaN or infinite"):
        metric(bad, Y)
    with pytest.raises(TypeError, match="numeric"):
        metric(Y.astype(str).astype(object) + "x", Y)
    with pytest.raises(ValueError, match="empty"):
        metric(np.empty((0, 4)), np.empty((0, 4)))


def test_pearson_needs_two_genes():
    with pytest.raises(ValueError, match="at least 2 genes"):
        pearson_delta(np.ones((3, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="at least 2 genes"):
        centered_pearson_delta(np.ones((3, 1)), np.ones((3, 1)), None)


# --------------------------------------------------------------------------- centered Pearson


@PROPERTY
@given(effect_pairs(min_rows=2))
def test_centered_matches_explicit_loop(pair):
    Y_true, Y_pred, contexts = pair
    alone = pd.Series(contexts).map(pd.Series(contexts).value_counts()).to_numpy() == 1
    if alone.any():
        with pytest.warns(UserWarning, match="alone in their context"):
            got = centered_pearson_delta(Y_true, Y_pred, contexts, per_row=True)
        assert (got[alone] == 0.0).all()
    else:
        got = centered_pearson_delta(Y_true, Y_pred, contexts, per_row=True)
    ok = ~alone
    np.testing.assert_allclose(got[ok], ref_centered(Y_true, Y_pred, contexts)[ok],
                               atol=1e-9)
    assert np.isfinite(got).all()


@PROPERTY
@given(effect_pairs(min_rows=4), st.integers(0, 2**32 - 1))
def test_centered_removes_shared_context_offset(pair, seed):
    Y_true, Y_pred, _ = pair
    contexts = np.array(["a", "b"] * (len(Y_true) // 2) + ["a"] * (len(Y_true) % 2))
    rng = np.random.default_rng(seed)
    offsets = {c: 10 * rng.normal(size=Y_true.shape[1]) for c in ("a", "b")}
    shift = np.stack([offsets[c] for c in contexts])
    base = centered_pearson_delta(Y_true, Y_pred, contexts, per_row=True)
    moved = centered_pearson_delta(Y_true + shift, Y_pred + shift, contexts, per_row=True)
    np.testing.assert_allclose(moved, base, atol=1e-7)


def test_centered_scores_the_context_mean_predictor_near_zero_and_plain_pearson_high():
    rng = np.random.default_rng(1)
    offset = 5 * rng.normal(size=50)
    Y_true = offset + rng.normal(size=(30, 50))
    Y_pred = np.tile(Y_true.mean(axis=0), (30, 1)) + 0.01 * rng.normal(size=(30, 50))
    assert pearson_delta(Y_true, Y_pred) > 0.9
    assert abs(centered_pearson_delta(Y_true, Y_pred, ["c"] * 30)) < 0.1


def test_centered_none_is_one_context_and_labels_may_be_tuples():
    Y_true, Y_pred = random_pair(6, 10)
    one = centered_pearson_delta(Y_true, Y_pred, None)
    assert one == pytest.approx(centered_pearson_delta(Y_true, Y_pred, ["x"] * 6))
    tuples = [("a", 1), ("a", 1), ("a", 1), ("b", 2), ("b", 2), ("b", 2)]
    strings = ["a1"] * 3 + ["b2"] * 3
    assert centered_pearson_delta(Y_true, Y_pred, tuples) == pytest.approx(
        centered_pearson_delta(Y_true, Y_pred, strings)
    )


def test_centered_singleton_context_is_zero_with_warning():
    Y_true, Y_pred = random_pair(4, 10)
    with pytest.warns(UserWarning, match=r"1 of 4 row.*1 of them alone in their context"):
        r = centered_pearson_delta(Y_true, Y_pred, ["a", "a", "a", "b"], per_row=True)
    assert r[3] == 0.0 and np.isfinite(r).all()


def test_centered_contexts_errors():
    Y_true, Y_pred = random_pair(4, 10)
    with pytest.raises(ValueError, match="contexts has 3 labels but Y_true has 4 rows"):
        centered_pearson_delta(Y_true, Y_pred, ["a", "b", "c"])
    with pytest.raises(ValueError, match="missing label"):
        centered_pearson_delta(Y_true, Y_pred, ["a", None, "a", "a"])
    with pytest.raises(ValueError, match="1-D"):
        centered_pearson_delta(Y_true, Y_pred, np.zeros((4, 2)))


# --------------------------------------------------------------------------- discrimination


@PROPERTY
@given(effect_pairs(min_rows=2))
def test_discrimination_matches_explicit_loop(pair):
    Y_true, Y_pred, contexts = pair
    expected = ref_discrimination(Y_true, Y_pred, contexts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        got = discrimination_score(Y_true, Y_pred, contexts, per_row=True)
    np.testing.assert_allclose(got, expected, atol=1e-12)  # NaN where alone, in both
    if np.isfinite(expected).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert discrimination_score(Y_true, Y_pred, contexts) == pytest.approx(
                np.nanmean(expected)
            )


def test_discrimination_perfect_and_constant_predictions():
    Y_true, _ = random_pair(25, 8)
    contexts = np.repeat(["a", "b"], [12, 13])
    assert discrimination_score(Y_true, Y_true, contexts) == 1.0
    same = np.tile(Y_true.mean(axis=0), (25, 1))
    assert discrimination_score(Y_true, same, contexts) == pytest.approx(0.5)
    assert discrimination_score(Y_true, same, None) == pytest.approx(0.5)


def test_discrimination_ties_count_half():
    Y_true = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    Y_pred = np.zeros((3, 2))
    # row 0: both others farther (1); rows 1 and 2: one tie, one closer (0.25 each)
    per_row = discrimination_score(Y_true, Y_pred, None, per_row=True)
    np.testing.assert_allclose(per_row, [1.0, 0.25, 0.25])


def test_discrimination_identical_truth_rows_tie_exactly():
    rng = np.random.default_rng(5)
    Y_true = rng.normal(size=(8, 37))
    Y_true[[5, 7]] = Y_true[2]
    Y_pred = rng.normal(size=(8, 37))
    Y_pred[2] = Y_true[2]
    got = discrimination_score(Y_true, Y_pred, None, per_row=True)
    np.testing.assert_allclose(got, ref_discrimination(Y_true, Y_pred, [0] * 8))
    # a perfect prediction of a truth shared by two other rows ties with both
    assert got[2] == pytest.approx((5 + 0.5 * 2) / 7)


def test_discrimination_compares_only_within_context():
    Y_true = np.array([[0.0, 0.0], [5.0, 0.0], [0.1, 0.0], [5.1, 0.0]])
    Y_pred = Y_true[[2, 3, 0, 1]]  # each prediction is another context's truth
    contexts = ["a", "a", "b", "b"]
    assert discrimination_score(Y_true, Y_pred, contexts) == 1.0
    assert discrimination_score(Y_true, Y_pred, None) < 1.0


def test_discrimination_singletons_left_out_with_warning():
    Y_true, Y_pred = random_pair(5, 6)
    contexts = ["a", "a", "a", "b", "c"]
    with pytest.warns(UserWarning, match="2 of 5 row.*alone"):
        per_row = discrimination_score(Y_true, Y_pred, contexts, per_row=True)
    assert np.isnan(per_row[3:]).all() and np.isfinite(per_row[:3]).all()
    with pytest.warns(UserWarning):
        assert discrimination_score(Y_true, Y_pred, contexts) == pytest.approx(
            per_row[:3].mean()
        )
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="at least one context"):
        discrimination_score(Y_true[:2], Y_pred[:2], ["a", "b"])


def test_discrimination_large_context_is_blocked_consistently():
    rng = np.random.default_rng(0)
    Y_true = rng.normal(size=(1100, 3))
    Y_pred = Y_true + rng.normal(size=(1100, 3))
    got = discrimination_score(Y_true, Y_pred, None, per_row=True)
    idx = [0, 1023, 1024, 1099]
    D = cdist(Y_pred[idx], Y_true)
    own = D[np.arange(4), idx][:, None]
    expected = ((D > own).sum(1) + 0.5 * ((D == own).sum(1) - 1)) / 1099
    np.testing.assert_allclose(got[idx], expected)


# --------------------------------------------------------------------------- top-k


@PROPERTY
@given(effect_pairs(min_genes=3), st.data())
def test_top_k_matches_explicit_loop(pair, data):
    Y_true, Y_pred, _ = pair
    k = data.draw(st.integers(1, Y_true.shape[1]))
    np.testing.assert_allclose(top_k_overlap(Y_true, Y_pred, k=k, per_row=True),
                               ref_top_k(Y_true, Y_pred, k))


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_top_k_many_ties_match_explicit_loop(k):
    rng = np.random.default_rng(k)
    Y_true = rng.integers(-2, 3, size=(30, 12)).astype(float)
    Y_pred = rng.integers(-1, 2, size=(30, 12)).astype(float)
    np.testing.assert_allclose(top_k_overlap(Y_true, Y_pred, k=k, per_row=True),
                               ref_top_k(Y_true, Y_pred, k))


def test_top_k_ties_and_edges():
    Y_true = np.array([[1.0, 1.0, 1.0, 0.0]])
    Y_pred = np.array([[0.0, 1.0, 1.0, 1.0]])
    # ties broken by the lower gene index: true top-2 {0, 1}, predicted {1, 2}
    assert top_k_overlap(Y_true, Y_pred, k=2) == 0.5
    assert top_k_overlap(Y_true, Y_pred, k=4) == 1.0
    assert top_k_overlap(Y_true, -Y_true, k=1) == 1.0  # magnitudes, not signs
    for k in (0, 5, 2.0, True):
        with pytest.raises(ValueError, match="k must be an integer between 1 and"):
            top_k_overlap(Y_true, Y_pred, k=k)


# --------------------------------------------------------------------------- score_table


def test_score_table_rows_match_metrics_on_subsets():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"cell": ["b"] * 6 + ["a"] * 5 + ["c"], "perturbation": list("pqrstu") * 2})
    Y_true = rng.normal(size=(12, 60))
    Y_pred = Y_true + rng.normal(size=(12, 60))
    before = Y_pred.copy()
    with pytest.warns(UserWarning):
        table = score_table(X, Y_true, pd.DataFrame(Y_pred), context_col="cell", k=10)
    np.testing.assert_array_equal(Y_pred, before)
    assert table.index.tolist() == ["a", "b", "c", "overall"]
    assert table.index.name == "cell"
    assert table.columns.tolist() == [
        "pearson_delta", "centered_pearson_delta", "discrimination_score", "top_k_overlap",
        "mse", "n_rows",
    ]
    assert table.n_rows.tolist() == [5, 6, 1, 12]
    for c in ("a", "b"):
        rows = (X.cell == c).to_numpy()
        t, p = Y_true[rows], Y_pred[rows]
        got = table.loc[c]
        assert got.pearson_delta == pytest.approx(pearson_delta(t, p))
        assert got.centered_pearson_delta == pytest.approx(centered_pearson_delta(t, p, None))
        assert got.discrimination_score == pytest.approx(discrimination_score(t, p, None))
        assert got.top_k_overlap == pytest.approx(top_k_overlap(t, p, k=10))
        assert got.mse == pytest.approx(mean_squared_error(t, p))
    assert np.isnan(table.loc["c", "discrimination_score"])
    assert table.loc["c", "centered_pearson_delta"] == 0.0
    overall = table.loc["overall"]
    assert overall.pearson_delta == pytest.approx(pearson_delta(Y_true, Y_pred))
    assert overall.mse == pytest.approx(mean_squared_error(Y_true, Y_pred))
    assert overall.discrimination_score == pytest.approx(
        (5 * table.loc["a", "discrimination_score"] + 6 * table.loc["b", "discrimination_score"])
        / 11
    )
    with pytest.warns(UserWarning):
        centered = centered_pearson_delta(Y_true, Y_pred, X.cell)
    assert overall.centered_pearson_delta == pytest.approx(centered)


def test_score_table_caps_k_and_validates_inputs():
    X = pd.DataFrame({"context": ["a", "a", "b", "b"], "perturbation": list("pqpq")})
    Y_true, Y_pred = random_pair(4, 5)
    table = score_table(X, Y_true, Y_pred)  # k=50 capped at 5 genes
    assert (table.top_k_overlap == 1.0).all()
    with pytest.raises(TypeError, match="DataFrame"):
        score_table(X.to_numpy(), Y_true, Y_pred)
    with pytest.raises(ValueError, match=r"X is missing the column\(s\) \['cell'\]"):
        score_table(X, Y_true, Y_pred, context_col="cell")
    with pytest.raises(ValueError, match="X has 3 rows but Y_true has 4"):
        score_table(X.iloc[:3], Y_true, Y_pred)


# --------------------------------------------------------------------------- scorers


class PerturbationMeanRegressor(RegressorMixin, BaseEstimator):
    """Test-only regressor: a perturbation's mean effect over the training rows."""

    def __init__(self, shrink=0.0):
        self.shrink = shrink

    def fit(self, X, Y):
        Y = np.asarray(Y, dtype=float)
        self.means_ = pd.DataFrame(Y).groupby(X["perturbation"].to_numpy()).mean()
        self.global_ = Y.mean(axis=0)
        return self

    def predict(self, X):
        pred = self.means_.reindex(X["perturbation"].to_numpy()).to_numpy()
        pred[np.isnan(pred).any(axis=1)] = self.global_
        return (1 - self.shrink) * pred + self.shrink * self.global_


@pytest.fixture(scope="module")
def data():
    return make_synthetic_perturbations(4, 25, 60, random_state=0)


def test_scorers_in_cross_val_score_match_direct_metrics(data):
    X, Y = data
    cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    est = PerturbationMeanRegressor()
    metrics = {
        "pearson_delta": lambda t, p, c: pearson_delta(t, p),
        "centered_pearson_delta": centered_pearson_delta,
        "discrimination_score": discrimination_score,
        "top_k_overlap": lambda t, p, c: top_k_overlap(t, p, k=50),
        "neg_mean_squared_error": lambda t, p, c: -mean_squared_error(t, p),
    }
    for name, scorer in SCORERS.items():
        scores = cross_val_score(est, X, Y, cv=cv, scoring=scorer, error_score="raise")
        expected = []
        for train, test in cv.split(X):
            pred = PerturbationMeanRegressor().fit(X.iloc[train], Y.iloc[train]).predict(
                X.iloc[test]
            )
            expected.append(metrics[name](Y.iloc[test], pred, X.context.iloc[test]))
        np.testing.assert_allclose(scores, expected, err_msg=name)


def test_scorers_dict_in_cross_validate_and_grid_search(data):
    X, Y = data
    cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    result = cross_validate(PerturbationMeanRegressor(), X, Y, cv=cv, scoring=SCORERS,
                            error_score="raise")
    for name in SCORERS:
        assert np.isfinite(result[f"test_{name}"]).all()
    assert (result["test_neg_mean_squared_error"] < 0).all()
    assert (result["test_pearson_delta"] > result["test_centered_pearson_delta"]).all()
    search = GridSearchCV(PerturbationMeanRegressor(), {"shrink": [0.0, 1.0]}, cv=cv,
                          scoring=centered_pearson_scorer, error_score="raise")
    search.fit(X, Y)
    # shrinking fully to the global mean predicts the same vector everywhere
    assert search.best_params_ == {"shrink": 0.0}
    search = GridSearchCV(PerturbationMeanRegressor(), {"shrink": [0.0, 1.0]}, cv=cv,
                          scoring={"d": discrimination_scorer, "mse": mse_scorer}, refit="d")
    search.fit(X, Y, groups=X.context)
    assert search.cv_results_["mean_test_d"][1] == pytest.approx(0.5)


def test_context_scorer_options_and_errors(data):
    X, Y = data
    est = PerturbationMeanRegressor().fit(X, Y)
    renamed = X.rename(columns={"context": "cell"})
    scorer = make_context_scorer(centered_pearson_delta, context_col="cell")
    assert scorer(est, renamed, Y) == pytest.approx(
        centered_pearson_delta(Y, est.predict(X), X.context)
    )
    neg = make_context_scorer(discrimination_score, greater_is_better=False)
    assert neg(est, X, Y) == pytest.approx(-discrimination_score(Y, est.predict(X), X.context))
    assert repr(neg) == "make_context_scorer(discrimination_score, greater_is_better=False)"
    with pytest.raises(ValueError, match="reads the context of every row from the column"):
        centered_pearson_scorer(est, renamed, Y)
    with pytest.raises(TypeError, match="extra arguments"):
        centered_pearson_scorer(est, X, Y, sample_weight=np.ones(len(X)))
    for each, frame in [*((sc, X) for sc in SCORERS.values()), (scorer, renamed)]:
        restored = pickle.loads(pickle.dumps(each))
        assert restored(est, frame, Y) == pytest.approx(each(est, frame, Y))
    assert pearson_scorer(est, X, Y) == pytest.approx(pearson_delta(Y, est.predict(X)))
    assert top_k_scorer(est, X, Y) == pytest.approx(top_k_overlap(Y, est.predict(X)))


# --------------------------------------------------------------------------- scorer names

REGISTERED = {
    "pearson_delta": lambda t, p, c: pearson_delta(t, p),
    "centered_pearson_delta": centered_pearson_delta,
    "discrimination_score": discrimination_score,
    "top_k_overlap": lambda t, p, c: top_k_overlap(t, p, k=50),
}


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_scorer_names_work_in_cross_val_score(data, name):
    X, Y = data
    cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    # the package's names are its own: scikit-learn's table does not know them
    assert name not in get_scorer_names()
    scores = cross_val_score(MeanBaseline(), X, Y, cv=cv, scoring=get_scorer(name),
                             error_score="raise")
    expected = []
    for train, test in cv.split(X):
        pred = MeanBaseline().fit(X.iloc[train], Y.iloc[train]).predict(X.iloc[test])
        expected.append(REGISTERED[name](Y.iloc[test], pred, X.context.iloc[test]))
    np.testing.assert_allclose(scores, expected)
    assert len(scores) == cv.get_n_splits(X) == 4


def test_scorer_names_work_in_grid_search(data):
    X, Y = data
    cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    grid = {"shrink": [0.0, 1.0]}
    names = ["pearson_delta", "centered_pearson_delta"]
    by_name = GridSearchCV(PerturbationMeanRegressor(), grid, cv=cv,
                           scoring={name: get_scorer(name) for name in names},
                           refit="centered_pearson_delta", error_score="raise").fit(X, Y)
    by_object = GridSearchCV(PerturbationMeanRegressor(), grid, cv=cv,
                             scoring={"pearson_delta": pearson_scorer,
                                      "centered_pearson_delta": centered_pearson_scorer},
                             refit="centered_pearson_delta", error_score="raise").fit(X, Y)
    for key in ("mean_test_pearson_delta", "mean_test_centered_pearson_delta"):
        np.testing.assert_allclose(by_name.cv_results_[key], by_object.cv_results_[key])
    assert by_name.best_params_ == {"shrink": 0.0}
    single = GridSearchCV(PerturbationMeanRegressor(), grid, cv=cv,
                          scoring=get_scorer("discrimination_score")).fit(X, Y)
    assert single.cv_results_["mean_test_score"][1] == pytest.approx(0.5)


def test_importing_the_package_changes_nothing_in_scikit_learn():
    # neither the table of scorer names nor the name sets that scikit-learn's
    # estimators validate `scoring` against (RidgeCV's, for one)
    code = (
        "import sklearn.metrics._scorer as s\n"
        "from sklearn.linear_model import RidgeCV\n"
        "from sklearn.model_selection import GridSearchCV, cross_val_score\n"
        "def names():\n"
        "    return [sorted(getattr(c, 'options', ())) for c in\n"
        "            RidgeCV._parameter_constraints['scoring']]\n"
        "n, ridge = len(s._SCORERS), names()\n"
        "import c3tl_sklearn, c3tl_sklearn.metrics, c3tl_sklearn.tuning\n"
        "from c3tl_sklearn.metrics import get_scorer\n"
        "get_scorer('pearson_delta')\n"
        "print(len(s._SCORERS) == n, names() == ridge, 'pearson_delta' in s._SCORERS)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False"]


def test_get_scorer_resolves_the_package_names_then_scikit_learns():
    assert get_scorer("pearson_delta") is pearson_scorer
    assert get_scorer("centered_pearson_delta") is centered_pearson_scorer
    assert repr(get_scorer("r2")) == repr(sklearn_get_scorer("r2"))
    # scikit-learn's own name keeps scikit-learn's scorer
    assert repr(get_scorer("neg_mean_squared_error")) == repr(
        sklearn_get_scorer("neg_mean_squared_error"))
    assert get_scorer(top_k_scorer) is top_k_scorer
    assert repr(make_row_scorer(top_k_overlap, k=20)) == "make_scorer(top_k_overlap, k=20)"
    with pytest.raises(ValueError, match="Unknown scoring 'nope'"):
        get_scorer("nope")
