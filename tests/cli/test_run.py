"""End-to-end tests of ``c3tl-benchmark`` (``c3tl_sklearn.cli``) on small synthetic data."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from ..conftest import HANG_TIMEOUT_S

pytest.importorskip("optuna")
matplotlib_image = pytest.importorskip("matplotlib.image")

from c3tl_sklearn.cli import (  # noqa: E402
    METRICS,
    MODELS,
    BenchmarkConfig,
    main,
    run_benchmark,
)
from c3tl_sklearn.datasets import make_synthetic_perturbations  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCORE_COLUMNS = ["model", "split", "test_context", "n_train_contexts", "adaptation_fraction",
                 "metric", "value"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--data", "synthetic", "--synthetic-shape", "5,30,20", "--seed", "0"]


def check_png(path: Path) -> np.ndarray:
    assert path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib_image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0  # something was drawn
    return image


def table_rows(markdown: str) -> dict[str, list[str]]:
    """First cell of every body row of the Markdown tables -> the other cells."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("| Model"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.setdefault(cells[0], []).append(cells[1:])
    return rows


@pytest.fixture(scope="module")
def heldout_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("heldout")
    argv = [*TINY, "--protocol", "heldout", "--models", "all", "--n-trials", "2",
            "--max-epochs", "5", "--n-test-contexts", "3", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    return out, argv


def test_heldout_writes_every_file(heldout_run, capsys):
    out, argv = heldout_run
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "fits.csv", "params.json", "scatter.png", "scores.csv", "table.md"]

    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == len(MODELS) * 3 * len(METRICS)
    assert set(scores["model"]) == set(MODELS)
    assert set(scores["metric"]) == set(METRICS)
    assert scores["value"].notna().all() and np.isfinite(scores["value"]).all()
    assert (scores.groupby(["model", "metric"]).size() == 3).all()
    assert scores["test_context"].nunique() == 3
    assert set(scores["test_context"]) <= {f"ctx{i}" for i in range(5)}
    assert scores.groupby("split")["test_context"].nunique().eq(1).all()
    assert set(scores["n_train_contexts"]) == {4}
    assert set(scores["adaptation_fraction"]) == {0.1}
    pearson = scores[scores["metric"] == "pearson_delta"]["value"]
    assert pearson.between(-1, 1).all() and pearson.mean() > 0.5

    fits = pd.read_csv(out / "fits.csv")
    assert len(fits) == len(MODELS) * 3
    c3tl = fits[fits["model"] == "c3tl"]
    assert (c3tl["n_epochs"] <= 5).all() and (c3tl["seconds_per_epoch"] > 0).all()
    assert fits.loc[fits["model"] != "c3tl", "seconds_per_epoch"].isna().all()
    assert (fits["fit_seconds"] > 0).all()

    table = (out / "table.md").read_text()
    rows = table_rows(table)
    assert set(rows) == set(MODELS.values())
    header = next(line for line in table.splitlines() if line.startswith("| Model"))
    assert "Centred Pearson Δ" in header and "s / epoch" in header and "Fit s / fold" in header
    for label, (cells,) in rows.items():
        assert len(cells) == len(METRICS) + 3
        assert re.fullmatch(r"\**-?\d\.\d{3} ± \d\.\d{3}\**", cells[0]), (label, cells[0])
    assert rows["C3TL"][0][len(METRICS)] != "-"  # seconds per epoch
    assert rows["Mean baseline"][0][len(METRICS)] == "-"
    assert "**" in table  # the best of a column is marked

    params = json.loads((out / "params.json").read_text())
    assert params["protocol"] == "heldout" and params["n_trials"] == 2
    models = params["models"]
    assert set(models) == set(MODELS)
    assert models["mean"]["source"] == "default" and models["mean"]["params"] == {}
    c3tl_params = models["c3tl"]
    assert c3tl_params["source"] == "tuned" and c3tl_params["n_trials"] == 2
    assert set(c3tl_params["params"]) == {"lr", "weight_decay", "dropout", "latent_dim",
                                          "hidden_dims", "leave_target_out"}
    tuned_on = c3tl_params["tuned_on"]
    first = scores.loc[scores["split"] == 0, "test_context"].iloc[0]
    assert tuned_on["test_context"] == first
    assert first not in tuned_on["inner_test_contexts"]
    assert len(tuned_on["inner_test_contexts"]) == 2
    assert set(models["additive"]["params"]) == {"shrinkage"}

    check_png(out / "scatter.png")

    readme = (out / "README.md").read_text()
    assert "c3tl-benchmark " + " ".join(argv) in readme
    assert re.search(r"Wall time: \d+\.\d s", readme)
    assert "threads: torch 1" in readme
    for label in MODELS.values():
        assert f"| {label} |" in readme


