"""The Optuna search :class:`C3TLSearchCV`; every trial is scored with ``cross_validate``."""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import optuna
import pandas as pd
from joblib import effective_n_jobs
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone
from sklearn.model_selection import check_cv, cross_validate
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._contract import match_rows
from .._labels import object_array
from .._parallel import parallel_map
from .._warnings import user_stacklevel
from ..metrics import CONTEXT_METRICS, get_scorer, make_context_scorer
from ..persistence import jsonable
from ._budget import _FINISHED, check_slot, run_until_finished
from ._fingerprint import data_fingerprint, space_fingerprint
from ._spaces import _check_space, default_search_space, suggest_params
from ._storage import make_storage

__all__ = ["FOLD_STEP", "C3TLSearchCV"]

#: Steps reserved per cross-validation fold in pruning reports.
FOLD_STEP = 100_000


def _nested_param(estimator, name: str) -> str | None:
    """The shortest parameter key of ``estimator`` (nested ones included) ending in ``name``."""
    try:
        keys = estimator.get_params(deep=True)
    except Exception:  # pragma: no cover - exotic estimators
        return None
    found = [k for k in keys if k == name or k.endswith(f"__{name}")]
    return min(found, key=len) if found else None


def _context_col_of(estimator) -> Any:
    key = _nested_param(estimator, "context_col")
    return "context" if key is None else estimator.get_params(deep=True)[key]


def _resolve_scoring(scoring, estimator) -> dict[str, Callable]:
    """``{name: scorer}`` from a name, callable, list or dict.

    Names go through :func:`c3tl_sklearn.metrics.get_scorer` (the package's
    scorers, then scikit-learn's); a metric that reads the contexts reads them
    from the estimator's ``context_col``.
    """
    context_col = _context_col_of(estimator)

    def one(item) -> Callable:
        if callable(item):
            return item
        if not isinstance(item, str):
            raise TypeError(f"scoring entries must be names or callables; got {item!r}.")
        if item in CONTEXT_METRICS and context_col != "context":
            return make_context_scorer(CONTEXT_METRICS[item], context_col=context_col)
        return get_scorer(item)

    if scoring is None:
        return {"centered_pearson_delta": one("centered_pearson_delta")}
    if isinstance(scoring, str):
        return {scoring: one(scoring)}
    if callable(scoring):
        return {getattr(scoring, "__name__", None) or "score": scoring}
    if isinstance(scoring, Mapping):
        if not scoring:
            raise ValueError("scoring is an empty dict.")
        return {str(k): one(v) for k, v in scoring.items()}
    items = list(scoring) if isinstance(scoring, Iterable) else []
    if not items or not all(isinstance(i, str) for i in items):
        raise ValueError("A list of scorings must be a non-empty list of names.")
    return {i: one(i) for i in items}


def _default_cv(X, groups, random_state, context_col: Hashable = "context"):
    """Leave-one-context-out over at most three contexts, on the estimator's context column."""
    from ..model_selection import LeaveOneContextOut

    if groups is not None:
        n = len(pd.unique(pd.Series(np.asarray(groups, dtype=object))))
    elif isinstance(X, pd.DataFrame) and context_col in X.columns:
        n = X[context_col].nunique()
    else:
        raise ValueError(
            f"cv=None needs the contexts: pass groups=..., an index table with a {context_col!r} "
            "column, or an explicit cv splitter."
        )
    return LeaveOneContextOut(
        adaptation_fraction=0.1, n_test_contexts=min(3, n), context_col=context_col,
        random_state=_split_seed(random_state),
    )


def _split_seed(random_state) -> int:
    """The splitters' seed: an integer ``random_state`` itself, else 0 (folds stay fixed)."""
    return random_state if isinstance(random_state, Integral) else 0


