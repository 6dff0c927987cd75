"""Tests of the Optuna search (``c3tl_sklearn.tuning``)."""

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
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
from c3tl_sklearn.datasets import make_synthetic_perturbations  # noqa: E402
from c3tl_sklearn.metrics import centered_pearson_delta  # noqa: E402
from c3tl_sklearn.model_selection import LeaveOneContextOut  # noqa: E402
from c3tl_sklearn.tuning import (  # noqa: E402
    FOLD_STEP,
    C3TLSearchCV,
    PruningCallback,
    default_search_space,
    make_storage,
    register_search_space,
    suggest_params,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    """5 contexts x 30 perturbations x 20 genes."""
    return make_synthetic_perturbations(5, 30, 20, random_state=0)


def loco(n=2, fraction=0.2):
    return LeaveOneContextOut(adaptation_fraction=fraction, n_test_contexts=n, random_state=0)


def fast_c3tl(**kw):
    return C3TLRegressor(max_epochs=8, hidden_dims=(32,), latent_dim=8, random_state=0, **kw)


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


# --------------------------------------------------------------------------- the search


def test_search_fits_like_a_sklearn_search(data):
    X, Y = data
    search = C3TLSearchCV(AdditiveBaseline(), n_trials=4, cv=loco(), random_state=0,
                          scoring=["centered_pearson_delta", "pearson_delta"])
    assert search.fit(X, Y) is search
    res = search.cv_results_
    assert isinstance(res, pd.DataFrame) and len(res) == 4
    assert (res["state"] == "COMPLETE").all()
    for col in ("param_shrinkage", "split0_test_centered_pearson_delta",
                "split1_test_pearson_delta", "mean_test_pearson_delta",
                "std_test_centered_pearson_delta", "rank_test_centered_pearson_delta",
                "mean_fit_time", "worker"):
        assert col in res.columns, col
    assert search.objective_ == "centered_pearson_delta"
    best = res.loc[search.best_index_]
    assert search.best_score_ == pytest.approx(res["mean_test_centered_pearson_delta"].max())
    assert best["rank_test_centered_pearson_delta"] == 1
    assert search.best_params_ == {"shrinkage": best["param_shrinkage"]}
    # the mean over splits is the objective
    splits = [best[f"split{k}_test_centered_pearson_delta"] for k in range(2)]
    assert search.best_score_ == pytest.approx(np.mean(splits))
    # best_estimator_ is refit on everything with the best parameters
    assert search.best_estimator_.shrinkage == search.best_params_["shrinkage"]
    assert search.predict(X.iloc[:3]).shape == (3, 20)
    expected = centered_pearson_delta(Y.to_numpy(), search.best_estimator_.predict(X),
                                      X["context"])
    assert search.score(X, Y) == pytest.approx(expected)
    assert search.refit_time_ >= 0


def test_refit_names_the_objective_among_several_scorers(data):
    X, Y = data
    search = C3TLSearchCV(AdditiveBaseline(), n_trials=2, cv=loco(), random_state=0,
                          scoring=["centered_pearson_delta", "neg_mean_squared_error"],
                          refit="neg_mean_squared_error").fit(X, Y)
    assert search.objective_ == "neg_mean_squared_error"
    assert search.best_score_ == pytest.approx(
        search.cv_results_["mean_test_neg_mean_squared_error"].max())
    assert search.best_score_ < 0


def test_refit_false_has_no_estimator(data):
    X, Y = data
    search = C3TLSearchCV(AdditiveBaseline(), n_trials=1, cv=loco(1), refit=False).fit(X, Y)
    assert "shrinkage" in search.best_params_
    with pytest.raises(AttributeError, match="refit=True"):
        search.predict(X)


def test_empty_space_is_evaluated_once(data):
    X, Y = data
    search = C3TLSearchCV(MeanBaseline(), n_trials=10, cv=loco()).fit(X, Y)
    assert len(search.cv_results_) == 1
    assert search.best_params_ == {}
    assert np.isfinite(search.best_score_)


def test_default_cv_and_integer_cv(data):
    X, Y = data
    default = C3TLSearchCV(AdditiveBaseline(), n_trials=1, random_state=0).fit(X, Y)
    assert default.n_splits_ == 3  # LeaveOneContextOut over 3 drawn contexts
    kfold = C3TLSearchCV(AdditiveBaseline(), n_trials=1, cv=2, random_state=0).fit(X, Y)
    assert kfold.n_splits_ == 2


def test_package_scorers_follow_the_estimators_context_column(data):
    X, Y = data
    Xr = X.rename(columns={"context": "cell"})
    cv = LeaveOneContextOut(adaptation_fraction=0.2, n_test_contexts=2, context_col="cell",
                            random_state=0)
    search = C3TLSearchCV(AdditiveBaseline(context_col="cell"), n_trials=2, cv=cv,
                          scoring="discrimination_score").fit(Xr, Y)
    assert 0.5 < search.best_score_ <= 1.0


def test_unknown_scoring_and_bad_refit_raise(data):
    X, Y = data
    with pytest.raises(ValueError, match="Unknown scoring 'nope'"):
        C3TLSearchCV(AdditiveBaseline(), n_trials=1, cv=loco(), scoring="nope").fit(X, Y)
    with pytest.raises(ValueError, match="refit='mse' is not one of the scorers"):
        C3TLSearchCV(AdditiveBaseline(), n_trials=1, cv=loco(),
                     scoring=["pearson_delta"], refit="mse").fit(X, Y)
    with pytest.raises(ValueError, match="n_trials must be a non-negative integer"):
        C3TLSearchCV(AdditiveBaseline(), n_trials=-1).fit(X, Y)


@pytest.mark.filterwarnings("ignore:Context.*fall back:UserWarning")
def test_failed_trials_are_recorded_or_raised(data):
    X, Y = data

    def space(trial):  # the first trial gets an invalid penalty
        return {"alpha": -1.0 if trial.number == 0 else float(trial.suggest_float("a", 1, 10))}

    with pytest.warns(UserWarning, match="Trial 0 failed"):
        search = C3TLSearchCV(LinearTransferBaseline(), space, n_trials=3, cv=loco(),
                              random_state=0).fit(X, Y)
    res = search.cv_results_
    assert res["state"].tolist() == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "alpha" in res.loc[0, "error"]
    assert search.best_params_["alpha"] >= 1  # replayed for the best trial, not trial 0
    with pytest.raises(ValueError, match="alpha"):
        C3TLSearchCV(LinearTransferBaseline(), space, n_trials=2, cv=loco(),
                     error_score="raise").fit(X, Y)

    def always_bad(trial):
        return {"alpha": -float(trial.suggest_float("a", 1, 2))}

    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"No trial .* completed"):
        C3TLSearchCV(LinearTransferBaseline(), always_bad, n_trials=2, cv=loco()).fit(X, Y)


