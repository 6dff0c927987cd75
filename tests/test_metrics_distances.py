"""discrimination_score's distance metrics and conventions against a brute-force definition."""

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances

from c3tl_sklearn.metrics import discrimination_score

SKLEARN_METRIC = {"l1": "manhattan", "l2": "euclidean", "cosine": "cosine"}


def brute_force(Y_true, Y_pred, contexts, metric, convention):
    contexts = np.asarray(contexts)
    scores = np.full(len(Y_true), np.nan)
    for c in np.unique(contexts):
        rows = np.flatnonzero(contexts == c)
        m = rows.size
        if m < 2:
            continue
        dist = pairwise_distances(Y_pred[rows], Y_true[rows], metric=SKLEARN_METRIC[metric])
        for a, i in enumerate(rows):
            own = dist[a, a]
            others = np.delete(dist[a], a)
            # the metric's own rounding can make equal distances differ in the last bit
            tied = np.isclose(others, own, rtol=1e-12, atol=1e-12)
            farther = ((others > own) & ~tied).sum() + 0.5 * tied.sum()
            if convention == "pairwise":
                scores[i] = farther / (m - 1)
            else:  # one minus the normalised rank among all m true effects
                closer = (m - 1) - farther
                scores[i] = 1 - closer / m
    return scores


@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("convention", ["pairwise", "cell-eval"])
def test_matches_brute_force_with_contexts_and_ties(metric, convention):
    rng = np.random.default_rng(0)
    Y_true = rng.normal(size=(23, 7))
    Y_true[5] = Y_true[3]  # identical truths of one context: exact ties
    Y_true[9] = 0.0  # a zero effect: cosine distance 1 to everything
    Y_pred = Y_true + rng.normal(scale=0.8, size=Y_true.shape)
    contexts = np.array(["a"] * 10 + ["b"] * 12 + ["c"])  # "c" is alone
    with pytest.warns(UserWarning, match="alone in their context"):
        got = discrimination_score(
            Y_true, Y_pred, contexts, metric=metric, convention=convention, per_row=True
        )
    expected = brute_force(Y_true, Y_pred, contexts, metric, convention)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert np.isnan(got[-1])


def test_default_is_euclidean_pairwise():
    rng = np.random.default_rng(1)
    Y_true, Y_pred = rng.normal(size=(2, 15, 6))
    contexts = np.repeat(["a", "b", "c"], 5)
    default = discrimination_score(Y_true, Y_pred, contexts, per_row=True)
    explicit = discrimination_score(
        Y_true, Y_pred, contexts, metric="l2", convention="pairwise", per_row=True
    )
    np.testing.assert_array_equal(default, explicit)
    np.testing.assert_allclose(default, brute_force(Y_true, Y_pred, contexts, "l2", "pairwise"))


def test_metrics_order_differently():
    """The three metrics are genuinely different rankings, not aliases."""
    rng = np.random.default_rng(2)
    Y_true = rng.normal(size=(30, 5)) * rng.uniform(0.1, 5.0, size=(30, 1))
    Y_pred = Y_true + rng.normal(size=Y_true.shape)
    scores = {
        m: discrimination_score(Y_true, Y_pred, None, metric=m, per_row=True)
        for m in ("l1", "l2", "cosine")
    }
    assert not np.allclose(scores["l1"], scores["l2"])
    assert not np.allclose(scores["l2"], scores["cosine"])


def test_cell_eval_convention_floor_depends_on_context_size():
    Y_true = np.diag(np.arange(1.0, 5.0))
    worst = discrimination_score(
        Y_true, -Y_true, None, metric="cosine", convention="cell-eval", per_row=True
    )
    np.testing.assert_allclose(worst, 1 / 4)
    assert discrimination_score(Y_true, Y_true, None, convention="cell-eval") == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"metric": "euclidean"}, "metric must be one of"),
     ({"convention": "rank"}, "convention must be one of")],
)
def test_unknown_options_are_errors(kwargs, message):
    Y = np.eye(3)
    with pytest.raises(ValueError, match=message):
        discrimination_score(Y, Y, None, **kwargs)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(3)
    Y_true, Y_pred = rng.normal(size=(2, 8, 4))
    before = Y_true.copy(), Y_pred.copy()
    for metric in ("l1", "l2", "cosine"):
        discrimination_score(Y_true, Y_pred, None, metric=metric, convention="cell-eval")
    np.testing.assert_array_equal(Y_true, before[0])
    np.testing.assert_array_equal(Y_pred, before[1])