@contextmanager
def _optuna_quiet(quiet: bool):
    """Silence Optuna's log lines (failed trials are reported as our own warnings)."""
    verbosity = optuna.logging.get_verbosity()
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.filterwarnings("ignore", message=r".*objective function returned nan.*")
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _score_fold(estimator, X, Y, split, scorers) -> dict:
    """Fit and score one fold; a plain function so that joblib can run it anywhere."""
    result = cross_validate(estimator, X, Y, cv=[split], scoring=scorers,
                            error_score="raise", return_estimator=True)
    history = getattr(result["estimator"][0], "history_", None)
    return {"scores": {name: float(result[f"test_{name}"][0]) for name in scorers},
            "fit_time": float(result["fit_time"][0]),
            "score_time": float(result["score_time"][0]),
            "n_epochs": None if history is None else len(history)}


class _Objective:
    """One trial: draw parameters, score them on every split, record what happened."""

    def __init__(self, search, space, scorers, objective, splits, X, Y):
        self.search = search
        self.space = space
        self.scorers = scorers
        self.objective = objective
        self.splits = splits
        self.X, self.Y = X, Y
        self.callbacks_key = (_nested_param(search.estimator, "callbacks") if search.pruning
                              else None)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.started: list[int] = []  # trials started by this fit (other workers add more)

    def _estimator(self, params: dict, trial, fold: int):
        est = clone(self.search.estimator).set_params(**params)
        if self.callbacks_key:
            from ._pruning import PruningCallback  # skorch (and torch) only when pruning

            cb = PruningCallback(trial, fold * FOLD_STEP, self.search.warmup_epochs)
            own = list(est.get_params(deep=True)[self.callbacks_key] or [])
            est.set_params(**{self.callbacks_key: [*own, cb]})
        return est

    @staticmethod
    def _record(record: dict, fold: dict) -> None:
        for name, value in fold["scores"].items():
            record["split_scores"][name].append(value)
        record["fit_times"].append(fold["fit_time"])
        record["score_times"].append(fold["score_time"])
        if fold["n_epochs"] is not None:
            record["n_epochs"].append(fold["n_epochs"])

    def __call__(self, trial) -> float:
        self.started.append(trial.number)
        trial.set_user_attr("worker", self.worker)
        if self.search.max_trials is not None:
            check_slot(trial, self.search.max_trials)  # before any fit: another worker won
        params = suggest_params(trial, self.space)
        trial.set_user_attr("estimator_params", jsonable(params))
        record = {"split_scores": {name: [] for name in self.scorers}, "fit_times": [],
                  "score_times": [], "n_epochs": []}
        try:
            if effective_n_jobs(self.search.n_jobs) == 1:
                # one fold at a time: each fold reports to the pruner at its own step
                # offset, and the scores of finished folds survive a pruned fold
                for fold, split in enumerate(self.splits):
                    est = self._estimator(params, trial, fold)
                    self._record(record, _score_fold(est, self.X, self.Y, split, self.scorers))
                    trial.set_user_attr("split_scores", record["split_scores"])
            else:
                # folds through joblib (any backend); a fold fitted elsewhere cannot
                # report epochs to this trial, so no pruning callback is attached
                est = clone(self.search.estimator).set_params(**params)
                tasks = [(est, self.X, self.Y, split, self.scorers) for split in self.splits]
                for fold in parallel_map(_score_fold, tasks, self.search.n_jobs):
                    self._record(record, fold)
                trial.set_user_attr("split_scores", record["split_scores"])
        except optuna.TrialPruned:
            trial.set_user_attr("fit_times", record["fit_times"])
            raise
        except Exception as exc:
            if self.search.error_score == "raise":
                raise
            message = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", message[:2000])
            warnings.warn(f"Trial {trial.number} failed with parameters {params}: {message}",
                          UserWarning, stacklevel=user_stacklevel())
            return float("nan")
        for key in ("fit_times", "score_times", "n_epochs"):
            if record[key]:
                trial.set_user_attr(key, record[key])
        return float(np.mean(record["split_scores"][self.objective]))