# --------------------------------------------------------------------------- C3TL and pruning


class PruneAfterFirstTrial(optuna.pruners.BasePruner):
    """Prunes every trial but the first, at its first decision."""

    def prune(self, study, trial):
        return trial.number > 0


def test_c3tl_search_prunes_losing_trials_on_the_validation_loss(data):
    X, Y = data
    search = C3TLSearchCV(fast_c3tl(), n_trials=3, cv=loco(), random_state=0,
                          pruner=PruneAfterFirstTrial(), warmup_epochs=2).fit(X, Y)
    res = search.cv_results_
    assert res["state"].tolist() == ["COMPLETE", "PRUNED", "PRUNED"]
    trials = search.study_.trials
    # the complete trial reported every epoch of both folds, the second at a fold offset
    steps = sorted(trials[0].intermediate_values)
    assert steps[:8] == list(range(1, 9))
    assert [s - FOLD_STEP for s in steps[8:]] == list(range(1, 9))
    # reports are the negated best validation loss so far: non-decreasing within a fold
    fold0 = [trials[0].intermediate_values[s] for s in range(1, 9)]
    assert all(v <= 0 for v in fold0) and np.all(np.diff(fold0) >= 0)
    # pruned trials stopped at the warm-up epoch of the first fold
    assert sorted(trials[1].intermediate_values) == [1, 2]
    # the refit model is clean: no pruning callback, and it pickles
    assert search.best_estimator_.callbacks is None
    assert search.best_params_["hidden_dims"] == res.loc[0, "param_hidden_dims"]
    assert isinstance(search.best_params_["hidden_dims"], tuple)
    assert pickle.loads(pickle.dumps(search.best_estimator_)).predict(X.iloc[:2]).shape == (2, 20)
    assert res.loc[0, "mean_n_epochs"] == 8


