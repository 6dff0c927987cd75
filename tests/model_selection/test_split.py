"""Tests of the context-aware cross-validation splitters."""

from __future__ import annotations

import itertools
import math
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import GridSearchCV, cross_val_score

from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.model_selection import (
    ContextKFold,
    LeaveOneContextOut,
    PerturbationHoldout,
    ScarcitySplit,
)

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# --------------------------------------------------------------------------- fixtures


class PerturbationMeanRegressor(RegressorMixin, BaseEstimator):
    """Test-only regressor: a perturbation's mean effect over the training rows.

    ``shrink`` pulls predictions towards the global mean (a hyperparameter for
    grid searches). Unseen perturbations get the global mean.
    """

    def __init__(self, perturbation_col="perturbation", shrink=0.0):
        self.perturbation_col = perturbation_col
        self.shrink = shrink

    def fit(self, X, Y):
        Y = np.asarray(Y, dtype=float)
        self.means_ = pd.DataFrame(Y).groupby(X[self.perturbation_col].to_numpy()).mean()
        self.global_ = Y.mean(axis=0)
        return self

    def predict(self, X):
        pred = self.means_.reindex(X[self.perturbation_col].to_numpy()).to_numpy()
        missing = np.isnan(pred).any(axis=1)
        pred[missing] = self.global_
        return (1 - self.shrink) * pred + self.shrink * self.global_


def grid_table(n_contexts, n_perturbations, *, drop=(), seed=None):
    """Index table with every (context, perturbation) pair except ``drop``; rows shuffled."""
    rows = [
        (f"c{c}", f"p{p}")
        for c in range(n_contexts)
        for p in range(n_perturbations)
        if (c, p) not in set(drop)
    ]
    X = pd.DataFrame(rows, columns=["context", "perturbation"])
    if seed is not None:
        X = X.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return X


@st.composite
def index_tables(draw, min_contexts=2, max_contexts=6, min_perturbations=3, max_perturbations=14):
    """Random index tables: random sizes, missing pairs, label types and row order."""
    n_ctx = draw(st.integers(min_contexts, max_contexts))
    n_pert = draw(st.integers(min_perturbations, max_perturbations))
    density = draw(st.floats(0.5, 1.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = rng.random((n_ctx, n_pert)) < density
    for c in np.flatnonzero(~mask.any(axis=1)):  # every context has a row
        mask[c, rng.integers(n_pert)] = True
    ci, pi = np.nonzero(mask)
    if draw(st.booleans()):
        ctx_labels = np.array([f"ctx{i}" for i in range(n_ctx)], dtype=object)
    else:  # integer labels whose sorted order differs from the code order
        ctx_labels = np.array([(7 * i + 3) % 11 + 10 * i for i in range(n_ctx)], dtype=object)
    pert_labels = np.array([f"g{i}" for i in range(n_pert)], dtype=object)
    perm = rng.permutation(ci.size)
    return pd.DataFrame(
        {
            "context": ctx_labels[ci[perm]],
            "perturbation": pert_labels[pi[perm]],
            "dose": rng.random(ci.size),
        }
    )


seeds = st.integers(0, 2**31 - 1)
fractions = st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 0.8])


def splits_or_reject(cv, X, **kwargs):
    """All splits; hypothesis rejects draws where a held-out context has no test row."""
    try:
        return list(cv.split(X, **kwargs))
    except ValueError as exc:
        if "has no test rows" in str(exc):
            reject()
        raise


def n_adaptation(fraction, n):
    """The documented size of an adaptation part."""
    if fraction == 0 or n < 2:
        return 0
    return min(max(1, math.floor(fraction * n + 0.5)), n - 1)


def check_indices(train, test, n_rows):
    for idx in (train, test):
        assert isinstance(idx, np.ndarray)
        assert idx.ndim == 1
        assert np.issubdtype(idx.dtype, np.integer)
        assert np.unique(idx).size == idx.size
        assert idx.size == 0 or (idx.min() >= 0 and idx.max() < n_rows)
    assert np.intersect1d(train, test).size == 0
    assert test.size > 0 and train.size > 0


