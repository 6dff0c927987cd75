"""scikit-learn's own estimator checks, as far as they apply, plus DataFrame versions of them.

scikit-learn's suite feeds numeric arrays; the package's estimators take an
index table (a DataFrame of context and perturbation labels) and refuse
anything else. So the suite runs on each estimator with tags that claim array
input (the suite would otherwise skip every check); a check that feeds an
array must stop at exactly the TypeError the contract promises (a crash of
any other kind fails the test), and the data-dependent ones among them are
repeated below on a real index table.

To check another estimator, add a factory (a callable returning an unfitted
instance with a fixed seed) to ``ESTIMATORS``; an estimator whose predictions
are reproducible only up to float32 reordering goes in ``FLOAT32_ROW_SUMS``.
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from joblib import hash as joblib_hash
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from c3tl_sklearn import C3TLEnsemble, C3TLRegressor
from c3tl_sklearn.baselines import (
    AdditiveBaseline,
    ClosestContextBaseline,
    LinearTransferBaseline,
    MeanBaseline,
)
from c3tl_sklearn.datasets import make_synthetic_perturbations


def TinyC3TLRegressor() -> C3TLRegressor:  # named like the class: it names the test ids
    """C3TL small enough for the checks to run in seconds.

    No validation split: which pairs validate is drawn by row, so without it a
    fit on shuffled rows is the same model up to floating-point reordering.
    """
    return C3TLRegressor(max_epochs=2, hidden_dims=(4,), latent_dim=2, n_components=None,
                         validation_fraction=0.0, random_state=0)


def TinyC3TLEnsemble() -> C3TLEnsemble:
    """One tiny member; no calibration pairs (drawn by row, like the validation split)."""
    return C3TLEnsemble(TinyC3TLRegressor(), n_estimators=1, calibration_fraction=0.0,
                        random_state=0)


#: Factories of every estimator checked here (unfitted, seeded where they draw).
ESTIMATORS: list[Callable[[], BaseEstimator]] = [
    MeanBaseline,
    AdditiveBaseline,
    ClosestContextBaseline,
    LinearTransferBaseline,
    TinyC3TLRegressor,
    TinyC3TLEnsemble,
]

#: Classes whose fit sums over rows in float32, in an order that follows the rows of X.
FLOAT32_ROW_SUMS = {"C3TLRegressor", "C3TLEnsemble"}


def row_order_tolerance(estimator, Y) -> dict:
    """``assert_allclose`` tolerances of the row-order check for ``estimator`` fitted on ``Y``.

    A float32 sum of n terms in another order differs by about
    eps32 * sqrt(n) times the magnitude of the terms summed (a random walk of
    roundings), and the terms here are effects of the size of Y. So the bound
    is absolute, relative to the scale of Y, not to each prediction: a
    prediction near zero is the sum of large terms and carries their rounding
    (the old rtol=1e-4 failed on a value of -0.0011 on some CPUs). A few units
    of that bound: measured differences stay below 0.2 of one unit with 1 and
    2 threads. Float64 estimators keep the float64 rounding scale.
    """
    if type(estimator).__name__ not in FLOAT32_ROW_SUMS:
        return {"rtol": 1e-7, "atol": 1e-9}
    values = np.asarray(Y, dtype=np.float64)
    unit = np.finfo(np.float32).eps * np.sqrt(values.shape[0]) * np.abs(values).max()
    return {"rtol": 0.0, "atol": 4 * unit}

#: What the contract promises for an array where an index table belongs: a
#: TypeError that names the table, raised by fit (or predict, score) before
#: anything else is looked at.
ARRAY_REFUSED = (
    r"^X must be a pandas DataFrame with the column\(s\) 'context' and 'perturbation' "
    r"\(one row per \(context, perturbation\) observation\); got \w+\.$"
)

_ARRAY = "the array input itself (its refusal is what the check asserts here)"
_SEE_BELOW = "the DataFrame version is {} in tests/test_sklearn_checks.py"
_REFUSED_FIRST = (
    "the array is refused before the input the check is about; that input is refused "
    "through the index-table contract, tested in tests/test_input_contract.py, "
    "test_fuzz_contract.py, test_baselines.py and test_contract.py"
)

#: The checks that fit (or predict) on a numeric array, each with what covers
#: its subject for the index table; each must stop at the contract's TypeError.
REFUSES_ARRAYS: dict[str, str] = {
    "check_estimators_fit_returns_self": _SEE_BELOW.format("test_fit_returns_self"),
    "check_estimators_overwrite_params": _SEE_BELOW.format(
        "test_fit_changes_no_parameter_nor_the_data"),
    "check_dont_overwrite_parameters": _SEE_BELOW.format(
        "test_fit_changes_no_parameter_nor_the_data"),
    "check_dict_unchanged": _SEE_BELOW.format("test_predict_changes_nothing"),
    "check_fit_idempotent": _SEE_BELOW.format("test_clone_and_refit_reproduce_predictions"),
    "check_estimators_pickle": _SEE_BELOW.format("test_pickle_reproduces_predictions"),
    "check_methods_sample_order_invariance": _SEE_BELOW.format("test_row_order_invariance"),
    "check_methods_subset_invariance": _SEE_BELOW.format("test_row_order_invariance"),
    "check_n_features_in_after_fitting": _SEE_BELOW.format("test_fitted_attributes"),
    "check_n_features_in": _SEE_BELOW.format("test_fitted_attributes"),
    "check_fit_check_is_fitted": _SEE_BELOW.format("test_fitted_attributes"),
    "check_regressor_multioutput": _SEE_BELOW.format("test_fitted_attributes"),
    "check_fit_score_takes_y": _SEE_BELOW.format("test_fit_returns_self"),
    "check_pipeline_consistency": _SEE_BELOW.format(
        "test_clone_and_refit_reproduce_predictions"),
    "check_readonly_memmap_input": _ARRAY,
    "check_estimators_dtypes": _ARRAY,
    "check_complex_data": _ARRAY,
    "check_dtype_object": _ARRAY,
    "check_f_contiguous_array_estimator": _ARRAY,
    "check_regressor_data_not_an_array": _ARRAY,
    "check_regressors_no_decision_function": _ARRAY,
    "check_regressors_int": _ARRAY,
    "check_fit2d_1sample": _ARRAY,
    "check_fit2d_1feature": _ARRAY,
    "check_fit1d": _ARRAY,
    "check_fit2d_predict1d": _ARRAY,
    "check_requires_y_none": _ARRAY,
    "check_positive_only_tag_during_fit": _REFUSED_FIRST,
    "check_estimators_empty_data_messages": _REFUSED_FIRST,
    "check_estimators_nan_inf": _REFUSED_FIRST,
    "check_supervised_y_no_nan": _REFUSED_FIRST,
    "check_estimator_sparse_tag": _REFUSED_FIRST,
    "check_estimator_sparse_array": _REFUSED_FIRST,
    "check_estimator_sparse_matrix": _REFUSED_FIRST,
    "check_regressors_train": _REFUSED_FIRST,
}


def _check_name(check) -> str:
    return getattr(check, "func", check).__name__


def _array_tags(self):
    tags = super(type(self), self).__sklearn_tags__()
    tags.input_tags.two_d_array = True
    return tags


def _claiming_arrays(estimator: BaseEstimator) -> BaseEstimator:
    """The same estimator, with tags that let scikit-learn's suite run on it."""
    cls = type(estimator)
    adapted = type(cls.__name__, (cls,), {"__sklearn_tags__": _array_tags,
                                          "__module__": __name__})
    return adapted(**estimator.get_params(deep=False))


