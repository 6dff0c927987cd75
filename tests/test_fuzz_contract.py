"""Property-based fuzzing of the input contract (issue 13).

Random index tables (labels of every kind, categoricals with unused
categories, missing labels, duplicates, odd row indexes), random responses
(zero or one row or gene, NaN, infinities, values beyond float32, misaligned
indexes, wrong row counts) go to every estimator, splitter and metric. Each
call must either return a finite result of the right shape or raise a
``ValueError``/``TypeError`` from the package's own code whose message names
the problem; any other exception, or one raised inside pandas, numpy, torch
or scikit-learn, fails the test. The inputs must come back unchanged.

The number of examples comes from the Hypothesis profile (``tests/conftest.py``):
``ci`` by default, ``C3TL_HYPOTHESIS_PROFILE=long`` for a longer local run.
"""

from __future__ import annotations

import copy
import math
import os
import traceback
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import c3tl_sklearn
from c3tl_sklearn import C3TLEnsemble, C3TLRegressor
from c3tl_sklearn.baselines import (
    AdditiveBaseline,
    ClosestContextBaseline,
    LinearTransferBaseline,
    MeanBaseline,
)
from c3tl_sklearn.metrics import (
    centered_pearson_delta,
    discrimination_score,
    pearson_delta,
    score_table,
    top_k_overlap,
)
from c3tl_sklearn.model_selection import (
    ContextKFold,
    LeaveOneContextOut,
    PerturbationHoldout,
    ScarcitySplit,
)

PACKAGE_DIR = os.path.dirname(os.path.abspath(c3tl_sklearn.__file__))
TINY = dict(max_epochs=2, hidden_dims=(4,), latent_dim=2, n_components=None, random_state=0)

ESTIMATORS = {
    "MeanBaseline": MeanBaseline,
    "AdditiveBaseline": AdditiveBaseline,
    "ClosestContextBaseline": ClosestContextBaseline,
    "LinearTransferBaseline": LinearTransferBaseline,
    "C3TLRegressor": lambda: C3TLRegressor(**TINY),
    "C3TLEnsemble": lambda: C3TLEnsemble(C3TLRegressor(**TINY), n_estimators=1,
                                         random_state=0),
}
SPLITTERS = {
    "LeaveOneContextOut": lambda: LeaveOneContextOut(adaptation_fraction=0.3,
                                                     validation_fraction=0.5, random_state=0),
    "ContextKFold": lambda: ContextKFold(n_splits=2, adaptation_fraction=0.3, random_state=0),
    "PerturbationHoldout": lambda: PerturbationHoldout(test_fraction=0.4, n_splits=2,
                                                       random_state=0),
    "ScarcitySplit": lambda: ScarcitySplit(n_train_contexts=(1,), adaptation_fractions=(0.5, 0),
                                           random_state=0),
}
#: words of which an error message about the data names at least one
NAMES = ("X", "Y", "context", "perturbation", "gene", "label", "row", "groups", "k ", "k=")

# Counters (printed with C3TL_FUZZ_MESSAGES=1): calls and the calls that raised.
COUNTS: dict[str, int] = {}
MESSAGES: dict[str, int] = {}


def _count(key: str) -> None:
    COUNTS[key] = COUNTS.get(key, 0) + 1


# --------------------------------------------------------------------------- strategies

# Label pools of every kind; within a pool no two labels are equal for pandas
# (so 1, 1.0 and True never share one), so clean tables have unique pairs, and
# none print alike (2 and "2" are refused as such, in tests/test_hostile_inputs.py).
POOLS = {
    "str": ["a", "b", "c", "", "d e"],
    "int": [0, 1, -3, 7, 2],
    "float": [0.5, 1.5, -2.25, 3.0, 1e-3],
    "bool": [True, False],
    "tuple": [("a", 1), ("a", 2), ("b", 1), ("c",), ()],
    "mixed": ["a", 2, ("b", 1), 0.5, "z"],
}
LABEL_KIND = st.sampled_from(sorted(POOLS))
MISSING = st.sampled_from([None, math.nan, pd.NA, pd.NaT])
#: label faults of a table; "none" is drawn about half of the time
TABLE_FAULTS = ["none"] * 10 + ["missing_label", "duplicate_pair", "drop_column", "empty",
                                 "one_row", "one_context"]
#: faults of a response matrix; "none" about 60% of the time
RESPONSE_FAULTS = ["none"] * 11 + ["wrong_rows", "no_genes", "special", "other_index",
                                  "ragged", "complex", "strings", "nullable_na",
                                  "object_none", "dates", "other_genes", "repeated_genes"]
