"""Running a benchmark: tune every model on one fold, then fit, predict and score every split."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import pandas as pd

from .._labels import unique_labels
from ._config import BenchmarkConfig, RunRecord
from ._evaluation import _Evaluation
from ._io import check_benchmark_data
from ._progress import _Progress
from ._registry import MODEL_LABELS, PEER_MODELS, _tune_scoring, make_model
from ._report import BenchmarkResult, _heldout_table, _scarcity_tables, _write_outputs
from ._splits import (
    _choose_test_contexts,
    _given_splits,
    _heldout_splits,
    _inner_cv,
    _scarcity_splits,
    _Split,
)

__all__ = ["run_benchmark"]


def run_benchmark(
    X: pd.DataFrame, Y, config: BenchmarkConfig | None = None, *,
    out_dir: str | os.PathLike | None = None, progress: bool = True,
    command: str | None = None, data_description: str | None = None,
    start_time: float | None = None,
) -> BenchmarkResult:
    """Tune and evaluate models with the paper's held-out-context or data-scarcity protocol.

    Parameters
    ----------
    X : pandas.DataFrame
        Index table.
    Y : array-like or DataFrame of shape (n_rows, n_genes)
        Effects.
    config : BenchmarkConfig, optional
        What to run: protocol, models, tuning, seed, label columns (see
        :class:`BenchmarkConfig`); ``None`` is ``BenchmarkConfig()``.
    out_dir : path, optional
        Folder for the files; ``None`` writes nothing.
    progress : bool, default=True
        Report progress on stderr.
    command : str, optional
        The command line, for ``README.md``.
    data_description : str, optional
        One line about the data, for ``README.md``.
    start_time : float, optional
        ``time.perf_counter()`` when the run began, so that the reported wall
        time includes loading the data (the command line passes it); ``None``
        starts the clock here.

    Returns
    -------
    result : BenchmarkResult

    Examples
    --------
    >>> from c3tl_sklearn.cli import BenchmarkConfig, run_benchmark
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> X, Y = make_synthetic_perturbations(5, 30, 20, random_state=0)
    >>> config = BenchmarkConfig(protocol="scarcity", models=["additive"],
    ...                          n_train_contexts=(3, 2), adaptation_fractions=(0.5, 0.2),
    ...                          n_test_contexts=2, n_trials=2)
    >>> result = run_benchmark(X, Y, config, progress=False)
    >>> len(result.scores)  # 2 test contexts x 2 sizes x 2 fractions x 5 metrics
    40
    >>> result.params["additive"]["n_trials"]
    2
    """
    config = BenchmarkConfig() if config is None else config
    record = RunRecord(started=datetime.now(timezone.utc),
                       t_start=time.perf_counter() if start_time is None else start_time,
                       command=command, data_description=data_description)
    models = _check_models(config.models)
    config = config.replace(models=models)
    X, Y = check_benchmark_data(X, Y, **config.labels)
    k = min(50, Y.shape[1])
    scoring = _tune_scoring(config.tune_metric, k) if config.n_trials else None
    plan = _plan(X, config)
    run = _tune_and_evaluate(X, Y, plan, config, k=k, scoring=scoring, progress=progress)
    scores, fits = run.evaluation.tables()
    table = "" if config.tune_only else (
        _heldout_table(scores, fits, run.model_info, models, k)
        if config.protocol == "heldout" else _scarcity_tables(scores, models, k)
    )
    counts = _count_warnings(run.caught, run.bar, written=out_dir is not None)
    result = BenchmarkResult(scores=scores, fits=fits, params=run.model_info, table=table,
                             wall_seconds=time.perf_counter() - record.t_start,
                             warnings=counts)
    if out_dir is not None:
        report = {
            "protocol": config.protocol, "design": plan.design, "models": models,
            "n_trials": config.n_trials, "tune_metric": config.tune_metric,
            "inner_folds": config.inner_folds,
            "adaptation_fraction": config.adaptation_fraction,
            "test_contexts": plan.test_contexts, "seed": config.seed,
            "max_epochs": config.max_epochs, "device": config.device, "top_k": k,
            "tune_only": config.tune_only, "isolate": config.isolate,
        }
        if config.split is not None:
            report["split_file"] = _describe(config.split)
            report["split_adaptation"] = [round(s.adaptation_fraction, 4) for s in plan.splits]
        if config.protocol == "scarcity":
            report.update(n_train_contexts=list(config.n_train_contexts),
                          adaptation_fractions=list(config.adaptation_fractions),
                          scarcity_test_set=config.scarcity_test_set)
        result.files = _write_outputs(
            Path(out_dir), result, run.evaluation.plots(models, config.tune_only),
            config=report, record=record, data=(X, Y), bar=run.bar,
        )
        result.wall_seconds = time.perf_counter() - record.t_start
    return result


@dataclass(frozen=True)
class _TunedRun:
    """What tuning and evaluation leave: params.json entries, the evaluation, its display."""

    model_info: dict
    evaluation: _Evaluation
    bar: _Progress
    caught: list


def _tune_and_evaluate(X, Y, plan: _RunPlan, config: BenchmarkConfig, *, k, scoring,
                       progress) -> _TunedRun:
    """Tune the models on the plan's tuning split, then evaluate them on every split.

    The warnings raised meanwhile are recorded, for the report.
    """
    models, n_trials = config.models, config.n_trials
    given = dict(config.params or {})
    make = partial(make_model, labels=config.labels, max_epochs=config.max_epochs,
                   device=config.device, random_state=config.seed, cells=config.cells,
                   peer_options=config.peer_options)

    def evaluated(name, params):
        model = make(name, params)
        if config.isolate and name not in PEER_MODELS:  # the peers are subprocesses already
            from ..peers import IsolatedRegressor

            model = IsolatedRegressor(model)
        return model

    to_tune = _models_to_tune(models, given, n_trials, make)
    splits = plan.splits
    bar = _Progress(len(to_tune) * n_trials
                    + (0 if config.tune_only else len(models) * len(splits)), progress)
    bar.note(
        f"{config.protocol} protocol: {len(models)} model(s) x {len(splits)} split(s), "
        f"{n_trials} trial(s) per tuned model; {X.shape[0]} pairs, "
        f"{plan.n_contexts} contexts, {Y.shape[1]} genes"
    )
    evaluation = _Evaluation(X, Y, config, k=k, bar=bar, n_splits=len(splits))
    study_prefix = f"{config.study_prefix}-{config.protocol}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        task = _TuningTask(X=X, Y=Y, split=plan.tune_split, fraction=plan.tune_fraction,
                           scoring=scoring, config=config, bar=bar)
        model_info = {
            name: _model_params(name, given, to_tune, n_trials, make,
                                partial(_tune_model, task=task),
                                study_name=f"{study_prefix}-{name}")
            for name in models
        }
        if not config.tune_only:
            evaluation.run_all([(name, evaluated(name, model_info[name]["params"]), split)
                                for name in models for split in splits], config.n_jobs)
    bar.close()
    return _TunedRun(model_info, evaluation, bar, caught)


def _count_warnings(caught, bar, *, written: bool) -> dict[str, int]:
    """``"Category: first line"`` of every warning of the run to its count, most common first."""
    counts = Counter(
        f"{w.category.__name__}: {str(w.message).splitlines()[0][:300]}" for w in caught
    )
    if counts:
        total = sum(counts.values())
        bar.note(f"{total} warning(s) raised during the run; README.md lists them" if written
                 else f"{total} warning(s) raised; see result.warnings")
    return dict(counts.most_common())


def _check_models(models: Sequence[str]) -> list[str]:
    models = list(models)
    unknown = [m for m in models if m not in MODEL_LABELS]
    if unknown or not models:
        raise ValueError(f"Unknown model(s) {unknown}; choose from {sorted(MODEL_LABELS)}.")
    if len(set(models)) != len(models):
        raise ValueError(f"models lists a model twice: {models}.")
    return models


@dataclass
class _RunPlan:
    """The splits of a run and the one the models are tuned on."""

    splits: list[_Split]
    design: str
    tune_split: _Split
    tune_fraction: float
    test_contexts: list
    n_contexts: int


def _plan(X, config: BenchmarkConfig) -> _RunPlan:
    labels, given = config.labels, config.split
    fraction = config.adaptation_fraction
    context_labels = unique_labels(X[labels["context_col"]])
    if given is not None:
        if config.protocol != "heldout":
            raise ValueError(f"A given split replaces the held-out protocol's folds; use "
                             f"protocol='heldout' with it, not {config.protocol!r}.")
        splits = _given_splits(X, given, labels=labels)
        held = list(dict.fromkeys(c for s in splits for c in s.held_out))
        return _RunPlan(splits, f"the split(s) of {_describe(given)}", splits[0],
                        fraction, held, len(context_labels))
    test_contexts = _choose_test_contexts(context_labels, config.n_test_contexts, config.seed)
    if config.protocol == "heldout":
        splits = _heldout_splits(X, test_contexts=test_contexts,
                                 adaptation_fraction=fraction, seed=config.seed,
                                 labels=labels)
        return _RunPlan(splits, "one test context at a time; all other contexts train",
                        splits[0], fraction, test_contexts, len(context_labels))
    splits, design = _scarcity_splits(
        X, test_contexts=test_contexts, n_train_contexts=config.n_train_contexts,
        adaptation_fractions=config.adaptation_fractions, test_set=config.scarcity_test_set,
        seed=config.seed, labels=labels,
    )
    # tuned on the first test context, the largest training set and the adaptation
    # fraction nearest adaptation_fraction
    first = splits[0].test_context
    largest = max(config.n_train_contexts)
    nearest = min(config.adaptation_fractions, key=lambda f: (abs(f - fraction), -f))
    tune_split = next(
        s for s in splits
        if s.test_context == first and s.n_train_contexts == largest
        and math.isclose(s.adaptation_fraction, nearest)
    )
    return _RunPlan(splits, design, tune_split, nearest, test_contexts, len(context_labels))


def _describe(cv) -> str:
    source = getattr(cv, "toml", None)
    if isinstance(source, (str, os.PathLike)):
        return f"{type(cv).__name__} ({os.fspath(source)})"
    return type(cv).__name__


def _model_params(name, given, to_tune, n_trials, make, tune, *, study_name) -> dict:
    """The params.json entry of one model: given, defaults, or tuned now."""
    info: dict = {"label": MODEL_LABELS[name]}
    if name in given:
        info.update(params=dict(given[name]), source="given")
    elif name not in to_tune:
        info.update(params={}, source="default",
                    reason="no tuning requested" if not n_trials else "nothing to tune")
    else:
        info.update(tune(name, make(name), study_name=study_name))
    return info


def _models_to_tune(models, given, n_trials, make) -> list[str]:
    """The models that are searched: not given parameters, and with something to tune."""
    if not n_trials:
        return []
    from ..tuning import default_search_space

    return [name for name in models
            if name not in given and name not in PEER_MODELS
            and default_search_space(make(name))]


@dataclass(frozen=True)
class _TuningTask:
    """What every model's search shares: the data, the split tuned on, the scorers."""

    X: pd.DataFrame
    Y: pd.DataFrame
    split: _Split
    fraction: float
    scoring: object
    config: BenchmarkConfig
    bar: _Progress