def test_heldout_reuses_a_params_file(heldout_run, tmp_path):
    out, _ = heldout_run
    again = tmp_path / "again"
    argv = [*TINY, "--models", "additive,linear", "--params", str(out / "params.json"),
            "--n-test-contexts", "3", "--out", str(again), "--quiet"]
    assert main(argv) == 0
    params = json.loads((again / "params.json").read_text())["models"]
    first = json.loads((out / "params.json").read_text())["models"]
    for name in ("additive", "linear"):
        assert params[name]["source"] == "given"
        assert params[name]["params"] == first[name]["params"]
    # same data, splits and parameters: the same scores as the first run
    old = pd.read_csv(out / "scores.csv")
    new = pd.read_csv(again / "scores.csv")
    merged = new.merge(old, on=["model", "split", "metric"], suffixes=("", "_old"))
    assert len(merged) == len(new) == 2 * 3 * len(METRICS)
    np.testing.assert_allclose(merged["value"], merged["value_old"], rtol=1e-10)


def test_scarcity_protocol(tmp_path, capsys):
    out = tmp_path / "scarcity"
    argv = [*TINY, "--protocol", "scarcity", "--models", "c3tl,mean,additive,linear",
            "--n-train-contexts", "3,2", "--adaptation-fractions", "0.5,0.2,0.1",
            "--n-test-contexts", "2", "--n-trials", "2", "--max-epochs", "5",
            "--out", str(out)]
    assert main(argv) == 0
    progress = capsys.readouterr().err
    assert "tuning trial 1" in progress and re.search(r"\[\s+\d+\.\ds\]", progress)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "fits.csv", "params.json", "scarcity.png", "scores.csv", "table.md"]
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == 4 * 2 * 2 * 3 * len(METRICS)
    assert set(scores["n_train_contexts"]) == {3, 2}
    assert set(scores["adaptation_fraction"]) == {0.5, 0.2, 0.1}
    assert scores["test_context"].nunique() == 2
    cells = scores.groupby(["model", "n_train_contexts", "adaptation_fraction", "metric"])
    assert (cells.size() == 2).all()  # one value per test context in every cell
    # the mean baseline ignores the target's adaptation rows: flat across fractions
    mean = scores[(scores["model"] == "mean") & (scores["metric"] == "pearson_delta")]
    assert mean.groupby(["test_context", "n_train_contexts"])["value"].nunique().eq(1).all()
    table = (out / "table.md").read_text()
    assert table.count("### ") == 2
    rows = table_rows(table)
    assert set(rows) == {MODELS[m] for m in ("c3tl", "mean", "additive", "linear")}
    assert all(len(r) == 2 * 2 for r in rows.values())  # 2 sizes x 2 metric tables
    assert "| 50% | 20% | 10% |" in table
    check_png(out / "scarcity.png")
    params = json.loads((out / "params.json").read_text())["models"]
    tuned_on = params["c3tl"]["tuned_on"]
    assert tuned_on["n_train_contexts"] == 3 and tuned_on["adaptation_fraction"] == 0.1
    assert "shared nested training sets" in (out / "README.md").read_text()


def test_scarcity_with_few_contexts_draws_training_sets_per_test_context(tmp_path):
    X, Y = make_synthetic_perturbations(4, 25, 12, random_state=3)
    result = run_benchmark(X, Y, BenchmarkConfig(protocol="scarcity", models=["additive"],
                                                 n_trials=0, n_train_contexts=(3, 2),
                                                 adaptation_fractions=(0.4, 0.1)),
                           progress=False, out_dir=tmp_path)
    assert result.scores["test_context"].nunique() == 4  # every context is tested
    assert len(result.scores) == 4 * 2 * 2 * len(METRICS)
    assert "each test context draws its own" in (tmp_path / "README.md").read_text()
    with pytest.raises(ValueError, match="at most 3 can train"):
        run_benchmark(X, Y, BenchmarkConfig(protocol="scarcity", models=["mean"], n_trials=0,
                                            n_train_contexts=(4,)), progress=False)


