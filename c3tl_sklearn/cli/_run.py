"""Running a benchmark: tune every model on one fold, then fit, predict and score every split."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from numbers import Integral
from pathlib import Path

import pandas as pd
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params

from .._labels import unique_labels
from ._evaluation import _Evaluation
from ._io import check_benchmark_data
from ._progress import _Progress
from ._registry import _TUNE_METRICS, MODELS, _tune_scoring, make_model
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


@validate_params(
    {
        "protocol": [StrOptions({"heldout", "scarcity"})],
        "models": ["array-like"],
        "n_trials": [Interval(Integral, 0, None, closed="left")],
        "tune_metric": [StrOptions(set(_TUNE_METRICS))],
        "inner_folds": [Interval(Integral, 1, None, closed="left")],
        "scarcity_test_set": [StrOptions({"common", "complement"})],
        "max_points": [Interval(Integral, 1, None, closed="left")],
        "split": [HasMethods(["split"]), None],
    },
    prefer_skip_nested_validation=False,
)
def run_benchmark(
    X: pd.DataFrame, Y, *, protocol: str = "heldout", models: Sequence[str] = tuple(MODELS),
    n_trials: int = 20, tune_metric: str = "centered_pearson_delta", inner_folds: int = 2,
    adaptation_fraction: float = 0.1, n_test_contexts: int | None = None,
    n_train_contexts: Sequence[int] = (5, 3, 2),
    adaptation_fractions: Sequence[float] = (0.5, 0.2, 0.1, 0.05, 0.02),
    scarcity_test_set: str = "common", params: dict[str, dict] | None = None,
    max_epochs: int | None = None, device: str = "cpu", storage=None,
    study_prefix: str = "c3tl-benchmark", seed: int = 0, context_col: Hashable = "context",
    perturbation_col: Hashable = "perturbation", max_points: int = 20_000,
    out_dir: str | os.PathLike | None = None, progress: bool = True,
    command: str | None = None, data_description: str | None = None,
    start_time: float | None = None, tune_only: bool = False, n_jobs: int | None = 1,
    split=None,
) -> BenchmarkResult:
    """Tune and evaluate models with the paper's held-out-context or data-scarcity protocol.

    Parameters
    ----------
    X : pandas.DataFrame
        Index table.
    Y : array-like or DataFrame of shape (n_rows, n_genes)
        Effects.
    protocol : {"heldout", "scarcity"}, default="heldout"
        See the module documentation.
    models : sequence of str, default=all of :data:`MODELS`
        Models to compare, in table order.
    n_trials : int, default=20
        Optuna trials per model (the same for every model); ``0`` keeps the
        default parameters. A model without a search space is not searched.
    tune_metric : str, default="centered_pearson_delta"
        Objective of the search: a metric of :data:`METRICS`.
    inner_folds : int, default=2
        Training contexts held out, one at a time, by the tuning's inner
        cross-validation.
    adaptation_fraction : float, default=0.1
        heldout: fraction of the test context in training. scarcity: the
        cell nearest to it is tuned on, and the inner cross-validation uses it.
    n_test_contexts : int, optional
        Test contexts, drawn with ``seed``; ``None``: every context with up
        to 10 contexts, else 5.
    n_train_contexts : sequence of int, default=(5, 3, 2)
        scarcity: nested training-set sizes.
    adaptation_fractions : sequence of float, default=(0.5, 0.2, 0.1, 0.05, 0.02)
        scarcity: nested adaptation fractions.
    scarcity_test_set : {"common", "complement"}, default="common"
        scarcity: see :class:`~c3tl_sklearn.model_selection.ScarcitySplit`.
    params : dict, optional
        ``{model: {param: value}}`` to use instead of tuning those models.
    max_epochs : int, optional
        Overrides C3TL's ``max_epochs``.
    device : str, default="cpu"
        C3TL's torch device.
    storage : str or optuna storage, optional
        Optuna storage for the searches (one study per model named
        ``"{study_prefix}-{protocol}-{model}"``), so a stopped benchmark
        resumes its tuning, and several processes can share it.
    study_prefix : str, default="c3tl-benchmark"
        Prefix of the study names.
    seed : int, default=0
        Seeds the splits, the samplers and C3TL.
    context_col, perturbation_col : hashable
        Label columns of ``X``.
    max_points : int, default=20000
        Points per panel of ``scatter.png``.
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
    tune_only : bool, default=False
        Only tune (and write ``params.json`` and ``README.md``). With a shared
        ``storage``, several ``tune_only`` workers fill the studies up to
        ``n_trials`` each; a final run with the same storage then finds them
        complete and only evaluates.
    n_jobs : int or None, default=1
        Fits at once, through joblib: the evaluation's (model, split) fits,
        and the folds of every tuning trial (see
        :class:`~c3tl_sklearn.tuning.C3TLSearchCV`). Inside
        ``joblib.parallel_config(backend="dask")`` they run on a Dask cluster
        (``"ray"``: Ray). Each job's torch and BLAS threads are the machine's
        cores divided by ``n_jobs``, so workers do not oversubscribe the cores.
        The scores equal those of ``n_jobs=1``.
    split : splitter, optional
        Splits to use instead of the protocol's (``protocol`` must be
        ``"heldout"``), for example a
        :class:`~c3tl_sklearn.model_selection.StateSplit` of a State TOML
        file over ``X`` (its context and perturbation columns are
        ``"context"`` and ``"perturbation"`` when ``X`` comes from
        :func:`load_benchmark_data`). Every split is one row per model and
        split in the scores; the models are tuned on the first one's
        training rows, the inner cross-validation holding out training
        contexts that are not test contexts of that split.

    Returns
    -------
    result : BenchmarkResult

    Examples
    --------
    >>> from c3tl_sklearn.cli import run_benchmark
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> X, Y = make_synthetic_perturbations(5, 30, 20, random_state=0)
    >>> result = run_benchmark(X, Y, protocol="scarcity", models=["additive"],
    ...                        n_train_contexts=(3, 2), adaptation_fractions=(0.5, 0.2),
    ...                        n_test_contexts=2, n_trials=2, progress=False)
    >>> len(result.scores)  # 2 test contexts x 2 sizes x 2 fractions x 5 metrics
    40
    >>> result.params["additive"]["n_trials"]
    2
    """
    started = datetime.now(timezone.utc)
    t_start = time.perf_counter() if start_time is None else start_time
    models = _check_models(models)
    labels = {"context_col": context_col, "perturbation_col": perturbation_col}
    X, Y = check_benchmark_data(X, Y, **labels)
    k = min(50, Y.shape[1])
    scoring = _tune_scoring(tune_metric, k) if n_trials else None
    plan = _plan(X, protocol, labels, seed=seed, n_test_contexts=n_test_contexts,
                 adaptation_fraction=adaptation_fraction, n_train_contexts=n_train_contexts,
                 adaptation_fractions=adaptation_fractions, test_set=scarcity_test_set,
                 given=split)
    model_info, evaluation, bar, caught = _tune_and_evaluate(
        X, Y, plan, models, labels=labels, k=k, scoring=scoring, given=dict(params or {}),
        n_trials=n_trials, inner_folds=inner_folds, storage=storage,
        study_prefix=f"{study_prefix}-{protocol}", protocol=protocol, seed=seed,
        max_epochs=max_epochs, device=device, tune_only=tune_only, progress=progress,
        max_points=max_points, n_jobs=n_jobs,
    )
    scores, fits = evaluation.tables()
    table = "" if tune_only else (
        _heldout_table(scores, fits, model_info, models, k) if protocol == "heldout"
        else _scarcity_tables(scores, models, k)
    )
    counts = _count_warnings(caught, bar, written=out_dir is not None)
    result = BenchmarkResult(scores=scores, fits=fits, params=model_info, table=table,
                             wall_seconds=time.perf_counter() - t_start, warnings=counts)
    if out_dir is not None:
        config = {
            "protocol": protocol, "design": plan.design, "models": models,
            "n_trials": n_trials, "tune_metric": tune_metric, "inner_folds": inner_folds,
            "adaptation_fraction": adaptation_fraction, "test_contexts": plan.test_contexts,
            "seed": seed, "max_epochs": max_epochs, "device": device, "top_k": k,
            "tune_only": tune_only,
        }
        if split is not None:
            config["split_file"] = _describe(split)
            config["split_adaptation"] = [round(s.adaptation_fraction, 4) for s in plan.splits]
        if protocol == "scarcity":
            config.update(n_train_contexts=list(n_train_contexts),
                          adaptation_fractions=list(adaptation_fractions),
                          scarcity_test_set=scarcity_test_set)
        result.files = _write_outputs(
            Path(out_dir), result, evaluation.plots(models, tune_only), config=config,
            started=started, command=command, data_description=data_description, X=X, Y=Y,
            bar=bar, t_start=t_start,
        )
        result.wall_seconds = time.perf_counter() - t_start
    return result


def _tune_and_evaluate(X, Y, plan: _RunPlan, models, *, labels, k, scoring, given, n_trials,
                       inner_folds, storage, study_prefix, protocol, seed, max_epochs, device,
                       tune_only, progress, max_points, n_jobs):
    """Tune the models on the plan's tuning split, then evaluate them on every split.

    Returns the params.json entries, the evaluation, the progress display and
    the warnings raised meanwhile.
    """
    make = partial(make_model, **labels, max_epochs=max_epochs, device=device,
                   random_state=seed)
    to_tune = _models_to_tune(models, given, n_trials, make)
    splits = plan.splits
    bar = _Progress(len(to_tune) * n_trials + (0 if tune_only else len(models) * len(splits)),
                    progress)
    bar.note(
        f"{protocol} protocol: {len(models)} model(s) x {len(splits)} split(s), "
        f"{n_trials} trial(s) per tuned model; {X.shape[0]} pairs, "
        f"{plan.n_contexts} contexts, {Y.shape[1]} genes"
    )
    evaluation = _Evaluation(X, Y, protocol=protocol, k=k, seed=seed, bar=bar,
                             context_col=labels["context_col"], n_splits=len(splits),
                             max_points=max_points)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        tune = partial(
            _tune_model, X=X, Y=Y, split=plan.tune_split, fraction=plan.tune_fraction,
            n_trials=n_trials, inner_folds=inner_folds, scoring=scoring, storage=storage,
            seed=seed, labels=labels, bar=bar, n_jobs=n_jobs,
        )
        model_info = {
            name: _model_params(name, given, to_tune, n_trials, make, tune,
                                study_name=f"{study_prefix}-{name}")
            for name in models
        }
        if not tune_only:
            evaluation.run_all([(name, make(name, model_info[name]["params"]), split)
                                for name in models for split in splits], n_jobs)
    bar.close()
    return model_info, evaluation, bar, caught


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
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"Unknown model(s) {unknown}; choose from {sorted(MODELS)}.")
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


def _plan(X, protocol, labels, *, seed, n_test_contexts, adaptation_fraction,
          n_train_contexts, adaptation_fractions, test_set, given=None) -> _RunPlan:
    context_labels = unique_labels(X[labels["context_col"]])
    if given is not None:
        if protocol != "heldout":
            raise ValueError(f"A given split replaces the held-out protocol's folds; use "
                             f"protocol='heldout' with it, not {protocol!r}.")
        splits = _given_splits(X, given, labels=labels)
        held = list(dict.fromkeys(c for s in splits for c in s.held_out))
        return _RunPlan(splits, f"the split(s) of {_describe(given)}", splits[0],
                        adaptation_fraction, held, len(context_labels))
    test_contexts = _choose_test_contexts(context_labels, n_test_contexts, seed)
    if protocol == "heldout":
        splits = _heldout_splits(X, test_contexts=test_contexts,
                                 adaptation_fraction=adaptation_fraction, seed=seed,
                                 labels=labels)
        return _RunPlan(splits, "one test context at a time; all other contexts train",
                        splits[0], adaptation_fraction, test_contexts, len(context_labels))
    splits, design = _scarcity_splits(
        X, test_contexts=test_contexts, n_train_contexts=n_train_contexts,
        adaptation_fractions=adaptation_fractions, test_set=test_set, seed=seed,
        labels=labels,
    )
    # tuned on the first test context, the largest training set and the adaptation
    # fraction nearest adaptation_fraction
    first = splits[0].test_context
    largest = max(n_train_contexts)
    nearest = min(adaptation_fractions, key=lambda f: (abs(f - adaptation_fraction), -f))
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
    info: dict = {"label": MODELS[name]}
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
            if name not in given and default_search_space(make(name))]


def _tune_model(name, base, X, Y, split, fraction, *, n_trials, inner_folds, scoring,
                storage, study_name, seed, labels, bar, n_jobs=1) -> dict:
    """Tune one model on the training rows of ``split``; return its params.json entry."""
    from ..tuning import C3TLSearchCV

    X_tr = X.iloc[split.train].reset_index(drop=True)
    Y_tr = Y.iloc[split.train].reset_index(drop=True)
    inner, inner_contexts = _inner_cv(
        X_tr, exclude=set(split.held_out) or {split.test_context}, n_folds=inner_folds,
        adaptation_fraction=fraction, seed=seed, labels=labels,
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
        random_state=seed if storage is None else None, callbacks=[report], n_jobs=n_jobs,
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