def _tune_model(name, base, *, study_name, task: _TuningTask) -> dict:
    """Tune one model on the training rows of the task's split; return its params.json entry."""
    from ..tuning import C3TLSearchCV

    split, fraction, scoring, bar = task.split, task.fraction, task.scoring, task.bar
    storage, seed, n_trials = task.config.storage, task.config.seed, task.config.n_trials
    X_tr = task.X.iloc[split.train].reset_index(drop=True)
    Y_tr = task.Y.iloc[split.train].reset_index(drop=True)
    inner, inner_contexts = _inner_cv(
        X_tr, exclude=set(split.held_out) or {split.test_context},
        n_folds=task.config.inner_folds, adaptation_fraction=fraction, seed=seed,
        labels=task.config.labels,
    )
    objective = scoring if isinstance(scoring, str) else next(iter(scoring))

    def report(study, trial):
        value = "no score" if trial.value is None else f"{objective} {trial.value:.4f}"
        try:
            best = f", best {study.best_value:.4f}"
        except ValueError:
            best = ""
        bar.step(f"{name}: tuning trial {trial.number + 1} ({trial.state.name.lower()}): "
                 f"{value}{best}")

    search = C3TLSearchCV(
        base, n_trials=n_trials, max_trials=n_trials if storage is not None else None,
        cv=inner, scoring=scoring, refit=False, storage=storage,
        study_name=study_name if storage is not None else None,
        # workers sharing a stored study must not propose the same candidates
        random_state=seed if storage is None else None, callbacks=[report],
        n_jobs=task.config.n_jobs,
    )
    t0 = time.perf_counter()
    search.fit(X_tr, Y_tr)
    seconds = time.perf_counter() - t0
    states = pd.Series(search.cv_results_["state"]).value_counts().to_dict()
    return {
        "params": search.best_params_,
        "source": "tuned",
        "best_score": search.best_score_,
        "tune_metric": objective,
        "n_trials": len(search.cv_results_["trial"]),
        "n_complete": int(states.get("COMPLETE", 0)),
        "n_pruned": int(states.get("PRUNED", 0)),
        "n_failed": int(states.get("FAIL", 0)),
        "tuning_seconds": seconds,
        "tuned_on": {
            "split": split.index, "test_context": split.test_context,
            "n_train_contexts": split.n_train_contexts,
            "adaptation_fraction": fraction, "inner_test_contexts": inner_contexts,
            "n_rows": len(X_tr),
        },
        "study_name": search.study_.study_name if storage is not None else None,
    }
