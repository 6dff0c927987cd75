"""The files a lab already uses, on the command line: State split files and cell-eval's pair.

In process (``c3tl_main``) on the shipped glioblastoma cells, with the
baselines (no network is trained), so every test takes a second or two.
"""

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn import MeanBaseline
from c3tl_sklearn.cli import c3tl_main
from c3tl_sklearn.datasets import load_glioblastoma_crispri
from c3tl_sklearn.metrics import score_table

from ._helpers import error_of, ok

anndata = pytest.importorskip("anndata")

SPLIT_TOML = """\
[datasets]
gbm = "cells.h5ad"

[training]
gbm = "train"

[zeroshot]

[fewshot]

[fewshot."gbm.U87MG"]
val = ["MAP2K3"]
test = ["MAP2K3", "MAP2K6", "MAP3K21", "MAP4K3", "MAP4K5", "SGK1", "TGFBR2"]
"""
TEST_PERTS = ["MAP2K3", "MAP2K6", "MAP3K21", "MAP4K3", "MAP4K5", "SGK1", "TGFBR2"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Cells, their effects (with the labels renamed: cell_line, knockdown) and a split file."""
    path = tmp_path_factory.mktemp("interop")
    load_glioblastoma_crispri().write_h5ad(path / "cells.h5ad")
    assert c3tl_main(["pseudobulk", str(path / "cells.h5ad"), "--context", "cell_line",
                      "--perturbation", "perturbation", "--control", "control", "-o",
                      str(path / "effects.h5ad"), "--quiet"]) == 0
    effects = anndata.read_h5ad(path / "effects.h5ad")
    # custom label columns, as a lab's own files have them
    effects.obs = effects.obs.rename(columns={"context": "cell_line",
                                              "perturbation": "knockdown"})
    effects.write_h5ad(path / "custom.h5ad")
    (path / "split.toml").write_text(SPLIT_TOML)
    return path


def test_fit_split_trains_on_the_files_training_rows(capsys, folder, tmp_path):
    _, err = ok(capsys, "fit", folder / "effects.h5ad", "--split", folder / "split.toml",
                  "--test-out", tmp_path / "test.h5ad", "-o", tmp_path / "mean.model",
                  "--model", "mean")
    assert "split " in err and "20 training and 7 test pairs" in err
    test = anndata.read_h5ad(tmp_path / "test.h5ad")
    assert set(test.obs["context"]) == {"U87MG"}
    assert sorted(test.obs["perturbation"]) == TEST_PERTS
    assert "pseudobulk_control_mean" in test.uns  # the input's uns kept, for --truth
    from c3tl_sklearn.persistence import load

    model = load(tmp_path / "mean.model")
    # MAPK1 and PLK4 of U87MG trained; the held-out knockdowns of U87MG did not
    assert sorted(model.perturbations_) == sorted([*TEST_PERTS, "MAPK1", "PLK4"])
    X_fit = pd.DataFrame({"context": ["U87MG"] * 7, "perturbation": TEST_PERTS})
    assert model.predict(X_fit).shape == (7, 500)


def test_an_interrupted_split_fit_writes_no_test_rows(capsys, folder, tmp_path, monkeypatch):
    from c3tl_sklearn.cli import _cmd_fit

    class Interrupted(MeanBaseline):
        def fit(self, X, Y):
            raise KeyboardInterrupt

    monkeypatch.setattr(_cmd_fit, "_build_model", lambda args: Interrupted())
    status = c3tl_main([str(a) for a in (
        "fit", folder / "effects.h5ad", "--split", folder / "split.toml", "--test-out",
        tmp_path / "test.h5ad", "-o", tmp_path / "mean.model", "--model", "mean", "--quiet")])
    assert status == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # the test rows wait for the model


def test_fit_split_errors_name_the_fix(capsys, folder, tmp_path):
    assert "does not exist" in error_of(capsys, "fit", folder / "effects.h5ad", "--split",
                                        tmp_path / "nope.toml", "-o", tmp_path / "m")
    bad = tmp_path / "bad.toml"
    bad.write_text('[zeroshot]\n"gbm.LN229" = "test"\n')
    line = error_of(capsys, "fit", folder / "effects.h5ad", "--split", bad, "-o", tmp_path / "m")
    assert "'LN229' is not a context of X" in line and "--context-col" in line
    assert "go with --split" in error_of(capsys, "fit", folder / "effects.h5ad", "--test-out",
                                         tmp_path / "t.h5ad", "-o", tmp_path / "m")
    # the dataset is named as in `c3tl benchmark` (--dataset, the older name, still works)
    for flag in ("--split-dataset", "--dataset"):
        line = error_of(capsys, "fit", folder / "effects.h5ad", "--split", folder / "split.toml",
                        flag, "other", "-o", tmp_path / "m")
        assert "other" in line, line


def test_evaluate_reads_the_label_columns_predict_wrote(capsys, folder, tmp_path):
    ok(capsys, "fit", folder / "custom.h5ad", "-o", tmp_path / "add.model", "--model",
       "additive", "--context-col", "cell_line", "--perturbation-col", "knockdown")
    for suffix in (".h5ad", ".csv"):
        pred = tmp_path / f"pred{suffix}"
        ok(capsys, "predict", tmp_path / "add.model", "--pairs", folder / "custom.h5ad",
           "-o", pred)
        # no --context-col / --perturbation-col: evaluate takes them from predict's file
        out, _ = ok(capsys, "evaluate", pred, folder / "custom.h5ad")
        assert out.splitlines()[1].startswith("cell_line")
        assert "A172" in out and "overall" in out
    # recorded in the .h5ad, for any reader
    assert dict(anndata.read_h5ad(tmp_path / "pred.h5ad").uns["c3tl"]) == {
        "context_col": "cell_line", "perturbation_col": "knockdown"}


def test_export_and_evaluate_cell_eval(capsys, folder, tmp_path):
    """Perfect predictions (the truth itself) exported both ways score 1 through --cell-eval."""
    for how in (["--truth", folder / "effects.h5ad"],
                ["--cells", folder / "cells.h5ad", "--control", "control",
                 "--cells-context-key", "cell_line"]):
        target = tmp_path / how[0].strip("-")
        out, err = ok(capsys, "export", folder / "effects.h5ad", *how, "-o", target)
        assert out.strip().startswith(f"cell-eval run -ap {target / 'pred.h5ad'} -ar "
                                      f"{target / 'real.h5ad'} --pert-col perturbation "
                                      "--control-pert control --celltype-col context")
        assert "warning" not in err  # the truth itself is never below 0
        ok(capsys, "evaluate", "--cell-eval", target / "pred.h5ad",
                      target / "real.h5ad", "-o", target / "scores.csv")
        scores = pd.read_csv(target / "scores.csv", index_col=0)
        assert scores.index.tolist() == ["A172", "T98G", "U87MG", "overall"]
        np.testing.assert_allclose(scores["pearson_delta"], 1.0, atol=1e-6)
        np.testing.assert_allclose(scores["mse"], 0.0, atol=1e-9)


def test_predict_cell_eval_equals_export_and_library(capsys, folder, tmp_path):
    ok(capsys, "fit", folder / "effects.h5ad", "-o", tmp_path / "mean.model", "--model", "mean")
    ok(capsys, "predict", tmp_path / "mean.model", "--pairs", folder / "effects.h5ad",
       "-o", tmp_path / "pred.h5ad", "--cell-eval", tmp_path / "ce", "--truth",
       folder / "effects.h5ad")
    # `c3tl export` of the same predictions writes the same two files
    ok(capsys, "export", tmp_path / "pred.h5ad", "--truth", folder / "effects.h5ad", "-o",
       tmp_path / "exported")
    for name in ("pred.h5ad", "real.h5ad"):
        a, b = (anndata.read_h5ad(tmp_path / d / name) for d in ("ce", "exported"))
        np.testing.assert_array_equal(np.asarray(a.X), np.asarray(b.X))
        pd.testing.assert_frame_equal(a.obs, b.obs)
    out, _ = ok(capsys, "evaluate", "--cell-eval", tmp_path / "ce" / "pred.h5ad",
                tmp_path / "ce" / "real.h5ad", "-o", tmp_path / "scores.csv")
    ours = pd.read_csv(tmp_path / "scores.csv", index_col=0)
    # scored from the files, as from the predictions and the truth themselves: each
    # predicted effect bounded below by minus its control mean (cell-eval takes no
    # negative expression), the documented difference
    pred, truth = anndata.read_h5ad(tmp_path / "pred.h5ad"), anndata.read_h5ad(
        folder / "effects.h5ad")
    assert pred.obs_names.tolist() == truth.obs_names.tolist()
    X = pred.obs[["context", "perturbation"]].reset_index(drop=True)
    control = truth.uns["pseudobulk_control_mean"].loc[X["context"], truth.var_names]
    bounded = np.maximum(np.asarray(pred.X), -control.to_numpy())
    assert (bounded != np.asarray(pred.X)).any()  # the bound is in play here
    expected = score_table(X, np.asarray(truth.X), bounded)
    np.testing.assert_allclose(ours["pearson_delta"], expected["pearson_delta"], atol=1e-4)
    np.testing.assert_allclose(ours["mse"], expected["mse"], rtol=1e-4)
    # a cell-eval pair written by another tool, with cell-eval's default names
    pred = anndata.read_h5ad(tmp_path / "ce" / "pred.h5ad")
    real = anndata.read_h5ad(tmp_path / "ce" / "real.h5ad")
    for adata in (pred, real):
        adata.obs = adata.obs.rename(columns={"perturbation": "target_gene",
                                              "context": "cell_type"})
        adata.obs["target_gene"] = adata.obs["target_gene"].cat.rename_categories(
            {"control": "non-targeting"})
        adata.uns.clear()
    pred.write_h5ad(tmp_path / "other_pred.h5ad")
    real.write_h5ad(tmp_path / "other_real.h5ad")
    out2, _ = ok(capsys, "evaluate", "--cell-eval", tmp_path / "other_pred.h5ad",
                 tmp_path / "other_real.h5ad", "--context-col", "cell_type")
    assert [line.split() for line in out2.splitlines()[2:]] == [
        line.split() for line in out.splitlines()[2:]]


def test_cell_eval_errors_name_the_fix(capsys, folder, tmp_path):
    ok(capsys, "fit", folder / "effects.h5ad", "-o", tmp_path / "m", "--model", "mean")
    line = error_of(capsys, "predict", tmp_path / "m", "--pairs", folder / "effects.h5ad",
                    "-o", tmp_path / "p.h5ad", "--cell-eval", tmp_path / "ce")
    assert "--cell-eval DIR needs the truth" in line
    line = error_of(capsys, "predict", tmp_path / "m", "--pairs", folder / "effects.h5ad",
                    "-o", tmp_path / "p.h5ad", "--truth", folder / "effects.h5ad")
    assert "add --cell-eval DIR" in line
    line = error_of(capsys, "export", folder / "effects.h5ad", "--cells", folder / "cells.h5ad",
                    "-o", tmp_path / "ce")
    assert "--cells needs --control LABEL" in line
    # a cells option beside --truth would change nothing: refused, before predicting
    line = error_of(capsys, "predict", tmp_path / "m", "--pairs", folder / "effects.h5ad",
                    "-o", tmp_path / "p.h5ad", "--cell-eval", tmp_path / "ce", "--truth",
                    folder / "effects.h5ad", "--n-cells", "5", "--export-seed", "1")
    assert line.endswith("--n-cells, --export-seed go with --cells (single cells); with "
                         "--truth there are no cells to draw, so leave them out.")
    assert not (tmp_path / "p.h5ad").exists()
    line = error_of(capsys, "export", folder / "effects.h5ad", "--truth", folder / "effects.h5ad",
                    "--cells-context-key", "cell_line", "-o", tmp_path / "ce")
    assert line.endswith("--cells-context-key goes with --cells (single cells); with --truth "
                         "there are no cells to draw, so leave it out.")
    ok(capsys, "export", folder / "effects.h5ad", "--truth", folder / "effects.h5ad", "-o",
       tmp_path / "ce")  # the advice, followed
    line = error_of(capsys, "export", folder / "effects.h5ad", "--truth", folder / "cells.h5ad",
                    "-o", tmp_path / "ce")
    assert "has no column 'context'" in line and "--context-col" in line
    line = error_of(capsys, "evaluate", folder / "effects.h5ad", folder / "effects.h5ad",
                    "--control", "control")
    assert "--control goes with --cell-eval" in line
    line = error_of(capsys, "evaluate", "--cell-eval", folder / "effects.h5ad",
                    folder / "effects.h5ad")
    assert "no obs column 'target_gene'" in line and "perturbation_col (--pert-col)" in line


def test_benchmark_split_scores_the_files_test_pairs(capsys, folder, tmp_path):
    ok(capsys, "benchmark", "--h5ad", folder / "cells.h5ad", "--context-key",
                  "cell_line", "--perturbation-key", "perturbation", "--control", "control",
                  "--split", folder / "split.toml", "--models", "mean,additive", "--n-trials",
                  "0", "--out", tmp_path / "bench", "--quiet")
    scores = pd.read_csv(tmp_path / "bench" / "scores.csv")
    assert set(scores["test_context"]) == {"U87MG"}
    assert scores["split"].nunique() == 1
    fits = pd.read_csv(tmp_path / "bench" / "fits.csv")
    assert fits["n_test"].tolist() == [7, 7] and fits["n_train"].tolist() == [20, 20]
    assert "split.toml" in (tmp_path / "bench" / "README.md").read_text()
