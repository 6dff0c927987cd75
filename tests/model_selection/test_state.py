"""StateSplit: State's TOML split files read over an index table and written back."""

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c3tl_sklearn.model_selection import (
    ContextKFold,
    LeaveOneContextOut,
    PerturbationHoldout,
    StateSplit,
)

from ..conftest import warns_at

# the standard library reads TOML from Python 3.11 (the package writes it itself)
tomllib = pytest.importorskip("tomllib", reason="reading TOML needs Python 3.11+ (or tomli)")

# State's documented few-shot layout (its README's example_config.toml), on our labels
FEWSHOT_TOML = """\
[datasets]
replogle = "/large_storage/datasets/replogle/"

[training]
replogle = "train"

[zeroshot]
"replogle.jurkat" = "test"

[fewshot]

[fewshot."replogle.rpe1"]
val = ["AARS"]
test = ["AARS", "NUP107", "RPUSD4"]
"""

PERTS = ["AARS", "NUP107", "RPUSD4", "TADA2B", "POLR2B"]


def index_table(contexts=("hepg2", "jurkat", "k562", "rpe1"), perts=PERTS):
    return pd.DataFrame({
        "cell_type": np.repeat(list(contexts), len(perts)),
        "gene": list(perts) * len(contexts),
    })


def rows(X, idx):
    return sorted(map(tuple, X.iloc[idx][["cell_type", "gene"]].values.tolist()))


@pytest.fixture
def fewshot_file(tmp_path):
    path = tmp_path / "split.toml"
    path.write_text(FEWSHOT_TOML)
    return path


def test_reads_states_fewshot_layout_and_writes_it_back_unchanged(fewshot_file, tmp_path):
    X = index_table()
    cv = StateSplit(fewshot_file, context_col="cell_type", perturbation_col="gene")
    assert cv.get_n_splits() == 1
    (train, test), = list(cv.split(X))
    assert rows(X, test) == sorted(
        [("rpe1", "AARS"), ("rpe1", "NUP107"), ("rpe1", "RPUSD4")]
        + [("jurkat", p) for p in PERTS]
    )
    # every other row trains: hepg2 and k562 whole, rpe1's two unlisted perturbations
    assert rows(X, train) == sorted(
        [(c, p) for c in ("hepg2", "k562") for p in PERTS]
        + [("rpe1", "TADA2B"), ("rpe1", "POLR2B")]
    )
    assert np.intersect1d(train, test).size == 0
    # val and test overlap in State's example: AARS is validated on and tested, never trained
    (tr, val, te), = list(cv.split_validation(X))
    assert rows(X, val) == [("rpe1", "AARS")]
    np.testing.assert_array_equal(te, test)
    np.testing.assert_array_equal(tr, train)
    info = cv.split_info(X)
    assert info.loc[0, "test_contexts"] == ("jurkat", "rpe1")
    assert info.loc[0, ["n_train", "n_validation", "n_test", "n_dropped"]].tolist() == [
        12, 1, 8, 0]
    # written back: the same text, and a file that splits the same way
    assert cv.to_toml() == FEWSHOT_TOML
    again = tmp_path / "again.toml"
    cv.to_toml(again)
    assert again.read_text() == FEWSHOT_TOML
    (train2, test2), = list(StateSplit(again, context_col="cell_type",
                                       perturbation_col="gene").split(X))
    np.testing.assert_array_equal(train2, train)
    np.testing.assert_array_equal(test2, test)


@pytest.mark.filterwarnings("ignore:5 row.s. ask for context")
def test_works_as_cv_in_cross_val_score(fewshot_file):
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import MeanBaseline

    X = index_table()
    Y = np.random.default_rng(0).normal(size=(len(X), 6))
    cv = StateSplit(fewshot_file, context_col="cell_type", perturbation_col="gene")
    model = MeanBaseline(context_col="cell_type", perturbation_col="gene")
    scores = cross_val_score(model, X, Y, cv=cv, scoring="neg_mean_squared_error")
    assert scores.shape == (1,) and np.isfinite(scores).all()


def test_zeroshot_val_and_training_default():
    X = index_table(contexts=("a", "b", "c"))
    spec = {"training": {"ds": "train"}, "zeroshot": {"ds.b": "val", "ds.c": "test"}}
    cv = StateSplit(spec, context_col="cell_type", perturbation_col="gene")
    (train, val, test), = list(cv.split_validation(X))
    assert set(X.cell_type.iloc[train]) == {"a"}
    assert set(X.cell_type.iloc[val]) == {"b"}
    assert set(X.cell_type.iloc[test]) == {"c"}
    (train_cv, _), = list(cv.split(X))
    assert set(X.cell_type.iloc[train_cv]) == {"a", "b"}  # validation-only rows train in split


