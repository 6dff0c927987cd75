"""cell-eval's file layout: to_cell_eval writes it, read_cell_eval reads it, cell-eval agrees.

The last test runs cell-eval's own command line (``cell-eval run``) on files
exported from the shipped glioblastoma cells and compares its per-perturbation
``pearson_delta``, ``mse_delta`` and discrimination scores with ours.
"""

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c3tl_sklearn.metrics import discrimination_score, pearson_delta, score_table

from ..conftest import HANG_TIMEOUT_S, warns_at

ad = pytest.importorskip("anndata")

from c3tl_sklearn.datasets import load_glioblastoma_crispri  # noqa: E402
from c3tl_sklearn.preprocessing import (  # noqa: E402
    TruthCells,
    TruthEffects,
    pseudobulk,
    read_cell_eval,
    to_cell_eval,
)

ATOL = 1e-6


def read_back(files, **kwargs):
    return read_cell_eval(files.pred, files.real, perturbation_col=files.perturbation_col,
                          control=files.control, context_col=files.context_col, **kwargs)


def pseudobulk_case(seed, n_contexts=2, n_perts=4, n_genes=6):
    rng = np.random.default_rng(seed)
    contexts = [f"line{i}" for i in range(n_contexts)]
    X = pd.DataFrame({"context": np.repeat(contexts, n_perts),
                      "perturbation": [f"p{j}" for j in range(n_perts)] * n_contexts})
    genes = [f"g{j}" for j in range(n_genes)]
    control_mean = pd.DataFrame(rng.uniform(1.0, 3.0, (n_contexts, n_genes)), index=contexts,
                                columns=genes)
    Y_true = pd.DataFrame(rng.uniform(-0.9, 0.9, (len(X), n_genes)), columns=genes)
    Y_pred = pd.DataFrame(rng.uniform(-0.9, 0.9, (len(X), n_genes)), columns=genes)
    return X, Y_true, Y_pred, control_mean


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_contexts=st.integers(1, 3), n_perts=st.integers(2, 5),
       n_genes=st.integers(2, 7))
def test_pseudobulk_export_reads_back_to_the_effects(seed, n_contexts, n_perts, n_genes):
    X, Y_true, Y_pred, control_mean = pseudobulk_case(seed, n_contexts, n_perts, n_genes)
    before = (X.copy(), Y_true.copy(), Y_pred.copy(), control_mean.copy())
    files = to_cell_eval(X, Y_pred, TruthEffects(Y_true, control_mean))
    for data, copy in zip((X, Y_true, Y_pred, control_mean), before, strict=True):
        pd.testing.assert_frame_equal(data, copy)  # the user's data are not modified
    assert list(files.pred.var_names) == list(files.real.var_names) == list(Y_true.columns)
    # the same real control rows in both files, one per context
    ctrl = files.pred.obs["perturbation"] == "control"
    assert ctrl.sum() == n_contexts
    np.testing.assert_array_equal(files.pred.X[ctrl.to_numpy()], files.real.X[ctrl.to_numpy()])
    assert files.pred.X.min() >= 0 and files.real.X.min() >= 0
    back = read_back(files)
    order = X.sort_values(["context", "perturbation"]).index
    np.testing.assert_allclose(back.Y_true, Y_true.loc[order], atol=ATOL)
    np.testing.assert_allclose(back.Y_pred, Y_pred.loc[order], atol=ATOL)
    assert back.X.values.tolist() == X.loc[order].values.tolist()


def test_negative_predicted_expression_is_set_to_zero_with_a_warning():
    X, Y_true, Y_pred, control_mean = pseudobulk_case(0)
    Y_pred.iloc[0, 0] = -10.0  # far below the control mean
    with warns_at(__file__, UserWarning, match=r"1 of 48 predicted .* below 0"):
        files = to_cell_eval(X, Y_pred, TruthEffects(Y_true, control_mean))
    back = read_back(files)
    # the documented relation: what cell-eval sees is the effect bounded by -control mean
    expected = np.maximum(Y_pred.to_numpy(), -control_mean.loc[X.context].to_numpy())
    np.testing.assert_allclose(back.Y_pred, expected, atol=ATOL)


