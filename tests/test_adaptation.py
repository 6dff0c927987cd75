"""The context read-out (``c3tl_sklearn.adaptation``) and its use inside C3TLRegressor."""

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.decomposition import PCA
from skorch.callbacks import Callback

from c3tl_sklearn import AdditiveBaseline, C3TLRegressor
from c3tl_sklearn.adaptation import (
    ALPHAS,
    ContextReadout,
    _loo_alpha,
    apply_readout,
    mean_effect_components,
    standardise_features,
)

from .conftest import holdout_context

# the network and its read-out alone; the blend with the baselines is tests/test_fallback.py
FAST = dict(max_epochs=25, hidden_dims=(32,), latent_dim=8, fallback=None, random_state=0)


# ----------------------------------------------------------------- ContextReadout
def _rows(seed, n=40, k=5, d=7, n_ctx=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, k)), rng.normal(size=(n, d)), rng.integers(0, n_ctx, n)


def test_offset_is_the_shrunk_mean_residual():
    F, R, codes = _rows(0)
    readout = ContextReadout(3, F.shape[1], R.shape[1]).add(F, R, codes)
    for c in range(3):
        rows = codes == c
        b, *_ = readout.solve(c)
        np.testing.assert_allclose(b, R[rows].sum(0) / (rows.sum() + 1.0))
    out = readout.correction(codes, F, features=False)
    expected = np.broadcast_to(readout.solve(1)[0], out[codes == 1].shape)
    np.testing.assert_allclose(out[codes == 1], expected)


def test_map_matches_sklearn_ridge_on_centred_data():
    from sklearn.linear_model import Ridge

    F, R, codes = _rows(1, n=60)
    readout = ContextReadout(3, F.shape[1], R.shape[1]).add(F, R, codes)
    _, W, f_bar, alpha = readout.solve(2)
    rows = codes == 2
    ridge = Ridge(alpha=alpha).fit(F[rows], R[rows])
    np.testing.assert_allclose(W, ridge.coef_.T, atol=1e-5)
    np.testing.assert_allclose(f_bar, F[rows].mean(0))


def test_loo_alpha_matches_brute_force_leave_one_out():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    F = rng.normal(size=(15, 4))
    R = F @ rng.normal(size=(4, 3)) + rng.normal(size=(15, 3))
    errors = []
    for alpha in ALPHAS:
        err = 0.0
        for i in range(len(F)):
            keep = np.arange(len(F)) != i
            ridge = Ridge(alpha=alpha).fit(F[keep], R[keep])
            err += float(np.sum((ridge.predict(F[i : i + 1]) - R[i]) ** 2))
        errors.append(err)
    assert _loo_alpha(F, R) == ALPHAS[int(np.argmin(errors))]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), split=st.integers(1, 39))
def test_statistics_add_up_and_contexts_stay_apart(seed, split):
    F, R, codes = _rows(seed)
    whole = ContextReadout(3, F.shape[1], R.shape[1]).add(F, R, codes)
    parts = ContextReadout(3, F.shape[1], R.shape[1])
    parts.add(F[:split], R[:split], codes[:split]).add(F[split:], R[split:], codes[split:])
    for c in range(3):
        for got, want in zip(parts.cross_products(c), whole.cross_products(c), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # another context's rows never move a context's read-out
    alone = ContextReadout(3, F.shape[1], R.shape[1]).add(F[codes == 0], R[codes == 0],
                                                         codes[codes == 0])
    for got, want in zip(alone.solve(0), whole.solve(0), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


def _dense_sums(F, R, codes, n_ctx):
    """The read-out's statistics as format version 2 stored them: dense per-context sums."""
    k, d = F.shape[1], R.shape[1]
    sums = {"n_": np.zeros(n_ctx), "alpha_": np.full(n_ctx, 30.0),
            "sum_f_": np.zeros((n_ctx, k)), "sum_r_": np.zeros((n_ctx, d)),
            "gram_ff_": np.zeros((n_ctx, k, k)), "gram_fr_": np.zeros((n_ctx, k, d), np.float32)}
    for c in range(n_ctx):
        f, r = F[codes == c], R[codes == c]
        sums["n_"][c] = len(f)
        sums["sum_f_"][c], sums["sum_r_"][c] = f.sum(0), r.sum(0)
        sums["gram_ff_"][c], sums["gram_fr_"][c] = f.T @ f, f.T @ r
    return sums


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 30), k=st.integers(1, 6),
       chunks=st.integers(1, 4))