def check_transferable(X, train, test):
    """Every test row's perturbation is observed in a training row of another context."""
    ctx = X.context.to_numpy()
    pert = X.perturbation.to_numpy()
    seen = {}
    for i in train:
        seen.setdefault(pert[i], set()).add(ctx[i])
    for i in test:
        assert seen.get(pert[i], set()) - {ctx[i]}, (ctx[i], pert[i])


def same_splits(a, b):
    if len(a) != len(b):
        return False
    return all(
        np.array_equal(x, y)
        for s, t in zip(a, b, strict=True)
        for x, y in zip(s, t, strict=True)
    )


# --------------------------------------------------------------------------- LeaveOneContextOut


@PROPERTY
@given(X=index_tables(), f=fractions, seed=seeds)
def test_loco_invariants(X, f, seed):
    cv = LeaveOneContextOut(adaptation_fraction=f, random_state=seed)
    splits = splits_or_reject(cv, X)
    contexts = sorted(X.context.unique())
    assert len(splits) == cv.get_n_splits(X) == len(contexts)
    for (train, test), c in zip(splits, contexts, strict=True):
        check_indices(train, test, len(X))
        in_c = (X.context == c).to_numpy()
        # test rows only from the held-out context, which it is sorted order
        assert in_c[test].all()
        # every other context is entirely training data
        assert np.array_equal(np.sort(np.flatnonzero(~in_c)), train[~in_c[train]])
        # adaptation rows: the documented number, only from c
        assert in_c[train].sum() == n_adaptation(f, in_c.sum())
        check_transferable(X, train, test)
        # the rest of c is test exactly when its perturbation is observed elsewhere
        observed_elsewhere = set(X.perturbation[~in_c])
        rest = np.setdiff1d(np.flatnonzero(in_c), train)
        perts = X.perturbation.to_numpy()
        expected = np.array([i for i in rest if perts[i] in observed_elsewhere], dtype=int)
        assert np.array_equal(test, expected)


@PROPERTY
@given(X=index_tables(), f=st.sampled_from([0.1, 0.25, 0.5]), seed=seeds)
def test_loco_deterministic_and_groups_equivalent(X, f, seed):
    cv = LeaveOneContextOut(adaptation_fraction=f, random_state=seed)
    first = splits_or_reject(cv, X)
    assert same_splits(first, list(cv.split(X)))
    assert same_splits(first, list(pickle.loads(pickle.dumps(cv)).split(X)))
    # groups supply the contexts; X then needs no context column
    assert same_splits(first, list(cv.split(X.drop(columns="context"), groups=X.context)))
    assert same_splits(first, list(cv.split(X, groups=X.context.to_numpy())))


@PROPERTY
@given(X=index_tables(), seed=seeds, small=st.sampled_from([0.0, 0.05, 0.1]),
       large=st.sampled_from([0.2, 0.5, 0.9]))
def test_loco_adaptation_rows_are_nested(X, seed, small, large):
    contexts = sorted(X.context.unique())
    try:
        a = list(LeaveOneContextOut(small, random_state=seed).split(X))
        b = list(LeaveOneContextOut(large, random_state=seed).split(X))
    except ValueError as exc:
        assert "has no test rows" in str(exc)
        reject()
    for (train_a, _), (train_b, _), c in zip(a, b, contexts, strict=True):
        in_c = (X.context == c).to_numpy()
        assert set(train_a[in_c[train_a]]) <= set(train_b[in_c[train_b]])


@PROPERTY
@given(X=index_tables(min_contexts=3), seed=seeds, n_test=st.integers(1, 3))
def test_loco_n_test_contexts_draws_subset_with_same_rows(X, seed, n_test):
    n_ctx = X.context.nunique()
    n_test = min(n_test, n_ctx)
    full = LeaveOneContextOut(0.3, random_state=seed)
    some = LeaveOneContextOut(0.3, n_test_contexts=n_test, random_state=seed)
    try:
        full_splits = dict(zip(sorted(X.context.unique()), full.split(X), strict=True))
        some_splits = list(some.split(X))
    except ValueError as exc:
        assert "has no test rows" in str(exc)
        reject()
    assert len(some_splits) == some.get_n_splits() == n_test
    held = [X.context.iloc[test[0]] for _, test in some_splits]
    assert held == sorted(set(held))
    # the row order of a context does not depend on which contexts are held out
    for c, (train, test) in zip(held, some_splits, strict=True):
        assert np.array_equal(train, full_splits[c][0])
        assert np.array_equal(test, full_splits[c][1])
    assert same_splits(some_splits, list(some.split(X)))


