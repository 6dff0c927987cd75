"""Optuna hyperparameter search for :class:`~c3tl_sklearn.C3TLRegressor` and the baselines.

:class:`C3TLSearchCV` works like scikit-learn's searches (``fit``,
``best_params_``, ``best_score_``, ``best_estimator_``, ``cv_results_``,
``predict``) but draws candidates with Optuna, so a budget of ``n_trials``
explores a continuous space, clearly losing trials stop early, and a study can
live in shared storage and be worked on by several processes or machines.

Search spaces
-------------
A search space maps an estimator parameter name (as ``set_params`` takes it)
to one of:

- an Optuna distribution (``FloatDistribution``, ``IntDistribution``,
  ``CategoricalDistribution``), suggested under the parameter's own name;
- a list of choices (shorthand for a ``CategoricalDistribution``);
- a callable ``f(trial) -> value`` that suggests whatever Optuna parameters
  it needs and builds the value (for example ``hidden_dims`` from a width and
  a depth).

A whole space may also be a callable ``f(trial) -> dict`` of parameters
(Optuna's define-by-run style). An empty space means nothing to tune: the
search evaluates the estimator once.

Default spaces are kept in a registry keyed by estimator class;
:func:`default_search_space` returns a fresh copy that you can edit and pass
as ``param_space``, and :func:`register_search_space` replaces the default of
a class (your own estimators included). An estimator class can also carry its
own space as a ``search_space()`` classmethod; a registration made with
:func:`register_search_space` takes precedence over it, and it takes
precedence over the built-in defaults. Meta-estimators are looked through: for
a :class:`~sklearn.pipeline.Pipeline` the last step's space is used with the
``step__`` prefix, for a
:class:`~sklearn.compose.TransformedTargetRegressor` the regressor's with
``regressor__``.

Built-in spaces:

================================  ==============================================
``C3TLRegressor``                 ``lr`` log-uniform 3e-4..1e-2, ``weight_decay``
                                  log-uniform 1e-6..1e-2, ``dropout`` 0..0.4,
                                  ``latent_dim`` in {16, 32, 64, 128},
                                  ``hidden_dims`` = width (64..512, log) times
                                  depth (1 or 2), ``leave_target_out``
``AdditiveBaseline``              ``shrinkage`` 0..5
``LinearTransferBaseline``        ``n_components`` 5..100 (log), ``alpha``
                                  log-uniform 1e-2..1e3
``ClosestContextBaseline``        ``metric`` in {pearson, euclidean, cosine},
                                  ``min_shared`` 1..20 (log)
``MeanBaseline``                  nothing (one evaluation)
================================  ==============================================

Pruning
-------
With ``pruning=True`` every candidate whose estimator has a skorch
``callbacks`` parameter (``C3TLRegressor``, also inside a pipeline) gets a
:class:`PruningCallback`. After each epoch it reports the *best validation
loss so far*, negated so that higher is better like the search's score, to
the Optuna trial, and stops the trial with :class:`optuna.TrialPruned` when
the pruner says it is clearly losing. Every cross-validation fold reports:
epoch ``e`` of fold ``k`` is step ``k * 100000 + e``, so a trial is compared
with the complete trials at the same fold and epoch. (Optuna's pruners take
a trial's best value over all its steps, so from the second fold on pruning
is more lenient.) Decisions start after ``warmup_epochs`` epochs of each
fold. The validation loss is the estimator's own early-stopping loss, so an
estimator with ``validation_fraction=0`` is never pruned. The default
pruner, ``PercentilePruner(75.0, n_startup_trials=5)``, stops a trial in the
worst quarter once five trials have completed.

Storage, several workers, resuming
----------------------------------
``storage`` takes an Optuna storage URL (``sqlite:///study.db``,
``postgresql://user:pass@host/db``, ``mysql://...``), a path ending in
``.db``/``.sqlite``/``.sqlite3`` (a SQLite file), a path ending in
``.log``/``.jsonl``/``.journal`` (an Optuna journal file, no database server
needed, safe for several processes on one machine or on a file system with
working locks), ``redis://...`` (a journal in Redis, needs the ``redis``
package), or a ready :class:`optuna.storages.BaseStorage`. The study is
loaded if it exists (``load_if_exists``), so:

- several processes or machines that ``fit`` a search with the same storage
  and ``study_name`` share one study: each runs ``n_trials`` new trials, the
  sampler learns from all of them, and each process's ``best_params_`` is the
  best over the whole study. Give each worker a different ``random_state``
  (or ``None``) so that they do not propose the same candidates, and the
  splitter a fixed integer ``random_state`` so that all score the same folds;
- a stopped study resumes: a new ``fit`` adds ``n_trials`` trials to those
  already stored, or with ``max_trials`` only as many as are still missing.

With a database URL, workers send a heartbeat; trials of a worker that died
are marked failed and retried once. With a journal file, the unfinished trial
of a killed process stays ``RUNNING`` and is ignored.

Examples
--------
>>> from c3tl_sklearn.baselines import AdditiveBaseline
>>> from c3tl_sklearn.datasets import make_synthetic_perturbations
>>> from c3tl_sklearn.model_selection import LeaveOneContextOut
>>> from c3tl_sklearn.tuning import C3TLSearchCV
>>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
>>> search = C3TLSearchCV(AdditiveBaseline(), n_trials=3, random_state=0,
...                       cv=LeaveOneContextOut(adaptation_fraction=0.2, random_state=0))
>>> search.fit(X, Y).predict(X.iloc[:2]).shape
(2, 20)
>>> sorted(search.best_params_)
['shrinkage']
>>> len(search.cv_results_)
3
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted

try:
    import optuna
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )
except ImportError as exc:  # pragma: no cover - exercised only without optuna
    raise ImportError(
        "c3tl_sklearn.tuning needs the optional dependency optuna: "
        "pip install c3tl-sklearn[tuning]"
    ) from exc

__all__ = [
    "C3TLSearchCV",
    "PruningCallback",
    "default_search_space",
    "make_storage",
    "register_search_space",
    "suggest_params",
]

SearchSpace = Mapping[str, Any] | Callable[["optuna.trial.BaseTrial"], dict]

#: Steps reserved per cross-validation fold in pruning reports.
FOLD_STEP = 100_000

_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


# --------------------------------------------------------------------------- search spaces


def _hidden_dims(trial) -> tuple[int, ...]:
    """``hidden_dims`` of C3TL: one width, repeated for one or two layers."""
    width = trial.suggest_int("hidden_width", 64, 512, log=True)
    depth = trial.suggest_int("n_hidden_layers", 1, 2)
    return (width,) * depth


def _c3tl_space() -> dict:
    return {
        "lr": FloatDistribution(3e-4, 1e-2, log=True),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
        "dropout": FloatDistribution(0.0, 0.4),
        "latent_dim": CategoricalDistribution((16, 32, 64, 128)),
        "hidden_dims": _hidden_dims,
        "leave_target_out": CategoricalDistribution((True, False)),
    }


# Built-in defaults, keyed by "module.QualName" so that torch is not imported here.
_DEFAULT_SPACES: dict[str, Callable[[], SearchSpace]] = {
    "c3tl_sklearn.estimator.C3TLRegressor": _c3tl_space,
    "c3tl_sklearn.baselines.MeanBaseline": dict,
    "c3tl_sklearn.baselines.AdditiveBaseline": lambda: {
        "shrinkage": FloatDistribution(0.0, 5.0),
    },
    "c3tl_sklearn.baselines.LinearTransferBaseline": lambda: {
        "n_components": IntDistribution(5, 100, log=True),
        "alpha": FloatDistribution(1e-2, 1e3, log=True),
    },
    "c3tl_sklearn.baselines.ClosestContextBaseline": lambda: {
        "metric": CategoricalDistribution(("pearson", "euclidean", "cosine")),
        "min_shared": IntDistribution(1, 20, log=True),
    },
}
_USER_SPACES: dict[str, SearchSpace] = {}


def _class_key(cls) -> str:
    if isinstance(cls, str):
        return cls
    if not isinstance(cls, type):
        raise TypeError(f"Expected an estimator class; got {cls!r}.")
    return f"{cls.__module__}.{cls.__qualname__}"


def _copy_space(space: SearchSpace) -> SearchSpace:
    return dict(space) if isinstance(space, Mapping) else space


def register_search_space(estimator_class: type | str, space: SearchSpace | None) -> None:
    """Set the default search space of an estimator class.

    Parameters
    ----------
    estimator_class : type or str
        The class (subclasses inherit its space unless they have their own),
        or its ``"module.QualName"``.
    space : dict or callable or None
        The search space (see the module documentation); ``None`` removes a
        registration and restores the built-in default, if any.

    Examples
    --------
    >>> from optuna.distributions import FloatDistribution
    >>> from c3tl_sklearn.baselines import AdditiveBaseline
    >>> from c3tl_sklearn.tuning import default_search_space, register_search_space
    >>> register_search_space(AdditiveBaseline, {"shrinkage": FloatDistribution(0, 2)})
    >>> default_search_space(AdditiveBaseline())["shrinkage"].high
    2.0
    >>> register_search_space(AdditiveBaseline, None)  # back to the built-in space
    >>> default_search_space(AdditiveBaseline())["shrinkage"].high
    5.0
    """
    key = _class_key(estimator_class)
    if space is None:
        _USER_SPACES.pop(key, None)
        return
    _check_space(space)
    _USER_SPACES[key] = _copy_space(space)


def _own_space(cls) -> SearchSpace | None:
    """The space of exactly this class (not of its bases), or None."""
    key = _class_key(cls)
    if key in _USER_SPACES:
        return _copy_space(_USER_SPACES[key])
    hook = cls.__dict__.get("search_space")
    if hook is not None:
        return _copy_space(getattr(cls, "search_space")())  # noqa: B009 - bound (class)method
    if key in _DEFAULT_SPACES:
        return _DEFAULT_SPACES[key]()
    return None


def _prefixed(space: SearchSpace, prefix: str) -> SearchSpace:
    if not prefix:
        return space
    if isinstance(space, Mapping):
        return {prefix + name: spec for name, spec in space.items()}

    def prefixed_space(trial):
        return {prefix + name: value for name, value in space(trial).items()}

    return prefixed_space


def default_search_space(estimator) -> SearchSpace:
    """The default search space of an estimator (a fresh copy you may edit).

    Parameters
    ----------
    estimator : estimator instance or class
        A package estimator, a subclass, an estimator whose class was
        registered with :func:`register_search_space` or defines a
        ``search_space()`` classmethod, or a :class:`~sklearn.pipeline.Pipeline`
        / :class:`~sklearn.compose.TransformedTargetRegressor` around one
        (parameter names then carry the ``step__`` / ``regressor__`` prefix).

    Returns
    -------
    space : dict or callable
        Parameter name to Optuna distribution, list of choices or
        ``callable(trial)``; or one callable ``trial -> dict``.

    Raises
    ------
    ValueError
        If no space is known for the estimator's class.

    Examples
    --------
    >>> from c3tl_sklearn.baselines import LinearTransferBaseline, MeanBaseline
    >>> from c3tl_sklearn.tuning import default_search_space
    >>> sorted(default_search_space(LinearTransferBaseline()))
    ['alpha', 'n_components']
    >>> default_search_space(MeanBaseline())
    {}
    """
    space = _lookup_space(estimator, "")
    if space is None:
        name = estimator.__name__ if isinstance(estimator, type) else type(estimator).__name__
        raise ValueError(
            f"No search space is known for {name}. Pass param_space=... (a dict of Optuna "
            "distributions), or register one with "
            f"c3tl_sklearn.tuning.register_search_space({name}, space)."
        )
    return space


def _lookup_space(estimator, prefix: str) -> SearchSpace | None:
    cls = estimator if isinstance(estimator, type) else type(estimator)
    for klass in cls.__mro__:
        if klass in (object, BaseEstimator):
            break
        space = _own_space(klass)
        if space is not None:
            return _prefixed(space, prefix)
    if isinstance(estimator, type):
        return None
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list) and steps:  # Pipeline
        name, last = steps[-1]
        return _lookup_space(last, f"{prefix}{name}__")
    for attr in ("regressor", "estimator"):  # TransformedTargetRegressor, wrappers
        inner = getattr(estimator, attr, None)
        if inner is not None and hasattr(inner, "get_params"):
            return _lookup_space(inner, f"{prefix}{attr}__")
    return None


def _check_space(space) -> None:
    if callable(space) and not isinstance(space, Mapping):
        return
    if not isinstance(space, Mapping):
        raise TypeError(
            "A search space must be a dict {parameter: distribution} or a callable "
            f"trial -> dict; got {type(space).__name__}."
        )
    for name, spec in space.items():
        if not isinstance(name, str):
            raise TypeError(f"Search-space keys must be parameter names; got {name!r}.")
        if isinstance(spec, BaseDistribution) or callable(spec):
            continue
        if isinstance(spec, list):
            if not spec:
                raise ValueError(f"The list of choices for {name!r} is empty.")
            continue
        raise TypeError(
            f"Search-space entry {name!r} must be an Optuna distribution, a list of choices "
            f"or a callable(trial) -> value; got {spec!r}. (Fixed values belong on the "
            "estimator itself.)"
        )


def _suggest(trial, name: str, dist: BaseDistribution):
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    raise TypeError(f"Unsupported Optuna distribution for {name!r}: {dist!r}.")


def suggest_params(trial, space: SearchSpace) -> dict:
    """Draw one set of estimator parameters from a search space.

    Parameters
    ----------
    trial : optuna.trial.BaseTrial
        The trial that suggests values (also an :class:`optuna.trial.FixedTrial`
        to rebuild the parameters of a finished trial).
    space : dict or callable
        See the module documentation.

    Returns
    -------
    params : dict
        Estimator parameters for ``set_params``.

    Examples
    --------
    >>> import optuna
    >>> from c3tl_sklearn.tuning import _c3tl_space, suggest_params
    >>> fixed = optuna.trial.FixedTrial({"lr": 1e-3, "weight_decay": 1e-4, "dropout": 0.1,
    ...     "latent_dim": 32, "hidden_width": 128, "n_hidden_layers": 2,
    ...     "leave_target_out": True})
    >>> suggest_params(fixed, _c3tl_space())["hidden_dims"]
    (128, 128)
    """
    _check_space(space)
    if not isinstance(space, Mapping):
        params = space(trial)
        if not isinstance(params, Mapping):
            raise TypeError(
                f"A callable search space must return a dict of parameters; got {params!r}."
            )
        return dict(params)
    params = {}
    for name, spec in space.items():
        if isinstance(spec, BaseDistribution):
            params[name] = _suggest(trial, name, spec)
        elif isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        else:
            params[name] = spec(trial)
    return params


def _space_is_empty(space: SearchSpace) -> bool:
    return isinstance(space, Mapping) and len(space) == 0


# --------------------------------------------------------------------------- storage


def make_storage(storage) -> optuna.storages.BaseStorage | str | None:
    """Turn a storage option into something :func:`optuna.create_study` accepts.

    Parameters
    ----------
    storage : str, os.PathLike, optuna.storages.BaseStorage or None
        ``None``: in memory. A URL with ``://``: an RDB storage with
        heartbeats (``sqlite:///...``, ``postgresql://...``, ``mysql://...``;
        trials of a dead worker are marked failed and retried once), or a
        Redis journal for ``redis://...``. A path ending in ``.log``,
        ``.jsonl`` or ``.journal``: a journal file
        (:class:`optuna.storages.journal.JournalFileBackend`). A path ending in
        ``.db``, ``.sqlite`` or ``.sqlite3``: a SQLite database file.

    Returns
    -------
    storage : optuna.storages.BaseStorage or None

    Raises
    ------
    ValueError
        For a path with another ending.

    Examples
    --------
    >>> import os, tempfile
    >>> from c3tl_sklearn.tuning import make_storage
    >>> path = os.path.join(tempfile.mkdtemp(), "study.log")
    >>> type(make_storage(path)).__name__
    'JournalStorage'
    """
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, (str, os.PathLike)):
        raise TypeError(
            "storage must be an Optuna storage URL, a journal/SQLite file path or an "
            f"optuna.storages.BaseStorage; got {type(storage).__name__}."
        )
    text = os.fspath(storage)
    if text.startswith("redis://") or text.startswith("rediss://"):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(text))
    if "://" in text:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry_class = getattr(
                optuna.storages,
                "RetryHeartbeatStaleTrialCallback",
                optuna.storages.RetryFailedTrialCallback,
            )
            retry = retry_class(max_retry=1)
            try:  # optuna >= 4.9
                return optuna.storages.RDBStorage(
                    text, heartbeat_interval=60, grace_period=180,
                    heartbeat_stale_trial_callback=retry,
                )
            except TypeError:  # pragma: no cover - older optuna
                return optuna.storages.RDBStorage(
                    text, heartbeat_interval=60, grace_period=180, failed_trial_callback=retry
                )
    lower = text.lower()
    if lower.endswith(_JOURNAL_SUFFIXES):
        from optuna.storages.journal import JournalFileBackend

        parent = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(parent):
            raise ValueError(f"The folder of the journal file {text!r} does not exist.")
        return optuna.storages.JournalStorage(JournalFileBackend(text))
    if lower.endswith(_SQLITE_SUFFIXES):
        return make_storage("sqlite:///" + os.path.abspath(text))
    raise ValueError(
        f"Cannot tell what kind of storage {text!r} is. Use a URL such as "
        "'sqlite:///study.db' or 'postgresql://user:pass@host/db', a journal file ending "
        f"in {', '.join(_JOURNAL_SUFFIXES)}, or a SQLite file ending in "
        f"{', '.join(_SQLITE_SUFFIXES)}."
    )


# --------------------------------------------------------------------------- pruning


class PruningCallback:
    """skorch callback reporting the validation loss to an Optuna trial, for pruning.

    After every epoch the best ``valid_loss`` so far is reported, negated (so
    that higher is better, like the search's scores), at step ``step_offset +
    epoch``; once ``warmup_epochs`` epochs have passed, the trial is stopped
    with :class:`optuna.TrialPruned` if its pruner says so. Epochs without a
    ``valid_loss`` (no validation split) are not reported.

    It follows skorch's callback protocol without importing skorch, so it can
    be passed in ``callbacks=`` of :class:`~c3tl_sklearn.C3TLRegressor` (or any
    skorch net). Copies (``clone``, ``deepcopy``, as meta-estimators such as
    ``TransformedTargetRegressor`` make) report to the same trial.

    Parameters
    ----------
    trial : optuna.trial.Trial
        The trial to report to.
    step_offset : int, default=0
        Added to the epoch number (``C3TLSearchCV`` uses ``fold * 100000``).
    warmup_epochs : int, default=5
        Epochs before the first pruning decision.
    monitor : str, default="valid_loss"
        History key to report (lower is better).

    Examples
    --------
    >>> import optuna
    >>> from c3tl_sklearn import C3TLRegressor
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> from c3tl_sklearn.tuning import PruningCallback
    >>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
    >>> study = optuna.create_study(direction="maximize")
    >>> trial = study.ask()
    >>> model = C3TLRegressor(max_epochs=3, hidden_dims=(32,), random_state=0,
    ...                       callbacks=[PruningCallback(trial, warmup_epochs=100)])
    >>> _ = model.fit(X, Y)
    >>> _ = study.tell(trial, 0.0)
    >>> sorted(study.trials[0].intermediate_values)
    [1, 2, 3]
    """

    def __init__(self, trial, step_offset: int = 0, warmup_epochs: int = 5,
                 monitor: str = "valid_loss"):
        self.trial = trial
        self.step_offset = step_offset
        self.warmup_epochs = warmup_epochs
        self.monitor = monitor

    # skorch's callback protocol ------------------------------------------------
    def initialize(self):
        self.best_ = np.inf
        return self

    def get_params(self, deep: bool = True) -> dict:
        return {
            "trial": self.trial,
            "step_offset": self.step_offset,
            "warmup_epochs": self.warmup_epochs,
            "monitor": self.monitor,
        }

    def set_params(self, **params):
        for key, value in params.items():
            setattr(self, key, value)
        return self

    # copies (sklearn's clone, deepcopy) keep reporting to the same trial
    def __sklearn_clone__(self):
        return type(self)(self.trial, self.step_offset, self.warmup_epochs, self.monitor)

    def __deepcopy__(self, memo):
        return self.__sklearn_clone__()

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.best_ = np.inf

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        row = net.history[-1]
        loss = row.get(self.monitor)
        if loss is None or not np.isfinite(loss):
            return
        self.best_ = min(getattr(self, "best_", np.inf), float(loss))
        epoch = int(row.get("epoch", len(net.history)))
        self.trial.report(-self.best_, self.step_offset + epoch)
        if epoch >= self.warmup_epochs and self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at epoch {epoch} ({self.monitor} {self.best_:.4g})"
            )

    def on_train_end(self, net, X=None, y=None, **kwargs):
        pass

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        pass

    def on_batch_begin(self, net, batch=None, training=None, **kwargs):
        pass

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        pass

    def on_grad_computed(self, net, named_parameters, X=None, y=None, training=None,
                         **kwargs):
        pass


def _callbacks_param(estimator) -> str | None:
    """Name of the (nested) skorch ``callbacks`` parameter of an estimator, if any."""
    try:
        names = estimator.get_params(deep=True)
    except Exception:  # pragma: no cover - exotic estimators
        return None
    found = [k for k in names if k == "callbacks" or k.endswith("__callbacks")]
    return min(found, key=len) if found else None


# --------------------------------------------------------------------------- helpers


def _take(A, idx: np.ndarray):
    if isinstance(A, (pd.DataFrame, pd.Series)):
        return A.iloc[idx]
    return np.asarray(A)[idx]


def _context_col_of(estimator) -> Any:
    try:
        params = estimator.get_params(deep=True)
    except Exception:  # pragma: no cover
        return "context"
    found = [k for k in params if k == "context_col" or k.endswith("__context_col")]
    return params[min(found, key=len)] if found else "context"


def _resolve_scoring(scoring, estimator) -> dict[str, Callable]:
    """``{name: scorer}`` from a name, callable, list or dict; package names first."""
    from .metrics import SCORERS, make_context_scorer

    context_col = _context_col_of(estimator)

    def one(item) -> Callable:
        if callable(item):
            return item
        if isinstance(item, str):
            if item in SCORERS:
                scorer = SCORERS[item]
                func = getattr(scorer, "_score_func", None)
                if context_col != "context" and hasattr(scorer, "_context_col"):
                    return make_context_scorer(func, context_col=context_col)
                return scorer
            try:
                return get_scorer(item)
            except ValueError as exc:
                raise ValueError(
                    f"Unknown scoring {item!r}. Use one of the package's scorers "
                    f"{sorted(SCORERS)} or a scikit-learn scorer name."
                ) from exc
        raise TypeError(f"scoring entries must be names or callables; got {item!r}.")

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
    if isinstance(scoring, Iterable):
        items = list(scoring)
        if not items or not all(isinstance(i, str) for i in items):
            raise ValueError("A list of scorings must be a non-empty list of names.")
        return {i: one(i) for i in items}
    raise TypeError(f"Unsupported scoring {scoring!r}.")


def _jsonable(value):
    """A JSON-safe version of a parameter value (tuples become lists)."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _default_cv(X, groups, random_state):
    from .model_selection import LeaveOneContextOut

    if groups is not None:
        n = len(pd.unique(pd.Series(np.asarray(groups, dtype=object))))
    elif isinstance(X, pd.DataFrame) and "context" in X.columns:
        n = X["context"].nunique()
    else:
        raise ValueError(
            "cv=None needs the contexts: pass groups=..., an index table with a 'context' "
            "column, or an explicit cv splitter."
        )
    seed = random_state if isinstance(random_state, Integral) else 0
    return LeaveOneContextOut(
        adaptation_fraction=0.1, n_test_contexts=min(3, n), random_state=seed
    )


# --------------------------------------------------------------------------- the search


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
    cv : int, cross-validation splitter or iterable, default=None
        Any splitter of :mod:`c3tl_sklearn.model_selection` (or scikit-learn);
        an int is :class:`~c3tl_sklearn.model_selection.ContextKFold` with
        that many folds. ``None``:
        ``LeaveOneContextOut(adaptation_fraction=0.1, n_test_contexts=3)``
        seeded with ``random_state``. Splits are computed once per ``fit``, so
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
        tenth of the estimator's ``max_epochs`` (at least 5).
    random_state : int or None, default=None
        Seeds the default sampler and the default ``cv``.
    timeout : float, default=None
        Stop starting new trials after this many seconds.
    n_jobs : int, default=1
        Trials run in parallel threads (Optuna's ``n_jobs``). For processes or
        machines, run several workers on one ``storage`` instead.
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
    cv_results_ : pandas.DataFrame
        One row per trial of the study, in trial order: ``trial``, ``state``
        (COMPLETE, PRUNED, FAIL, RUNNING), ``worker`` (host:pid), ``params``
        (dict), one ``param_<name>`` column per estimator parameter,
        ``mean_test_<metric>``, ``std_test_<metric>``,
        ``split<k>_test_<metric>``, ``rank_test_<objective>`` (complete trials
        only), ``mean_fit_time``, ``mean_score_time``, ``mean_n_epochs``
        (skorch estimators), ``duration`` (seconds) and ``error``.
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
    >>> search.cv_results_[["trial", "state"]].shape
    (2, 2)

    Without ``param_space`` the default space is searched (see
    :func:`default_search_space`):

    >>> sorted(default_search_space(model))
    ['dropout', 'hidden_dims', 'latent_dim', 'leave_target_out', 'lr', 'weight_decay']
    """

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

    # ------------------------------------------------------------------ helpers
    def _check_params(self):
        for name in ("n_trials",):
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer; got {value!r}.")
        if self.max_trials is not None and (
            not isinstance(self.max_trials, Integral) or self.max_trials < 1
        ):
            raise ValueError(f"max_trials must be a positive integer; got {self.max_trials!r}.")
        if not (self.error_score == "raise" or isinstance(self.error_score, (int, float))):
            raise ValueError(
                f"error_score must be 'raise' or a number; got {self.error_score!r}."
            )

    def _objective_name(self, scorers: dict) -> str:
        if isinstance(self.refit, str):
            if self.refit not in scorers:
                raise ValueError(
                    f"refit={self.refit!r} is not one of the scorers {sorted(scorers)}."
                )
            return self.refit
        return next(iter(scorers))

    def _make_study(self, objective: str):
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
        for key, value in expected.items():
            if key in stored and stored[key] != value:
                raise ValueError(
                    f"The stored study {study.study_name!r} was made with {key} "
                    f"{stored[key]!r}, not {value!r}; its scores are not comparable. Use "
                    "another study_name."
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

    # ---------------------------------------------------------------------- fit
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
        """
        self._check_params()
        space = self.param_space
        if space is None:
            space = default_search_space(self.estimator)
        _check_space(space)
        scorers = _resolve_scoring(self.scoring, self.estimator)
        objective = self._objective_name(scorers)
        cv = self.cv
        if cv is None:
            cv = _default_cv(X, groups, self.random_state)
        elif isinstance(cv, Integral):
            from .model_selection import ContextKFold

            seed = self.random_state if isinstance(self.random_state, Integral) else 0
            cv = ContextKFold(n_splits=int(cv), random_state=seed)
        else:
            cv = check_cv(cv)
        splits = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, Y, groups)]
        if not splits:
            raise ValueError("cv produced no split.")
        callbacks_key = _callbacks_param(self.estimator) if self.pruning else None

        def _warmup(est) -> int:
            if self.warmup_epochs is not None:
                return int(self.warmup_epochs)
            key = callbacks_key[: -len("callbacks")] + "max_epochs"
            max_epochs = est.get_params(deep=True).get(key)
            return max(5, int(max_epochs) // 10) if isinstance(max_epochs, Integral) else 5

        worker = _worker_id()
        started: list[int] = []  # trials started by this fit (other workers may add more)

        def run_trial(trial) -> float:
            started.append(trial.number)
            params = suggest_params(trial, space)
            trial.set_user_attr("worker", worker)
            trial.set_user_attr("estimator_params", _jsonable(params))
            scores: dict[str, list[float]] = {name: [] for name in scorers}
            fit_times, score_times, n_epochs = [], [], []
            try:
                for fold, (train, test) in enumerate(splits):
                    est = clone(self.estimator).set_params(**params)
                    if callbacks_key:
                        cb = PruningCallback(trial, fold * FOLD_STEP, _warmup(est))
                        own = list(est.get_params(deep=True)[callbacks_key] or [])
                        est.set_params(**{callbacks_key: [*own, cb]})
                    t0 = time.perf_counter()
                    est.fit(_take(X, train), _take(Y, train))
                    fit_times.append(time.perf_counter() - t0)
                    history = getattr(est, "history_", None)
                    if history is not None:
                        n_epochs.append(len(history))
                    t0 = time.perf_counter()
                    X_test, Y_test = _take(X, test), _take(Y, test)
                    for name, scorer in scorers.items():
                        scores[name].append(float(scorer(est, X_test, Y_test)))
                    score_times.append(time.perf_counter() - t0)
                    trial.set_user_attr("split_scores", scores)
            except optuna.TrialPruned:
                trial.set_user_attr("split_scores", scores)
                trial.set_user_attr("fit_times", fit_times)
                raise
            except Exception as exc:
                if self.error_score == "raise":
                    raise
                message = f"{type(exc).__name__}: {exc}"
                trial.set_user_attr("error", message[:2000])
                warnings.warn(
                    f"Trial {trial.number} failed with parameters {params}: {message}",
                    UserWarning,
                    stacklevel=2,
                )
                return float("nan")
            trial.set_user_attr("split_scores", scores)
            trial.set_user_attr("fit_times", fit_times)
            trial.set_user_attr("score_times", score_times)
            if n_epochs:
                trial.set_user_attr("n_epochs", n_epochs)
            return float(np.mean(scores[objective]))

        verbosity = optuna.logging.get_verbosity()
        if not self.verbose:  # failures are reported as warnings of our own
            optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            study = self._make_study(objective)
        finally:
            optuna.logging.set_verbosity(verbosity)
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        n_run = self.n_trials
        if _space_is_empty(space):
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            n_run = 0 if done else 1
        callbacks = list(self.callbacks or [])
        if self.max_trials is not None:
            n_done = len(study.get_trials(deepcopy=False, states=finished))
            n_run = max(0, min(n_run, self.max_trials - n_done))
            callbacks.append(optuna.study.MaxTrialsCallback(self.max_trials, states=finished))
        if not self.verbose:
            optuna.logging.set_verbosity(optuna.logging.ERROR)
        try:
            with warnings.catch_warnings():
                if not self.verbose:
                    warnings.filterwarnings(
                        "ignore", message=r".*objective function returned nan.*"
                    )
                if n_run:
                    study.optimize(
                        run_trial,
                        n_trials=n_run,
                        timeout=self.timeout,
                        n_jobs=self.n_jobs,
                        callbacks=callbacks,
                        gc_after_trial=False,
                    )
        finally:
            optuna.logging.set_verbosity(verbosity)
        self.study_ = study
        self.n_trials_run_ = len(started)
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
        self.best_trial_ = best
        self.best_params_ = self._replay_params(space, best)
        self.best_score_ = float(best.value)
        self.best_index_ = int(np.flatnonzero(self.cv_results_["trial"] == best.number)[0])
        if self.refit:
            t0 = time.perf_counter()
            self.best_estimator_ = clone(self.estimator).set_params(**self.best_params_)
            self.best_estimator_.fit(X, Y)
            self.refit_time_ = time.perf_counter() - t0
        return self

    def _build_results(self, study, space, metric_names, objective) -> pd.DataFrame:
        rows = []
        for t in study.trials:
            params = self._replay_params(space, t)
            row: dict[str, Any] = {
                "trial": t.number,
                "state": t.state.name,
                "worker": t.user_attrs.get("worker"),
                "params": params,
            }
            for name, value in params.items():
                row[f"param_{name}"] = value
            split_scores = t.user_attrs.get("split_scores", {})
            complete = t.state == optuna.trial.TrialState.COMPLETE
            for name in metric_names:
                values = split_scores.get(name, [])
                for k, v in enumerate(values):
                    row[f"split{k}_test_{name}"] = v
                full = complete and len(values) > 0
                row[f"mean_test_{name}"] = float(np.mean(values)) if full else np.nan
                row[f"std_test_{name}"] = float(np.std(values)) if full else np.nan
            fit_times = t.user_attrs.get("fit_times", [])
            row["mean_fit_time"] = float(np.mean(fit_times)) if fit_times else np.nan
            score_times = t.user_attrs.get("score_times", [])
            row["mean_score_time"] = float(np.mean(score_times)) if score_times else np.nan
            n_epochs = t.user_attrs.get("n_epochs", [])
            row["mean_n_epochs"] = float(np.mean(n_epochs)) if n_epochs else np.nan
            row["duration"] = t.duration.total_seconds() if t.duration is not None else np.nan
            row["datetime_start"] = t.datetime_start
            row["error"] = t.user_attrs.get("error")
            rows.append(row)
        results = pd.DataFrame(rows)
        if results.empty:
            return results
        mean_col = f"mean_test_{objective}"
        results[f"rank_test_{objective}"] = (
            results[mean_col].rank(ascending=False, method="min").astype("Int64")
        )
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
        return json.dumps(_jsonable(self.best_params_), sort_keys=True)
