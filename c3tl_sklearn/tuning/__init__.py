"""Optuna hyperparameter search for :class:`~c3tl_sklearn.C3TLRegressor` and the baselines.

The search lives in ``_search`` (:class:`C3TLSearchCV`), the search spaces in
``_spaces``, the storage factory in ``_storage`` and the skorch pruning
callback in ``_pruning``.

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
are marked failed and retried once (:func:`make_storage` sets the interval,
the grace period and the retries), and workers with ``max_trials`` end with
exactly that many finished trials between them. With a journal file, the
unfinished trial of a killed process stays ``RUNNING`` and is ignored, and
workers finishing together may run a trial or two beyond ``max_trials``.

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
>>> len(search.cv_results_["trial"])
3
"""

from importlib import import_module

try:
    import optuna  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without optuna
    raise ImportError(
        "c3tl_sklearn.tuning needs the optional dependency optuna: "
        "pip install c3tl-sklearn[tuning]"
    ) from exc

from ._search import FOLD_STEP, C3TLSearchCV
from ._spaces import default_search_space, register_search_space, suggest_params
from ._storage import make_storage

__all__ = [
    "FOLD_STEP",
    "C3TLSearchCV",
    "PruningCallback",
    "default_search_space",
    "make_storage",
    "register_search_space",
    "suggest_params",
]


def __getattr__(name):
    # the callback subclasses skorch's, so torch loads only when it is asked for
    if name == "PruningCallback":
        return import_module("._pruning", __name__).PruningCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