def test_factors_hold_the_cross_products_in_at_most_the_measured_rows(seed, n, k, chunks):
    F, R, codes = _rows(seed, n=n, k=k, d=3, n_ctx=3)
    readout = ContextReadout(3, k, 3)
    for part in np.array_split(np.arange(n), chunks):
        readout.add(F[part], R[part], codes[part])
    for c in range(3):
        rows = codes == c
        ones_f = np.hstack([np.ones((rows.sum(), 1)), F[rows]])
        # never more rows than the context measured, nor than the features need
        assert len(readout.factor_f_[c]) == len(readout.factor_r_[c]) <= min(rows.sum(), k + 1)
        gram_ff, gram_fr = readout.cross_products(c)
        np.testing.assert_allclose(gram_ff, ones_f.T @ ones_f, atol=1e-9 * max(n, 1))
        np.testing.assert_allclose(gram_fr, ones_f.T @ R[rows], rtol=1e-5, atol=1e-5)
        assert readout.n_[c] == rows.sum()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 40))
def test_correction_is_offset_plus_ridge_map(seed, n):
    F, R, codes = _rows(seed, n=n)
    readout = ContextReadout(3, F.shape[1], R.shape[1]).add(F, R, codes)
    out = readout.correction(codes, F)
    for c in np.unique(codes):
        b, W, f_bar, _ = readout.solve(int(c))
        rows = codes == c
        np.testing.assert_allclose(out[rows], b + (F[rows] - f_bar) @ W, atol=1e-8)


def test_version_2_sums_load_with_the_same_correction():
    F, R, codes = _rows(4, n=50, k=5, d=7, n_ctx=4)
    codes[codes == 3] = 0  # an empty context, stored with zero sums
    fitted = ContextReadout(4, 5, 7).add(F, R, codes)
    sums = {**_dense_sums(F, R, codes, 4), "alpha_": fitted.alpha_.copy()}
    loaded = ContextReadout.from_attributes(sums)
    query = np.array([0, 1, 2, 3, 0])
    np.testing.assert_allclose(loaded.correction(query, F[:5]), fitted.correction(query, F[:5]),
                               rtol=1e-5, atol=1e-6)
    assert loaded.n_.tolist() == fitted.n_.tolist()


def test_from_attributes_refuses_what_is_not_a_readout():
    F, R, codes = _rows(5)
    good = vars(ContextReadout(3, F.shape[1], R.shape[1]).add(F, R, codes))
    ContextReadout.from_attributes(good)
    with pytest.raises(ValueError, match="has the attributes"):
        ContextReadout.from_attributes({**good, "evil": 1})
    with pytest.raises(ValueError, match="inconsistent shapes"):
        ContextReadout.from_attributes({**good, "factor_r_": [good["factor_r_"][0][:, :2],
                                                              *good["factor_r_"][1:]]})
    with pytest.raises(ValueError, match="inconsistent shapes"):
        ContextReadout.from_attributes({**good, "factor_f_": [good["factor_f_"][0][:-1],
                                                              *good["factor_f_"][1:]]})
    with pytest.raises(ValueError, match="do not match its contexts"):
        ContextReadout.from_attributes({**good, "factor_f_": good["factor_f_"][:2]})
    with pytest.raises(ValueError, match="NaN or infinity"):
        ContextReadout.from_attributes({**good, "factor_r_": [good["factor_r_"][0] * np.nan,
                                                              *good["factor_r_"][1:]]})
    with pytest.raises(ValueError, match="non-negative whole numbers"):
        ContextReadout.from_attributes({**good, "n_": np.r_[-1.0, good["n_"][1:]]})
    with pytest.raises(ValueError, match="non-negative whole numbers"):
        ContextReadout.from_attributes({**good, "n_": np.r_[1e-300, good["n_"][1:]]})
    with pytest.raises(ValueError, match="pair counts do not match its factors"):
        ContextReadout.from_attributes({**good, "n_": good["n_"] + 1})
    with pytest.raises(ValueError, match="alpha_ is not a vector of positive numbers"):
        ContextReadout.from_attributes({**good, "alpha_": np.zeros_like(good["alpha_"])})
    sums = _dense_sums(F, R, codes, 3)
    ContextReadout.from_attributes(sums)
    with pytest.raises(ValueError, match="sums hold NaN or infinity"):
        ContextReadout.from_attributes({**sums, "gram_fr_": sums["gram_fr_"] * np.inf})


def test_extended_copy_leaves_the_original_untouched():
    F, R, codes = _rows(6)
    readout = ContextReadout(3, F.shape[1], R.shape[1]).add(F, R, codes)
    before = readout.correction(codes, F)
    wider = readout.extended(5)
    wider.add(F[:10], R[:10] + 5.0, np.zeros(10, dtype=int))
    wider.add(F[:4], R[:4], np.full(4, 4))
    np.testing.assert_array_equal(readout.correction(codes, F), before)
    assert readout.n_contexts == 3 and wider.n_contexts == 5 and wider.n_[4] == 4


