"""The fallback: folds, convex weights, honest held-out predictions and the blend."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from c3tl_sklearn import (
    AdditiveBaseline,
    C3TLRegressor,
    LeaveOneContextOut,
    MeanBaseline,
)
from c3tl_sklearn import estimator as estimator_module
from c3tl_sklearn.datasets import make_regime_perturbations
from c3tl_sklearn.fallback import (
    CANDIDATES,
    baselines,
    convex_weights,
    fallback_folds,
    held_out_predictions,
    refit_with_observed,
)

QUICK = dict(max_epochs=40, hidden_dims=(16,), latent_dim=8, n_components=10, random_state=0)


@st.composite
def pair_tables(draw):
    n_ctx = draw(st.integers(2, 6))
    n_pert = draw(st.integers(2, 15))
    observed = draw(st.lists(st.lists(st.booleans(), min_size=n_pert, max_size=n_pert),
                             min_size=n_ctx, max_size=n_ctx))
    mask = np.array(observed)
    mask[:, 0] = True  # every context measures something
    c, p = np.nonzero(mask)
    return c, p


@settings(max_examples=60, deadline=None)
@given(pair_tables(), st.integers(0, 2**31 - 1))
def test_folds_hold_out_only_pairs_of_dense_contexts_that_stay_predictable(table, seed):
    c, p = table
    n_c = np.bincount(c)
    sparse_share = n_c.min() / n_c.max()
    for train, held in fallback_folds(c, p, np.random.RandomState(seed)):
        assert not (train & held).any() and (train | held).all()
        assert held.any()
        # a held-out pair's perturbation is trained on somewhere
        assert np.isin(p[held], p[train]).all()
        for ctx in np.unique(c[held]):
            assert (train & (c == ctx)).any(), "a masked context keeps pairs"
            if sparse_share < 0.5:
                assert n_c[ctx] >= 2 * n_c.min(), "an already sparse context is never masked"


def test_folds_mask_down_to_the_sparsest_share():
    # three full contexts of 40 pairs and a target with 4 (10%)
    c = np.repeat([0, 1, 2, 3], [40, 40, 40, 4])
    p = np.concatenate([np.arange(40)] * 3 + [np.arange(4)])
    folds = fallback_folds(c, p, np.random.RandomState(0))
    assert len(folds) == 2
    for train, held in folds:
        masked = np.unique(c[held])
        assert 3 not in masked
        for ctx in masked:
            assert (train & (c == ctx)).sum() == 4  # 10% of 40
    assert sorted(np.concatenate([np.unique(c[h]) for _, h in folds])) == [0, 1, 2]


def test_no_fold_when_no_context_can_spare_two_pairs():
    c = np.array([0, 0, 1, 1])
    p = np.array([0, 1, 0, 1])
    assert fallback_folds(c, p, np.random.RandomState(0)) == []


def _loss(w, G, b):
    return w @ G @ w - 2 * w @ b


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_convex_weights_are_the_simplex_minimum(k, seed):
    rng = np.random.default_rng(seed)
    P = rng.normal(size=(30, k)) + rng.normal(size=k)
    y = P @ rng.dirichlet(np.ones(k)) * rng.uniform(0.5, 1.5) + rng.normal(size=30)
    G, b = P.T @ P, P.T @ y
    w = convex_weights(G, b)
    assert w.shape == (k,) and (w >= 0).all() and np.isclose(w.sum(), 1.0)
    # no point of the simplex does better (vertices and random interior points)
    others = np.vstack([np.eye(k), rng.dirichlet(np.ones(k), size=2000)])
    tol = 1e-9 * np.abs(G).max()
    assert _loss(w, G, b) <= min(_loss(o, G, b) for o in others) + tol


def test_convex_weights_pick_the_exact_candidate():
    P = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [2.0, 0.0, 1.0]])
    y = P[:, 1].copy()
    np.testing.assert_allclose(convex_weights(P.T @ P, P.T @ y), [0.0, 1.0, 0.0], atol=1e-12)


def test_held_out_predictions_never_see_their_own_pairs():
    X, Y = make_regime_perturbations("mixing", 4, 20, 30, random_state=0)
    Y = Y.to_numpy()
    c = pd.factorize(X["context"], sort=True)[0]
    p = pd.factorize(X["perturbation"], sort=True)[0]
    folds = fallback_folds(c, p, np.random.RandomState(0))
    assert len(folds) == 2
    first = list(held_out_predictions(C3TLRegressor(**QUICK), X, Y, folds,
                                      np.random.RandomState(1)))
    for f, (_, held) in enumerate(folds):
        # garble the pairs this fold holds out: its predictions of them must not move
        garbled = Y.copy()
        garbled[held] = 1e3 * np.random.default_rng(f).normal(size=garbled[held].shape)
        second = list(held_out_predictions(C3TLRegressor(**QUICK), X, garbled, folds,
                                           np.random.RandomState(1)))
        assert len(first[f][1]) == len(CANDIDATES)
        for a, b in zip(first[f][1], second[f][1], strict=True):
            np.testing.assert_array_equal(a, b)


def _held_out_mse(model, regime, seeds=(0, 1, 2)):
    """Per-split held-out MSEs of ``model`` under LOCO 10% on three data draws."""
    out = []
    for seed in seeds:
        X, Y = make_regime_perturbations(regime, 6, 40, 100, random_state=seed)
        cv = LeaveOneContextOut(adaptation_fraction=0.1, test_contexts=["ctx0", "ctx1"],
                                random_state=seed)
        for train, test in cv.split(X):
            fitted = model.fit(X.iloc[train], Y.iloc[train])
            pred = fitted.predict(X.iloc[test])
            out.append(float(np.mean((pred - Y.iloc[test].to_numpy()) ** 2)))
    return np.array(out)


@pytest.mark.parametrize(("regime", "baseline"),
                         [("shared", MeanBaseline), ("offset", AdditiveBaseline)])
def test_default_falls_back_to_the_baseline_of_its_world(regime, baseline):
    """In the mean baseline's world the default is the mean baseline, within noise;
    in the offset world it is the additive one."""
    torch.set_num_threads(1)
    ours = _held_out_mse(C3TLRegressor(random_state=0), regime)
    theirs = _held_out_mse(baseline(), regime)
    diff = ours - theirs
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    # noise: the spread of the paired difference over the six held-out contexts
    assert diff.mean() <= 2 * se + 1e-3 * theirs.mean(), (ours, theirs)
    X, Y = make_regime_perturbations(regime, 6, 40, 100, random_state=0)
    weights = C3TLRegressor(random_state=0).fit(X, Y).fallback_weights_
    assert weights[0] < 0.9, weights  # the baselines carry the blend


@pytest.fixture(scope="module")
def blended():
    """A model whose blend gives the baselines weight (the mean baseline's world)."""
    X, Y = make_regime_perturbations("shared", 5, 20, 30, random_state=3)
    new = X["context"] == "ctx0"
    model = C3TLRegressor(**QUICK).fit(X[~new], Y[~new])
    assert model.fallback_weights_ is not None and model.fallback_weights_[0] < 1
    return model, X, Y, new


def test_blend_is_the_weighted_sum_of_the_parts(blended):
    model, X, Y, new = blended
    w = model.fallback_weights_
    assert w.shape == (4,) and np.isclose(w.sum(), 1) and (w >= 0).all()
    assert model.fallback_mse_.shape == (5,)
    # the blend's held-out error is at most the best single candidate's
    assert model.fallback_mse_[-1] <= model.fallback_mse_[:-1].min() + 1e-9
    X_q = X[~new].iloc[:7]
    members = [b.fit(X[~new], Y[~new]) for b in baselines("context", "perturbation")]
    net_part = C3TLRegressor(**{**QUICK, "fallback": None}).fit(X[~new], Y[~new]).predict(X_q)
    expected = w[0] * net_part + sum(
        wk * m.predict(X_q) for wk, m in zip(w[1:], members, strict=True))
    np.testing.assert_allclose(model.predict(X_q), expected, rtol=1e-6, atol=1e-6)
    for weight, member in zip(w[1:], model.fallback_estimators_, strict=True):
        assert (member is None) == (weight == 0)


def test_observed_joins_the_baselines_without_refitting_the_network(blended):
    model, X, Y, new = blended
    X_new, Y_new = X[new], Y[new]
    X_obs, Y_obs = X_new.iloc[:3], Y_new.iloc[:3]
    query = X_new.iloc[3:]
    state = {k: v.clone() for k, v in model.net_.module_.state_dict().items()}
    pred = model.predict(query, observed=(X_obs, Y_obs))
    for k, v in model.net_.module_.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    w = model.fallback_weights_
    members = [None if m is None else
               type(m)().fit(pd.concat([X[~new], X_obs]), pd.concat([Y[~new], Y_obs]))
               for m in model.fallback_estimators_]
    net_part = model.predict_without_fallback(query, (X_obs, Y_obs))
    expected = w[0] * net_part + sum(
        wk * m.predict(query) for wk, m in zip(w[1:], members, strict=True) if m is not None)
    np.testing.assert_allclose(pred, expected, rtol=1e-6, atol=1e-6)
    # the new context's measurements moved the prediction
    assert not np.allclose(pred, model.predict(query))


def test_observed_that_repeats_fit_pairs_keeps_the_fit_effect_in_the_baselines(blended):
    model, X, Y, new = blended
    mean = next(m for m in model.fallback_estimators_ if m is not None)
    again = refit_with_observed([mean], X[~new].iloc[:2], 5 + Y[~new].iloc[:2].to_numpy())[0]
    np.testing.assert_array_equal(again.effects_, mean.effects_)


def test_refit_with_observed_keeps_none_members():
    X, Y = make_regime_perturbations("shared", 3, 6, 4, random_state=0)
    mean = MeanBaseline().fit(X, Y)
    X_obs = pd.DataFrame({"context": ["new"], "perturbation": ["pert0"]})
    out = refit_with_observed([mean, None], X_obs, np.ones((1, 4), dtype=np.float32))
    assert out[1] is None and "new" in out[0].contexts_ and "new" not in mean.contexts_


def test_fallback_none_and_the_size_gate(monkeypatch):
    X, Y = make_regime_perturbations("shared", 4, 12, 20, random_state=0)
    off = C3TLRegressor(**{**QUICK, "fallback": None}).fit(X, Y)
    assert off.fallback_weights_ is None and off.fallback_estimators_ is None
    monkeypatch.setattr(estimator_module, "AUTO_FALLBACK_MAX_PAIRS", len(X) - 1)
    gated = C3TLRegressor(**QUICK).fit(X, Y)
    assert gated.fallback_weights_ is None
    np.testing.assert_array_equal(gated.predict(X), off.predict(X))
    always = C3TLRegressor(**{**QUICK, "fallback": "always"}).fit(X, Y)
    assert always.fallback_weights_ is not None
    # the sub-fits leave the final network as it was without them
    np.testing.assert_array_equal(always.predict_without_fallback(X), off.predict(X))


def test_blended_model_survives_save_and_load(blended, tmp_path):
    model, X, _, new = blended
    path = model.save(tmp_path / "blend.c3tl")
    loaded = C3TLRegressor.load(path)
    np.testing.assert_array_equal(loaded.fallback_weights_, model.fallback_weights_)
    np.testing.assert_allclose(loaded.predict(X[new]), model.predict(X[new]), rtol=1e-6,
                               atol=1e-6)
