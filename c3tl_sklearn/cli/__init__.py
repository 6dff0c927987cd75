"""The command line: ``c3tl`` (cells to scores) and the ``c3tl-benchmark`` application.

``c3tl`` (also ``python -m c3tl_sklearn.cli``) runs one step per subcommand:
``pseudobulk`` (single cells in an ``.h5ad`` file to effects), ``fit`` (a model
saved in the safe format of :mod:`c3tl_sklearn.persistence`), ``predict``
(optionally with a new context's measurements, no refit; ``--cell-eval DIR``
also writes cell-eval's files), ``evaluate`` (every metric per context and
overall; ``--cell-eval`` scores a pair of cell-eval files), ``export``
(predictions as cell-eval's ``pred.h5ad``/``real.h5ad``), ``benchmark``
(``c3tl-benchmark``) and ``peers`` (the environments of State and CellFlow,
which ``benchmark --models ...,state,cellflow`` runs beside C3TL). ``fit
--split`` and ``benchmark --split`` take a State TOML split file. An input it
cannot use ends it with status 2 and one line naming the problem and the fix.
Its modules: ``_c3tl`` (the parser and entry point), ``_parsers`` (every
subcommand's options, importing nothing heavy, so that ``c3tl --help`` is
quick), ``_cmd_*`` (what each subcommand does, imported when it runs),
``_errors`` (the one-line errors), ``_files`` (reading and writing effect
files) and ``_reference`` (the documentation's command-line reference,
generated from the parsers).

The benchmark application (``c3tl-benchmark --help``, ``c3tl benchmark
--help``, or :func:`run_benchmark` from Python) compares C3TL with the
baselines under the paper's protocols. It is split by job: ``_io`` reads and
checks the data, ``_registry`` names the models and metrics, ``_splits`` makes
the folds, ``_run`` tunes and evaluates, ``_progress`` reports progress,
``_report`` writes the tables and files, ``_plots`` draws the figures and
``_main`` is its command line.

Protocols
---------
``heldout`` (paper section 5, Table 1 and Figure 2)
    One test context at a time (:class:`~c3tl_sklearn.model_selection.LeaveOneContextOut`):
    every other context is training data, the test context keeps
    ``adaptation_fraction`` of its pairs (default 0.1, the paper's 8% + 2%) in
    training and the rest, restricted to perturbations observed in another
    context, is scored. With up to 10 contexts every context is a test
    context; with more, 5 are drawn (``n_test_contexts`` overrides). Every
    model is tuned on the first fold with the same number of trials and the
    selected parameters are applied to all folds.
``scarcity`` (Figure 3)
    Nested training-context sets of sizes ``n_train_contexts`` (default 5, 3,
    2) crossed with nested adaptation fractions (default 0.5, 0.2, 0.1, 0.05,
    0.02), for every test context
    (:class:`~c3tl_sklearn.model_selection.ScarcitySplit`; the test pairs of a
    context are the same in every cell, see its ``test_set``). When there are
    enough contexts, all test contexts share the same nested training sets,
    as in the paper; otherwise (for example LINCS: six contexts and up to five
    training contexts) each test context draws its own from the others.
    Models are tuned once, on the first test context with the largest
    training set and the adaptation fraction nearest ``adaptation_fraction``,
    or take their parameters from an earlier run's ``params.json``
    (``--params``).

How "tuned on the first fold" is done without touching the test pairs
---------------------------------------------------------------------
The search (:class:`~c3tl_sklearn.tuning.C3TLSearchCV`) only sees the
*training* rows of the first fold: all other contexts plus the test
context's adaptation rows. Within them it plays the same game again: an
inner :class:`~c3tl_sklearn.model_selection.LeaveOneContextOut` holds out
``inner_folds`` (default 2) of the *training* contexts, drawn with ``seed``,
each except for the same adaptation fraction, and scores the candidates on
their held-out pairs with ``tune_metric`` (default
``centered_pearson_delta``). The test context's few adaptation rows stay in
the inner training sets and are never scored, so no test pair, and no
held-out row of the first test context, informs the choice. C3TL candidates
that are clearly losing are pruned on their per-epoch validation loss.
:class:`~c3tl_sklearn.baselines.MeanBaseline` has nothing to tune and is not
searched.

Long runs, several workers
--------------------------
``--storage`` (an Optuna storage URL such as ``postgresql://...`` or
``sqlite:///tuning.db``, or a journal file ``tuning.log``) keeps every search
in one study per model, named ``{study-prefix}-{protocol}-{model}``. A stopped
benchmark restarted with the same command continues its searches where they
stopped, up to ``--n-trials`` finished trials per model. Several processes or
machines can fill the studies at once: run the same command with
``--tune-only`` in each, then once without it to evaluate (the searches are
then complete and run no new trial). With a storage the samplers are not
seeded, so that workers do not propose the same candidates; the splits and
the models' own seeds stay fixed.

Data
----
``--data lincs`` (default) is the shipped LINCS L1000 knockdowns;
``--data synthetic`` draws
:func:`~c3tl_sklearn.datasets.make_synthetic_perturbations` of shape
``--synthetic-shape C,P,G``. Your own data can come as

- one table (``--data table.csv`` or ``.parquet``; ``.tsv`` and ``.gz``
  work too) with a context column, a perturbation column and one numeric
  column per gene (every other column is a gene);
- an index table plus an effect matrix (``--index index.csv --effects
  effects.parquet``), row ``i`` of one describing row ``i`` of the other; extra
  index columns are ignored, every effect column is a gene;
- an ``.h5ad`` file of single cells (``--h5ad cells.h5ad --context-key
  cell_line --perturbation-key gene --control NTC``), pseudo-bulked with
  :func:`c3tl_sklearn.preprocessing.pseudobulk`.

A file with missing columns, non-numeric gene columns, NaN or infinite
effects, missing labels, repeated pairs or fewer than two contexts is
refused with a message that names the problem.

Outputs (in ``--out``)
----------------------
``scores.csv``
    One row per (model, split, metric): ``model``, ``split``,
    ``test_context``, ``n_train_contexts``, ``adaptation_fraction``,
    ``metric``, ``value``. Metrics: ``pearson_delta``,
    ``centered_pearson_delta``, ``discrimination_score``, ``top_k_overlap``
    (``k = min(50, n_genes)``) and ``mse``, each over the split's test pairs.
``fits.csv``
    One row per (model, split): fit and predict seconds, epochs and seconds
    per epoch (C3TL), numbers of training and test rows.
``table.md``
    heldout: the paper's Table 1 form, one row per model, mean ± standard
    deviation over folds per metric (best in bold), seconds per epoch, fit
    seconds per fold and tuning seconds. scarcity: one table per Pearson
    metric, rows (model, training contexts), columns adaptation fractions.
``scatter.png`` (heldout)
    Predicted against true effect values per model, a random subsample of
    (pair, gene) entries of all folds (Figure 2).
``scarcity.png`` (scarcity)
    One panel per training-set size, x the adaptation fraction, y Pearson
    (top) and centred Pearson (bottom), mean ± sd over test contexts, one line
    per model (Figure 3).
``params.json``
    The parameters every model was evaluated with, the tuning score and
    trial counts, and what they were tuned on.
``README.md``
    The command line, wall time, data, protocol, software versions, the
    table, and any warnings raised during the run.

Examples
--------
>>> from c3tl_sklearn.cli import BenchmarkConfig, run_benchmark
>>> from c3tl_sklearn.datasets import make_synthetic_perturbations
>>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
>>> config = BenchmarkConfig(models=["mean", "additive"], n_trials=0)
>>> result = run_benchmark(X, Y, config, progress=False)
>>> sorted(result.scores["model"].unique())
['additive', 'mean']
>>> result.scores.groupby("model")["split"].nunique().tolist()
[4, 4]
"""

from .._lazy import lazy_exports

# The entry points import this package: its names load on first use, so that
# `c3tl --help` does not pay for pandas, scikit-learn and torch (the benchmark's).
_EXPORTS = {
    "METRICS": "_registry",
    "MODELS": "_registry",
    "BenchmarkConfig": "_config",
    "BenchmarkDataError": "_io",
    "BenchmarkResult": "_report",
    "H5adCells": "_config",
    "RunRecord": "_config",
    "build_c3tl_parser": "_c3tl",
    "build_parser": "_main",
    "c3tl_main": "_c3tl",
    "check_benchmark_data": "_io",
    "load_benchmark_data": "_io",
    "main": "_main",
    "make_model": "_registry",
    "run_benchmark": "_run",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