@parametrize_with_checks([_claiming_arrays(factory()) for factory in ESTIMATORS])
def test_sklearn_compatible_estimator(estimator, check):
    name = _check_name(check)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if name not in REFUSES_ARRAYS:
            check(estimator)  # parameters, cloning, tags, ...: no array involved
            return
        # an array where the index table belongs: the contract's TypeError, and
        # nothing else, must stop the check
        if REFUSES_ARRAYS[name] != _REFUSED_FIRST:
            with pytest.raises(TypeError, match=ARRAY_REFUSED):
                check(estimator)
            return
        # these checks expect another error for the input they are about, and
        # report the TypeError that came first as their own AssertionError
        with pytest.raises(AssertionError) as failure:
            check(estimator)
        assert re.match(ARRAY_REFUSED, str(_cause(failure.value, TypeError)))


def _cause(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of type ``kind`` in ``error``'s chain of causes."""
    while error is not None and not isinstance(error, kind):
        error = error.__cause__ or error.__context__
    return error


def test_the_real_tags_say_the_input_is_an_index_table():
    for factory in ESTIMATORS:
        tags = factory().__sklearn_tags__()
        assert not tags.input_tags.two_d_array
        assert tags.input_tags.string and tags.input_tags.categorical
        assert tags.target_tags.multi_output and not tags.target_tags.single_output


# --------------------------------------------------------------------------- DataFrame checks


@pytest.fixture(scope="module")
def data():
    X, Y = make_synthetic_perturbations(4, 30, 12, observed_fraction=0.9, random_state=0)
    return X, Y


@pytest.fixture(params=ESTIMATORS, ids=lambda factory: getattr(factory, "__name__", "est"))
def estimator(request):
    return request.param()


def _fit(estimator, X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return estimator.fit(X, Y)


def test_fit_returns_self(estimator, data):
    X, Y = data
    assert _fit(estimator, X, Y) is estimator


def test_fit_changes_no_parameter_nor_the_data(estimator, data):
    X, Y = data
    X_before, Y_before = X.copy(), Y.copy()
    params = estimator.get_params(deep=True)
    before = {key: joblib_hash(value) for key, value in params.items()}
    _fit(estimator, X, Y)
    after = {key: joblib_hash(value) for key, value in estimator.get_params(deep=True).items()}
    assert after == before
    # only fitted attributes (ending in "_") and private ones were added, as in
    # scikit-learn's check_dont_overwrite_parameters
    added = {key for key in vars(estimator)
             if not key.endswith("_") and not key.startswith("_")}
    assert added == set(get_params_shallow(estimator))
    pd.testing.assert_frame_equal(X, X_before)
    pd.testing.assert_frame_equal(Y, Y_before)


def get_params_shallow(estimator) -> dict:
    return estimator.get_params(deep=False)


def test_predict_changes_nothing(estimator, data):
    X, Y = data
    _fit(estimator, X, Y)
    state = {key: joblib_hash(value) for key, value in vars(estimator).items()}
    X_before = X.copy()
    estimator.predict(X)
    assert {key: joblib_hash(value) for key, value in vars(estimator).items()} == state
    pd.testing.assert_frame_equal(X, X_before)


def test_clone_and_refit_reproduce_predictions(estimator, data):
    X, Y = data
    first = _fit(estimator, X, Y).predict(X)
    np.testing.assert_array_equal(_fit(clone(estimator), X, Y).predict(X), first)
    np.testing.assert_array_equal(_fit(estimator, X, Y).predict(X), first)  # refit in place


def test_pickle_reproduces_predictions(estimator, data):
    X, Y = data
    _fit(estimator, X, Y)
    restored = pickle.loads(pickle.dumps(estimator))
    np.testing.assert_array_equal(restored.predict(X), estimator.predict(X))


def test_row_order_invariance(estimator, data):
    X, Y = data
    perm = np.random.RandomState(0).permutation(len(X))
    pred = _fit(clone(estimator), X, Y).predict(X)
    tolerance = row_order_tolerance(estimator, Y)
    # fitted on shuffled rows: the same model
    shuffled = _fit(clone(estimator), X.iloc[perm], Y.iloc[perm])
    np.testing.assert_allclose(shuffled.predict(X), pred, **tolerance)
    # predicted in another order, or in parts: the same rows
    model = _fit(clone(estimator), X, Y)
    np.testing.assert_allclose(model.predict(X.iloc[perm]), pred[perm], **tolerance)
    halves = np.array_split(np.arange(len(X)), 2)
    parts = np.vstack([model.predict(X.iloc[h]) for h in halves])
    np.testing.assert_allclose(parts, pred, **tolerance)


def test_fitted_attributes(estimator, data):
    X, Y = data
    with pytest.raises(NotFittedError):
        estimator.predict(X)
    _fit(estimator, X.assign(batch=1), Y)
    assert estimator.n_features_in_ == 3
    assert estimator.feature_names_in_.tolist() == ["context", "perturbation", "batch"]
    assert estimator.n_genes_ == Y.shape[1]
    assert estimator.gene_names_.tolist() == Y.columns.tolist()
    pred = estimator.predict(X)
    assert pred.shape == Y.shape and pred.dtype == np.float64