def test_unpredictable_rows_are_dropped_and_counted():
    X = pd.DataFrame({"context": ["a", "a", "b", "b"], "perturbation": ["p", "q", "p", "r"]})
    cv = StateSplit({"zeroshot": {"x.b": "test"}})
    (_, test), = list(cv.split(X))
    assert X.iloc[test].values.tolist() == [["b", "p"]]  # r is measured nowhere else
    assert cv.split_info(X).loc[0, "n_dropped"] == 1


def test_labels_are_matched_by_string_form():
    X = pd.DataFrame({"context": [1, 1, 2, 2], "perturbation": [10, 11, 10, 11]})
    cv = StateSplit({"fewshot": {"d.2": {"test": ["11"]}}})
    (_, test), = list(cv.split(X))
    assert X.iloc[test].values.tolist() == [[2, 11]]


def test_labels_that_print_alike_are_refused_before_a_file_could_merge_them():
    X = pd.DataFrame({"context": [1] * 3 + ["1"] * 3 + ["b"] * 3,
                      "perturbation": ["p", "q", "r"] * 3})
    cv = LeaveOneContextOut(adaptation_fraction=0.34, random_state=0)
    with pytest.raises(ValueError, match=r"print alike: 1 \(int\) and '1' \(str\).*rename one"):
        StateSplit.from_splitter(cv, X)
    with pytest.raises(ValueError, match="print alike"):
        list(StateSplit({"zeroshot": {"d.1": "test"}}).split(X))
    # the advice followed: one of them renamed, each context has its own entry
    X["context"] = X["context"].replace({1: "one"})
    state = StateSplit.from_splitter(cv, X)
    for got, expected in zip(next(state.split(X)), next(cv.split(X)), strict=True):
        np.testing.assert_array_equal(got, expected)
    (train, test), = list(StateSplit({"zeroshot": {"d.1": "test"}}).split(X))
    assert set(X.context.iloc[test]) == {"1"} and "1" not in set(X.context.iloc[train])


def test_only_the_chosen_datasets_entries_apply():
    X = index_table(contexts=("a", "b"))
    spec = {"training": {"one": "train", "two": "train"},
            "zeroshot": {"one.a": "test", "two.b": "test"}}
    with pytest.raises(ValueError, match=r"names 2 datasets.*pass dataset="):
        next(StateSplit(spec, context_col="cell_type", perturbation_col="gene").split(X))
    cv = StateSplit(spec, dataset="two", context_col="cell_type", perturbation_col="gene")
    (_, test), = list(cv.split(X))
    assert set(X.cell_type.iloc[test]) == {"b"}
    with pytest.raises(ValueError, match="dataset='three' is not named"):
        next(StateSplit(spec, dataset="three", context_col="cell_type",
                        perturbation_col="gene").split(X))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"zeroshot": {"ds.a": "train"}}, 'goes to "val" or "test"'),
        ({"zeroshot": {"a": "test"}}, "is not 'dataset.context'"),
        ({"fewshot": {"ds.a": {"test": "AARS"}}}, "must be a list of perturbation names"),
        ({"fewshot": {"ds.a": {"holdout": ["AARS"]}}}, "State's few-shot entries have"),
        ({"fewshot": {"ds.a": ["AARS"]}}, r"must be a table \[fewshot"),
        ({"training": {"ds": "everything"}}, "must be one of"),
        ({"splits": {}}, "sections"),
        ({"zeroshot": {"ds.nowhere": "test"}}, "'nowhere' is not a context of X"),
    ],
)
def test_bad_files_are_refused_with_the_fix(spec, message):
    X = index_table(contexts=("a", "b"))
    cv = StateSplit(spec, context_col="cell_type", perturbation_col="gene")
    with pytest.raises(ValueError, match=message):
        next(cv.split(X))


def test_missing_and_invalid_files(tmp_path):
    X = index_table()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        next(StateSplit(tmp_path / "nope.toml").split(X))
    bad = tmp_path / "bad.toml"
    bad.write_text("[fewshot\n")
    with pytest.raises(ValueError, match="is not valid TOML"):
        next(StateSplit(bad).split(X))
    with pytest.raises(Exception, match="toml"):
        StateSplit(42).get_n_splits()


def test_listed_perturbations_without_rows_warn():
    X = index_table(contexts=("a", "b"))
    cv = StateSplit({"fewshot": {"ds.b": {"test": ["AARS", "GONE"]}}},
                    context_col="cell_type", perturbation_col="gene")
    with warns_at(__file__, UserWarning, match="1 perturbation.*'ds.b: GONE'"):
        (_, test), = list(cv.split(X))
    assert rows(X, test) == [("b", "AARS")]


