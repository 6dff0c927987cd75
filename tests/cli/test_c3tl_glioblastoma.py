"""The whole ``c3tl`` chain on the shipped real single cells, run as a user would (subprocesses).

Cells -> ``c3tl pseudobulk`` -> for each glioblastoma line a leave-one-line-out
split (the line keeps 2 of its 9 knockdowns in training) -> ``c3tl fit`` (C3TL
with its defaults, and the mean baseline) -> ``c3tl predict --pairs`` ->
``c3tl evaluate``; and the same line predicted by a model that never saw it,
from its 2 measured knockdowns passed with ``--observed``.
"""

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn import LeaveOneContextOut, load_glioblastoma_crispri

from ._helpers import c3tl_subprocess

anndata = pytest.importorskip("anndata")

LINES = ["A172", "T98G", "U87MG"]
METRICS = ["pearson_delta", "centered_pearson_delta", "discrimination_score",
           "top_k_overlap", "mse"]


def c3tl(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``c3tl ARGS`` in a subprocess with this checkout's package; fails the test on error."""
    done = c3tl_subprocess(*args, cwd=cwd)
    assert done.returncode == 0, f"c3tl {' '.join(map(str, args))}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Run the chain once; return the folder and every line's scores per model."""
    work = tmp_path_factory.mktemp("glioblastoma")
    load_glioblastoma_crispri().write_h5ad(work / "cells.h5ad")
    done = c3tl("pseudobulk", "cells.h5ad", "--context", "cell_line", "--perturbation",
                "perturbation", "--control", "control", "-o", "effects.h5ad", cwd=work)
    assert done.stdout.startswith("27 pairs in 3 contexts x 500 genes -> effects.h5ad; 0 "
                                  "group(s) dropped")

    # the user's split, with the package's splitter: each line keeps 2 of its 9 knockdowns
    effects = anndata.read_h5ad(work / "effects.h5ad")
    cv = LeaveOneContextOut(adaptation_fraction=0.2, random_state=0)
    jobs = []
    for train, test in cv.split(effects.obs):
        line = effects.obs["context"].iloc[test[0]]
        effects[train].write_h5ad(work / f"train_{line}.h5ad")
        effects[test].write_h5ad(work / f"test_{line}.h5ad")
        kept = effects.obs.iloc[train]
        kept[kept["context"] == line].to_csv(work / f"kept_{line}.csv", index=False)
        jobs += [(line, model) for model in ("c3tl", "mean")]
    # the six chains are independent: two at a time halves the wall time on a 2-core CI
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda job: fit_predict_evaluate(*job, work), jobs)
        scores = dict(zip(jobs, results, strict=True))
    return work, scores


def fit_predict_evaluate(line: str, model: str, work: Path) -> pd.DataFrame:
    """``c3tl fit``, ``predict --pairs`` and ``evaluate`` of one model on one line's split."""
    c3tl("fit", f"train_{line}.h5ad", "--model", model, "-o", f"{model}_{line}.c3tl",
         "--threads", "1", cwd=work)
    c3tl("predict", f"{model}_{line}.c3tl", "--pairs", f"test_{line}.h5ad", "-o",
         f"pred_{model}_{line}.h5ad", cwd=work)
    c3tl("evaluate", f"pred_{model}_{line}.h5ad", f"test_{line}.h5ad", "-o",
         f"scores_{model}_{line}.csv", cwd=work)
    return pd.read_csv(work / f"scores_{model}_{line}.csv", index_col=0)


def test_effects_file_holds_the_pairs_and_the_report(chain):
    work, _ = chain
    effects = anndata.read_h5ad(work / "effects.h5ad")
    assert effects.shape == (27, 500)
    assert list(effects.obs.columns) == ["context", "perturbation", "n_cells",
                                         "n_control_cells"]
    assert sorted(effects.obs["context"].unique()) == LINES
    assert (effects.obs["n_control_cells"] == 100).all()
    groups = effects.uns["pseudobulk_groups"]
    assert len(groups) == 30 and set(groups["status"]) == {"kept"}
    assert effects.uns["pseudobulk_control_mean"].shape == (3, 500)


