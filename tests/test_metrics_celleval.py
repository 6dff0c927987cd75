"""Our metrics against cell-eval's on the same effect matrices.

cell-eval (ArcInstitute, the implementation perturbation-prediction papers
compare against) scores one context per run from two AnnData files of cells:
real and predicted, each with its own control cells. To hand it exactly the
effects our functions see, every group here is one "cell" whose expression is
the context's control expression plus the effect, so cell-eval's pseudo-bulk
deltas are our rows. Agreement is asserted to 1e-6; where the packages differ
by design (which control a predicted delta is taken against, the target gene
left out of discrimination distances, the discrimination normalisation) the
test asserts the documented relation instead.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error

from c3tl_sklearn.metrics import discrimination_score, pearson_delta, score_table, top_k_overlap

ce_metrics = pytest.importorskip(
    "cell_eval.metrics",
    reason="cell-eval is not installed (pip install 'c3tl-sklearn[dev]' or cell-eval==0.8.2)",
)
ce_types = pytest.importorskip("cell_eval._types")
ad = pytest.importorskip("anndata")
pl = pytest.importorskip("polars")

ATOL = 1e-6
N_PERTS, N_GENES = 12, 40


@pytest.fixture(autouse=True)
def _quiet():
    # cell-eval prints a progress bar per metric and warns about anndata's
    # implicit index conversion; neither matters to the values compared here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def effects(seed, n_perts=N_PERTS, n_genes=N_GENES):
    """True effects, a noisy prediction and two different control profiles."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=n_genes)
    Y_true = shared + rng.normal(size=(n_perts, n_genes))
    Y_pred = 0.7 * Y_true + 0.5 * rng.normal(size=(n_perts, n_genes))
    c_real = rng.uniform(1.0, 3.0, size=n_genes)
    c_pred = c_real + 0.3 * rng.normal(size=n_genes)
    return Y_true, Y_pred, c_real, c_pred


def perturbation_names(n):
    # zero-padded so that cell-eval's sorted order is the row order
    return [f"p{i:02d}" for i in range(n)]


def celleval_pair(Y_true, Y_pred, c_real, c_pred=None, genes=None, perts=None):
    """cell-eval's input: one cell per group, a control cell in each file."""
    n_perts, n_genes = Y_true.shape
    perts = perturbation_names(n_perts) if perts is None else perts
    genes = [f"g{j:03d}" for j in range(n_genes)] if genes is None else genes
    c_pred = c_real if c_pred is None else c_pred
    obs = pd.DataFrame({"perturbation": ["ctrl", *perts]})
    obs.index = obs.index.astype(str)
    var = pd.DataFrame(index=genes)
    real = ad.AnnData(np.vstack([c_real, c_real + Y_true]), obs=obs, var=var)
    # a model predicts effects against the measured controls; the predicted
    # file's control cells are what cell-eval subtracts from its predictions
    pred = ad.AnnData(np.vstack([c_pred, c_real + Y_pred]), obs=obs.copy(), var=var.copy())
    return ce_types.PerturbationAnndataPair(
        real=real, pred=pred, pert_col="perturbation", control_pert="ctrl"
    )


def per_row(result, perts):
    return np.array([result[p] for p in perts])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_delta_equals_cell_eval(seed):
    Y_true, Y_pred, c_real, _ = effects(seed)
    perts = perturbation_names(N_PERTS)
    theirs = per_row(ce_metrics.pearson_delta(celleval_pair(Y_true, Y_pred, c_real)), perts)
    ours = pearson_delta(Y_true, Y_pred, per_row=True)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=ATOL)
    assert pearson_delta(Y_true, Y_pred) == pytest.approx(theirs.mean(), abs=ATOL)


def test_pearson_delta_cell_eval_takes_predictions_against_predicted_controls():
    """cell-eval #196: the documented difference, and the relation that removes it."""
    Y_true, Y_pred, c_real, c_pred = effects(3)
    perts = perturbation_names(N_PERTS)
    pair = celleval_pair(Y_true, Y_pred, c_real, c_pred)
    theirs = per_row(ce_metrics.pearson_delta(pair), perts)
    shifted = pearson_delta(Y_true, Y_pred + c_real - c_pred, per_row=True)
    np.testing.assert_allclose(shifted, theirs, rtol=0, atol=ATOL)
    # the predicted controls move cell-eval's score; ours does not read them
    assert np.abs(pearson_delta(Y_true, Y_pred, per_row=True) - theirs).max() > 1e-3