@PROPERTY
@given(X=index_tables(min_perturbations=5), seed=seeds,
       f=st.sampled_from([0.2, 0.5, 0.8]), vf=st.sampled_from([0.0, 0.2, 0.5]))
def test_loco_split_validation(X, seed, f, vf):
    cv = LeaveOneContextOut(adaptation_fraction=f, validation_fraction=vf, random_state=seed)
    try:
        triples = list(cv.split_validation(X))
    except ValueError as exc:
        assert "has no test rows" in str(exc)
        reject()
    pairs = list(cv.split(X))
    plain = list(LeaveOneContextOut(adaptation_fraction=f, random_state=seed).split(X))
    # split() is the same whatever validation_fraction
    assert same_splits(pairs, plain)
    for (train, val, test), (train_all, test_all), c in zip(
        triples, pairs, sorted(X.context.unique()), strict=True
    ):
        assert np.array_equal(np.union1d(train, val), train_all)
        assert np.array_equal(test, test_all)
        assert np.intersect1d(train, val).size == 0 and np.intersect1d(val, test).size == 0
        in_c = (X.context == c).to_numpy()
        assert in_c[val].all()
        n_adapt = n_adaptation(f, in_c.sum())
        assert val.size <= n_adaptation(vf, n_adapt)
        if val.size:
            check_transferable(X, train, val)
        if vf == 0:
            assert val.size == 0


def test_loco_paper_protocol_8_2_90():
    X, _ = make_synthetic_perturbations(3, 200, 5, random_state=0)
    cv = LeaveOneContextOut(adaptation_fraction=0.1, validation_fraction=0.2, random_state=0)
    for train, val, test in cv.split_validation(X):
        held = X.context.iloc[test[0]]
        n_c = (X.context == held).sum()
        assert (X.context.iloc[train] == held).sum() == 16  # 8%
        assert val.size == 4  # 2%
        assert test.size == 180  # 90%
    info = cv.split_info(X)
    assert info.columns.tolist() == [
        "split", "test_context", "n_adaptation", "n_dropped", "n_train", "n_validation",
        "n_test",
    ]
    assert info.n_adaptation.tolist() == [20, 20, 20]
    assert (info.n_train + info.n_validation + info.n_test + info.n_dropped).tolist() == [
        len(X)
    ] * 3
    assert n_c == 200


def test_loco_zero_shot_and_drops_unseen_perturbations():
    # p3 exists only in c0: it can never be a test row of c0
    X = grid_table(3, 4, drop=[(1, 3), (2, 3)])
    cv = LeaveOneContextOut(adaptation_fraction=0.0, test_contexts=["c0"])
    (train, test), = cv.split(X)
    assert set(X.context.iloc[train]) == {"c1", "c2"}
    assert sorted(X.perturbation.iloc[test]) == ["p0", "p1", "p2"]
    assert cv.split_info(X).n_dropped.tolist() == [1]


def test_loco_explicit_test_contexts_order_and_single_label():
    X = grid_table(4, 6, seed=1)
    cv = LeaveOneContextOut(test_contexts=["c3", "c1"], random_state=0)
    held = [X.context.iloc[test].unique().tolist() for _, test in cv.split(X)]
    assert held == [["c3"], ["c1"]]
    assert cv.get_n_splits() == 2
    single = LeaveOneContextOut(test_contexts="c2", random_state=0)
    assert single.get_n_splits() == 1
    assert X.context.iloc[next(single.split(X))[1]].unique().tolist() == ["c2"]