class C3TLSearchCV(MetaEstimatorMixin, BaseEstimator):
    """Optuna search over hyperparameters, with context-aware cross-validation.

    Every trial draws parameters from ``param_space``, fits a clone of
    ``estimator`` on the training part of every ``cv`` split, scores it on the
    test part and returns the mean of the objective score to Optuna, which
    proposes the next candidate (TPE by default). The best trial's parameters
    are refit on all data.

    Parameters
    ----------
    estimator : estimator
        A package regressor (or a pipeline around one); cloned for every fit.
    param_space : dict or callable, default=None
        Search space (see the module documentation); ``None`` uses
        :func:`default_search_space`. An empty space is evaluated once.
    n_trials : int, default=20
        New trials this ``fit`` runs (added to those already in a stored
        study), unless ``max_trials`` or ``timeout`` stops it earlier.
    max_trials : int, default=None
        Stop once the study holds this many finished (complete or pruned)
        trials, counting those of earlier runs and of other workers. With
        ``n_trials=max_trials`` a resumed study runs only the missing trials.
        Workers sharing a database study (a storage with heartbeats) end with
        exactly this many: a worker starts a trial only while the running and
        finished ones leave a slot, waits for the running ones of other
        workers when they hold the last slots (a dead worker's trial frees its
        slot once the heartbeat marks it failed; see :func:`make_storage`),
        and gives up a trial that lost a race for the last slot before
        fitting anything (recorded as failed, user attribute ``surplus``).
        Without heartbeats (a journal file) running trials hold no slot, so
        workers finishing together may overshoot by a trial or two.
    cv : int, cross-validation splitter or iterable, default=None
        Any splitter of :mod:`c3tl_sklearn.model_selection` (or scikit-learn);
        an int is :class:`~c3tl_sklearn.model_selection.ContextKFold` with
        that many folds. ``None``:
        ``LeaveOneContextOut(adaptation_fraction=0.1, n_test_contexts=3)``
        seeded with ``random_state``. Both split on the estimator's
        ``context_col``. Splits are computed once per ``fit``, so
        all trials of a fit score the same folds.
    scoring : str, callable, list or dict, default=None
        Scorer(s): names of :data:`c3tl_sklearn.metrics.SCORERS` (context
        scorers then read the estimator's ``context_col``), scikit-learn scorer
        names or callables ``scorer(estimator, X, y)``. ``None`` is
        ``"centered_pearson_delta"``. With several, every one is recorded in
        ``cv_results_`` and the objective is ``refit`` when it names one,
        otherwise the first.
    refit : bool or str, default=True
        Refit the best parameters on all data (``best_estimator_``). A metric
        name selects the objective among several scorers and refits.
    storage : str, os.PathLike, optuna.storages.BaseStorage or None, default=None
        Where the study lives (see :func:`make_storage`); ``None`` in memory.
    study_name : str, default=None
        Name of the study in ``storage``; ``None`` uses
        ``"<EstimatorClass>-search"``. A stored study is loaded and continued.
    sampler : optuna.samplers.BaseSampler, default=None
        ``None``: ``TPESampler(seed=random_state)``.
    pruning : bool, default=True
        Stop losing trials early on the per-epoch validation loss (skorch
        estimators only; see the module documentation).
    pruner : optuna.pruners.BasePruner, default=None
        ``None`` when ``pruning``: ``PercentilePruner(75.0, n_startup_trials=5)``,
        which stops a trial whose validation loss so far is in the worst
        quarter of the earlier trials' at the same fold and epoch.
    warmup_epochs : int, default=None
        Epochs of each fold before a trial can be pruned; ``None`` uses a
        tenth of the bound on epochs the fold's fit uses (``max_epochs``, or
        the one ``"auto"`` chooses), at least 5.
    random_state : int or None, default=None
        Seeds the default sampler and the default ``cv``.
    timeout : float, default=None
        Stop starting new trials after this many seconds.
    n_jobs : int or None, default=1
        Folds of a trial fitted at once, through joblib: local processes by
        default, a Dask or Ray cluster inside
        ``joblib.parallel_config(backend="dask")``. Each job's torch and BLAS
        threads are limited to the machine's cores divided by ``n_jobs``.
        Pruning needs the folds in this process, so with more than one job no
        trial is pruned. To run trials at once, start several workers (on any
        machines) on one shared ``storage`` with the same ``study_name`` and
        ``max_trials``.
    error_score : "raise" or float, default=nan
        ``"raise"`` re-raises an error of a fit or score; otherwise the trial
        is recorded as failed (with its error message in ``cv_results_``)
        and the search goes on.
    callbacks : list of callable, default=None
        Optuna study callbacks ``f(study, frozen_trial)``, called after every
        trial (progress displays, custom stopping).
    verbose : int, default=0
        ``0`` silences Optuna's log lines during ``fit`` (failed trials still
        raise a ``UserWarning``); ``>= 1`` shows them.

    Attributes
    ----------
    study_ : optuna.study.Study
        The study (with every trial, also those of other workers).
    best_trial_ : optuna.trial.FrozenTrial
        The best complete trial.
    best_params_ : dict
        Estimator parameters of the best trial (as passed to ``set_params``).
    best_score_ : float
        Its mean cross-validated objective score.
    best_index_ : int
        Its row in ``cv_results_``.
    best_estimator_ : estimator
        Refit on all data (only with ``refit``).
    cv_results_ : dict of numpy (masked) arrays
        As in scikit-learn's searches, one entry per trial of the study, in
        trial order (``pandas.DataFrame(search.cv_results_)`` makes a table):
        ``trial``, ``state`` (COMPLETE, PRUNED, FAIL, RUNNING), ``worker``
        (host:pid), ``params`` (dicts), a masked ``param_<name>`` array per
        estimator parameter, ``mean_test_<metric>``, ``std_test_<metric>``
        and ``split<k>_test_<metric>`` (NaN where a trial has no such score;
        the means only for complete trials), ``rank_test_<objective>`` (trials
        without a mean share the last rank), ``mean_fit_time``,
        ``std_fit_time``, ``mean_score_time``, ``std_score_time``,
        ``mean_n_epochs`` (skorch estimators), ``duration`` (seconds),
        ``datetime_start`` and ``error``.
    scorer_ : dict
        The scorers by name.
    objective_ : str
        Name of the optimised metric.
    n_splits_ : int
        Number of cross-validation splits.
    n_trials_run_ : int
        Trials this ``fit`` ran.
    refit_time_ : float
        Seconds spent refitting.

    See Also
    --------
    default_search_space, register_search_space, make_storage

    Examples
    --------
    >>> from c3tl_sklearn import C3TLRegressor
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> from c3tl_sklearn.model_selection import LeaveOneContextOut
    >>> from c3tl_sklearn.tuning import C3TLSearchCV
    >>> from optuna.distributions import FloatDistribution
    >>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
    >>> model = C3TLRegressor(max_epochs=5, hidden_dims=(32,), latent_dim=8, random_state=0)
    >>> space = {"lr": FloatDistribution(1e-3, 1e-2, log=True),
    ...          "leave_target_out": [True, False]}
    >>> search = C3TLSearchCV(
    ...     model, space, n_trials=2, random_state=0,
    ...     cv=LeaveOneContextOut(adaptation_fraction=0.2, n_test_contexts=2,
    ...                           random_state=0))
    >>> _ = search.fit(X, Y)
    >>> sorted(search.best_params_)
    ['leave_target_out', 'lr']
    >>> search.cv_results_["state"].tolist()
    ['COMPLETE', 'COMPLETE']

    Without ``param_space`` the default space is searched (see
    :func:`default_search_space`):

    >>> sorted(default_search_space(model))
    ['dropout', 'hidden_dims', 'latent_dim', 'leave_target_out', 'lr', 'weight_decay']
    """

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["fit", "predict"])],
        "param_space": [Mapping, callable, None],
        "n_trials": [Interval(Integral, 0, None, closed="left")],
        "max_trials": [Interval(Integral, 1, None, closed="left"), None],
        "cv": ["cv_object"],
        "scoring": [str, callable, list, tuple, dict, None],
        "refit": ["boolean", str],
        "storage": [str, os.PathLike, optuna.storages.BaseStorage, None],
        "study_name": [str, None],
        "sampler": [optuna.samplers.BaseSampler, None],
        "pruning": ["boolean"],
        "pruner": [optuna.pruners.BasePruner, None],
        "warmup_epochs": [Interval(Integral, 0, None, closed="left"), None],
        "random_state": ["random_state"],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "n_jobs": [Integral, None],
        "error_score": [StrOptions({"raise"}), Real],
        "callbacks": [list, tuple, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator,
        param_space=None,
        *,
        n_trials: int = 20,
        max_trials: int | None = None,
        cv=None,
        scoring=None,
        refit=True,
        storage=None,
        study_name: str | None = None,
        sampler=None,
        pruning: bool = True,
        pruner=None,
        warmup_epochs: int | None = None,
        random_state=None,
        timeout: float | None = None,
        n_jobs: int = 1,
        error_score=np.nan,
        callbacks=None,
        verbose: int = 0,
    ):
        self.estimator = estimator
        self.param_space = param_space
        self.n_trials = n_trials
        self.max_trials = max_trials
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.storage = storage
        self.study_name = study_name
        self.sampler = sampler
        self.pruning = pruning
        self.pruner = pruner
        self.warmup_epochs = warmup_epochs
        self.random_state = random_state
        self.timeout = timeout
        self.n_jobs = n_jobs
        self.error_score = error_score
        self.callbacks = callbacks
        self.verbose = verbose

    def _objective_name(self, scorers: dict) -> str:
        if isinstance(self.refit, str):
            if self.refit not in scorers:
                raise ValueError(
                    f"refit={self.refit!r} is not one of the scorers {sorted(scorers)}."
                )
            return self.refit
        return next(iter(scorers))

    def _make_study(self, objective: str, X=None, Y=None, space=None):
        storage = make_storage(self.storage)
        sampler = self.sampler
        if sampler is None:
            seed = self.random_state if isinstance(self.random_state, Integral) else None
            sampler = optuna.samplers.TPESampler(seed=seed)
        pruner = self.pruner
        if pruner is None:
            pruner = (
                optuna.pruners.PercentilePruner(75.0, n_startup_trials=5)
                if self.pruning
                else optuna.pruners.NopPruner()
            )
        study_name = self.study_name
        if study_name is None and storage is not None:
            study_name = f"{type(self.estimator).__name__}-search"
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            sampler=sampler,
            pruner=pruner,
            direction="maximize",
            load_if_exists=True,
        )
        stored = study.user_attrs
        expected = {"objective": objective, "estimator": type(self.estimator).__name__}
        if X is not None:
            expected["data"] = data_fingerprint(X, Y)
            expected["search_space"] = space_fingerprint(space)
        what = {"data": "on other data", "search_space": "with another search space"}
        for key, value in expected.items():
            if key in stored and stored[key] != value:
                raise ValueError(
                    f"The stored study {study.study_name!r} was made "
                    f"{what.get(key, f'with {key}')} ({stored[key]!r}), not {value!r}; its "
                    "scores are not comparable, and its best score and parameters would not "
                    "describe this search. Use another study_name (or remove the stored "
                    "study: optuna.delete_study(study_name=..., storage=...))."
                )
            if key not in stored:
                study.set_user_attr(key, value)
        return study

    def _replay_params(self, space, frozen) -> dict:
        """Estimator parameters of a finished trial (exact Python objects)."""
        try:
            fixed = optuna.trial.FixedTrial(frozen.params, number=frozen.number)
            return suggest_params(fixed, space)
        except Exception:
            return dict(frozen.user_attrs.get("estimator_params", {}))

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, Y, groups=None):
        """Run the trials, then refit the best parameters on all data.

        Parameters
        ----------
        X : pandas.DataFrame of shape (n_rows, n_columns)
            Index table.
        Y : array-like or DataFrame of shape (n_rows, n_genes)
            Effects.
        groups : array-like of shape (n_rows,), default=None
            Passed to ``cv.split`` (the package's splitters read contexts from
            it instead of ``X``).

        Returns
        -------
        self : C3TLSearchCV
            The fitted search.
        """
        space = self.param_space
        if space is None:
            space = default_search_space(self.estimator)
        _check_space(space)
        scorers = _resolve_scoring(self.scoring, self.estimator)
        objective = self._objective_name(scorers)
        splits = self._splits(X, Y, groups)
        run_trial = _Objective(self, space, scorers, objective, splits, X, Y)
        with _optuna_quiet(not self.verbose):
            study = self._make_study(objective, X, Y, space)
            n_run, callbacks = self._budget(study, space)
            if n_run and self.max_trials is not None:
                run_until_finished(study, run_trial, max_trials=self.max_trials,
                                   n_trials=n_run, timeout=self.timeout, callbacks=callbacks)
            elif n_run:
                study.optimize(run_trial, n_trials=n_run, timeout=self.timeout,
                               callbacks=callbacks, gc_after_trial=False)
        self.study_ = study
        self.n_trials_run_ = len(run_trial.started)
        self.scorer_ = scorers
        self.objective_ = objective
        self.multimetric_ = len(scorers) > 1
        self.n_splits_ = len(splits)
        self.cv_results_ = self._build_results(study, space, list(scorers), objective)

        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            errors = [t.user_attrs["error"] for t in study.trials if "error" in t.user_attrs]
            detail = f" First error: {errors[0]}" if errors else ""
            raise ValueError(
                f"No trial of study {study.study_name!r} completed "
                f"({len(study.trials)} trial(s): "
                f"{dict(pd.Series([t.state.name for t in study.trials]).value_counts())})."
                + detail
            )
        best = study.best_trial
        rows = np.flatnonzero(self.cv_results_["trial"] == best.number)
        if rows.size == 0:
            # another worker of a shared study completed it after the results were read
            self.cv_results_ = self._build_results(study, space, list(scorers), objective)
            rows = np.flatnonzero(self.cv_results_["trial"] == best.number)
        self.best_trial_ = best
        self.best_score_ = float(best.value)
        self.best_index_ = int(rows[0])
        self.best_params_ = self.cv_results_["params"][self.best_index_]
        if self.refit:
            t0 = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_)
            self.best_estimator_.fit(X, Y)
            self.refit_time_ = time.perf_counter() - t0
        return self

    def _splits(self, X, Y, groups) -> list[tuple[np.ndarray, np.ndarray]]:
        """The folds, computed once so that every trial of a fit scores the same ones."""
        cv = self.cv
        context_col = _context_col_of(self.estimator)
        if cv is None:
            cv = _default_cv(X, groups, self.random_state, context_col)
        elif isinstance(cv, Integral):
            from ..model_selection import ContextKFold

            cv = ContextKFold(n_splits=int(cv), context_col=context_col,
                              random_state=_split_seed(self.random_state))
        else:
            cv = check_cv(cv)
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, Y, groups)]
        if not splits:
            raise ValueError("cv produced no split.")
        return splits

    def _budget(self, study, space) -> tuple[int, list]:
        """Trials to run now and the study callbacks (``max_trials`` counts stored ones)."""
        n_run = self.n_trials
        if isinstance(space, Mapping) and len(space) == 0:  # nothing to tune: one evaluation
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            n_run = 0 if done else 1
        callbacks = list(self.callbacks or [])
        if self.max_trials is not None:
            n_done = len(study.get_trials(deepcopy=False, states=_FINISHED))
            n_run = max(0, min(n_run, self.max_trials - n_done))
        return n_run, callbacks

    def _build_results(self, study, space, metric_names, objective) -> dict[str, np.ndarray]:
        """scikit-learn's ``cv_results_`` layout, one entry per trial of the study."""
        trials = study.trials
        n_splits = max([len(v) for t in trials
                        for v in t.user_attrs.get("split_scores", {}).values()], default=0)
        params = [self._replay_params(space, t) for t in trials]
        results: dict[str, np.ndarray] = {
            "trial": np.array([t.number for t in trials], dtype=int),
            "state": np.array([t.state.name for t in trials], dtype=object),
            "worker": np.array([t.user_attrs.get("worker") for t in trials], dtype=object),
            "params": object_array(params),
        }
        for name in dict.fromkeys(k for p in params for k in p):
            column = np.ma.MaskedArray(np.empty(len(trials), dtype=object),
                                       mask=[name not in p for p in params])
            for i, p in enumerate(params):
                column[i] = p.get(name)
            results[f"param_{name}"] = column
        complete = results["state"] == "COMPLETE"
        for name in metric_names:
            scores = [t.user_attrs.get("split_scores", {}).get(name, []) for t in trials]
            for k in range(n_splits):
                results[f"split{k}_test_{name}"] = np.array(
                    [v[k] if k < len(v) else np.nan for v in scores])
            full = [bool(ok) and len(v) > 0 for ok, v in zip(complete, scores, strict=True)]
            results[f"mean_test_{name}"] = np.array(
                [np.mean(v) if ok else np.nan for ok, v in zip(full, scores, strict=True)])
            results[f"std_test_{name}"] = np.array(
                [np.std(v) if ok else np.nan for ok, v in zip(full, scores, strict=True)])
        means = results[f"mean_test_{objective}"]
        worst = np.nanmin(means) - 1 if np.isfinite(means).any() else 0.0
        results[f"rank_test_{objective}"] = rankdata(
            -np.where(np.isnan(means), worst, means), method="min"
        ).astype(np.int32)
        for key, attr in (("fit_time", "fit_times"), ("score_time", "score_times")):
            values = [t.user_attrs.get(attr, []) for t in trials]
            results[f"mean_{key}"] = np.array([np.mean(v) if v else np.nan for v in values])
            results[f"std_{key}"] = np.array([np.std(v) if v else np.nan for v in values])
        results["mean_n_epochs"] = np.array(
            [np.mean(t.user_attrs["n_epochs"]) if t.user_attrs.get("n_epochs") else np.nan
             for t in trials])
        results["duration"] = np.array(
            [t.duration.total_seconds() if t.duration is not None else np.nan for t in trials])
        results["datetime_start"] = object_array([t.datetime_start for t in trials])
        results["error"] = object_array([t.user_attrs.get("error") for t in trials])
        return results

    # ---------------------------------------------------------------- delegation
    def _check_refit(self, method: str):
        check_is_fitted(self, "study_")
        if not self.refit:
            raise AttributeError(
                f"{method} is only available with refit=True; this search was fitted with "
                "refit=False. Use best_params_ to build and fit an estimator."
            )
        return self.best_estimator_

    def predict(self, X):
        """Predict with the refit best estimator.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table.

        Returns
        -------
        Y_pred : ndarray of shape (n_rows, n_genes)
        """
        return self._check_refit("predict").predict(X)

    def score(self, X, Y):
        """Score of the refit best estimator with the objective scorer.

        Parameters
        ----------
        X : pandas.DataFrame
            Index table.
        Y : array-like of shape (n_rows, n_genes)
            True effects.

        Returns
        -------
        score : float
        """
        estimator = self._check_refit("score")
        if isinstance(X, pd.DataFrame):  # Y's rows follow X's by index label, as in fit
            Y = match_rows(Y, X.index, name="Y")
        return float(self.scorer_[self.objective_](estimator, X, Y))

    def trials_dataframe(self) -> pd.DataFrame:
        """Optuna's own table of the study's trials (``study_.trials_dataframe()``).

        Returns
        -------
        trials : pandas.DataFrame
        """
        check_is_fitted(self, "study_")
        return self.study_.trials_dataframe()

    def params_json(self) -> str:
        """The best parameters as JSON (tuples written as lists).

        Returns
        -------
        text : str
        """
        check_is_fitted(self, "best_params_")
        return json.dumps(jsonable(self.best_params_), sort_keys=True)