@pytest.mark.parametrize("seed", [0, 4])
def test_mse_and_mae_equal_cell_eval_means_over_perturbations(seed):
    Y_true, Y_pred, c_real, c_pred = effects(seed)
    perts = perturbation_names(N_PERTS)
    pair = celleval_pair(Y_true, Y_pred, c_real)
    X = pd.DataFrame({"context": "line", "perturbation": perts})
    ours_mse = score_table(X, Y_true, Y_pred).loc["overall", "mse"]
    for theirs_fn, ours in (
        (ce_metrics.mse_delta, ours_mse),
        (ce_metrics.mse, ours_mse),  # on expression: the same while the controls coincide
        (ce_metrics.mae_delta, mean_absolute_error(Y_true, Y_pred)),
        (ce_metrics.mae, mean_absolute_error(Y_true, Y_pred)),
    ):
        theirs = per_row(theirs_fn(pair), perts)
        assert ours == pytest.approx(theirs.mean(), abs=ATOL)
    np.testing.assert_allclose(
        ((Y_true - Y_pred) ** 2).mean(axis=1),
        per_row(ce_metrics.mse_delta(pair), perts),
        rtol=0,
        atol=ATOL,
    )
    # with predicted controls cell-eval's delta errors move; its expression errors do not
    shifted = celleval_pair(Y_true, Y_pred, c_real, c_pred)
    assert per_row(ce_metrics.mse(shifted), perts).mean() == pytest.approx(ours_mse, abs=ATOL)
    assert per_row(ce_metrics.mse_delta(shifted), perts).mean() == pytest.approx(
        mean_squared_error(Y_true, Y_pred + c_real - c_pred), abs=ATOL
    )


@pytest.mark.parametrize("metric", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("seed", [0, 5])
def test_discrimination_score_equals_cell_eval(metric, seed):
    Y_true, Y_pred, c_real, _ = effects(seed)
    perts = perturbation_names(N_PERTS)
    theirs = per_row(
        ce_metrics.discrimination_score(celleval_pair(Y_true, Y_pred, c_real), metric=metric),
        perts,
    )
    ours = discrimination_score(
        Y_true, Y_pred, None, metric=metric, convention="cell-eval", per_row=True
    )
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=ATOL)
    # the default convention is the pairwise fraction, an affine map of cell-eval's
    pairwise = discrimination_score(Y_true, Y_pred, None, metric=metric, per_row=True)
    np.testing.assert_allclose(pairwise, (N_PERTS * theirs - 1) / (N_PERTS - 1), atol=ATOL)


def test_discrimination_worst_case_orientation():
    """Predicting every perturbation as the farthest one: 0 for us, 1/m for cell-eval."""
    Y_true = np.diag(np.arange(1.0, 6.0))  # m = 5 orthogonal effects of growing size
    Y_pred = -Y_true  # each prediction is farthest from its own truth in every metric
    m = Y_true.shape[0]
    perts = perturbation_names(m)
    for metric in ("l1", "l2", "cosine"):
        theirs = per_row(
            ce_metrics.discrimination_score(
                celleval_pair(Y_true, Y_pred, np.ones(m)), metric=metric
            ),
            perts,
        )
        ours = discrimination_score(Y_true, Y_pred, None, metric=metric, per_row=True)
        ce = discrimination_score(
            Y_true, Y_pred, None, metric=metric, convention="cell-eval", per_row=True
        )
        np.testing.assert_allclose(ce, theirs, atol=ATOL)
        if metric == "cosine":
            # every other truth is orthogonal (distance 1), the own one opposite (2)
            np.testing.assert_allclose(ours, 0.0)
            np.testing.assert_allclose(theirs, 1 / m)


def test_discrimination_cell_eval_leaves_out_the_target_gene():
    """Named after genes, perturbations lose their own gene's column in cell-eval."""
    Y_true, Y_pred, c_real, _ = effects(6, n_perts=6, n_genes=10)
    genes = [f"G{j}" for j in range(10)]
    perts = genes[:6]  # perturbation i knocks down gene i
    Y_true[np.arange(6), np.arange(6)] -= 4.0  # the knockdown's own strong signal
    pair = celleval_pair(Y_true, Y_pred, c_real, genes=genes, perts=perts)
    theirs = per_row(ce_metrics.discrimination_score(pair, metric="l1"), perts)
    for i in range(6):
        keep = np.arange(10) != i
        ours = discrimination_score(
            Y_true[:, keep], Y_pred[:, keep], None, metric="l1", convention="cell-eval",
            per_row=True,
        )
        assert ours[i] == pytest.approx(theirs[i], abs=ATOL)
    with_target = discrimination_score(
        Y_true, Y_pred, None, metric="l1", convention="cell-eval", per_row=True
    )
    assert not np.allclose(with_target, theirs)