@pytest.mark.parametrize("option, value", [
    ("isolate", "no"), ("tune_only", "yes"), ("seed", -1), ("n_jobs", "2"), ("n_jobs", 0),
    ("max_epochs", 0), ("peer_options", [("state", "max_steps", 4)]), ("device", 0),
])
def test_a_config_option_of_the_wrong_kind_is_refused_by_name(option, value):
    # a truthy string for a flag would otherwise switch it on without a word
    with pytest.raises(InvalidParameterError, match=f"The '{option}' parameter of "
                       "BenchmarkConfig must be"):
        BenchmarkConfig(**{option: value})


def test_n_jobs_takes_joblibs_counts_but_not_zero():
    assert [BenchmarkConfig(n_jobs=n).n_jobs for n in (None, 1, 4, -1, -2)] == [
        None, 1, 4, -1, -2]


def test_csv_and_parquet_inputs_give_the_same_scores(tmp_path):
    pytest.importorskip("pyarrow")
    X, Y = make_synthetic_perturbations(4, 20, 10, random_state=5)
    X = X.rename(columns={"context": "cell_line", "perturbation": "knockdown"})
    X.join(Y).to_csv(tmp_path / "table.csv", index=False)
    X.assign(batch="b1").to_parquet(tmp_path / "index.parquet")  # extra columns are ignored
    Y.to_parquet(tmp_path / "effects.parquet")
    common = ["--context-col", "cell_line", "--perturbation-col", "knockdown",
              "--models", "mean,additive", "--n-trials", "0", "--quiet"]
    assert main(["--data", str(tmp_path / "table.csv"), *common,
                 "--out", str(tmp_path / "a")]) == 0
    assert main(["--index", str(tmp_path / "index.parquet"), "--effects",
                 str(tmp_path / "effects.parquet"), *common,
                 "--out", str(tmp_path / "b")]) == 0
    a = pd.read_csv(tmp_path / "a" / "scores.csv")
    b = pd.read_csv(tmp_path / "b" / "scores.csv")
    assert len(a) == 2 * 4 * len(METRICS)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["test_context"]) == set(X["cell_line"])
    assert "index.parquet" in (tmp_path / "b" / "README.md").read_text()


def test_h5ad_input_is_pseudobulked(tmp_path):
    anndata = pytest.importorskip("anndata")
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        [(c, p) for c in ("A", "B", "C") for p in ("NTC", "p1", "p2", "p3", "p4", "p5")
         for _ in range(12)], columns=["cell_line", "gene"])
    obs.index = [f"cell{i}" for i in range(len(obs))]
    counts = rng.poisson(3.0, size=(len(obs), 12)).astype(np.float32)
    adata = anndata.AnnData(X=counts, obs=obs)
    adata.var_names = [f"g{i}" for i in range(12)]
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    out = tmp_path / "out"
    with pytest.warns(UserWarning):  # raw counts with transform=None are flagged
        status = main(["--h5ad", str(path), "--context-key", "cell_line", "--perturbation-key",
                       "gene", "--control", "NTC", "--models", "mean,additive",
                       "--n-trials", "0", "--quiet", "--out", str(out)])
    assert status == 0
    scores = pd.read_csv(out / "scores.csv")
    assert set(scores["test_context"]) == {"A", "B", "C"}
    assert "pseudo-bulked by obs['cell_line']" in (out / "README.md").read_text()


def test_tuning_needs_three_contexts():
    X, Y = make_synthetic_perturbations(2, 20, 6, random_state=0)
    with pytest.raises(ValueError, match="at least 3 contexts"):
        run_benchmark(X, Y, BenchmarkConfig(models=["additive"], n_trials=2), progress=False)
    result = run_benchmark(X, Y, BenchmarkConfig(models=["additive"], n_trials=0),
                           progress=False)
    assert len(result.scores) == 2 * len(METRICS)


