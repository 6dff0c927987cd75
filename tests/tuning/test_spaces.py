"""Tests of the search spaces (``c3tl_sklearn.tuning._spaces``)."""


import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import (  # noqa: E402
    FloatDistribution,
)
from sklearn.compose import TransformedTargetRegressor  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402

from c3tl_sklearn import C3TLRegressor  # noqa: E402
from c3tl_sklearn.baselines import (  # noqa: E402
    AdditiveBaseline,
    ClosestContextBaseline,
    LinearTransferBaseline,
    MeanBaseline,
)
from c3tl_sklearn.tuning import (  # noqa: E402
    default_search_space,
    register_search_space,
    suggest_params,
)

# --------------------------------------------------------------------------- search spaces


def test_default_spaces_cover_every_estimator():
    c3tl = default_search_space(C3TLRegressor())
    assert set(c3tl) == {"lr", "weight_decay", "dropout", "latent_dim", "hidden_dims",
                         "leave_target_out"}
    assert c3tl["lr"].log and (c3tl["lr"].low, c3tl["lr"].high) == (3e-4, 1e-2)
    assert c3tl["latent_dim"].choices == (16, 32, 64, 128)
    assert set(default_search_space(AdditiveBaseline())) == {"shrinkage"}
    assert set(default_search_space(LinearTransferBaseline())) == {"n_components", "alpha"}
    assert set(default_search_space(ClosestContextBaseline())) == {"metric", "min_shared"}
    assert default_search_space(MeanBaseline()) == {}
    # a fresh copy every time: editing it leaves the default alone
    c3tl.pop("lr")
    assert "lr" in default_search_space(C3TLRegressor)


def test_every_default_space_gives_valid_parameters():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for estimator in (C3TLRegressor(), AdditiveBaseline(), LinearTransferBaseline(),
                      ClosestContextBaseline(), MeanBaseline()):
        for _ in range(5):
            params = suggest_params(study.ask(), default_search_space(estimator))
            estimator.set_params(**params)
            estimator._validate_params()  # sklearn's constraint check
    assert isinstance(C3TLRegressor().set_params(
        **suggest_params(study.ask(), default_search_space(C3TLRegressor())))
        .hidden_dims, tuple)


def test_hidden_dims_built_from_width_and_depth():
    trial = optuna.trial.FixedTrial({"hidden_width": 100, "n_hidden_layers": 2, "lr": 1e-3,
                                     "weight_decay": 1e-4, "dropout": 0.0, "latent_dim": 16,
                                     "leave_target_out": False})
    params = suggest_params(trial, default_search_space(C3TLRegressor()))
    assert params["hidden_dims"] == (100, 100)
    assert params["leave_target_out"] is False


def test_register_search_space_overrides_and_restores():
    register_search_space(AdditiveBaseline, {"shrinkage": [0.0, 0.5]})
    try:
        assert default_search_space(AdditiveBaseline()) == {"shrinkage": [0.0, 0.5]}

        class MyAdditive(AdditiveBaseline):
            pass

        # subclasses inherit their base's space
        assert default_search_space(MyAdditive()) == {"shrinkage": [0.0, 0.5]}
    finally:
        register_search_space(AdditiveBaseline, None)
    assert isinstance(default_search_space(AdditiveBaseline())["shrinkage"], FloatDistribution)


def test_search_space_classmethod_hook_is_used():
    class Tunable(AdditiveBaseline):
        @classmethod
        def search_space(cls):
            return {"shrinkage": FloatDistribution(0.0, 0.1)}

    assert default_search_space(Tunable())["shrinkage"].high == 0.1


def test_meta_estimators_get_prefixed_spaces():
    ttr = TransformedTargetRegressor(regressor=AdditiveBaseline(), transformer=StandardScaler())
    assert set(default_search_space(ttr)) == {"regressor__shrinkage"}
    pipe = Pipeline([("noop", FunctionTransformer()), ("model", LinearTransferBaseline())])
    assert set(default_search_space(pipe)) == {"model__n_components", "model__alpha"}


def test_unknown_estimator_and_bad_spaces_raise():
    with pytest.raises(ValueError, match="No search space is known for StandardScaler"):
        default_search_space(StandardScaler())
    with pytest.raises(TypeError, match="must be an Optuna distribution"):
        register_search_space(AdditiveBaseline, {"shrinkage": 1.0})
    with pytest.raises(ValueError, match="empty"):
        register_search_space(AdditiveBaseline, {"shrinkage": []})