def test_loco_tuple_and_integer_labels():
    X = grid_table(3, 5)
    X["context"] = X.context.map({"c0": ("a", 1), "c1": ("a", 2), "c2": ("b", 1)})
    cv = LeaveOneContextOut(test_contexts=[("b", 1)], random_state=0)
    (_, test), = cv.split(X)
    assert set(X.context.iloc[test]) == {("b", 1)}
    # a plain list of tuple labels as groups
    (_, test_g), = cv.split(X[["perturbation"]], groups=X.context.tolist())
    assert np.array_equal(test, test_g)
    X["context"] = X.context.map({("a", 1): 5, ("a", 2): 2, ("b", 1): 9})
    assert LeaveOneContextOut(random_state=0).split_info(X).test_context.tolist() == [2, 5, 9]


def test_loco_random_state_instance_and_none_give_valid_splits():
    X = grid_table(3, 30)
    for rs in (None, np.random.RandomState(0)):
        for train, test in LeaveOneContextOut(0.2, random_state=rs).split(X):
            check_indices(train, test, len(X))


# --------------------------------------------------------------------------- ContextKFold


@PROPERTY
@given(X=index_tables(min_contexts=2, max_contexts=7), f=fractions, seed=seeds,
       k=st.integers(2, 4), shuffle=st.booleans())
def test_context_kfold_invariants(X, f, seed, k, shuffle):
    n_ctx = X.context.nunique()
    k = min(k, n_ctx)
    cv = ContextKFold(n_splits=k, adaptation_fraction=f, shuffle=shuffle, random_state=seed)
    splits = splits_or_reject(cv, X)
    assert len(splits) == cv.get_n_splits() == k
    held_sets = []
    for train, test in splits:
        check_indices(train, test, len(X))
        in_train = np.zeros(len(X), dtype=bool)
        in_train[train] = True
        held = set(X.context[~in_train])  # contexts not entirely in training
        held_sets.append(held)
        assert set(X.context.iloc[test]) <= held
        ctx = X.context.to_numpy()
        for c in held:
            in_c = ctx == c
            # each held-out context keeps exactly its own adaptation rows
            assert (in_train & in_c).sum() == n_adaptation(f, in_c.sum())
        # a test perturbation is observed in a context outside the fold
        kept = set(X.perturbation[~np.isin(ctx, list(held))])
        assert set(X.perturbation.iloc[test]) <= kept
        check_transferable(X, train, test)
    # folds partition the contexts (a context with only adaptation rows and f>0
    # is still partly outside training)
    all_held = [c for h in held_sets for c in h]
    assert len(all_held) == len(set(all_held))
    assert same_splits(splits, list(cv.split(X)))
    assert same_splits(splits, list(cv.split(X.drop(columns="context"), groups=X.context)))


def test_context_kfold_folds_and_sorted_without_shuffle():
    X = grid_table(4, 10, seed=0)
    info = ContextKFold(n_splits=2, shuffle=False, random_state=0).split_info(X)
    assert info.test_contexts.tolist() == [("c0", "c1"), ("c2", "c3")]
    info = ContextKFold(n_splits=4, random_state=0).split_info(X)
    assert sorted(c for t in info.test_contexts for c in t) == ["c0", "c1", "c2", "c3"]
    # with one context per fold it matches LeaveOneContextOut's adaptation rows
    loco_splits = LeaveOneContextOut(random_state=0).split(X)
    loco = dict(zip(["c0", "c1", "c2", "c3"], loco_splits, strict=True))
    for (train, test), (c,) in zip(
        ContextKFold(n_splits=4, random_state=0).split(X), info.test_contexts, strict=True
    ):
        assert np.array_equal(train, loco[c][0]) and np.array_equal(test, loco[c][1])


def test_context_kfold_split_validation():
    X = grid_table(4, 50, seed=0)
    cv = ContextKFold(n_splits=2, adaptation_fraction=0.2, validation_fraction=0.5,
                      random_state=3)
    pairs = zip(cv.split_validation(X), cv.split(X), strict=True)
    for (train, val, test), (train_all, test_all) in pairs:
        assert val.size == 10  # 5 of each of the 2 held-out contexts' 10 adaptation rows
        assert np.array_equal(np.union1d(train, val), train_all)
        assert np.array_equal(test, test_all)
        check_transferable(X, train, val)


# --------------------------------------------------------------------------- PerturbationHoldout


