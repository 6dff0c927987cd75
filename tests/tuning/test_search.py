"""Tests of the Optuna search (``c3tl_sklearn.tuning._search``)."""

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ..conftest import HANG_TIMEOUT_S, warns_at

optuna = pytest.importorskip("optuna")

from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    IntDistribution,
)

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
    C3TLSearchCV,
    make_storage,
)

REPO = Path(__file__).resolve().parents[2]

from .conftest import loco  # noqa: E402

# --------------------------------------------------------------------------- the search


def test_search_fits_like_a_sklearn_search(data):
    X, Y = data
    search = C3TLSearchCV(AdditiveBaseline(), n_trials=4, cv=loco(), random_state=0,
                          scoring=["centered_pearson_delta", "pearson_delta"])
    assert search.fit(X, Y) is search
    res = search.cv_results_
    assert isinstance(res, dict) and len(res["trial"]) == 4
    assert all(isinstance(v, np.ndarray) and len(v) == 4 for v in res.values())
    assert (res["state"] == "COMPLETE").all()
    for col in ("param_shrinkage", "split0_test_centered_pearson_delta",
                "split1_test_pearson_delta", "mean_test_pearson_delta",
                "std_test_centered_pearson_delta", "rank_test_centered_pearson_delta",
                "mean_fit_time", "worker"):
        assert col in res, col
    assert search.objective_ == "centered_pearson_delta"
    best = {key: values[search.best_index_] for key, values in res.items()}
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
    assert len(search.cv_results_["trial"]) == 1
    assert search.best_params_ == {}
    assert np.isfinite(search.best_score_)


def test_default_cv_and_integer_cv(data):
    X, Y = data
    default = C3TLSearchCV(AdditiveBaseline(), n_trials=1, random_state=0).fit(X, Y)
    assert default.n_splits_ == 3  # LeaveOneContextOut over 3 drawn contexts
    kfold = C3TLSearchCV(AdditiveBaseline(), n_trials=1, cv=2, random_state=0).fit(X, Y)
    assert kfold.n_splits_ == 2


def test_default_and_integer_cv_split_on_the_estimators_context_column(data):
    X, Y = data
    Xr = X.rename(columns={"context": "cell"})
    default = C3TLSearchCV(AdditiveBaseline(context_col="cell"), n_trials=1,
                           random_state=0).fit(Xr, Y)
    assert default.n_splits_ == 3
    kfold = C3TLSearchCV(AdditiveBaseline(context_col="cell"), n_trials=1, cv=2,
                         random_state=0).fit(Xr, Y)
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
    with pytest.raises(ValueError, match=r"'n_trials' parameter of C3TLSearchCV must be an int "
                                         r"in the range \[0, inf\)"):
        C3TLSearchCV(AdditiveBaseline(), n_trials=-1).fit(X, Y)


@pytest.mark.filterwarnings("ignore:Context.*fall back:UserWarning")
def test_failed_trials_are_recorded_or_raised(data):
    X, Y = data

    def space(trial):  # the first trial gets an invalid penalty
        return {"alpha": -1.0 if trial.number == 0 else float(trial.suggest_float("a", 1, 10))}

    with warns_at(__file__, match="Trial 0 failed"):  # names this line, not Optuna's
        search = C3TLSearchCV(LinearTransferBaseline(), space, n_trials=3, cv=loco(),
                              random_state=0).fit(X, Y)
    res = search.cv_results_
    assert res["state"].tolist() == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "alpha" in res["error"][0]
    # like scikit-learn's searches: no mean for a failed trial, which ranks last
    assert np.isnan(res["mean_test_centered_pearson_delta"][0])
    assert res["rank_test_centered_pearson_delta"].tolist() == [3, *sorted(
        res["rank_test_centered_pearson_delta"][1:].tolist())]
    assert pd.DataFrame(res).shape == (3, len(res))
    assert search.best_params_["alpha"] >= 1  # replayed for the best trial, not trial 0
    with pytest.raises(ValueError, match="alpha"):
        C3TLSearchCV(LinearTransferBaseline(), space, n_trials=2, cv=loco(),
                     error_score="raise").fit(X, Y)

    def always_bad(trial):
        return {"alpha": -float(trial.suggest_float("a", 1, 2))}

    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"No trial .* completed"):
        C3TLSearchCV(LinearTransferBaseline(), always_bad, n_trials=2, cv=loco()).fit(X, Y)



def test_stored_study_resumes_and_tops_up(tmp_path, data):
    X, Y = data
    storage = str(tmp_path / "study.log")
    kw = {"cv": loco(), "storage": storage, "study_name": "additive"}
    first = C3TLSearchCV(AdditiveBaseline(), n_trials=2, random_state=0, **kw).fit(X, Y)
    assert len(first.cv_results_["trial"]) == 2 and first.n_trials_run_ == 2
    second = C3TLSearchCV(AdditiveBaseline(), n_trials=2, random_state=1, **kw).fit(X, Y)
    assert second.n_trials_run_ == 2
    assert second.cv_results_["trial"].tolist() == [0, 1, 2, 3]
    assert second.best_score_ >= first.best_score_
    # max_trials: a resumed run only adds the missing trials, then none
    third = C3TLSearchCV(AdditiveBaseline(), n_trials=5, max_trials=5, **kw).fit(X, Y)
    assert third.n_trials_run_ == 1 and len(third.cv_results_["trial"]) == 5
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
    assert len(again.cv_results_["trial"]) == 2


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
        out, err = proc.communicate(timeout=HANG_TIMEOUT_S)
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
    assert len(search.cv_results_["trial"]) == 6
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

