"""C3TLRegressor in the places scikit-learn users put estimators."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from c3tl_sklearn import C3TLRegressor, LeaveOneContextOut
from c3tl_sklearn.metrics import pearson_scorer

FAST = dict(max_epochs=8, hidden_dims=(16,), latent_dim=4, random_state=0)


@pytest.fixture(scope="module")
def cv():
    return LeaveOneContextOut(adaptation_fraction=0.2, n_test_contexts=2, random_state=0)


def test_clone_and_params_round_trip():
    model = C3TLRegressor(latent_dim=7, lr=0.01)
    twin = clone(model)
    assert twin is not model
    assert twin.get_params() == model.get_params()
    twin.set_params(latent_dim=3, hidden_dims=(5, 5))
    assert (twin.latent_dim, twin.hidden_dims) == (3, (5, 5))
    assert model.latent_dim == 7


def test_cross_val_score_with_leave_one_context_out(small_data, cv):
    X, Y = small_data
    scores = cross_val_score(C3TLRegressor(**FAST), X, Y, cv=cv, scoring=pearson_scorer)
    assert scores.shape == (2,)
    assert np.isfinite(scores).all() and (scores > 0).all()
    # groups given explicitly give the same folds, hence the same scores
    with_groups = cross_val_score(
        C3TLRegressor(**FAST), X, Y, cv=cv, groups=X["context"], scoring=pearson_scorer
    )
    np.testing.assert_allclose(with_groups, scores)


def test_grid_search_over_two_hyperparameters(small_data, cv):
    X, Y = small_data
    search = GridSearchCV(
        C3TLRegressor(**FAST),
        {"latent_dim": [2, 6], "lr": [1e-3, 1e-2]},
        cv=cv,
        scoring="neg_mean_squared_error",
    )
    search.fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["latent_dim"] in (2, 6)
    assert search.best_estimator_.predict(X.iloc[:4]).shape == (4, Y.shape[1])


@pytest.mark.parametrize(
    "transformer", [StandardScaler(), PCA(n_components=6)], ids=["scaler", "pca"]
)
def test_transformed_target_regressor(small_data, transformer):
    X, Y = small_data
    model = TransformedTargetRegressor(
        regressor=C3TLRegressor(**FAST), transformer=transformer, check_inverse=False
    )
    model.fit(X, Y)
    pred = model.predict(X)
    assert pred.shape == Y.shape
    assert np.isfinite(pred).all()
    inner = model.regressor_
    assert inner.n_genes_ == (Y.shape[1] if isinstance(transformer, StandardScaler) else 6)
    if isinstance(transformer, PCA):
        # predictions come back through the PCA: inside its 6-dimensional affine span
        centred = pred - model.transformer_.mean_
        comps = model.transformer_.components_
        np.testing.assert_allclose(centred @ comps.T @ comps, centred, atol=1e-4)


def keep_index_columns(X):
    return X[["context", "perturbation"]]


def test_pipeline_with_a_preprocessing_step(small_data, cv):
    X, Y = small_data
    X_extra = X.assign(batch=np.arange(len(X)) % 3, note="x")
    pipe = Pipeline(
        [("select", FunctionTransformer(keep_index_columns)), ("c3tl", C3TLRegressor(**FAST))]
    )
    pipe.fit(X_extra, Y)
    np.testing.assert_array_equal(
        pipe.predict(X_extra), C3TLRegressor(**FAST).fit(X, Y).predict(X)
    )
    scores = cross_val_score(pipe, X_extra, Y, cv=cv, scoring=pearson_scorer)
    assert np.isfinite(scores).all()


def test_score_is_r2(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    assert np.isfinite(model.score(X, Y)) and model.score(X, Y) <= 1


# ------------------------------------------------ new contexts without refit
def test_observed_measurements_update_a_new_context(small_data):
    X, Y = small_data
    is_new = (X["context"] == "ctx5").to_numpy()
    model = C3TLRegressor(**FAST).fit(X[~is_new], Y[~is_new])
    X_new, Y_new = X[is_new].reset_index(drop=True), Y[is_new].reset_index(drop=True)
    X_obs, Y_obs = X_new.iloc[:5], Y_new.iloc[:5]
    with pytest.warns(UserWarning, match="never observed"):
        zero_shot = model.predict(X_new)
    informed = model.predict(X_new, observed=(X_obs, Y_obs))
    assert informed.shape == Y_new.shape
    assert not np.allclose(informed, zero_shot)
    # other contexts are untouched by observations of the new one
    X_old = X[~is_new].iloc[:6]
    np.testing.assert_array_equal(model.predict(X_old, observed=(X_obs, Y_obs)),
                                  model.predict(X_old))
    # the fitted state is not modified by predict(observed=...)
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(model.predict(X_new), zero_shot)


def test_observed_measurements_in_a_known_context_change_its_predictions(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    query = X[X["context"] == "ctx0"].iloc[:4]
    obs = pd.DataFrame({"context": ["ctx0"], "perturbation": [X["perturbation"].iloc[0]]})
    shifted = model.predict(query, observed=(obs, np.full((1, Y.shape[1]), 5.0)))
    assert not np.allclose(shifted, model.predict(query))


def test_observed_bad_input(small_data):
    X, Y = small_data
    model = C3TLRegressor(**FAST).fit(X, Y)
    obs = pd.DataFrame({"context": ["new"], "perturbation": ["unknown_pert"]})
    with pytest.raises(ValueError, match="never observed in fit"):
        model.predict(X.iloc[:2], observed=(obs, np.zeros((1, Y.shape[1]))))
    obs = pd.DataFrame({"context": ["new"], "perturbation": [X["perturbation"].iloc[0]]})
    with pytest.raises(ValueError, match="genes"):
        model.predict(X.iloc[:2], observed=(obs, np.zeros((1, Y.shape[1] + 1))))
    with pytest.raises(TypeError, match="pair"):
        model.predict(X.iloc[:2], observed=obs)
