"""What a benchmark runs (``BenchmarkConfig``) and where its report comes from (``RunRecord``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any

from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    StrOptions,
    validate_parameter_constraints,
)

from ._registry import _TUNE_METRICS, MODELS

__all__ = ["BenchmarkConfig", "H5adCells", "RunRecord"]


@dataclass(frozen=True)
class BenchmarkConfig:
    """The options of a benchmark run: protocol, models, tuning, seeds and label columns.

    One frozen object instead of some thirty keyword arguments, so that
    :func:`~c3tl_sklearn.cli.run_benchmark` and its helpers pass one value
    around; :meth:`replace` gives a copy with some options changed.

    Parameters
    ----------
    protocol : {"heldout", "scarcity"}, default="heldout"
        See :mod:`c3tl_sklearn.cli`.
    models : sequence of str, default=all of :data:`~c3tl_sklearn.cli.MODELS`
        Models to compare, in table order; also the peers ``"state"`` and
        ``"cellflow"`` (:data:`~c3tl_sklearn.cli.PEER_MODELS`), which need ``cells``.
    n_trials : int, default=20
        Optuna trials per model (the same for every model); ``0`` keeps the
        default parameters. A model without a search space is not searched.
    tune_metric : str, default="centered_pearson_delta"
        Objective of the search: a metric of :data:`~c3tl_sklearn.cli.METRICS`.
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
        :func:`~c3tl_sklearn.cli.load_benchmark_data`). Every split is one
        row per model and split in the scores; the models are tuned on the
        first one's training rows, the inner cross-validation holding out
        training contexts that are not test contexts of that split.
    cells : c3tl_sklearn.peers.PeerCells, optional
        The single cells behind the effects (a file and its keys), for the peers.
    peer_options : dict, optional
        ``{peer: {param: value}}`` for the peers (see
        :class:`~c3tl_sklearn.peers.StatePeer`,
        :class:`~c3tl_sklearn.peers.CellFlowPeer`).
    isolate : bool, default=False
        Fit and predict C3TL and the baselines in subprocesses
        (:class:`~c3tl_sklearn.peers.IsolatedRegressor`), so that their peak
        memory is measured as the peers' is; ``fits.csv`` and the table then
        report it for every model.

    Examples
    --------
    >>> from c3tl_sklearn.cli import BenchmarkConfig
    >>> config = BenchmarkConfig(models=["additive"], n_trials=0)
    >>> config.replace(protocol="scarcity").protocol
    'scarcity'
    """

    protocol: str = "heldout"
    models: Sequence[str] = tuple(MODELS)
    n_trials: int = 20
    tune_metric: str = "centered_pearson_delta"
    inner_folds: int = 2
    adaptation_fraction: float = 0.1
    n_test_contexts: int | None = None
    n_train_contexts: Sequence[int] = (5, 3, 2)
    adaptation_fractions: Sequence[float] = (0.5, 0.2, 0.1, 0.05, 0.02)
    scarcity_test_set: str = "common"
    params: dict[str, dict] | None = None
    max_epochs: int | None = None
    device: str = "cpu"
    storage: Any = None
    study_prefix: str = "c3tl-benchmark"
    seed: int = 0
    context_col: Hashable = "context"
    perturbation_col: Hashable = "perturbation"
    max_points: int = 20_000
    tune_only: bool = False
    n_jobs: int | None = 1
    split: Any = None
    cells: Any = None
    peer_options: dict[str, dict] | None = None
    isolate: bool = False

    _parameter_constraints = {
        "protocol": [StrOptions({"heldout", "scarcity"})],
        "models": ["array-like"],
        "n_trials": [Interval(Integral, 0, None, closed="left")],
        "tune_metric": [StrOptions(set(_TUNE_METRICS))],
        "inner_folds": [Interval(Integral, 1, None, closed="left")],
        "scarcity_test_set": [StrOptions({"common", "complement"})],
        "max_points": [Interval(Integral, 1, None, closed="left")],
        "split": [HasMethods(["split"]), None],
        "n_test_contexts": [Interval(Integral, 1, None, closed="left"), None],
        "params": [dict, None],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), None],
        "device": [str],
        "study_prefix": [str],
        "seed": [Interval(Integral, 0, None, closed="left")],
        "tune_only": ["boolean"],
        # joblib's counts: 1 or more workers, or -1, -2, ... for all cores but some; 0 is none
        "n_jobs": [Interval(Integral, 1, None, closed="left"),
                   Interval(Integral, None, -1, closed="right"), None],
        "peer_options": [dict, None],
        "isolate": ["boolean"],
    }

    def __post_init__(self):
        # scikit-learn's validation, as ``validate_params`` gives a public function
        validate_parameter_constraints(
            self._parameter_constraints,
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            caller_name=type(self).__name__,
        )

    @property
    def labels(self) -> dict[str, Hashable]:
        """``{"context_col": ..., "perturbation_col": ...}``, the keywords of the splitters."""
        return {"context_col": self.context_col, "perturbation_col": self.perturbation_col}

    def replace(self, **changes) -> BenchmarkConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class H5adCells:
    """Single cells for a benchmark: the ``.h5ad`` file(s), their labels and the recipe.

    What :func:`~c3tl_sklearn.cli.load_benchmark_data` pseudo-bulks with
    :func:`~c3tl_sklearn.preprocessing.pseudobulk` (the ``--h5ad`` source of
    ``c3tl-benchmark``). The keys and the control are checked when the data
    are loaded, so that the message names the command-line flags.

    Parameters
    ----------
    path : path
        An ``.h5ad`` file, or a glob pattern such as ``"plates/*.h5ad"``
        (the cells of all its files).
    context_key, perturbation_key : hashable
        obs columns with the labels.
    control : hashable or sequence of hashable
        The control label(s).
    options : c3tl_sklearn.preprocessing.PseudobulkOptions, optional
        Layer, transform, ``min_cells``, gene selection; ``None``: the defaults.

    Examples
    --------
    >>> from c3tl_sklearn.cli import H5adCells
    >>> H5adCells("cells.h5ad", "cell_line", "drug", "DMSO").control
    'DMSO'
    """

    path: str | os.PathLike
    context_key: Hashable | None = None
    perturbation_key: Hashable | None = None
    control: Hashable | Sequence[Hashable] | None = None
    options: Any = None


@dataclass(frozen=True)
class RunRecord:
    """Where a run comes from, for its ``README.md``: the command, the data and the clock.

    Attributes
    ----------
    started : datetime.datetime
        When the run began (UTC).
    t_start : float
        ``time.perf_counter()`` at the start, so the wall time includes
        loading the data when the command line passes it.
    command : str or None
        The command line; ``None`` from Python.
    data_description : str or None
        One line about the data.
    """

    started: Any
    t_start: float
    command: str | None = None
    data_description: str | None = None