def test_the_callers_dict_is_not_modified():
    spec = {"fewshot": {"ds.b": {"test": ["AARS"]}}}
    before = copy.deepcopy(spec)
    cv = StateSplit(spec, context_col="cell_type", perturbation_col="gene")
    cv.read()["fewshot"]["ds.b"]["test"].append("NUP107")
    next(cv.split(index_table(contexts=("a", "b"))))
    assert spec == before and cv.toml is spec


@pytest.mark.parametrize(
    "cv",
    [
        (LeaveOneContextOut, {"adaptation_fraction": 0.4, "validation_fraction": 0.5,
                              "random_state": 0}),
        (LeaveOneContextOut, {"adaptation_fraction": 0.0, "random_state": 0}),  # zero-shot
        (ContextKFold, {"n_splits": 2, "adaptation_fraction": 0.2, "random_state": 1}),
        (PerturbationHoldout, {"n_splits": 2, "test_fraction": 0.4, "random_state": 2}),
    ],
)
def test_from_splitter_reproduces_the_splitters_split(cv):
    X = index_table(contexts=("A172", "T98G", "U87MG", "LN229"),
                    perts=[f"p{i}" for i in range(10)])
    cls, params = cv
    cv = cls(**params, context_col="cell_type", perturbation_col="gene")
    for split in range(cv.get_n_splits(X)):
        state = StateSplit.from_splitter(cv, X, split=split, dataset="gbm")
        expected = list(cv.split_validation(X) if hasattr(cv, "split_validation")
                        else cv.split(X))[split]
        (train, test), = list(state.split(X))
        (s_train, s_val, _), = list(state.split_validation(X))
        np.testing.assert_array_equal(test, list(cv.split(X))[split][1])
        np.testing.assert_array_equal(train, list(cv.split(X))[split][0])
        if len(expected) == 3:
            np.testing.assert_array_equal(s_val, expected[1])
            np.testing.assert_array_equal(s_train, expected[0])
        # the text parses back to the same dict
        assert tomllib.loads(state.to_toml()) == state.read()


def test_from_splitter_writes_zeroshot_for_a_context_without_training_rows():
    X = index_table(contexts=("a", "b", "c"))
    cv = LeaveOneContextOut(adaptation_fraction=0.0, test_contexts=["b"],
                            context_col="cell_type", perturbation_col="gene")
    spec = StateSplit.from_splitter(cv, X, dataset="ds", dataset_path="/x.h5ad").read()
    assert spec == {"datasets": {"ds": "/x.h5ad"}, "training": {"ds": "train"},
                    "zeroshot": {"ds.b": "test"}, "fewshot": {}}


def test_from_splitter_warns_about_rows_it_cannot_leave_out():
    X = pd.DataFrame({"context": ["a", "a", "b", "b", "b"],
                      "perturbation": ["p", "q", "p", "r", "q"]})
    # zero-shot: the entry sends all of b to test, and the split drops r again
    cv = LeaveOneContextOut(adaptation_fraction=0.0, test_contexts=["b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = StateSplit.from_splitter(cv, X)
    np.testing.assert_array_equal(next(state.split(X))[1], next(cv.split(X))[1])
    # few-shot: r's row would train in State's layout
    cv = LeaveOneContextOut(adaptation_fraction=0.3, test_contexts=["b"], random_state=0)
    with warns_at(__file__, UserWarning, match="1 row.*neither training nor test"):
        StateSplit.from_splitter(cv, X)
    with pytest.raises(ValueError, match="without a dot"):
        StateSplit.from_splitter(cv, X, dataset="my.data")
    with pytest.raises(ValueError, match="yields fewer splits"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            StateSplit.from_splitter(cv, X, split=3)




@settings(max_examples=40, deadline=None)
@given(
    contexts=st.lists(st.text(min_size=1, max_size=6), min_size=2, max_size=4, unique=True),
    perts=st.lists(st.text(min_size=0, max_size=6), min_size=3, max_size=6, unique=True),
    seed=st.integers(0, 1000),
)
def test_any_labels_round_trip_through_the_toml_text(contexts, perts, seed):
    """Quotes, backslashes, dots, control characters, non-ASCII: the text reads back."""
    X = index_table(contexts=contexts, perts=perts)
    cv = LeaveOneContextOut(adaptation_fraction=0.34, random_state=seed,
                            context_col="cell_type", perturbation_col="gene")
    state = StateSplit.from_splitter(cv, X)
    text = state.to_toml()
    parsed = StateSplit(tomllib.loads(text), context_col="cell_type", perturbation_col="gene")
    assert parsed.read() == state.read()
    assert parsed.to_toml() == text
    (train, test), = list(parsed.split(X))
    expected_train, expected_test = next(cv.split(X))
    np.testing.assert_array_equal(test, expected_test)
    np.testing.assert_array_equal(train, expected_train)
