"""Tests of pruning on the validation loss (``c3tl_sklearn.tuning._pruning``)."""

import pickle

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import (  # noqa: E402
    FloatDistribution,
)
from sklearn.compose import TransformedTargetRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from c3tl_sklearn import C3TLRegressor  # noqa: E402
from c3tl_sklearn.tuning import (  # noqa: E402
    FOLD_STEP,
    C3TLSearchCV,
    PruningCallback,
)

from .conftest import fast_c3tl, loco  # noqa: E402

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
    assert search.best_params_["hidden_dims"] == res["param_hidden_dims"][0]
    assert isinstance(search.best_params_["hidden_dims"], tuple)
    assert pickle.loads(pickle.dumps(search.best_estimator_)).predict(X.iloc[:2]).shape == (2, 20)
    assert res["mean_n_epochs"][0] == 8


@pytest.mark.parametrize(("max_epochs", "warmup"), [(60, 6), (30, 5)])
def test_default_warmup_is_a_tenth_of_the_bound_the_fit_uses(data, max_epochs, warmup):
    X, Y = data
    est = C3TLRegressor(max_epochs=max_epochs, patience=max_epochs, hidden_dims=(32,),
                        latent_dim=8, random_state=0)
    search = C3TLSearchCV(est, n_trials=2, cv=loco(), random_state=0,
                          pruner=PruneAfterFirstTrial()).fit(X, Y)
    assert search.cv_results_["state"].tolist() == ["COMPLETE", "PRUNED"]
    assert sorted(search.study_.trials[1].intermediate_values) == list(range(1, warmup + 1))


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




def test_pruning_callback_is_a_skorch_callback_that_copies_to_the_same_trial():
    from copy import deepcopy

    from sklearn.base import clone
    from skorch.callbacks import Callback

    trial = optuna.create_study().ask()
    cb = PruningCallback(trial, step_offset=7, warmup_epochs=2)
    assert isinstance(cb, Callback)
    assert cb.get_params() == {"trial": trial, "step_offset": 7, "warmup_epochs": 2,
                               "monitor": "valid_loss"}
    for copy in (clone(cb), deepcopy(cb)):
        assert copy is not cb and copy.trial is trial and copy.step_offset == 7