def test_command_line_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--models", "c3tl,forest"])
    assert exc.value.code == 2
    assert "unknown model(s) ['forest']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--synthetic-shape", "3,4"])
    assert "three integers" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--data", "synthetic", "--h5ad", "cells.h5ad"],
     "give one data source; got --data and --h5ad."),
    (["--data", "lincs", "--index", "x.csv", "--effects", "y.csv"],
     "give one data source; got --data and --index/--effects."),
    (["--data", "synthetic", "--context-key", "line", "--min-cells", "5"],
     "--context-key, --min-cells say how to read single cells and go with --h5ad CELLS.h5ad; "
     "leave them out for an effect table."),
    (["--transform", "log1p"], "--transform says how to read single cells and goes with "
     "--h5ad CELLS.h5ad; leave it out for an effect table."),
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--n-jobs", "0"], "--n-jobs 0 runs no fit; give 1 or more, or -1 for one per core"),
    (["--protocol", "scarcity", "--split", "s.toml"],
     "--split replaces the held-out protocol's folds; use it with --protocol heldout"),
])
def test_flags_the_run_cannot_use_are_refused_before_it_starts(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--inner-folds", "0", "--inner-folds must be an int in the range [1, inf). Got 0"),
    ("--n-test-contexts", "0", "--n-test-contexts must be an int in the range [1, inf) or None"),
])
def test_an_option_the_config_refuses_is_named_by_its_flag(capsys, tmp_path, flag, value,
                                                            message):
    assert main([*TINY, "--models", "mean", flag, value, "--out", str(tmp_path / "r")]) == 2
    assert f"c3tl-benchmark: error: {message}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_is_refused_before_the_run(capsys, tmp_path):
    (tmp_path / "results").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main([*TINY, "--models", "mean", "--out", str(tmp_path / "results")])
    assert exc.value.code == 2
    assert "is a file; give a folder for the results" in capsys.readouterr().err
    assert (tmp_path / "results").read_text() == "mine"


def test_a_second_run_into_a_folder_replaces_the_first_runs_files(tmp_path):
    out = tmp_path / "run"
    assert main([*TINY, "--models", "mean", "--n-trials", "0", "--quiet", "--out",
                 str(out)]) == 0
    assert (out / "scores.csv").is_file() and (out / "table.md").is_file()
    (out / "notes.txt").write_text("mine")
    # a tuning-only run writes no scores: the first run's must not stay beside its README
    assert main([*TINY, "--models", "mean", "--n-trials", "0", "--quiet", "--tune-only",
                 "--out", str(out)]) == 0
    assert not (out / "scores.csv").exists() and not (out / "table.md").exists()
    assert (out / "params.json").is_file() and (out / "README.md").is_file()
    assert (out / "notes.txt").read_text() == "mine"  # not a result file: left alone


def test_module_runs_as_a_command():
    done = subprocess.run([sys.executable, "-m", "c3tl_sklearn.cli", "benchmark", "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=HANG_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    for option in ("--protocol", "--n-trials", "--storage", "--h5ad", "--max-epochs"):
        assert option in done.stdout


def test_storage_makes_a_stopped_benchmark_resume(tmp_path):
    X, Y = make_synthetic_perturbations(4, 20, 10, random_state=1)
    storage = str(tmp_path / "bench.log")
    config = BenchmarkConfig(models=["additive"], n_test_contexts=2, storage=storage)
    first = run_benchmark(X, Y, config.replace(n_trials=3), progress=False)
    assert first.params["additive"]["n_trials"] == 3
    # the same run again finds the study complete and runs no new trial
    again = run_benchmark(X, Y, config.replace(n_trials=3), progress=False)
    assert again.params["additive"]["n_trials"] == 3
    assert again.params["additive"]["params"] == first.params["additive"]["params"]
    # a larger budget tops the study up
    more = run_benchmark(X, Y, config.replace(n_trials=5), progress=False)
    assert more.params["additive"]["n_trials"] == 5
    assert more.params["additive"]["study_name"] == "c3tl-benchmark-heldout-additive"


def test_tune_only_workers_then_evaluation(tmp_path):
    X, Y = make_synthetic_perturbations(4, 20, 10, random_state=1)
    X.join(Y).to_csv(tmp_path / "data.csv", index=False)
    common = ["--data", str(tmp_path / "data.csv"), "--models", "mean,additive",
              "--n-trials", "3", "--storage", str(tmp_path / "tuning.log"), "--quiet"]
    assert main([*common, "--tune-only", "--out", str(tmp_path / "tune")]) == 0
    assert sorted(p.name for p in (tmp_path / "tune").iterdir()) == ["README.md",
                                                                     "params.json"]
    tuned = json.loads((tmp_path / "tune" / "params.json").read_text())["models"]
    assert tuned["additive"]["n_trials"] == 3
    assert "no evaluation was run" in (tmp_path / "tune" / "README.md").read_text()
    assert main([*common, "--out", str(tmp_path / "eval")]) == 0
    final = json.loads((tmp_path / "eval" / "params.json").read_text())["models"]
    assert final["additive"]["n_trials"] == 3  # the study was complete: no new trial
    assert final["additive"]["params"] == tuned["additive"]["params"]
    assert len(pd.read_csv(tmp_path / "eval" / "scores.csv")) == 2 * 4 * len(METRICS)