def test_empty_context_gets_no_correction():
    F, R, codes = _rows(3)
    readout = ContextReadout(4, F.shape[1], R.shape[1]).add(F, R, codes)
    out = readout.correction(np.array([3, -1, 7]), F[:3])
    assert np.all(out == 0)


# -------------------------------------------------------- inside C3TLRegressor
class _ZeroDecoderOutput(Callback):
    """Makes Gamma output 0 so the network predicts the perturbation means."""

    def on_train_begin(self, net, **kwargs):
        last = net.module_.gamma[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()


@pytest.mark.parametrize("n_components", [None, 5])
def test_offset_limit_is_the_additive_baseline(small_data, n_components):
    X, Y = small_data
    train, test = holdout_context(X, "ctx2", keep=0.3)
    model = C3TLRegressor(
        **{**FAST, "max_epochs": 2, "lr": 1e-12, "n_components": n_components},
        adaptation="offset", callbacks=[_ZeroDecoderOutput()],
    ).fit(X.iloc[train], Y.iloc[train])
    X_fit, Y_fit = X.iloc[train], Y.iloc[train].to_numpy(dtype=np.float64)
    expected = AdditiveBaseline().fit(X_fit, Y_fit).predict(X.iloc[test])
    if n_components is not None:
        # with a basis, the perturbation mean outside it (here each fit pair's,
        # over the other contexts) enters shrunk by outside_shrinkage_
        outside, (signal, noise) = model.mean_outside_basis_, model.outside_variances_
        p_fit = np.searchsorted(model.perturbations_, X_fit["perturbation"].to_numpy())
        k = np.bincount(p_fit)[p_fit][:, None]
        own = Y_fit - model.pca_.inverse_transform(model.pca_.transform(Y_fit))
        others = (k * outside[p_fit] - own) / (k - 1)
        dropped = (1 - signal / (signal + noise / (k - 1))) * others
        in_target = (X_fit["context"] == "ctx2").to_numpy()
        p_test = np.searchsorted(model.perturbations_, X.iloc[test]["perturbation"].to_numpy())
        expected += (dropped[in_target].sum(axis=0) / (in_target.sum() + 1)
                     - (1 - model.outside_shrinkage_[p_test, None]) * outside[p_test])
    np.testing.assert_allclose(model.predict(X.iloc[test]), expected, atol=1e-4)


def test_adaptation_uses_only_the_contexts_own_measurements(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    X_a = X[X.context == "ctx0"].assign(context="new_a")
    Y_a = Y[(X.context == "ctx0").to_numpy()]
    X_b = X[X.context == "ctx1"].assign(context="new_b")
    Y_b = Y[(X.context == "ctx1").to_numpy()]
    query = X_a.iloc[10:]
    alone = model.predict(query, observed=(X_a.iloc[:10], Y_a.iloc[:10]))
    both = model.predict(query, observed=(pd.concat([X_a.iloc[:10], X_b]),
                                          pd.concat([Y_a.iloc[:10], Y_b])))
    np.testing.assert_allclose(alone, both, atol=1e-5)
    # and the measurements do change that context's prediction
    codes_only = model.predict_without_fallback(query, (X_a.iloc[:10], Y_a.iloc[:10]),
                                                readout_observed=False)
    assert not np.allclose(alone, codes_only)


def test_no_leakage_of_test_pairs(small_data):
    """Held-out pairs' effects cannot reach their predictions: changing them changes nothing."""
    X, Y = small_data
    train, test = holdout_context(X, "ctx1", keep=0.3)
    model = C3TLRegressor(**FAST).fit(X.iloc[train], Y.iloc[train])
    pred = model.predict(X.iloc[test])
    # a fit pair's held-out prediction does not move when its own effect does
    module = model.net_.module_.eval()
    with torch.no_grad():
        before = module.held_out_fit().predictions
        x = module.obs_x.clone()
        x[0] += 5.0
        module.set_observations(x, module.obs_context, module.obs_perturbation)
        after = module.held_out_fit().predictions
    np.testing.assert_allclose(after[0].numpy(), before[0].numpy(), atol=1e-4)
    assert pred.shape == (len(test), Y.shape[1])


def test_held_out_prediction_equals_prediction_without_the_pair(small_data):
    X, Y = small_data
    model = C3TLRegressor(**{**FAST, "n_components": None}).fit(X, Y)
    module = model.net_.module_.eval()
    x, c, p = module.obs_x.clone(), module.obs_context.clone(), module.obs_perturbation.clone()
    with torch.no_grad():
        held = module.held_out_fit().predictions
        for i in (0, 17, 101):
            keep = torch.arange(len(x)) != i
            module.set_observations(x[keep], c[keep], p[keep])
            direct = module.predict_pairs(torch.stack([c[i : i + 1], p[i : i + 1]], 1))
            np.testing.assert_allclose(held[i].numpy(), direct[0].numpy(), atol=1e-5)
            module.set_observations(x, c, p)


def test_adaptation_is_deterministic_and_validated(small_data):
    X, Y = small_data
    a = C3TLRegressor(**FAST).fit(X, Y).predict(X.iloc[:20])
    b = C3TLRegressor(**FAST).fit(X, Y).predict(X.iloc[:20])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="adaptation"):
        C3TLRegressor(**FAST, adaptation="bayes").fit(X, Y)
    plain = C3TLRegressor(**FAST, adaptation=None).fit(X, Y)
    assert plain.readout_ is None and plain.readout_features_ is None


def test_a_pairs_own_effect_never_reaches_its_features(small_data):
    """The read-out regresses a fit pair's residual on features made without that pair."""
    X, Y = small_data
    model = C3TLRegressor(**{**FAST, "n_components": 5}).fit(X, Y)
    p_codes = np.searchsorted(model.perturbations_, X["perturbation"].to_numpy())
    values = Y.to_numpy().astype(np.float32)
    z, z_rows = torch.zeros(len(model.perturbations_), 1), np.zeros((len(X), model.latent_dim))
    # the effects as the network reads them: the rows in the basis
    x = model.net_.module_.obs_x.numpy().copy()
    _, rows = model._readout_features(values, x, p_codes, z, z_rows, 0)
    changed = values.copy()
    changed[3] += 10.0
    x[3] = model.pca_.transform(changed[3:4]).astype(np.float32)[0]
    _, rows_changed = model._readout_features(changed, x, p_codes, z, z_rows, 0)
    np.testing.assert_allclose(rows_changed[3], rows[3], atol=1e-5)
    others = p_codes == p_codes[3]
    others[3] = False
    assert not np.allclose(rows_changed[others], rows[others])


@pytest.mark.parametrize("keep", [0.25, 0.6])
def test_ridge_readout_beats_no_adaptation(small_data, keep):
    X, Y = small_data
    train, test = holdout_context(X, "ctx3", keep=keep)
    errors = {}
    for adaptation in (None, "ridge"):
        model = C3TLRegressor(**{**FAST, "max_epochs": 60}, adaptation=adaptation)
        pred = model.fit(X.iloc[train], Y.iloc[train]).predict(X.iloc[test])
        errors[adaptation] = float(np.mean((pred - Y.iloc[test].to_numpy()) ** 2))
    assert errors["ridge"] < errors[None]


def test_mean_effect_components_leave_each_row_out_of_its_own_mean():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(12, 6))
    p_codes = np.repeat(np.arange(4), 3)
    means = mean_effect_components(Y, p_codes, 4, random_state=0)
    assert means.per_perturbation.shape == (4, 3)  # n_perturbations - 1 components
    for i in range(len(Y)):
        others = np.flatnonzero(p_codes == p_codes[i])
        others = others[others != i]
        rows = PCA(3, random_state=0).fit(Y).transform(Y)
        np.testing.assert_allclose(means.per_row[i], rows[others].mean(axis=0), atol=1e-12)
    single = mean_effect_components(Y, np.zeros(12, dtype=int), 1)
    assert single.per_perturbation.shape == (1, 0) and single.per_row.shape == (12, 0)


def test_standardise_features_leaves_constant_columns_unscaled():
    F = np.array([[1.0, 5.0], [3.0, 5.0]])
    Z, mean, scale = standardise_features(F)
    np.testing.assert_allclose(Z, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(scale, [1.0, 1.0])


def test_apply_readout_adds_the_observed_pairs_then_corrects_the_query():
    F = np.eye(4)
    c_obs, p_obs = np.array([0, 0, 0, 0]), np.array([0, 1, 2, 3])
    R = np.ones((4, 1))
    direct = ContextReadout(1, 4, 1).add(F[p_obs], R, c_obs).correction(np.array([0]), F[[1]])
    applied = apply_readout(ContextReadout(1, 4, 1), F, (np.array([0]), np.array([1])),
                            (c_obs, p_obs, R))
    np.testing.assert_array_equal(applied, direct)