SPECIAL = st.sampled_from([math.nan, math.inf, -math.inf, 1e39, -1e39])


def _object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # tuples stay single labels
        out[i] = value
    return out


def _as_categorical(values: np.ndarray) -> pd.Categorical | None:
    """The column as a categorical with an unused category, where pandas can build one."""
    try:
        present = [v for v in pd.unique(pd.Series(values, dtype=object)) if not pd.isna(v)]
        categories = pd.Index([*present, "zz_unused"], dtype=object, tupleize_cols=False)
        return pd.Categorical(values, categories=categories)
    except (TypeError, ValueError):
        return None


@st.composite
def index_tables(draw, max_rows: int = 12, clean: bool = False) -> pd.DataFrame:
    fault = "none" if clean else draw(st.sampled_from(TABLE_FAULTS))
    c_pool = POOLS[draw(LABEL_KIND)][: draw(st.integers(1 if fault == "one_context" else 2, 4))]
    if fault == "one_context":
        c_pool = c_pool[:1]
    p_pool = POOLS[draw(LABEL_KIND)]
    grid = [(c, p) for c in c_pool for p in p_pool]
    n_max = {"empty": 0, "one_row": 1}.get(fault, min(max_rows, len(grid)))
    chosen = draw(st.lists(st.integers(0, len(grid) - 1), unique=True, min_size=min(n_max, 4),
                           max_size=n_max))
    pairs = [grid[i] for i in chosen]
    if fault == "duplicate_pair" and pairs:
        pairs.append(pairs[draw(st.integers(0, len(pairs) - 1))])
    contexts = _object_array([c for c, _ in pairs])
    perturbations = _object_array([p for _, p in pairs])
    if fault == "missing_label" and pairs:
        target = draw(st.sampled_from([contexts, perturbations]))
        target[draw(st.integers(0, len(pairs) - 1))] = draw(MISSING)
    columns = {}
    for col, values in (("context", contexts), ("perturbation", perturbations)):
        how = draw(st.sampled_from(["object", "categorical", "native"]))
        column = _as_categorical(values) if how == "categorical" else None
        if how == "native":  # int64, float64, bool or string columns where pandas infers one
            column = pd.Series(list(values), dtype=None) if fault != "missing_label" else None
        columns[col] = values if column is None else column
    X = pd.DataFrame(columns)
    if fault == "drop_column":
        X = X.drop(columns=draw(st.sampled_from(["context", "perturbation"])))
    if draw(st.booleans()):
        X["batch"] = 1
    n = len(X)
    index = draw(st.sampled_from(["range", "shuffled", "strings", "duplicated", "tuples"]))
    if index == "shuffled":
        X.index = np.random.RandomState(n).permutation(n)
    elif index == "strings":
        X.index = [f"r{i}" for i in range(n)]
    elif index == "duplicated" and n:
        X.index = [i // 2 for i in range(n)]
    elif index == "tuples" and n:
        X.index = pd.MultiIndex.from_tuples([(i % 2, i) for i in range(n)])
    return X


@st.composite
def responses(draw, n_rows: int, n_genes: int | None = None, index=None, clean: bool = False):
    """Effects for ``n_rows`` rows, now and then with the wrong shape or bad values."""
    fault = "none" if clean else draw(st.sampled_from(RESPONSE_FAULTS))
    n = max(0, n_rows + draw(st.sampled_from([-1, 1]))) if fault == "wrong_rows" else n_rows
    g = draw(st.integers(1, 4)) if n_genes is None else n_genes
    if fault == "no_genes":
        g = 0
    values = draw(arrays(np.float64, (n, g), elements=st.floats(-10, 10)))
    row_index = index if index is not None and len(index) == n else pd.RangeIndex(n)
    if fault == "special" and values.size:
        flat = values.reshape(-1)
        for _ in range(draw(st.integers(1, 3))):
            flat[draw(st.integers(0, flat.size - 1))] = draw(SPECIAL)
    if fault == "ragged" and n and g:
        rows = values.tolist()
        rows[0] = rows[0] + [1.0]
        return rows
    if fault == "nullable_na" and n and g:
        frame = pd.DataFrame(values, index=row_index).astype("Float64")
        frame.iloc[draw(st.integers(0, n - 1)), 0] = pd.NA
        return frame
    if fault == "object_none" and n and g:
        obj = values.astype(object)
        obj[draw(st.integers(0, n - 1)), 0] = draw(st.sampled_from([None, pd.NA]))
        return obj
    if fault == "dates":
        return np.zeros((n, g), dtype="datetime64[D]")
    if fault == "complex":
        return values + 1j
    if fault == "strings":
        return pd.DataFrame(values, index=row_index).astype(str) if n and g else values.astype(str)
    form = draw(st.sampled_from(["array", "frame", "frame", "float32", "int", "list",
                                 "series", "shuffled_frame", "1d", "shuffled_columns"]))
    columns = [f"g{j}" for j in range(g)]
    if form == "float32" and fault != "special":
        return values.astype(np.float32)
    if form == "int" and fault != "special":
        return values.astype(np.int64)
    if form == "list":
        return values.tolist()
    if form == "1d" and g == 1:
        return values[:, 0]
    if form == "series" and g == 1:
        return pd.Series(values[:, 0], index=row_index, name="g0")
    frame = pd.DataFrame(values, index=row_index, columns=columns)
    if fault == "other_index":
        return frame.set_axis([f"o{i}" for i in range(n)])
    if fault == "other_genes" and g:
        return frame.rename(columns={"g0": "other"})
    if fault == "repeated_genes" and g > 1:
        return frame.set_axis(["g0"] * g, axis=1)
    if form == "shuffled_columns":
        return frame[columns[::-1]]
    if form == "shuffled_frame":
        return frame.iloc[np.random.RandomState(n).permutation(n)]
    return frame


@st.composite
def label_lists(draw, n: int) -> np.ndarray:
    """One label per row (``groups``, ``contexts``), now and then with a missing one."""
    pool = POOLS[draw(LABEL_KIND)]
    labels = _object_array([draw(st.sampled_from(pool)) for _ in range(n)])
    if n and draw(st.integers(0, 4)) == 0:
        labels[draw(st.integers(0, n - 1))] = draw(MISSING)
    return labels


# --------------------------------------------------------------------------- the checks


_ERROR = object()


def _assert_same(after, before) -> None:
    """The caller's object is as it was (values, dtypes, index, categories)."""
    if isinstance(before, pd.DataFrame):
        pd.testing.assert_frame_equal(after, before, check_exact=True)
    elif isinstance(before, pd.Series):
        pd.testing.assert_series_equal(after, before, check_exact=True)
    elif isinstance(before, np.ndarray) and before.dtype == object:
        assert after.dtype == object and after.shape == before.shape
        for a, b in zip(after.ravel(), before.ravel(), strict=True):
            _assert_same(a, b)
    elif isinstance(before, np.ndarray):
        assert after.dtype == before.dtype
        np.testing.assert_array_equal(after, before)
    elif isinstance(before, tuple | list):
        assert type(after) is type(before) and len(after) == len(before)
        for a, b in zip(after, before, strict=True):
            _assert_same(a, b)
    elif isinstance(before, dict):
        assert after.keys() == before.keys()
        for key in before:
            _assert_same(after[key], before[key])
    elif before is None or before is pd.NA or before is pd.NaT:
        assert after is before
    elif isinstance(before, float) and math.isnan(before):
        assert math.isnan(after)
    else:
        assert after == before


def _raised_in_package(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(PACKAGE_DIR)


def call(key: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or ``_ERROR`` for a clear error from the package.

    Fails on any other exception, on an error raised outside the package, on a
    message that names nothing, and on inputs modified by the call.
    """
    before = copy.deepcopy((args, kwargs))
    _count(f"{key} calls")
    try:
        with warnings.catch_warnings():
            # documented warnings (unknown contexts, undefined correlations) are fine
            warnings.simplefilter("ignore")
            out = fn(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        assert _raised_in_package(exc), (
            f"{type(exc).__name__} raised outside c3tl_sklearn: {message}\n"
            + "".join(traceback.format_exception(exc))
        )
        assert any(name in message for name in NAMES), f"message names nothing: {message!r}"
        _count(f"{key} errors")
        MESSAGES[f"{key}: {type(exc).__name__}: {message[:90]}"] = (
            MESSAGES.get(f"{key}: {type(exc).__name__}: {message[:90]}", 0) + 1)
        out = _ERROR
    _assert_same((args, kwargs), before)
    return out


def _faulty(X: pd.DataFrame) -> bool:
    """Whether a drawn table breaks the contract (then its response is drawn clean)."""
    columns_ok = {"context", "perturbation"} <= set(X.columns)
    return not columns_ok or len(X) < 2 or bool(X.isna().to_numpy().any())


def _assert_prediction(pred, n_rows: int, n_genes: int) -> None:
    assert isinstance(pred, np.ndarray) and pred.dtype == np.float64
    assert pred.shape == (n_rows, n_genes)
    assert np.isfinite(pred).all()


# --------------------------------------------------------------------------- estimators


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@given(data=st.data())
def test_estimators_fit_and_predict_or_refuse_clearly(name, data):
    # at most one of the two is faulty, so that a fault is not always hidden by another
    X = data.draw(index_tables(), label="X")
    Y = data.draw(responses(len(X), index=X.index, clean=_faulty(X)), label="Y")
    model = ESTIMATORS[name]()
    if call(f"{name}.fit", model.fit, X, Y) is _ERROR:
        return
    n_genes = model.n_genes_
    # every row of the fit table has a known perturbation: predicting it must work
    pred = call(f"{name}.predict", model.predict, X)
    assert pred is not _ERROR, "predicting the fit table was refused"
    _assert_prediction(pred, len(X), n_genes)
    X_new = data.draw(index_tables(), label="X_new")
    pred = call(f"{name}.predict", model.predict, X_new)
    if pred is not _ERROR:
        _assert_prediction(pred, len(X_new), n_genes)


def _fitted(name: str):
    """One model per estimator fitted on good data (fits are the slow part)."""
    if name not in _FITTED:
        X = pd.DataFrame({"context": np.repeat(["a", "b", "c"], 4),
                          "perturbation": np.tile(["p", "q", "r", "s"], 3)})
        # named genes, so that Y_obs's columns are matched by name
        Y = pd.DataFrame(np.random.RandomState(0).normal(size=(12, 3)),
                         columns=["g0", "g1", "g2"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITTED[name] = ESTIMATORS[name]().fit(X, Y)
    return _FITTED[name]


_FITTED: dict = {}
QUERY_FAULTS = ["none"] * 5 + ["new_context", "unknown_perturbation", "missing_label",
                               "duplicate_pair", "empty", "categorical"]


@st.composite
def query_tables(draw, max_rows: int = 6) -> pd.DataFrame:
    """Index tables using mostly the fit labels, so that many queries are valid."""
    fault = draw(st.sampled_from(QUERY_FAULTS))
    contexts = ["a", "b", "c"] + (["new", ("n", 1)] if fault == "new_context" else [])
    perturbations = ["p", "q", "r", "s"] + (["x"] if fault == "unknown_perturbation" else [])
    grid = [(c, p) for c in contexts for p in perturbations]
    n_max = 0 if fault == "empty" else max_rows
    chosen = draw(st.lists(st.integers(0, len(grid) - 1), unique=True,
                           min_size=min(n_max, 1), max_size=n_max))
    pairs = [grid[i] for i in chosen]
    if fault == "duplicate_pair" and pairs:
        pairs.append(pairs[0])
    X = pd.DataFrame({"context": _object_array([c for c, _ in pairs]),
                      "perturbation": _object_array([p for _, p in pairs])})
    if fault == "missing_label" and pairs:
        X.iloc[draw(st.integers(0, len(X) - 1)), draw(st.integers(0, 1))] = draw(MISSING)
    if draw(st.booleans()):
        X = X.set_axis(np.random.RandomState(len(X)).permutation(len(X)) + 3)
    if fault == "categorical":
        column = _as_categorical(X["context"].to_numpy())
        if column is not None:
            X["context"] = column
    return X


@pytest.mark.parametrize("name", ["C3TLRegressor", "C3TLEnsemble"])
@given(data=st.data())
def test_predict_with_observed_measurements(name, data):
    model = _fitted(name)
    X = data.draw(query_tables(), label="X")
    X_obs = data.draw(query_tables(), label="X_obs")
    Y_obs = data.draw(responses(len(X_obs), n_genes=3, index=X_obs.index), label="Y_obs")
    state = copy.deepcopy(model.get_params())
    pred = call(f"{name}.predict(observed)", model.predict, X, observed=(X_obs, Y_obs))
    if pred is not _ERROR:
        _assert_prediction(pred, len(X), 3)
    assert model.get_params().keys() == state.keys()


# --------------------------------------------------------------------------- splitters


@pytest.mark.parametrize("name", sorted(SPLITTERS))
@given(data=st.data())
def test_splitters_split_or_refuse_clearly(name, data):
    X = data.draw(index_tables(max_rows=14), label="X")
    groups = None
    if data.draw(st.integers(0, 3), label="with groups") == 0:
        n = max(0, len(X) + data.draw(st.sampled_from([0, 0, 0, 1]), label="groups offset"))
        groups = data.draw(label_lists(n), label="groups")
    splitter = SPLITTERS[name]()
    splits = call(f"{name}.split", lambda: list(splitter.split(X, groups=groups)))
    if splits is _ERROR:
        return
    for train, test in splits:
        for rows in (train, test):
            assert rows.dtype.kind == "i" and rows.ndim == 1
            assert ((rows >= 0) & (rows < len(X))).all()
        assert np.intersect1d(train, test).size == 0
        assert test.size and train.size


# --------------------------------------------------------------------------- metrics


@st.composite
def metric_inputs(draw):
    faulty = draw(st.sampled_from(["X", "Y_true", "Y_pred", "contexts"]))
    X = draw(index_tables(clean=faulty != "X"), label="X")
    Y_true = draw(responses(len(X), index=X.index, clean=faulty != "Y_true"), label="Y_true")
    try:
        shape = np.shape(Y_true)
    except ValueError:  # a ragged list
        shape = (len(X), 2)
    n_genes = shape[1] if len(shape) == 2 else 1
    Y_pred = draw(responses(len(X), n_genes=n_genes, index=X.index, clean=faulty != "Y_pred"),
                  label="Y_pred")
    contexts = X["context"] if "context" in X.columns else None
    if faulty == "contexts" and draw(st.booleans()):
        n = max(0, len(X) + draw(st.sampled_from([-1, 0, 1])))
        contexts = draw(label_lists(n), label="contexts")
    return X, Y_true, Y_pred, contexts


def _assert_score(score, n_rows: int, per_row: bool) -> None:
    if per_row:
        assert isinstance(score, np.ndarray) and score.shape == (n_rows,)
        assert np.isfinite(score).all()
    else:
        assert isinstance(score, float) and math.isfinite(score)


METRICS = ["pearson_delta", "centered_pearson_delta", "discrimination_score",
           "top_k_overlap", "score_table"]


@pytest.mark.parametrize("name", METRICS)
@given(inputs=metric_inputs(), per_row=st.booleans(), k=st.sampled_from([1, 2, 3, 50, 0, -1]))
def test_metrics_score_or_refuse_clearly(name, inputs, per_row, k):
    X, Y_true, Y_pred, contexts = inputs
    if name == "score_table":
        table = call(name, score_table, X, Y_true, Y_pred, k=k)
        if table is not _ERROR:
            assert table.index[-1] == "overall" and table["n_rows"].iloc[-1] == len(X)
            # discrimination is NaN, by definition, for contexts with one row
            finite = table.drop(columns="discrimination_score").to_numpy(dtype=np.float64)
            assert np.isfinite(finite).all()
        return
    args = {
        "pearson_delta": (Y_true, Y_pred),
        "centered_pearson_delta": (Y_true, Y_pred, contexts),
        "discrimination_score": (Y_true, Y_pred, contexts),
        "top_k_overlap": (Y_true, Y_pred, k),
    }[name]
    metric = {"pearson_delta": pearson_delta, "centered_pearson_delta": centered_pearson_delta,
              "discrimination_score": discrimination_score,
              "top_k_overlap": top_k_overlap}[name]
    score = call(name, metric, *args, per_row=per_row)
    if score is not _ERROR:
        n_rows = np.shape(Y_true)[0]
        if name == "discrimination_score" and per_row:
            # rows alone in their context are NaN (left out of the mean), as documented;
            # only the mean of no row at all is an error
            assert isinstance(score, np.ndarray) and score.shape == (n_rows,)
            assert np.isfinite(score[~np.isnan(score)]).all()
        else:
            _assert_score(score, n_rows, per_row)


def test_zz_every_entry_point_both_answered_and_refused(capsys):
    """After the fuzz tests (same session): every entry point returned a result and
    raised a clear error at least once, so both paths were exercised.

    ``C3TL_FUZZ_MESSAGES=1`` prints the counters and every distinct message.
    """
    if not COUNTS:
        pytest.skip("runs after the fuzz tests of this file, in the same session")
    if os.environ.get("C3TL_FUZZ_MESSAGES"):
        with capsys.disabled():
            for key in sorted(COUNTS):
                print(f"{key}: {COUNTS[key]}")
            for key in sorted(MESSAGES):
                print(f"{MESSAGES[key]:4d}  {key}")
    calls = {key[: -len(" calls")]: n for key, n in COUNTS.items() if key.endswith(" calls")}
    assert len(calls) == len(ESTIMATORS) * 2 + 2 + len(SPLITTERS) + len(METRICS)
    for key, n in calls.items():
        errors = COUNTS.get(f"{key} errors", 0)
        assert 0 < errors < n, f"{key}: {errors} errors in {n} calls"