def test_each_split_holds_out_seven_knockdowns(chain):
    work, _ = chain
    for line in LINES:
        test = anndata.read_h5ad(work / f"test_{line}.h5ad")
        train = anndata.read_h5ad(work / f"train_{line}.h5ad")
        assert test.n_obs == 7 and set(test.obs["context"]) == {line}
        assert train.n_obs == 20 and (train.obs["context"] == line).sum() == 2


def test_predictions_carry_pairs_and_gene_names(chain):
    work, _ = chain
    test = anndata.read_h5ad(work / "test_A172.h5ad")
    predicted = anndata.read_h5ad(work / "pred_c3tl_A172.h5ad")
    assert predicted.var_names.tolist() == test.var_names.tolist()
    assert predicted.obs[["context", "perturbation"]].to_numpy().tolist() == (
        test.obs[["context", "perturbation"]].to_numpy().tolist())


def test_scores_are_finite_and_c3tl_beats_the_mean_baseline(chain):
    _, scores = chain
    for (line, _), table in scores.items():
        assert table.index.tolist() == [line, "overall"]
        assert table.columns.tolist() == [*METRICS, "n_rows"]
        assert np.isfinite(table[METRICS].to_numpy()).all()
        assert table.loc[line, "n_rows"] == 7
    pearson = {key: table.loc["overall", "pearson_delta"] for key, table in scores.items()}
    better = [line for line in LINES if pearson[line, "c3tl"] > pearson[line, "mean"]]
    assert len(better) >= 2, pearson


@pytest.mark.parametrize("line", ["U87MG"])
def test_observed_measurements_of_an_unseen_line(chain, line):
    """A model that never saw the line predicts it from its 2 measured knockdowns, no refit."""
    work, scores = chain
    effects = anndata.read_h5ad(work / "effects.h5ad")
    effects[effects.obs["context"] != line].write_h5ad(work / f"others_{line}.h5ad")
    # the 2 knockdowns the line kept in training, as a user's CSV of measured effects
    kept = pd.read_csv(work / f"kept_{line}.csv")
    measured = effects[effects.obs["perturbation"].isin(kept["perturbation"])
                       & (effects.obs["context"] == line)]
    pd.concat([measured.obs[["context", "perturbation"]].reset_index(drop=True),
               measured.to_df().reset_index(drop=True)], axis=1).to_csv(
        work / f"observed_{line}.csv", index=False)

    c3tl("fit", f"others_{line}.h5ad", "-o", f"without_{line}.c3tl", "--threads", "1",
         cwd=work)
    for name, extra in (("observed", ["--observed", f"observed_{line}.csv"]),
                        ("zero_shot", [])):
        done = c3tl("predict", f"without_{line}.c3tl", "--pairs", f"test_{line}.h5ad",
                    *extra, "-o", f"pred_{name}_{line}.csv", cwd=work)
        c3tl("evaluate", f"pred_{name}_{line}.csv", f"test_{line}.h5ad", "-o",
             f"scores_{name}_{line}.csv", cwd=work)
        if name == "zero_shot":  # the line is unknown to the model, and it says so
            assert "never observed in fit" in done.stderr
    observed = pd.read_csv(work / f"scores_observed_{line}.csv", index_col=0)
    zero_shot = pd.read_csv(work / f"scores_zero_shot_{line}.csv", index_col=0)
    assert np.isfinite(observed[METRICS].to_numpy()).all()
    # the 2 measurements carry what the model knows about the line: without them it does
    # no better than the mean baseline, with them clearly better
    pearson = observed.loc[line, "pearson_delta"]
    assert pearson > zero_shot.loc[line, "pearson_delta"] + 0.1
    assert pearson > scores[line, "mean"].loc[line, "pearson_delta"] + 0.1