@PROPERTY
@given(X=index_tables(), seed=seeds, tf=st.sampled_from([0.1, 0.3, 0.6]),
       mf=st.sampled_from([0.3, 0.5, 1.0]), n_splits=st.integers(1, 3))
def test_perturbation_holdout_invariants(X, seed, tf, mf, n_splits):
    cv = PerturbationHoldout(test_fraction=tf, max_test_fraction=mf, n_splits=n_splits,
                             random_state=seed)
    try:
        splits = list(cv.split(X))
    except ValueError as exc:
        assert "no row to hold out" in str(exc)
        # legitimate only when no perturbation may be held out anywhere
        m_p = X.perturbation.value_counts()
        assert (np.minimum(m_p - 1, np.floor(mf * m_p + 1e-9)) <= 0).all() or all(
            n_adaptation(tf, n) == 0 for n in X.context.value_counts()
        )
        reject()
    assert len(splits) == cv.get_n_splits() == n_splits
    m_p = X.perturbation.value_counts()
    for train, test in splits:
        check_indices(train, test, len(X))
        assert np.array_equal(np.union1d(train, test), np.arange(len(X)))
        check_transferable(X, train, test)
        held = X.iloc[test]
        for c, n in held.context.value_counts().items():
            assert n <= n_adaptation(tf, (X.context == c).sum())
        for p, n in held.perturbation.value_counts().items():
            assert n <= min(m_p[p] - 1, math.floor(mf * m_p[p] + 1e-9))
    assert same_splits(splits, list(cv.split(X)))
    assert same_splits(splits, list(cv.split(X[["perturbation"]], groups=X.context)))


def test_perturbation_holdout_fills_quota_and_redraws():
    X = grid_table(6, 40, seed=0)
    cv = PerturbationHoldout(test_fraction=0.25, n_splits=3, random_state=0)
    splits = list(cv.split(X))
    for _, test in splits:
        assert X.context.iloc[test].value_counts().tolist() == [10] * 6
        assert X.perturbation.iloc[test].value_counts().max() <= 3
    assert not np.array_equal(splits[0][1], splits[1][1])
    info = cv.split_info(X)
    assert info.n_test.tolist() == [60, 60, 60]
    assert info.n_test_contexts.tolist() == [6, 6, 6]


# --------------------------------------------------------------------------- ScarcitySplit


@st.composite
def scarcity_cases(draw):
    X = draw(index_tables(min_contexts=3, max_contexts=7, min_perturbations=6))
    n_ctx = X.context.nunique()
    n_test = draw(st.integers(1, n_ctx - 1))
    sizes = draw(st.lists(st.integers(1, n_ctx - n_test), min_size=1, max_size=3, unique=True))
    fracs = draw(st.lists(st.sampled_from([0.0, 0.02, 0.1, 0.3, 0.5, 0.8]), min_size=1,
                          max_size=4, unique=True))
    return X, n_test, sizes, fracs