def test_pruning_keeps_the_users_callbacks_and_can_be_switched_off(data):
    from skorch.callbacks import Callback

    class Count(Callback):
        def initialize(self):
            self.epochs_ = 0
            return self

        def on_epoch_end(self, net, **kwargs):
            self.epochs_ += 1

    X, Y = data
    space = {"lr": FloatDistribution(1e-3, 1e-2, log=True)}
    counter = Count()
    search = C3TLSearchCV(fast_c3tl(callbacks=[counter]), space, n_trials=1, cv=loco(1),
                          random_state=0).fit(X, Y)
    assert len(search.study_.trials[0].intermediate_values) == 8
    assert search.best_estimator_.callbacks[0] is not counter  # cloned, not shared
    assert counter.__dict__.get("epochs_", 0) == 0
    off = C3TLSearchCV(fast_c3tl(), space, n_trials=1, cv=loco(1), pruning=False).fit(X, Y)
    assert off.study_.trials[0].intermediate_values == {}


def test_pruning_callback_without_validation_reports_nothing(data):
    X, Y = data
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    model = fast_c3tl(validation_fraction=0.0, callbacks=[PruningCallback(trial)])
    model.fit(X, Y)
    study.tell(trial, 0.0)
    assert study.trials[0].intermediate_values == {}


def test_pipeline_around_c3tl_is_searched_and_pruned(data):
    X, Y = data
    pipe = TransformedTargetRegressor(regressor=fast_c3tl(), transformer=StandardScaler(),
                                      check_inverse=False)
    space = {"regressor__lr": FloatDistribution(1e-3, 1e-2, log=True)}
    search = C3TLSearchCV(pipe, space, n_trials=1, cv=loco(1), random_state=0).fit(X, Y)
    assert set(search.best_params_) == {"regressor__lr"}
    assert len(search.study_.trials[0].intermediate_values) == 8


# --------------------------------------------------------------------------- storage


def test_make_storage_kinds(tmp_path):
    assert make_storage(None) is None
    journal = make_storage(tmp_path / "s.jsonl")
    assert type(journal).__name__ == "JournalStorage"
    assert make_storage(journal) is journal
    sqlite = make_storage(tmp_path / "s.db")
    assert type(sqlite).__name__ == "RDBStorage"
    assert type(make_storage(f"sqlite:///{tmp_path / 'u.sqlite3'}")).__name__ == "RDBStorage"
    with pytest.raises(ValueError, match="Cannot tell what kind of storage"):
        make_storage(tmp_path / "study.txt")
    with pytest.raises(ValueError, match="folder of the journal file"):
        make_storage(tmp_path / "missing" / "s.log")
    with pytest.raises(TypeError, match="storage must be"):
        make_storage(3)


def test_stored_study_resumes_and_tops_up(tmp_path, data):
    X, Y = data
    storage = str(tmp_path / "study.log")
    kw = {"cv": loco(), "storage": storage, "study_name": "additive"}
    first = C3TLSearchCV(AdditiveBaseline(), n_trials=2, random_state=0, **kw).fit(X, Y)
    assert len(first.cv_results_) == 2 and first.n_trials_run_ == 2
    second = C3TLSearchCV(AdditiveBaseline(), n_trials=2, random_state=1, **kw).fit(X, Y)
    assert second.n_trials_run_ == 2
    assert second.cv_results_["trial"].tolist() == [0, 1, 2, 3]
    assert second.best_score_ >= first.best_score_
    # max_trials: a resumed run only adds the missing trials, then none
    third = C3TLSearchCV(AdditiveBaseline(), n_trials=5, max_trials=5, **kw).fit(X, Y)
    assert third.n_trials_run_ == 1 and len(third.cv_results_) == 5
    fourth = C3TLSearchCV(AdditiveBaseline(), n_trials=5, max_trials=5, **kw).fit(X, Y)
    assert fourth.n_trials_run_ == 0 and fourth.best_score_ == third.best_score_
    # a study of another objective is refused
    with pytest.raises(ValueError, match="made with objective"):
        C3TLSearchCV(AdditiveBaseline(), n_trials=1, scoring="pearson_delta", **kw).fit(X, Y)


