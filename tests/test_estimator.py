import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Callback
from skorch.dataset import Dataset

from c3tl_sklearn import C3TLRegressor
from c3tl_sklearn._net import TensorBatchIterator
from c3tl_sklearn.datasets import PerturbationDesign, make_synthetic_perturbations
from c3tl_sklearn.estimator import _shrinkage

from .conftest import holdout_context, warns_at

# the network and its read-out alone; the blend with the baselines is tests/test_fallback.py
FAST = dict(max_epochs=25, hidden_dims=(32,), latent_dim=8, fallback=None, random_state=0)


def row_pearson(a, b):
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    return np.mean((a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1)))


def test_fit_predict_shapes_and_fitted_attributes(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    pred = model.predict(X.iloc[:7])
    assert pred.shape == (7, Y.shape[1])
    assert pred.dtype == np.float64
    assert np.isfinite(pred).all()
    assert list(model.contexts_) == sorted(X["context"].unique())
    assert list(model.perturbations_) == sorted(X["perturbation"].unique())
    assert model.n_features_in_ == 2
    assert list(model.feature_names_in_) == ["context", "perturbation"]
    assert model.n_genes_ == Y.shape[1]
    assert list(model.gene_names_) == list(Y.columns)
    assert model.n_epochs_ == len(model.history_) <= FAST["max_epochs"]
    assert "valid_loss" in model.history_[-1]
    assert model.validation_mask_.shape == (len(X),)
    assert 0 < model.validation_mask_.sum() < 0.2 * len(X)


def test_numpy_response_has_no_gene_names(tiny_data):
    X, Y = tiny_data
    model = C3TLRegressor(**FAST).fit(X, Y.to_numpy())
    assert model.gene_names_ is None
    assert model.predict(X).shape == Y.shape


def test_same_seed_same_predictions_other_seed_differs(small_data):
    X, Y = small_data
    a = C3TLRegressor(**FAST).fit(X, Y).predict(X)
    b = C3TLRegressor(**FAST).fit(X, Y).predict(X)
    c = C3TLRegressor(**{**FAST, "random_state": 1}).fit(X, Y).predict(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_does_not_touch_global_torch_rng(tiny_data):
    X, Y = tiny_data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    C3TLRegressor(**FAST).fit(X, Y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_user_data_not_modified(small_data):
    X, Y = small_data
    X_copy, Y_copy = X.copy(), Y.copy()
    model = C3TLRegressor(**FAST).fit(X, Y)
    model.predict(X)
    pd.testing.assert_frame_equal(X, X_copy)
    pd.testing.assert_frame_equal(Y, Y_copy)


def test_learns_transfer_better_than_mean_of_other_contexts():
    X, Y = make_synthetic_perturbations(8, 60, 40, design=PerturbationDesign(noise=0.05),
                                        random_state=3)
    train, test = holdout_context(X, "ctx0", keep=0.2)
    model = C3TLRegressor(
        max_epochs=150, hidden_dims=(64,), latent_dim=16, patience=30, random_state=0
    ).fit(X.iloc[train], Y.iloc[train])
    pred = model.predict(X.iloc[test])
    truth = Y.to_numpy()[test]
    others = X["context"] != "ctx0"
    pert_mean = Y[others.to_numpy()].groupby(X["perturbation"][others].to_numpy()).mean()
    mean_pred = pert_mean.loc[X["perturbation"].to_numpy()[test]].to_numpy()
    mse_model = ((pred - truth) ** 2).mean()
    mse_mean = ((mean_pred - truth) ** 2).mean()
    assert mse_model < 0.85 * mse_mean
    assert row_pearson(pred, truth) > row_pearson(mean_pred, truth)


@pytest.mark.parametrize("residual", [False, True])
def test_pca_response_basis(small_data, residual):
    X, Y = small_data
    # the read-out adds gene-space corrections: this is about the network alone
    params = {**FAST, "n_components": 5, "residual": residual, "adaptation": None}
    model = C3TLRegressor(**params).fit(X, Y)
    assert model.pca_.n_components_ == 5
    assert model.net_.module_.obs_x.shape == (len(X), 5)
    pred = model.predict(X)
    assert pred.shape == Y.shape
    if residual:
        # the part of each perturbation's mean effect outside the basis is kept exactly
        p_codes = np.searchsorted(model.perturbations_, X["perturbation"].to_numpy())
        pert_mean = Y.groupby(X["perturbation"].to_numpy()).mean().loc[model.perturbations_]
        projected = model.pca_.inverse_transform(model.pca_.transform(pert_mean.to_numpy()))
        np.testing.assert_allclose(
            model.mean_outside_basis_, pert_mean.to_numpy() - projected, atol=1e-5
        )
        pred = pred - model.outside_shrinkage_[p_codes, None] * model.mean_outside_basis_[p_codes]
    else:
        assert model.mean_outside_basis_ is None
    # the decoded part lives in the 5-dimensional affine span of the basis
    centred = pred - model.pca_.mean_
    residual_part = centred - centred @ model.pca_.components_.T @ model.pca_.components_
    assert np.abs(residual_part).max() < 1e-4
    assert C3TLRegressor(**{**FAST, "n_components": 100}).fit(X, Y).pca_ is None


def _outside_fit(X, Y):
    params = {**FAST, "n_components": 3, "adaptation": None, "max_epochs": 2}
    return C3TLRegressor(**params).fit(X, Y)


def test_outside_variances_match_the_pairwise_moments(small_data):
    X, Y = small_data
    model = _outside_fit(X, Y)
    Y_arr = Y.to_numpy(dtype=np.float64)
    own = Y_arr - model.pca_.inverse_transform(model.pca_.transform(Y_arr))
    perts = X["perturbation"].to_numpy()
    signal, noise = [], []
    for i in range(len(X)):
        others = np.flatnonzero((perts == perts[i]) & (np.arange(len(X)) != i))
        if len(others) == 0:
            continue
        other = own[others].mean(axis=0)
        k = len(others) + 1
        signal.append(own[i] @ other)
        noise.append(np.sum((own[i] - other) ** 2) / (1 + 1 / (k - 1)))
    np.testing.assert_allclose(model.outside_variances_, [np.mean(signal), np.mean(noise)],
                               rtol=1e-3)
    counts = pd.Series(perts).value_counts().loc[model.perturbations_].to_numpy()
    s, v = model.outside_variances_
    np.testing.assert_allclose(model.outside_shrinkage_, max(s, 0) / (max(s, 0) + v / counts),
                               rtol=1e-6)


def test_outside_mean_kept_when_shared_and_dropped_when_context_own():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"context": np.repeat([f"c{i}" for i in range(4)], 12),
                      "perturbation": np.tile([f"p{j}" for j in range(12)], 4)})
    shared = rng.normal(size=(12, 20))
    # every context measures each perturbation's effect exactly: all of it transfers
    model = _outside_fit(X, pd.DataFrame(np.tile(shared, (4, 1))))
    np.testing.assert_allclose(model.outside_shrinkage_, 1.0, atol=1e-4)
    # effects that are each context's own: nothing outside the basis transfers
    own = pd.DataFrame(rng.normal(size=(48, 20)))
    model = _outside_fit(X, own)
    assert model.outside_shrinkage_.max() < 0.2
    # shrink_outside_basis=False adds it in full, whatever the variances
    full = C3TLRegressor(**{**FAST, "n_components": 3, "adaptation": None, "max_epochs": 2,
                            "shrink_outside_basis": False}).fit(X, own)
    np.testing.assert_array_equal(full.outside_shrinkage_, 1.0)
    np.testing.assert_allclose(full.outside_variances_, model.outside_variances_)


@given(signal=st.floats(-10, 10), noise=st.floats(0, 100),
       n=st.lists(st.integers(1, 1000), min_size=2, max_size=10))
def test_shrinkage_is_a_weight_that_grows_with_the_contexts(signal, noise, n):
    n = np.sort(np.array(n))
    w = _shrinkage(n, signal, noise)
    assert np.all((w >= 0) & (w <= 1))
    assert np.all(np.diff(w) >= -1e-12)
    if signal <= 0:
        assert np.all(w == 0)


def test_no_validation_runs_all_epochs(tiny_data):
    X, Y = tiny_data
    model = C3TLRegressor(**{**FAST, "validation_fraction": 0.0, "max_epochs": 7}).fit(X, Y)
    assert model.n_epochs_ == 7
    assert not model.validation_mask_.any()
    assert "valid_loss" not in model.history_[-1]


@pytest.mark.parametrize(("budget", "most", "epochs"), [
    (48 * 30 + 1, 500, 31),  # 31 epochs of the 48 pairs reach the budget
    (48, 500, 20),  # a budget of one epoch: at least 20
    (10**9, 25, 25),  # few pairs: the most "auto" allows
])
def test_auto_max_epochs_bounds_the_training_pair_visits(tiny_data, monkeypatch, budget,
                                                         most, epochs):
    import c3tl_sklearn.estimator as module

    monkeypatch.setattr(module, "AUTO_EPOCH_PAIRS", budget)
    monkeypatch.setattr(module, "AUTO_MAX_EPOCHS", most)
    X, Y = tiny_data  # complete: all 48 pairs train, none held out for validation
    model = C3TLRegressor(**{**FAST, "max_epochs": "auto", "validation_fraction": 0.0})
    model.fit(X, Y)
    assert model.net_.max_epochs == model.n_epochs_ == epochs


def test_auto_max_epochs_defaults():
    from c3tl_sklearn.estimator import AUTO_EPOCH_PAIRS, AUTO_MAX_EPOCHS

    assert C3TLRegressor().max_epochs == "auto"
    assert (AUTO_MAX_EPOCHS, AUTO_EPOCH_PAIRS) == (500, 2_000_000)


@pytest.mark.parametrize(("n_contexts", "expected"), [(3, "effect"), (4, "departure")])
def test_auto_context_input_follows_the_number_of_contexts(tiny_data, n_contexts, expected):
    X, Y = tiny_data
    keep = X["context"].isin(sorted(X["context"].unique())[:n_contexts]).to_numpy()
    model = C3TLRegressor(**FAST).fit(X[keep], Y[keep])
    assert model.context_input == "auto"
    assert model.net_.module_.context_input == expected
    chosen = C3TLRegressor(**{**FAST, "context_input": expected}).fit(X[keep], Y[keep])
    np.testing.assert_array_equal(model.predict(X[keep]), chosen.predict(X[keep]))


def test_validation_pairs_keep_their_perturbation_observed_elsewhere(small_data):
    X, Y = small_data
    model = C3TLRegressor(**{**FAST, "validation_fraction": 0.5}).fit(X, Y)
    valid = model.validation_mask_
    kept = X.loc[~valid]
    assert set(X.loc[valid, "perturbation"]) <= set(kept["perturbation"])
    assert set(kept["context"]) == set(X["context"])


def test_early_stopping_restores_best_epoch(small_data):
    X, Y = small_data
    params = {**FAST, "max_epochs": 60, "patience": 3, "lr": 0.05}
    model = C3TLRegressor(**params).fit(X, Y)
    losses = model.history_[:, "valid_loss"]
    best = int(np.argmin(losses))
    assert model.n_epochs_ == best + 1 + 3 < 60
    # training is deterministic, so stopping right at the best epoch gives the same weights
    at_best = C3TLRegressor(**{**params, "max_epochs": best + 1, "patience": 1000}).fit(X, Y)
    np.testing.assert_allclose(at_best.predict(X), model.predict(X), rtol=1e-5, atol=1e-6)


def test_plateau_schedule_cuts_the_rate_when_the_validation_loss_stalls(small_data):
    X, Y = small_data
    params = {**FAST, "max_epochs": 300, "patience": 10, "lr": 0.05, "lr_schedule": "plateau"}
    model = C3TLRegressor(**params).fit(X, Y)
    losses = model.history_[:, "valid_loss"]
    # torch's ReduceLROnPlateau rule: x 0.3 once more than 3 epochs in a row bring
    # no loss below the best (relative threshold 1e-4)
    expected, best, bad, lr = [], np.inf, 0, params["lr"]
    for loss in losses:
        expected.append(lr)
        if loss < best * (1 - 1e-4):
            best, bad = loss, 0
        else:
            bad += 1
        if bad > 3:
            lr, bad = lr * 0.3, 0
    np.testing.assert_allclose(model.history_[:, "event_lr"], expected, rtol=1e-12)
    assert expected[-1] < params["lr"]
    # early stopping counts an epoch only when it beats the best by more than 1%
    threshold, improved = np.inf, 0
    for epoch, loss in enumerate(losses):
        if loss < threshold:
            threshold, improved = loss * (1 - 0.01), epoch
    assert model.n_epochs_ == improved + 1 + params["patience"] < params["max_epochs"]


def test_constant_schedule_and_no_validation_keep_the_rate(small_data):
    X, Y = small_data
    constant = C3TLRegressor(**{**FAST, "max_epochs": 30, "lr": 0.05}).fit(X, Y)
    unvalidated = C3TLRegressor(**{**FAST, "max_epochs": 30, "lr": 0.05, "lr_schedule": "plateau",
                                   "validation_fraction": 0.0}).fit(X, Y)
    for model in (constant, unvalidated):
        assert "event_lr" not in model.history_[-1]
        assert model.net_.optimizer_.param_groups[0]["lr"] == 0.05


def test_skorch_callbacks_are_used(tiny_data):
    X, Y = tiny_data

    class CountEpochs(Callback):
        def initialize(self):
            self.n = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.n += 1

    counter = CountEpochs()
    model = C3TLRegressor(**{**FAST, "max_epochs": 4, "callbacks": [counter]}).fit(X, Y)
    counted = [cb for name, cb in model.net_.callbacks_ if isinstance(cb, CountEpochs)]
    assert counted[0].n == model.n_epochs_
    assert model.callbacks == [counter]  # the parameter itself is untouched


def test_minibatches_train_too(small_data):
    X, Y = small_data
    model = C3TLRegressor(**{**FAST, "batch_size": 16, "max_epochs": 3}).fit(X, Y)
    assert model.n_epochs_ <= 3
    assert model.net_.module_.batch_sets
    assert np.isfinite(model.predict(X)).all()
    full = C3TLRegressor(**{**FAST, "batch_size": 10**6, "max_epochs": 3}).fit(X, Y)
    assert not full.net_.module_.batch_sets


@settings(max_examples=50, deadline=None)
@given(
    groups=st.lists(st.integers(0, 12), min_size=1, max_size=80),
    batch_size=st.integers(1, 30),
    shuffle=st.booleans(),
)
def test_grouped_batches_keep_groups_whole(groups, batch_size, shuffle):
    X = np.column_stack([np.arange(len(groups)), groups, np.arange(len(groups))])
    y = np.arange(len(groups), dtype=np.float32)[:, None]
    iterator = TensorBatchIterator(Dataset(X, y), batch_size, shuffle=shuffle, group_col=1)
    batches = list(iterator)
    seen = np.concatenate([b[0][:, 0].numpy() for b in batches])
    assert sorted(seen) == list(range(len(groups)))  # every row exactly once
    largest = max(np.bincount(groups))
    assert len(batches) <= -(-len(groups) // batch_size)  # equal shares, no extra runt
    for xb, yb in batches:
        np.testing.assert_array_equal(yb[:, 0].numpy(), xb[:, 0].numpy())  # rows stay paired
        assert 0 < len(xb) <= batch_size + largest - 1
    owner = {}
    for k, (xb, _) in enumerate(batches):
        for g in np.unique(xb[:, 1].numpy()):
            assert owner.setdefault(int(g), k) == k  # a group never spans two batches


def test_leave_target_out_false_is_the_autoencoder(tiny_data):
    X, Y = tiny_data
    model = C3TLRegressor(**{**FAST, "leave_target_out": False, "max_epochs": 3}).fit(X, Y)
    assert model.net_.module_.leave_target_out is False


# ----------------------------------------------------------------- edge cases
def test_unknown_context_warns_and_predicts_finite(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    X_new = pd.DataFrame({"context": ["brand_new"] * 3, "perturbation": X["perturbation"][:3]})
    with warns_at(__file__, UserWarning, match="never observed in fit"):
        pred = model.predict(X_new)
    assert pred.shape == (3, Y.shape[1]) and np.isfinite(pred).all()
    # zero-shot uses the mean context code: the same for every unknown context
    X_other = X_new.assign(context="another_new")
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(model.predict(X_other), pred, rtol=1e-6)


def test_unknown_perturbation_raises(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    X_new = pd.DataFrame({"context": ["ctx0"], "perturbation": ["never_seen"]})
    with pytest.raises(ValueError, match=r"never observed in fit.*never_seen"):
        model.predict(X_new)


def test_perturbation_observed_in_one_context_only():
    X, Y = make_synthetic_perturbations(4, 10, 6, random_state=2)
    X = pd.concat([X, pd.DataFrame({"context": ["ctx1"], "perturbation": ["solo"]})],
                  ignore_index=True)
    Y = pd.concat([Y, pd.DataFrame(np.ones((1, 6)), columns=Y.columns)], ignore_index=True)
    model = C3TLRegressor(**FAST).fit(X, Y)
    pred = model.predict(pd.DataFrame({"context": ["ctx0", "ctx1"], "perturbation": ["solo"] * 2}))
    assert np.isfinite(pred).all()


def test_labels_any_hashable():
    X, Y = make_synthetic_perturbations(3, 8, 5, random_state=0)
    X = X.assign(
        context=X["context"].map({"ctx0": 0, "ctx1": ("a", 1), "ctx2": 2.5}),
        perturbation=X["perturbation"].str.slice(4).astype(int),
    )
    model = C3TLRegressor(**FAST).fit(X, Y)
    assert model.predict(X.iloc[:2]).shape == (2, 5)


def test_custom_column_names(tiny_data):
    X, Y = tiny_data
    X2 = X.rename(columns={"context": "cell_line", "perturbation": "drug"}).assign(dose=1.0)
    model = C3TLRegressor(**FAST, context_col="cell_line", perturbation_col="drug").fit(X2, Y)
    np.testing.assert_array_equal(
        model.predict(X2), C3TLRegressor(**FAST).fit(X, Y).predict(X)
    )


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda X, Y: (X.drop(columns="context"), Y), ValueError, "missing the column"),
        (lambda X, Y: (X.drop(columns="perturbation"), Y), ValueError, "missing the column"),
        (lambda X, Y: (X.to_numpy(), Y), TypeError, "must be a pandas DataFrame"),
        (lambda X, Y: (X, Y.iloc[:-1]), ValueError, "rows but the index table has"),
        (lambda X, Y: (X, Y.mask(Y > 1.5)), ValueError, "NaN or infinite"),
        (lambda X, Y: (X, Y.replace(Y.iloc[0, 0], np.inf)), ValueError, "NaN or infinite"),
        (lambda X, Y: (X, Y.astype(str)), TypeError, "must be numeric"),
        (lambda X, Y: (X, np.full(Y.shape, "a")), TypeError, "must be numeric"),
        (lambda X, Y: (pd.concat([X, X.iloc[:1]]), pd.concat([Y, Y.iloc[:1]])),
         ValueError, "duplicated"),
        (lambda X, Y: (X.iloc[:0], Y.iloc[:0]), ValueError, "empty"),
        (lambda X, Y: (X[X.context == "ctx0"], Y[X.context == "ctx0"]), ValueError,
         "at least 2 contexts"),
        (lambda X, Y: (X.assign(context=X.context.where(X.index > 0)), Y), ValueError,
         "missing label"),
    ],
)
def test_bad_fit_input(tiny_data, mutate, error, match):
    X, Y = tiny_data
    Xb, Yb = mutate(X, Y)
    with pytest.raises(error, match=match):
        C3TLRegressor(**FAST).fit(Xb, Yb)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"dropout": 1.0}, "dropout"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"hidden_dims": (8, -1)}, "hidden_dims"),
        ({"device": "tpu"}, "tpu"),
        ({"max_epochs": "fast"}, "max_epochs"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"context_input": "raw"}, "context_input"),
    ],
)
def test_bad_parameters(tiny_data, params, match):
    X, Y = tiny_data
    with pytest.raises((ValueError, RuntimeError), match=match):
        C3TLRegressor(**{**FAST, **params}).fit(X, Y)