@PROPERTY
@given(case=scarcity_cases(), seed=seeds, test_set=st.sampled_from(["common", "complement"]))
def test_scarcity_invariants(case, seed, test_set):
    X, n_test, sizes, fracs = case
    cv = ScarcitySplit(n_train_contexts=sizes, adaptation_fractions=fracs,
                       n_test_contexts=n_test, test_set=test_set, random_state=seed)
    splits = splits_or_reject(cv, X)
    info = cv.split_info(X)
    assert len(splits) == len(info) == cv.get_n_splits() == n_test * len(sizes) * len(fracs)
    assert info.split.tolist() == list(range(len(splits)))
    test_contexts = list(dict.fromkeys(info.test_context))
    assert len(test_contexts) == n_test
    ctx = X.context.to_numpy()
    train_ctx_sets, adapt_rows, tests = {}, {}, {}
    for (train, test), row in zip(splits, info.itertuples(), strict=True):
        check_indices(train, test, len(X))
        t = row.test_context
        in_t = ctx == t
        assert in_t[test].all()
        check_transferable(X, train, test)
        others = set(ctx[train[~in_t[train]]])
        assert others == set(row.train_contexts) and len(others) == row.n_train_contexts
        assert not others & set(test_contexts)  # no test context is trained on
        adapt = set(train[in_t[train]])
        assert len(adapt) == n_adaptation(row.adaptation_fraction, in_t.sum())
        train_ctx_sets[row.n_train_contexts] = others
        adapt_rows[(t, row.n_train_contexts, row.adaptation_fraction)] = adapt
        tests[(t, row.n_train_contexts, row.adaptation_fraction)] = set(test)
    # training contexts: nested, the same for every test context
    ordered = sorted(train_ctx_sets)
    for small, large in itertools.pairwise(ordered):
        assert train_ctx_sets[small] < train_ctx_sets[large]
    fr = sorted(fracs)
    for t in test_contexts:
        for k in sizes:
            # adaptation rows: nested in f, and the same for every training-set size
            for lo, hi in itertools.pairwise(fr):
                assert adapt_rows[(t, k, lo)] <= adapt_rows[(t, k, hi)]
                if test_set == "complement":
                    assert tests[(t, k, hi)] <= tests[(t, k, lo)]
            for f in fracs:
                assert adapt_rows[(t, k, f)] == adapt_rows[(t, sizes[0], f)]
                if test_set == "common":
                    assert tests[(t, k, f)] == tests[(t, sizes[0], fracs[0])]
                    assert not tests[(t, k, f)] & adapt_rows[(t, k, fr[-1])]
    assert same_splits(splits, list(cv.split(X)))
    assert same_splits(splits, list(cv.split(X[["perturbation"]], groups=X.context)))


def test_scarcity_common_test_set_definition():
    X = grid_table(5, 40, drop=[(c, 39) for c in range(1, 5)], seed=0)  # p39 only in c0
    cv = ScarcitySplit(n_train_contexts=(3, 1), adaptation_fractions=(0.5, 0.1),
                       test_contexts=["c0"], random_state=0)
    splits = list(cv.split(X))
    info = cv.split_info(X)
    in_c0 = (X.context == "c0").to_numpy()
    largest_adapt = set(splits[0][0][in_c0[splits[0][0]]])
    assert len(largest_adapt) == 20
    smallest = set(info.train_contexts.iloc[-1])
    allowed = set(X.perturbation[X.context.isin(smallest)])
    expected = [
        i for i in np.flatnonzero(in_c0)
        if i not in largest_adapt and X.perturbation.iloc[i] in allowed
    ]
    for _, test in splits:
        assert test.tolist() == expected
    assert "p39" not in set(X.perturbation.iloc[expected])


def test_scarcity_split_validation_and_info():
    X = grid_table(4, 40, seed=2)
    cv = ScarcitySplit(n_train_contexts=2, adaptation_fractions=0.5, n_test_contexts=2,
                       validation_fraction=0.25, random_state=0)
    triples = list(cv.split_validation(X))
    info = cv.split_info(X)
    assert len(triples) == 2 and cv.get_n_splits() == 2
    assert info.columns.tolist() == [
        "split", "test_context", "n_train_contexts", "adaptation_fraction", "train_contexts",
        "n_adaptation", "n_train", "n_validation", "n_test",
    ]
    for (train, val, _), row in zip(triples, info.itertuples(), strict=True):
        assert val.size == row.n_validation == 5  # 25% of 20 adaptation rows
        assert set(X.context.iloc[val]) == {row.test_context}
        assert row.n_train == train.size == 2 * 40 + 15
        check_transferable(X, train, val)