def test_sqlite_storage_default_study_name(tmp_path, data):
    X, Y = data
    storage = tmp_path / "tuning.db"
    C3TLSearchCV(AdditiveBaseline(), n_trials=1, cv=loco(), storage=storage).fit(X, Y)
    again = C3TLSearchCV(AdditiveBaseline(), n_trials=1, cv=loco(), storage=storage).fit(X, Y)
    assert again.study_.study_name == "AdditiveBaseline-search"
    assert len(again.cv_results_) == 2


WORKER = textwrap.dedent(
    """
    import sys
    from c3tl_sklearn.baselines import AdditiveBaseline
    from c3tl_sklearn.datasets import make_synthetic_perturbations
    from c3tl_sklearn.model_selection import LeaveOneContextOut
    from c3tl_sklearn.tuning import C3TLSearchCV

    X, Y = make_synthetic_perturbations(5, 30, 20, random_state=0)
    cv = LeaveOneContextOut(adaptation_fraction=0.2, n_test_contexts=2, random_state=0)
    search = C3TLSearchCV(AdditiveBaseline(), n_trials=int(sys.argv[2]), cv=cv,
                          storage=sys.argv[1], study_name="shared",
                          random_state=int(sys.argv[3]))
    search.fit(X, Y)
    print("trials run", search.n_trials_run_)
    """
)


def test_two_processes_share_one_study(tmp_path):
    journal = tmp_path / "shared.log"
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), str(journal), "3", str(seed)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        for seed in (1, 2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "trials run 3" in out
    study = optuna.load_study(study_name="shared", storage=make_storage(journal))
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    workers = pd.Series([t.user_attrs["worker"] for t in trials]).value_counts()
    pids = {str(p.pid) for p in procs}
    assert {w.rsplit(":", 1)[1] for w in workers.index} == pids
    assert workers.tolist() == [3, 3]
    assert len({t.number for t in trials}) == 6
    # a third fit in this process sees everything the workers did
    X, Y = make_synthetic_perturbations(5, 30, 20, random_state=0)
    search = C3TLSearchCV(AdditiveBaseline(), n_trials=0, cv=loco(), storage=journal,
                          study_name="shared").fit(X, Y)
    assert len(search.cv_results_) == 6
    assert search.best_score_ == pytest.approx(study.best_value)


def test_categorical_and_int_distributions_round_trip(data):
    X, Y = data
    space = {"metric": CategoricalDistribution(("pearson", "cosine")),
             "min_shared": IntDistribution(1, 3)}
    search = C3TLSearchCV(ClosestContextBaseline(), space, n_trials=3, cv=loco(),
                          random_state=0).fit(X, Y)
    assert search.best_params_["metric"] in ("pearson", "cosine")
    assert isinstance(search.best_params_["min_shared"], int)
    assert search.best_estimator_.metric == search.best_params_["metric"]


def test_search_clones_and_pickles(data):
    from sklearn.base import clone

    X, Y = data
    search = C3TLSearchCV(AdditiveBaseline(), n_trials=2, cv=loco(), random_state=0)
    assert clone(search).get_params()["estimator__shrinkage"] == 1.0
    search.fit(X, Y)
    restored = pickle.loads(pickle.dumps(search))
    np.testing.assert_allclose(restored.predict(X.iloc[:4]), search.predict(X.iloc[:4]))
    assert restored.best_params_ == search.best_params_
    assert len(restored.trials_dataframe()) == 2
    assert "shrinkage" in search.params_json()
