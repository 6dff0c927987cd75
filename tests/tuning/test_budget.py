"""Exactly ``max_trials`` finished trials across workers (c3tl_sklearn.tuning._budget)."""

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import FloatDistribution  # noqa: E402

from c3tl_sklearn.tuning import C3TLSearchCV, make_storage  # noqa: E402
from c3tl_sklearn.tuning._budget import (  # noqa: E402
    SurplusTrialError,
    check_slot,
    run_until_finished,
)

from .conftest import fast_c3tl, loco  # noqa: E402

TrialState = optuna.trial.TrialState
SPACE = {"lr": FloatDistribution(1e-3, 1e-2, log=True)}


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask() by hand
@pytest.mark.parametrize("heartbeats", [True, False])
def test_a_trial_behind_a_full_budget_is_given_up(heartbeats):
    storage = make_storage("sqlite:///:memory:", heartbeat_interval=60) if heartbeats else None
    study = optuna.create_study(storage=storage, direction="maximize")
    running = study.ask(SPACE)  # another worker's trial, started first
    for value in (0.1, 0.2):
        study.tell(study.ask(SPACE), value)
    late = study.ask(SPACE)
    if not heartbeats:  # a running trial may be a dead process's: it holds no slot
        check_slot(late, 3)
        return
    with pytest.raises(SurplusTrialError, match="max_trials=3"):
        check_slot(late, 3)
    assert late.user_attrs["surplus"] is True
    check_slot(running, 3)  # the earlier trial keeps its slot
    check_slot(late, 4)


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # the simulated worker
def test_a_dead_workers_trial_is_failed_retried_and_counted_once(data, tmp_path):
    X, Y = data
    storage = make_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1,
                           grace_period=2)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    dead = study.ask(SPACE)  # a worker that beat once, then died
    study._storage.record_heartbeat(dead._trial_id)
    search = C3TLSearchCV(fast_c3tl(), SPACE, n_trials=3, max_trials=3,
                          cv=loco(), storage=storage, study_name="s", pruning=False,
                          refit=False).fit(X, Y)
    trials = search.study_.get_trials()
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 3 and len(trials) == 4
    assert trials[dead.number].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == trials[dead.number].params
    assert search.n_trials_run_ == 3  # the two it started and the retry


def test_without_heartbeats_a_leftover_running_trial_holds_no_slot(data, tmp_path):
    X, Y = data
    storage = make_storage(tmp_path / "study.log")  # a journal: no heartbeats
    study = optuna.create_study(storage=storage, study_name="j", direction="maximize")
    study.ask(SPACE)  # the leftover of a killed process, RUNNING for ever
    search = C3TLSearchCV(fast_c3tl(), SPACE, n_trials=2, max_trials=2, cv=loco(),
                          storage=storage, study_name="j", pruning=False,
                          refit=False).fit(X, Y)
    states = [t.state for t in search.study_.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.COMPLETE, TrialState.COMPLETE]


def test_folds_through_joblib_score_as_one_at_a_time(data):
    X, Y = data
    kw = {"n_trials": 2, "cv": loco(), "pruning": False, "refit": False, "random_state": 0}
    serial = C3TLSearchCV(fast_c3tl(), SPACE, n_jobs=1, **kw).fit(X, Y)
    parallel = C3TLSearchCV(fast_c3tl(), SPACE, n_jobs=2, **kw).fit(X, Y)
    for key in ("split0_test_centered_pearson_delta", "split1_test_centered_pearson_delta",
                "mean_n_epochs"):
        np.testing.assert_allclose(parallel.cv_results_[key], serial.cv_results_[key],
                                   rtol=1e-5)
    assert parallel.best_params_ == serial.best_params_


def test_a_callback_that_stops_the_study_ends_the_run():
    study = optuna.create_study(direction="maximize")

    def stop_after_two(study, trial):
        if trial.number == 1:
            study.stop()

    started = run_until_finished(study, lambda trial: trial.suggest_float("x", 0, 1),
                                 max_trials=10, n_trials=10, timeout=None,
                                 callbacks=[stop_after_two])
    assert started == 2
    assert len(study.trials) == 2