def test_scarcity_nested_across_paper_style_grid():
    X, _ = make_synthetic_perturbations(12, 60, 3, observed_fraction=0.8, random_state=0)
    cv = ScarcitySplit(n_train_contexts=(10, 5, 2), adaptation_fractions=(0.8, 0.3, 0.1, 0.01),
                       n_test_contexts=2, random_state=1)
    info = cv.split_info(X)
    assert len(info) == 24
    assert info.groupby("test_context").n_test.nunique().eq(1).all()
    # the same seed gives the same adaptation rows as LeaveOneContextOut
    t = info.test_context.iloc[0]
    loco = LeaveOneContextOut(0.3, test_contexts=[t], random_state=1)
    (loco_train, _), = loco.split(X)
    scar_train = next(
        tr for (tr, _), r in zip(cv.split(X), info.itertuples(), strict=True)
        if r.test_context == t and r.adaptation_fraction == 0.3
    )
    in_t = (X.context == t).to_numpy()
    assert np.array_equal(scar_train[in_t[scar_train]], loco_train[in_t[loco_train]])


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "cv, message",
    [
        (LeaveOneContextOut(adaptation_fraction=1.0),
         r"'adaptation_fraction' parameter of LeaveOneContextOut must be a float in the range "
         r"\[0.0, 1.0\)"),
        (LeaveOneContextOut(adaptation_fraction=-0.1), "adaptation_fraction"),
        (LeaveOneContextOut(adaptation_fraction=np.nan), "adaptation_fraction"),
        (LeaveOneContextOut(validation_fraction=1.5), "validation_fraction"),
        (LeaveOneContextOut(test_contexts=["c0", "nope"]), r"not contexts of X.*'nope'|'nope'"),
        (LeaveOneContextOut(test_contexts=["c0", "c0"]), "more than once"),
        (LeaveOneContextOut(test_contexts=[]), "empty"),
        (LeaveOneContextOut(n_test_contexts=9), "exceeds the 3 contexts"),
        (LeaveOneContextOut(n_test_contexts=0),
         r"'n_test_contexts' parameter of LeaveOneContextOut must be an int in the range "
         r"\[1, inf\) or None"),
        (ContextKFold(n_splits=4), "exceeds the 3 contexts"),
        (ContextKFold(n_splits=1),
         r"'n_splits' parameter of ContextKFold must be an int in the range \[2, inf\)"),
        (ContextKFold(adaptation_fraction=2), "adaptation_fraction"),
        (PerturbationHoldout(test_fraction=0.0),
         r"'test_fraction' parameter of PerturbationHoldout must be a float in the range "
         r"\(0.0, 1.0\)"),
        (PerturbationHoldout(test_fraction=1.0), "test_fraction"),
        (PerturbationHoldout(max_test_fraction=0), "max_test_fraction"),
        (PerturbationHoldout(n_splits=0), "n_splits"),
        (ScarcitySplit(n_train_contexts=(3, 1)), "only 2 of the 3 contexts"),
        (ScarcitySplit(n_train_contexts=(1,), n_test_contexts=3), "leaves no training context"),
        (ScarcitySplit(n_train_contexts=(1, 1)), "repeated"),
        (ScarcitySplit(n_train_contexts=()), "empty"),
        (ScarcitySplit(n_train_contexts=(1,), adaptation_fractions=(0.1, 1.0)),
         "adaptation_fractions"),
        (ScarcitySplit(n_train_contexts=(1,), adaptation_fractions=(0.1, 0.1)), "repeated"),
        (ScarcitySplit(n_train_contexts=(1,), test_set="all"), "test_set"),
        (ScarcitySplit(n_train_contexts=(1,), test_contexts=["zz"]), "zz"),
    ],
)
def test_parameter_errors(cv, message):
    X = grid_table(3, 10)
    with pytest.raises(ValueError, match=message):
        list(cv.split(X))


@pytest.mark.parametrize(
    "cv",
    [LeaveOneContextOut(), ContextKFold(2), PerturbationHoldout(),
     ScarcitySplit(n_train_contexts=1, adaptation_fractions=0.1)],
    ids=lambda cv: type(cv).__name__,
)
def test_input_errors(cv):
    X = grid_table(3, 10)
    with pytest.raises(TypeError, match="DataFrame"):
        list(cv.split(X.to_numpy()))
    with pytest.raises(ValueError, match="missing the column"):
        list(cv.split(X.rename(columns={"context": "cell"})))
    with pytest.raises(ValueError, match="groups has 5 labels but X has 30 rows"):
        list(cv.split(X, groups=X.context[:5]))
    with pytest.raises(ValueError, match="perturbation column"):
        list(cv.split(X[["context"]], groups=X.context))
    with pytest.raises(ValueError, match="missing label"):
        list(cv.split(X, groups=X.context.where(X.index != 3)))
    with pytest.raises(ValueError, match="duplicated"):
        list(cv.split(pd.concat([X, X.iloc[:2]], ignore_index=True)))
    # inputs are never modified
    before = X.copy()
    list(cv.split(X))
    pd.testing.assert_frame_equal(X, before)