def test_predict_before_fit_and_bad_predict_input(tiny_data):
    X, Y = tiny_data
    with pytest.raises(NotFittedError):
        C3TLRegressor().predict(X)
    model = C3TLRegressor(**FAST).fit(X, Y)
    with pytest.raises(ValueError, match="missing the column"):
        model.predict(X[["context"]])
    with pytest.raises(TypeError, match="DataFrame"):
        model.predict(X.to_numpy())


def test_constructor_stores_parameters_unchanged():
    dims = [16, 8]
    model = C3TLRegressor(hidden_dims=dims, device="cpu")
    assert model.hidden_dims is dims
    assert clone(model).get_params()["hidden_dims"] == [16, 8]


# ------------------------------------------------------------------ sklearn
def test_pickle_round_trip_same_predictions(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_cuda_matches_cpu(small_data):
    X, Y = small_data
    cpu = C3TLRegressor(**FAST).fit(X, Y).predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu_model = C3TLRegressor(**FAST, device="cuda").fit(X, Y)
    gpu = gpu_model.predict(X)
    assert gpu_model.net_.module_.obs_x.is_cuda
    np.testing.assert_allclose(gpu, cpu, atol=5e-2)


def test_observations_are_fitted_state_that_initialize_keeps(small_data):
    X, Y = small_data
    model = C3TLRegressor(max_epochs=3, random_state=0).fit(X, Y)
    net = model.net_
    # the training data never travels as a parameter of the net
    assert "observations" not in net.get_params(deep=False)
    assert all(not isinstance(v, tuple) or len(v) != 3 for v in net.get_params().values())
    assert net.observations_[0].shape[0] == len(X)  # every row, after training
    before = model.predict(X)
    net.initialize()  # new weights, but the observations stay those of the end of fit
    assert net.module_.obs_x.shape[0] == len(X)
    assert not np.allclose(model.predict(X), before)
    np.testing.assert_array_equal(net.module_.obs_context.numpy(),
                                  torch.as_tensor(net.observations_[1]).numpy())
