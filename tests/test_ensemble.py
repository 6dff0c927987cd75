"""C3TLEnsemble: uncertainty, measurements after fit, and suggested experiments."""

import copy
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from c3tl_sklearn import AdditiveBaseline, C3TLRegressor
from c3tl_sklearn.ensemble import C3TLEnsemble

from .conftest import warns_at

TINY = dict(max_epochs=12, hidden_dims=(16,), latent_dim=4, n_components=None, fallback=None)


def make_ensemble(**kwargs):
    params = dict(n_estimators=3, random_state=0)
    params.update(kwargs)
    return C3TLEnsemble(C3TLRegressor(**TINY), **params)


@pytest.fixture(scope="module")
def split(small_data):
    """Fit data without ctx5, and ctx5 as a brand-new context."""
    X, Y = small_data
    new = (X["context"] == "ctx5").to_numpy()
    X_new = X[new].reset_index(drop=True).assign(context="brand_new")
    return X[~new], Y[~new], X_new, Y[new].reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(split):
    X, Y, _, _ = split
    return make_ensemble().fit(X, Y)


def predict_quiet(model, X, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.predict(X, **kwargs)


# ------------------------------------------------------------------ basics
def test_shapes_dtypes_and_positive_std(fitted, split):
    X, Y, _, _ = split
    mean = fitted.predict(X.iloc[:7])
    mean2, std = fitted.predict(X.iloc[:7], return_std=True)
    assert mean.shape == std.shape == (7, Y.shape[1])
    assert mean.dtype == std.dtype == np.float64
    np.testing.assert_array_equal(mean, mean2)
    assert np.all(np.isfinite(std)) and np.all(std > 0)
    assert len(fitted.estimators_) == 3
    assert fitted.noise_floor_.shape == (Y.shape[1],) and np.all(fitted.noise_floor_ > 0)
    assert fitted.interval_inflation_ > 0
    assert fitted.context_inflation_.shape == (len(fitted.contexts_),)


def test_mean_is_the_average_of_the_members(fitted, split):
    X, _, _, _ = split
    cal = fitted._calibration_observed
    members = np.mean([m.predict(X.iloc[:5], observed=cal) for m in fitted.estimators_], 0)
    np.testing.assert_allclose(fitted.predict(X.iloc[:5]), members, rtol=1e-5, atol=1e-6)


def test_members_get_distinct_seeds_and_disagree(fitted, split):
    X, _, _, _ = split
    seeds = [m.random_state for m in fitted.estimators_]
    assert len(set(seeds)) == len(seeds)
    preds = [m.predict(X.iloc[:5]) for m in fitted.estimators_]
    assert not np.allclose(preds[0], preds[1])


def test_deterministic_with_random_state(fitted, split):
    X, Y, X_new, Y_new = split
    again = make_ensemble().fit(X, Y)
    obs = (X_new.iloc[:4], Y_new.iloc[:4])
    for observed in (None, obs):
        m1, s1 = predict_quiet(fitted, X_new.iloc[4:], return_std=True, observed=observed)
        m2, s2 = predict_quiet(again, X_new.iloc[4:], return_std=True, observed=observed)
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(s1, s2)
    other = make_ensemble(random_state=1).fit(X, Y)
    assert not np.allclose(other.predict(X.iloc[:5]), fitted.predict(X.iloc[:5]))


def test_calibration_pairs_keep_their_perturbation_observed_elsewhere(fitted, split):
    X, _, _, _ = split
    cal = fitted.calibration_mask_
    assert cal.shape == (len(X),)
    assert 0.05 < cal.mean() < 0.15
    kept = X[~cal]
    assert set(kept["perturbation"]) == set(X["perturbation"])
    assert set(kept["context"]) == set(X["context"])
    for member in fitted.estimators_:
        assert member.n_features_in_ == X.shape[1]
        np.testing.assert_array_equal(member.perturbations_, fitted.perturbations_)


# ------------------------------------------------------------- uncertainty
def test_std_is_larger_away_from_data(fitted, split):
    X, _, X_new, Y_new = split
    known = X[X["context"] == "ctx0"]
    _, std_known = fitted.predict(known, return_std=True)
    with warns_at(__file__, UserWarning, match="zero-shot"):
        _, std_zero_shot = fitted.predict(X_new, return_std=True)
    assert std_zero_shot.mean() > std_known.mean()
    # a few measurements of the new context narrow its intervals
    obs = (X_new.iloc[:8], Y_new.iloc[:8])
    _, std_informed = fitted.predict(X_new.iloc[8:], return_std=True, observed=obs)
    assert std_informed.mean() < std_zero_shot[8:].mean()


def test_intervals_cover_held_out_pairs(small_data):
    X, Y = small_data
    rng = np.random.RandomState(0)
    test = rng.rand(len(X)) < 0.15
    test &= X.groupby("perturbation")["context"].transform("size").to_numpy() > 2
    model = make_ensemble(calibration_fraction=0.2).fit(X[~test], Y[~test])
    mean, std = model.predict(X[test], return_std=True)
    coverage = np.mean(np.abs(Y[test].to_numpy() - mean) <= 1.96 * std)
    assert 0.75 < coverage <= 1.0


def test_return_std_needs_a_spread(split):
    X, Y, _, _ = split
    single = make_ensemble(n_estimators=1, calibration_fraction=0.0).fit(X, Y)
    assert single.predict(X.iloc[:3]).shape == (3, Y.shape[1])
    with pytest.raises(ValueError, match="n_estimators >= 2"):
        single.predict(X.iloc[:3], return_std=True)
    raw = make_ensemble(n_estimators=2, calibration_fraction=0.0).fit(X, Y)
    assert not raw.calibration_mask_.any()
    _, std = raw.predict(X.iloc[:3], return_std=True)
    assert np.all(std > 0)


# ------------------------------------------------- measurements after fit
def test_observed_changes_only_its_context(fitted, split):
    X, _, X_new, Y_new = split
    obs = (X_new.iloc[:6], Y_new.iloc[:6])
    with pytest.warns(UserWarning, match="zero-shot"):
        zero_shot = fitted.predict(X_new.iloc[6:])
    informed = fitted.predict(X_new.iloc[6:], observed=obs)
    assert not np.allclose(informed, zero_shot)
    others = X.iloc[:10]
    np.testing.assert_array_equal(fitted.predict(others, observed=obs), fitted.predict(others))
    # predict does not change the fitted state
    np.testing.assert_array_equal(predict_quiet(fitted, X_new.iloc[6:]), zero_shot)


def test_observed_measurements_reduce_the_error(fitted, split):
    _, _, X_new, Y_new = split
    obs = (X_new.iloc[:10], Y_new.iloc[:10])
    truth = Y_new.iloc[10:].to_numpy()
    zero_shot = predict_quiet(fitted, X_new.iloc[10:])
    informed = fitted.predict(X_new.iloc[10:], observed=obs)
    assert np.mean((informed - truth) ** 2) < np.mean((zero_shot - truth) ** 2)


def test_adapt_observed_false_uses_member_codes_only(fitted, split):
    _, _, X_new, Y_new = split
    obs = (X_new.iloc[:6], Y_new.iloc[:6])
    plain = copy.deepcopy(fitted).set_params(adapt_observed=False)
    members_obs = fitted._members_observed(fitted._check_observed(obs))
    expected = np.mean(
        [m.predict_without_fallback(X_new.iloc[6:], members_obs, readout_observed=False)
         for m in fitted.estimators_], 0
    )
    np.testing.assert_allclose(plain.predict(X_new.iloc[6:], observed=obs), expected,
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(fitted.predict(X_new.iloc[6:], observed=obs), expected)


def test_observed_in_a_known_context(fitted, split):
    X, Y, _, _ = split
    ctx0 = X["context"] == "ctx0"
    query = X[ctx0].iloc[:5]
    obs = (X[ctx0].iloc[5:8], Y[ctx0].iloc[5:8].to_numpy() + 3.0)
    assert not np.allclose(fitted.predict(query, observed=obs), fitted.predict(query))


def test_observed_bad_input(fitted, split):
    X, Y, X_new, _ = split
    with pytest.raises(TypeError, match="pair"):
        fitted.predict(X.iloc[:2], observed=X_new.iloc[:2])
    with pytest.raises(ValueError, match="genes"):
        fitted.predict(X.iloc[:2], observed=(X_new.iloc[:2], np.zeros((2, Y.shape[1] + 1))))
    bad = pd.DataFrame({"context": ["brand_new"], "perturbation": ["never_seen"]})
    with pytest.raises(ValueError, match="never observed in fit"):
        fitted.predict(X.iloc[:2], observed=(bad, np.zeros((1, Y.shape[1]))))


def test_unknown_perturbation_and_not_fitted(fitted, split):
    X = split[0]
    with pytest.raises(ValueError, match="never observed in fit"):
        fitted.predict(pd.DataFrame({"context": ["ctx0"], "perturbation": ["never_seen"]}))
    with pytest.raises(NotFittedError):
        make_ensemble().predict(X.iloc[:2])
    with pytest.raises(NotFittedError):
        make_ensemble().suggest_perturbations("ctx0")


# ------------------------------------------------------- next experiments
@pytest.mark.parametrize("method", ["variance_reduction", "uncertainty"])
def test_suggestions_exclude_measured_and_are_ranked(fitted, split, method):
    _, _, X_new, Y_new = split
    obs = (X_new.iloc[:5], Y_new.iloc[:5])
    table = fitted.suggest_perturbations("brand_new", n=6, observed=obs, method=method)
    assert list(table.columns) == ["perturbation", "score"]
    assert len(table) == 6 and table["perturbation"].is_unique
    assert not set(table["perturbation"]) & set(X_new["perturbation"].iloc[:5])
    assert np.all(np.isfinite(table["score"])) and np.all(table["score"] >= 0)
    if method == "uncertainty":
        assert table["score"].is_monotonic_decreasing
    again = fitted.suggest_perturbations("brand_new", n=6, observed=obs, method=method)
    pd.testing.assert_frame_equal(table, again)
    # in a fitted context, its fitted pairs are measured
    known = fitted.suggest_perturbations("ctx0", n=3, method=method)
    measured = set(fitted.measured_.loc[fitted.measured_.context == "ctx0", "perturbation"])
    assert len(known) == 3 and not set(known["perturbation"]) & measured


def test_suggestions_follow_the_candidates(fitted, split):
    _, _, X_new, Y_new = split
    candidates = list(X_new["perturbation"].iloc[3:12])
    obs = (X_new.iloc[:4], Y_new.iloc[:4])  # the 4th candidate is already measured
    table = fitted.suggest_perturbations("brand_new", n=50, candidates=candidates,
                                         observed=obs)
    assert set(table["perturbation"]) == set(candidates[1:])
    first = fitted.suggest_perturbations("brand_new", n=1, candidates=candidates,
                                         observed=obs)
    assert first["perturbation"].iloc[0] == table["perturbation"].iloc[0]
    # a first batch for a context with no measurement at all
    cold = fitted.suggest_perturbations("another_new", n=4)
    assert len(cold) == 4


def test_suggestions_bad_input(fitted):
    for n in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="positive integer"):
            fitted.suggest_perturbations("ctx0", n=n)
    with pytest.raises(ValueError, match="method"):
        fitted.suggest_perturbations("ctx0", n=2, method="magic")
    with pytest.raises(ValueError, match="never observed in fit"):
        fitted.suggest_perturbations("ctx0", n=2, candidates=["never_seen"])
    measured = fitted.measured_.loc[fitted.measured_.context == "ctx0", "perturbation"]
    empty = fitted.suggest_perturbations("ctx0", n=2, candidates=list(measured[:3]))
    assert empty.shape == (0, 2)


# ------------------------------------------------------- sklearn plumbing
def test_clone_params_and_validation(fitted):
    params = fitted.get_params()
    assert params["n_estimators"] == 3 and params["estimator__max_epochs"] == 12
    fresh = clone(fitted)
    assert not hasattr(fresh, "estimators_")
    fresh.set_params(estimator__max_epochs=3, n_estimators=2)
    assert fresh.estimator.max_epochs == 3
    with pytest.raises(InvalidParameterError):
        make_ensemble(n_estimators=0).fit(*_tiny_xy())
    with pytest.raises(InvalidParameterError):
        make_ensemble(calibration_fraction=1.0).fit(*_tiny_xy())
    assert C3TLEnsemble().context_col == "context"


def test_pickle_round_trip(fitted, split):
    X, _, X_new, Y_new = split
    obs = (X_new.iloc[:4], Y_new.iloc[:4])
    restored = pickle.loads(pickle.dumps(fitted))
    a = fitted.predict(X_new.iloc[4:], return_std=True, observed=obs)
    b = restored.predict(X_new.iloc[4:], return_std=True, observed=obs)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert restored.score(X.iloc[:20], split[1].iloc[:20]) <= 1


def _tiny_xy():
    X = pd.DataFrame({"context": ["a", "a", "b", "b"], "perturbation": ["p", "q"] * 2})
    return X, np.arange(8, dtype=float).reshape(4, 2)


def test_any_estimator_and_custom_columns(split):
    X, Y, X_new, Y_new = split
    rename = {"context": "cell", "perturbation": "drug"}
    Xr, Xr_new = X.rename(columns=rename), X_new.rename(columns=rename)
    base = AdditiveBaseline(context_col="cell", perturbation_col="drug")
    model = C3TLEnsemble(base, n_estimators=2, random_state=0, n_jobs=2).fit(Xr, Y)
    mean, std = model.predict(Xr.iloc[:4], return_std=True)
    assert mean.shape == (4, Y.shape[1]) and np.all(std > 0)
    obs = (Xr_new.iloc[:6], Y_new.iloc[:6])
    informed = model.predict(Xr_new.iloc[6:], observed=obs)
    zero_shot = predict_quiet(model, Xr_new.iloc[6:])
    assert not np.allclose(informed, zero_shot)
    table = model.suggest_perturbations("brand_new", n=3, observed=obs)
    assert len(table) == 3