def test_too_few_contexts_and_empty_test_sets():
    one = grid_table(1, 5)
    with pytest.raises(ValueError, match="at least 2 contexts"):
        list(LeaveOneContextOut().split(one))
    with pytest.raises(ValueError, match="at least 2 contexts"):
        list(PerturbationHoldout().split(one))
    # c1 shares no perturbation with c0: no transferable test row
    X = pd.DataFrame({"context": ["c0", "c0", "c1", "c1"],
                      "perturbation": ["a", "b", "c", "d"]})
    with pytest.raises(ValueError, match="Test context 'c0' has no test rows"):
        list(LeaveOneContextOut().split(X))
    with pytest.raises(ValueError, match="no row to hold out"):
        list(PerturbationHoldout().split(X))


def test_get_n_splits_needs_contexts_for_default_loco():
    X = grid_table(5, 4)
    cv = LeaveOneContextOut()
    assert cv.get_n_splits(X) == 5
    assert cv.get_n_splits(groups=X.context) == 5
    with pytest.raises(ValueError, match="should not be None"):
        cv.get_n_splits()


# --------------------------------------------------------------------------- sklearn integration


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_perturbations(5, 30, 12, observed_fraction=0.9, random_state=0)


SPLITTERS = [
    LeaveOneContextOut(adaptation_fraction=0.2, random_state=0),
    LeaveOneContextOut(adaptation_fraction=0.1, validation_fraction=0.2, n_test_contexts=2,
                       random_state=0),
    ContextKFold(n_splits=3, random_state=0),
    PerturbationHoldout(n_splits=2, random_state=0),
    ScarcitySplit(n_train_contexts=(3, 2), adaptation_fractions=(0.5, 0.1), random_state=0),
]


@pytest.mark.parametrize("cv", SPLITTERS, ids=lambda cv: type(cv).__name__)
def test_cross_val_score_with_and_without_groups(synthetic, cv):
    X, Y = synthetic
    est = PerturbationMeanRegressor()
    scores = cross_val_score(est, X, Y, cv=cv, scoring="neg_mean_squared_error",
                             error_score="raise")
    assert len(scores) == cv.get_n_splits(X)
    assert np.isfinite(scores).all()
    with_groups = cross_val_score(est, X, Y, cv=cv, groups=X.context,
                                  scoring="neg_mean_squared_error", error_score="raise")
    np.testing.assert_allclose(scores, with_groups)


@pytest.mark.parametrize("cv", SPLITTERS, ids=lambda cv: type(cv).__name__)
def test_grid_search_repr_pickle(synthetic, cv):
    X, Y = synthetic
    search = GridSearchCV(PerturbationMeanRegressor(), {"shrink": [0.0, 0.5]}, cv=cv,
                          scoring="neg_mean_squared_error", error_score="raise")
    search.fit(X, Y, groups=X.context)
    n_splits = cv.get_n_splits(X)
    assert search.n_splits_ == n_splits
    assert np.isfinite(search.cv_results_[f"split{n_splits - 1}_test_score"]).all()
    assert search.best_params_["shrink"] in (0.0, 0.5)
    assert repr(cv).startswith(type(cv).__name__ + "(")
    assert same_splits(list(pickle.loads(pickle.dumps(cv)).split(X)), list(cv.split(X)))


def test_metadata_routing_routes_groups(synthetic):
    X, Y = synthetic
    cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    expected = cross_val_score(PerturbationMeanRegressor(), X, Y, cv=cv,
                               scoring="neg_mean_squared_error")
    renamed = X.drop(columns="context")
    with sklearn.config_context(enable_metadata_routing=True):
        routed = cross_val_score(PerturbationMeanRegressor(), renamed, Y, cv=cv,
                                 scoring="neg_mean_squared_error",
                                 params={"groups": X.context.to_numpy()})
    np.testing.assert_allclose(routed, expected)