@pytest.fixture(scope="module")
def glioblastoma():
    cells = load_glioblastoma_crispri()
    X, Y, report = pseudobulk(cells, "cell_line", "perturbation", "control",
                              return_report=True)
    lines = X["context"].to_numpy()
    # a transfer prediction without fitting: each line predicted by the other lines' mean
    pred = np.empty(Y.shape)
    for line in np.unique(lines):
        others = [Y.to_numpy()[lines == o] for o in np.unique(lines) if o != line]
        pred[lines == line] = np.mean(others, axis=0)  # same knockdown order in every line
    return cells, X[["context", "perturbation"]], Y, pd.DataFrame(pred, columns=Y.columns), \
        report.control_mean


def export_cells(glioblastoma, **kwargs):
    cells, X, _, pred, _ = glioblastoma
    truth = TruthCells(cells, context_key="cell_line", perturbation_key="perturbation",
                       **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the clipped means, tested below
        return to_cell_eval(X, pred, truth, control="control")


def test_cells_export_has_what_cell_eval_needs(glioblastoma):
    cells, _, Y, _, _ = glioblastoma
    files = export_cells(glioblastoma)
    # real: every cell of the scored pairs and every control cell; pred: as many cells
    assert files.real.n_obs == cells.n_obs and files.pred.n_obs == cells.n_obs
    assert list(files.real.var_names) == list(files.pred.var_names) == list(Y.columns)
    for adata in files:
        if isinstance(adata, ad.AnnData):
            values = adata.X.toarray()
            assert values.min() >= 0 and values.max() < 15
            assert set(adata.obs.columns) == {"context", "perturbation"}
    for line in ("A172", "T98G", "U87MG"):
        groups = [set(f.obs.loc[f.obs.context == line, "perturbation"]) for f in files[:2]]
        assert groups[0] == groups[1] and "control" in groups[0]
    real_ctrl = files.real[files.real.obs.perturbation == "control"].X.toarray()
    pred_ctrl = files.pred[files.pred.obs.perturbation == "control"].X.toarray()
    np.testing.assert_array_equal(real_ctrl, pred_ctrl)  # the same controls in both files
    assert "cell-eval run -ap out/pred.h5ad -ar out/real.h5ad --pert-col perturbation " \
        "--control-pert control --celltype-col context" in files.command("out")
    for adata in (files.pred, files.real):
        assert adata.uns["c3tl"] == {"perturbation_col": "perturbation",
                                     "context_col": "context", "control": "control"}


def test_cells_export_reads_back_to_pseudobulk_effects_and_bounded_predictions(glioblastoma):
    cells, X, Y, pred, control_mean = glioblastoma
    files = export_cells(glioblastoma)
    back = read_back(files)
    order = X.sort_values(["context", "perturbation"]).index
    np.testing.assert_allclose(back.Y_true, Y.loc[order], atol=1e-5)
    base = control_mean.loc[X.context.loc[order]].to_numpy()
    cap = cells.X.max()
    expected = np.clip(pred.loc[order].to_numpy(), -base, cap - base)
    np.testing.assert_allclose(back.Y_pred, expected, atol=1e-5)
    # with a fixed number of predicted cells the means are the same
    fixed = read_back(export_cells(glioblastoma, n_cells=5))
    np.testing.assert_allclose(fixed.Y_pred, expected, atol=1e-5)


def test_cells_export_warns_about_bounded_means(glioblastoma):
    cells, X, _, pred, _ = glioblastoma
    with warns_at(__file__, UserWarning,
                  match=r"of 13500 predicted \(pair, gene\) expression means"):
        to_cell_eval(X, pred, TruthCells(cells, context_key="cell_line"), control="control")


def test_bad_inputs_are_refused_with_the_fix(glioblastoma):
    cells, X, Y, pred, control_mean = glioblastoma
    with pytest.raises(TypeError, match=r"or as TruthEffects\(Y_true, control_mean\) "
                       r"\(pseudo-bulk\); got DataFrame"):
        to_cell_eval(X, pred, Y)  # the true effects alone: no control means
    with pytest.raises(TypeError, match=r"control_mean must be a DataFrame .*; got ndarray"):
        TruthEffects(Y, control_mean.to_numpy())
    with pytest.raises(TypeError, match=r"cells must be an AnnData or an \.h5ad path; got int"):
        TruthCells(3)
    for bad in (0, True, 2.5, "all"):
        with pytest.raises(ValueError, match=f"n_cells={bad!r} must be 'match'"):
            TruthCells(cells, n_cells=bad)
    assert TruthCells(cells, n_cells=np.int64(40)).n_cells == 40
    in_line = TruthCells(cells, context_key="cell_line")
    with pytest.raises(ValueError, match="no control cells labelled 'NTC'"):
        to_cell_eval(X, pred, in_line, control="NTC")
    with pytest.raises(ValueError, match=r"name the column as TruthCells\(cells, context_key="):
        to_cell_eval(X, pred, cells, control="control")  # the cells alone: TruthCells(cells)
    with pytest.warns(UserWarning, match="expression means"):  # the advice, followed, works
        to_cell_eval(X, pred, TruthCells(cells, context_key="cell_line"), control="control")
    with pytest.raises(ValueError, match="also a predicted perturbation"):
        to_cell_eval(X, pred, in_line, control="MAPK1")
    counts = cells.copy()
    counts.X = counts.X.copy()
    counts.X.data = np.ceil(counts.X.data)
    with pytest.raises(ValueError, match="raw counts"):
        to_cell_eval(X, pred, TruthCells(counts, context_key="cell_line"), control="control")
    counts.X.data = counts.X.data * 10 + 0.5
    with pytest.raises(ValueError, match=r"the cells: values in \[0, 70.5\], but cell-eval takes"):
        to_cell_eval(X, pred, TruthCells(counts, context_key="cell_line"), control="control")
    with pytest.raises(ValueError, match="no row for context"):
        to_cell_eval(X, pred, TruthEffects(Y, control_mean.iloc[:1]))


def test_cells_as_a_path_are_the_same_truth(glioblastoma, tmp_path):
    cells, X, _, pred, _ = glioblastoma
    renamed = cells.copy()
    renamed.obs = renamed.obs.rename(columns={"cell_line": "context"})
    renamed.write_h5ad(tmp_path / "cells.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from_path = to_cell_eval(X, pred, tmp_path / "cells.h5ad")
        from_object = to_cell_eval(X, pred, TruthCells(renamed))
    for a, b in zip(from_path[:2], from_object[:2], strict=True):
        np.testing.assert_array_equal(a.X.toarray(), b.X.toarray())
        pd.testing.assert_frame_equal(a.obs, b.obs)


def test_read_cell_eval_refuses_mismatched_files(glioblastoma):
    files = export_cells(glioblastoma)
    with pytest.raises(ValueError, match="different \\(context, perturbation\\) groups"):
        read_cell_eval(files.pred[files.pred.obs.perturbation != "MAPK1"], files.real,
                       perturbation_col="perturbation", control="control", context_col="context")
    with pytest.raises(ValueError, match="no 'NTC' rows"):
        read_cell_eval(files.pred, files.real, perturbation_col="perturbation", control="NTC",
                       context_col="context")
    with pytest.raises(ValueError, match="no obs column 'target_gene'"):
        read_cell_eval(files.pred, files.real)
    with pytest.raises(ValueError, match="different genes"):
        read_cell_eval(files.pred[:, :10], files.real, perturbation_col="perturbation",
                       control="control", context_col="context")


def test_score_table_takes_a_cell_eval_pair(glioblastoma, tmp_path):
    pred_path, real_path = export_cells(glioblastoma).write(tmp_path)
    table = score_table(*read_cell_eval(pred_path, real_path, perturbation_col="perturbation",
                                        control="control", context_col="context"))
    assert table.index.tolist() == ["A172", "T98G", "U87MG", "overall"]
    assert table["n_rows"].tolist() == [9, 9, 9, 27]


def _cell_eval_command():
    found = Path(sys.executable).with_name("cell-eval")
    return str(found) if found.exists() else shutil.which("cell-eval")


@pytest.mark.skipif(_cell_eval_command() is None,
                    reason="cell-eval is not installed (pip install 'c3tl-sklearn[dev]' or "
                    "cell-eval==0.8.2)")
def test_cell_eval_command_line_accepts_the_export_and_agrees_with_our_metrics(
        glioblastoma, tmp_path):
    files = export_cells(glioblastoma)
    files.write(tmp_path / "export")
    outdir = tmp_path / "cell-eval-outdir"
    command = [*files.command_args(tmp_path / "export", outdir), "--num-threads", "1"]
    command[0] = _cell_eval_command()
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    X, Y_true, Y_pred = read_back(files)
    for line in ("A172", "T98G", "U87MG"):
        theirs = pd.read_csv(outdir / f"{line}_results.csv").set_index("perturbation")
        here = (X["context"] == line).to_numpy()
        perts = X["perturbation"][here].to_numpy()
        yt, yp = Y_true[here].to_numpy(), Y_pred[here].to_numpy()
        np.testing.assert_allclose(pearson_delta(yt, yp, per_row=True),
                                   theirs.loc[perts, "pearson_delta"], rtol=0, atol=ATOL)
        np.testing.assert_allclose(((yt - yp) ** 2).mean(axis=1),
                                   theirs.loc[perts, "mse_delta"], rtol=0, atol=ATOL)
        for metric in ("l1", "l2", "cosine"):
            ours = discrimination_score(yt, yp, None, metric=metric, convention="cell-eval",
                                        per_row=True)
            np.testing.assert_allclose(ours, theirs.loc[perts, f"discrimination_score_{metric}"],
                                       rtol=0, atol=ATOL)
        # and the context's row of score_table is the mean over its perturbations
        table = score_table(X, Y_true, Y_pred)
        assert table.loc[line, "mse"] == pytest.approx(theirs["mse_delta"].mean(), abs=ATOL)
        assert table.loc[line, "pearson_delta"] == pytest.approx(
            theirs["pearson_delta"].mean(), abs=ATOL)


@settings(max_examples=60, deadline=None)
@given(
    drawn=st.lists(st.lists(st.one_of(st.just(0.0), st.floats(0.0, 7.0)), min_size=3,
                            max_size=3), min_size=1, max_size=6),
    fractions=st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
)
def test_predicted_cells_have_the_predicted_mean_within_the_measured_range(drawn, fractions):
    """Whatever the controls look like: the mean is the target, values stay in [0, cap]."""
    from c3tl_sklearn.preprocessing._celleval import _cells_with_mean

    drawn = np.array(drawn)
    cap = 7.0
    target = np.array(fractions) * cap
    out = _cells_with_mean(drawn, target, cap)
    np.testing.assert_allclose(out.mean(axis=0), target, atol=1e-9)
    assert out.min() >= 0 and out.max() <= cap + 1e-9 and np.isfinite(out).all()
    # where plain scaling fits under the cap, the controls' zeros stay zeros
    scalable = (drawn.mean(axis=0) > 1e-12) & (drawn.max(axis=0) * target
                                               <= cap * drawn.mean(axis=0))
    assert np.abs(out[:, scalable][drawn[:, scalable] == 0]).max(initial=0) < 1e-12