def test_discrimination_per_context_equals_one_cell_eval_run_per_context():
    rng = np.random.default_rng(7)
    contexts, blocks_true, blocks_pred, theirs = [], [], [], []
    for name, n in (("A172", 9), ("T98G", 7), ("U87MG", 11)):
        Y_true, Y_pred, c_real, _ = effects(int(rng.integers(1000)), n_perts=n)
        run = ce_metrics.discrimination_score(celleval_pair(Y_true, Y_pred, c_real))
        theirs.append(per_row(run, perturbation_names(n)))
        contexts += [name] * n
        blocks_true.append(Y_true)
        blocks_pred.append(Y_pred)
    ours = discrimination_score(
        np.vstack(blocks_true), np.vstack(blocks_pred), contexts, metric="l1",
        convention="cell-eval", per_row=True,
    )
    np.testing.assert_allclose(ours, np.concatenate(theirs), rtol=0, atol=ATOL)


def de_table(Y, perts, genes):
    """A DE table in which every gene is significant and the fold change is the effect."""
    n_perts, n_genes = Y.shape
    return pl.DataFrame(
        {
            "target": np.repeat(perts, n_genes),
            "feature": np.tile(genes, n_perts),
            "log2_fold_change": Y.ravel(),
            "p_value": np.zeros(Y.size),
            "fdr": np.zeros(Y.size),
        }
    )


@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k_overlap_equals_cell_eval_on_all_significant_tables(k):
    Y_true, Y_pred, _, _ = effects(8)
    # cell-eval ranks float32 fold changes; float32 inputs make both rankings see the same values
    Y_true = Y_true.astype(np.float32).astype(np.float64)
    Y_pred = Y_pred.astype(np.float32).astype(np.float64)
    perts = perturbation_names(N_PERTS)
    genes = [f"g{j:03d}" for j in range(N_GENES)]
    comparison = ce_types.initialize_de_comparison(
        real=de_table(Y_true, perts, genes), pred=de_table(Y_pred, perts, genes)
    )
    theirs = per_row(ce_metrics.de_overlap_metric(comparison, k=k, metric="overlap"), perts)
    ours = top_k_overlap(Y_true, Y_pred, k=k, per_row=True)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=ATOL)
    assert 0 < ours.mean() < 1  # the predictions are informative, not perfect


def test_agreement_on_real_effects():
    """The shipped glioblastoma cells: effects per line, predicted by the other lines' mean."""
    from c3tl_sklearn.datasets import load_glioblastoma_crispri
    from c3tl_sklearn.preprocessing import pseudobulk

    X, Y = pseudobulk(load_glioblastoma_crispri(), "cell_line", "perturbation", "control")
    Y = Y.to_numpy(dtype=np.float64)
    lines = X["context"].to_numpy()
    for line in np.unique(lines):
        here = lines == line
        others = [Y[lines == o] for o in np.unique(lines) if o != line]  # same knockdown order
        Y_true, Y_pred = Y[here], np.mean(others, axis=0)
        perts = perturbation_names(len(Y_true))
        # none of the nine targets is among the 500 genes, so cell-eval drops no column
        pair = celleval_pair(Y_true, Y_pred, np.zeros(Y.shape[1]))
        np.testing.assert_allclose(
            pearson_delta(Y_true, Y_pred, per_row=True),
            per_row(ce_metrics.pearson_delta(pair), perts), rtol=0, atol=ATOL,
        )
        for metric in ("l1", "l2", "cosine"):
            np.testing.assert_allclose(
                discrimination_score(
                    Y_true, Y_pred, None, metric=metric, convention="cell-eval", per_row=True
                ),
                per_row(ce_metrics.discrimination_score(pair, metric=metric), perts),
                rtol=0, atol=ATOL,
            )
        assert mean_squared_error(Y_true, Y_pred) == pytest.approx(
            per_row(ce_metrics.mse_delta(pair), perts).mean(), abs=ATOL
        )
