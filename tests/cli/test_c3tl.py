"""The ``c3tl`` command: help, options and errors (small data, in process and as a subprocess)."""

import io
import sys

import numpy as np
import pandas as pd
import pytest

from c3tl_sklearn import MeanBaseline
from c3tl_sklearn.cli import _cmd_fit, build_c3tl_parser, c3tl_main
from c3tl_sklearn.cli._cmd_fit import parse_params
from c3tl_sklearn.cli._files import CommandError
from c3tl_sklearn.cli._progress import progress_bar
from c3tl_sklearn.datasets import make_synthetic_perturbations

from ._helpers import REPO, c3tl_subprocess, error_of, run

anndata = pytest.importorskip("anndata")

COMMANDS = ["pseudobulk", "fit", "predict", "evaluate", "export"]


def write_h5ad(path, values, obs: pd.DataFrame, genes=None) -> None:
    obs = obs.set_axis([str(i) for i in range(len(obs))])  # anndata wants string names
    var = pd.DataFrame(index=list(genes) if genes is not None else [
        f"g{j}" for j in range(values.shape[1])])
    anndata.AnnData(np.asarray(values, np.float32), obs=obs, var=var).write_h5ad(path)


@pytest.fixture
def effects(tmp_path):
    """A small effect table as .csv and .h5ad, 4 contexts x 6 perturbations x 8 genes."""
    X, Y = make_synthetic_perturbations(4, 6, 8, random_state=0)
    Y.columns = [f"g{j}" for j in range(8)]
    table = pd.concat([X, Y], axis=1)
    table.to_csv(tmp_path / "effects.csv", index=False)
    write_h5ad(tmp_path / "effects.h5ad", Y.to_numpy(), X.astype(str), Y.columns)
    return tmp_path, X, Y


# --------------------------------------------------------------------------- help
def test_top_level_help_lists_every_command():
    done = c3tl_subprocess("--help", cwd=REPO)
    assert done.returncode == 0, done.stderr
    for name in [*COMMANDS, "benchmark"]:
        assert name in done.stdout


@pytest.mark.parametrize("command, options", [
    ("pseudobulk", ["--context", "--perturbation", "--control", "--min-cells", "--n-top-genes",
                    "-o"]),
    ("fit", ["--model", "--set", "--context-col", "--perturbation-col", "--threads", "--seed"]),
    ("predict", ["--pairs", "--context", "--all-perturbations", "--observed", "-o"]),
    ("evaluate", ["--context-col", "--k", "-o", "--cell-eval", "--control"]),
    ("export", ["--cells", "--truth", "--control", "--cells-context-key", "--n-cells", "-o"]),
    ("benchmark", ["--protocol", "--n-trials", "--h5ad"]),
])
def test_each_command_has_help(capsys, command, options):
    with pytest.raises(SystemExit) as exc:
        c3tl_main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: c3tl {command}")
    for option in options:
        assert option in out


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        c3tl_main([])
    assert exc.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_parser_defaults():
    args = build_c3tl_parser().parse_args(["predict", "m.c3tl", "--pairs", "p.csv", "-o", "x"])
    assert (args.model, args.pairs, args.observed, args.quiet) == ("m.c3tl", "p.csv", None, False)


# ----------------------------------------------------------------------------- --set
def test_set_values_are_python_literals_or_words():
    params = parse_params(["lr=1e-3", "hidden_dims=(128, 64)", "residual=False",
                           "adaptation=ridge", "adaptation2='none'", "batch_size=None"])
    assert params == {"lr": 1e-3, "hidden_dims": (128, 64), "residual": False,
                      "adaptation": "ridge", "adaptation2": "none", "batch_size": None}


@pytest.mark.parametrize("item, message", [
    ("lr", "--set 'lr' is not NAME=VALUE; write e.g. --set lr=1e-3."),
    ("hidden_dims=(128", "--set 'hidden_dims=(128': '(128' is not a Python literal; write "
     "numbers as 1e-3, tuples as (128,64), strings as words or 'quoted'."),
])
def test_malformed_set_is_refused(item, message):
    with pytest.raises(CommandError) as exc:
        parse_params([item])
    assert str(exc.value) == message


# ---------------------------------------------------------------------------- errors
def test_missing_input_file(capsys, tmp_path):
    assert error_of(capsys, "fit", tmp_path / "nope.h5ad", "-o", tmp_path / "m.c3tl") == (
        f"c3tl fit: error: the effects file '{tmp_path / 'nope.h5ad'}' does not exist; check "
        "the path."
    )
    assert not (tmp_path / "m.c3tl").exists()


def test_unknown_column(capsys, effects):
    path, _, _ = effects
    line = error_of(capsys, "fit", path / "effects.h5ad", "-o", path / "m.c3tl",
                    "--context-col", "cell_line")
    assert line == (
        f"c3tl fit: error: the effects file '{path / 'effects.h5ad'}' has no column "
        "'cell_line' (its columns: 'context', 'perturbation'); name the label columns with "
        "--context-col and --perturbation-col."
    )


def test_unknown_parameter_names_the_parameters(capsys, effects):
    path, _, _ = effects
    line = error_of(capsys, "fit", path / "effects.csv", "-o", path / "m.c3tl", "--model",
                    "additive", "--set", "shrinkage=0.5", "--set", "lrr=1")
    assert line == ("c3tl fit: error: --set: AdditiveBaseline has no parameter 'lrr'; its "
                    "parameters: shrinkage.")
    # labels come from --context-col / --perturbation-col and the seed from --seed
    line = error_of(capsys, "fit", path / "effects.csv", "-o", path / "m.c3tl", "--set",
                    "context_col='x'", "--set", "random_state=3")
    assert line == ("c3tl fit: error: --set: context_col is set by --context-col; "
                    "random_state is set by --seed, not by --set.")
    # the advice, followed, fits
    status, _, err = run(capsys, "fit", path / "effects.csv", "-o", path / "m.c3tl", "--seed",
                         "3", "--set", "max_epochs=2", "--quiet")
    assert status == 0, err
    assert (path / "m.c3tl").is_file()


def test_options_a_command_would_ignore_are_refused(capsys, effects):
    path, _, _ = effects
    line = error_of(capsys, "fit", path / "effects.csv", "-o", path / "m.c3tl", "--model",
                    "mean", "--device", "cuda")
    assert line == ("c3tl fit: error: --device is C3TL's torch device; the mean baseline runs "
                    "on the CPU, so leave --device out.")
    assert not (path / "m.c3tl").exists()
    assert run(capsys, "fit", path / "effects.csv", "-o", path / "m.c3tl", "--model", "mean",
               "--quiet")[0] == 0  # the advice, followed
    line = error_of(capsys, "peers", "list", "--prefix", path)
    assert line.startswith("c3tl peers: error: --prefix and --pip-arg go with `c3tl peers "
                           "install`")


def test_invalid_parameter_value(capsys, effects):
    path, _, _ = effects
    line = error_of(capsys, "fit", path / "effects.csv", "-o", path / "m.c3tl",
                    "--set", "lr=-1")
    assert line == (f"c3tl fit: error: cannot fit c3tl on {path / 'effects.csv'}: The 'lr' "
                    "parameter of C3TLRegressor must be a float in the range (0.0, inf). "
                    "Got -1 instead.")


def test_single_cells_given_to_fit(capsys, tmp_path):
    obs = pd.DataFrame({"context": ["a"] * 3 + ["b"] * 3, "perturbation": ["x"] * 6})
    write_h5ad(tmp_path / "cells.h5ad", np.zeros((6, 2)), obs)
    line = error_of(capsys, "fit", tmp_path / "cells.h5ad", "-o", tmp_path / "m.c3tl")
    assert line == (
        f"c3tl fit: error: {tmp_path / 'cells.h5ad'} has 4 repeated (context, perturbation) "
        "pair(s), e.g. ('a', 'x'); an effect file has one row per pair. Single cells? Run "
        "`c3tl pseudobulk` on them first."
    )


def test_a_file_that_is_not_a_model(capsys, effects):
    path, _, _ = effects
    line = error_of(capsys, "predict", path / "effects.h5ad", "--pairs", path / "effects.csv",
                    "-o", path / "p.csv")
    assert line == (
        f"c3tl predict: error: '{path / 'effects.h5ad'}' is a data file (HDF5/.h5ad), not a "
        "model; pass the model written by `c3tl fit ... -o MODEL` first, the data go to "
        "--pairs or --observed."
    )
    line = error_of(capsys, "predict", path / "effects.csv", "--pairs", path / "effects.csv",
                    "-o", path / "p.csv")
    assert line.startswith(f"c3tl predict: error: cannot load the model: {path / 'effects.csv'}"
                           " is not a readable c3tl-sklearn model file")
    assert line.endswith(". Pass a file written by `c3tl fit`.")
    assert not (path / "p.csv").exists()


def test_output_never_overwrites_an_input(capsys, effects):
    path, _, _ = effects
    before = (path / "effects.csv").read_bytes()
    line = error_of(capsys, "evaluate", path / "effects.csv", path / "effects.h5ad", "-o",
                    path / "effects.csv")
    assert line == (f"c3tl evaluate: error: -o '{path / 'effects.csv'}' is also an input "
                    "file; choose another output name (inputs are never overwritten).")
    assert (path / "effects.csv").read_bytes() == before


def test_no_command_writes_over_its_inputs_or_its_other_outputs(capsys, effects):
    path, X, Y = effects
    MeanBaseline().fit(X, Y).save(path / "mean.c3tl")
    (path / "split.toml").write_text("[datasets]\n")
    (path / "ce").mkdir()
    files = {p: p.read_bytes() for p in path.iterdir() if p.is_file()}
    truth, model = path / "effects.h5ad", path / "mean.c3tl"
    # the truth of an export is an input like the others
    line = error_of(capsys, "predict", model, "--pairs", path / "effects.csv", "--cell-eval",
                    path / "ce", "--truth", truth, "-o", truth)
    assert line == (f"c3tl predict: error: -o '{truth}' is also an input file; choose another "
                    "output name (inputs are never overwritten).")
    # the export's files are outputs too: neither -o nor an input may be one of them
    line = error_of(capsys, "predict", model, "--pairs", path / "effects.csv", "--cell-eval",
                    path / "ce", "--truth", truth, "-o", path / "ce" / "pred.h5ad")
    assert line == (f"c3tl predict: error: --cell-eval '{path / 'ce'}' would write pred.h5ad "
                    f"over the -o file '{path / 'ce' / 'pred.h5ad'}'; choose another folder "
                    "(inputs are never overwritten).")
    (path / "ce" / "pred.h5ad").write_bytes(truth.read_bytes())
    files[path / "ce" / "pred.h5ad"] = truth.read_bytes()
    line = error_of(capsys, "export", path / "ce" / "pred.h5ad", "--truth", truth, "-o",
                    path / "ce")
    assert line == (f"c3tl export: error: -o '{path / 'ce'}' would write pred.h5ad over the "
                    f"predictions file '{path / 'ce' / 'pred.h5ad'}'; choose another folder "
                    "(inputs are never overwritten).")
    # the check sees the folders, not the names: the same folder through a link is refused
    (path / "ce_link").symlink_to(path / "ce")
    assert "would write pred.h5ad over the predictions file" in error_of(
        capsys, "export", path / "ce" / "pred.h5ad", "--truth", truth, "-o", path / "ce_link")
    # a model over the split it was fitted with, or over the test rows it wrote
    line = error_of(capsys, "fit", path / "effects.h5ad", "--split", path / "split.toml", "-o",
                    path / "split.toml")
    assert line.endswith("is also an input file; choose another output name (inputs are "
                         "never overwritten).")
    line = error_of(capsys, "fit", path / "effects.h5ad", "--split", path / "split.toml",
                    "--test-out", path / "t.h5ad", "-o", path / "t.h5ad")
    assert line == (f"c3tl fit: error: --test-out '{path / 't.h5ad'}' is also the -o file; "
                    "give each output its own name.")
    assert not (path / "t.h5ad").exists()
    assert {p: p.read_bytes() for p in files} == files


def test_a_device_the_machine_lacks_is_named_with_the_fix(capsys, effects):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path, X, Y = effects
    MeanBaseline().fit(X, Y).save(path / "mean.c3tl")
    line = error_of(capsys, "predict", path / "mean.c3tl", "--pairs", path / "effects.csv",
                    "-o", path / "p.csv", "--device", "cuda")
    assert line == ("c3tl predict: error: --device cuda cannot be used here (torch sees no "
                    "CUDA device); pass --device cpu.")
    status, _, err = run(capsys, "predict", path / "mean.c3tl", "--pairs", path / "effects.csv",
                         "-o", path / "p.csv", "--device", "cpu", "--quiet")
    assert status == 0, err
    assert (path / "p.csv").is_file()


def test_unsupported_output_format(capsys, effects):
    path, _, _ = effects
    MeanBaseline().fit(*effects[1:]).save(path / "mean.c3tl")
    line = error_of(capsys, "predict", path / "mean.c3tl", "--pairs", path / "effects.csv",
                    "-o", path / "p.xlsx")
    assert line == (f"c3tl predict: error: cannot write the predictions as "
                    f"'{path / 'p.xlsx'}': end the name with .h5ad or .csv or .tsv or .parquet.")


def test_observed_needs_a_model_that_adapts(capsys, effects):
    path, X, Y = effects
    MeanBaseline().fit(X, Y).save(path / "mean.c3tl")
    line = error_of(capsys, "predict", path / "mean.c3tl", "--pairs", path / "effects.csv",
                    "--observed", path / "effects.csv", "-o", path / "p.csv")
    assert line == (
        "c3tl predict: error: --observed needs a model that adapts without refitting (c3tl); "
        "a MeanBaseline does not: fit it on effects that include these measurements instead."
    )


def test_context_needs_all_perturbations_and_unknown_perturbations(capsys, effects, tmp_path):
    path, X, Y = effects
    MeanBaseline().fit(X, Y).save(path / "mean.c3tl")
    assert error_of(capsys, "predict", path / "mean.c3tl", "--context", "ctx0", "-o",
                    path / "p.csv") == ("c3tl predict: error: --context needs "
                                        "--all-perturbations (or list pairs with --pairs).")
    pd.DataFrame({"context": ["ctx0"], "perturbation": ["new"]}).to_csv(path / "q.csv",
                                                                       index=False)
    line = error_of(capsys, "predict", path / "mean.c3tl", "--pairs", path / "q.csv", "-o",
                    path / "p.csv")
    assert line.startswith("c3tl predict: error: cannot predict: ")
    assert "'new'" in line


def test_evaluate_refuses_pairs_that_do_not_match(capsys, effects):
    path, X, Y = effects
    keep = X["context"] != X["context"].iloc[0]
    pd.concat([X[keep], Y[keep]], axis=1).to_csv(path / "part.csv", index=False)
    line = error_of(capsys, "evaluate", path / "effects.csv", path / "part.csv")
    assert line.startswith("c3tl evaluate: error: the pairs do not match: 6 predicted pair(s) "
                           "are not in the truth ((")
    assert line.endswith("0 truth pair(s) are not predicted (); predict exactly the truth's "
                         "pairs (c3tl predict MODEL --pairs TRUTH -o PREDICTIONS).")


def test_pseudobulk_errors_name_the_column_and_the_label(capsys, tmp_path):
    obs = pd.DataFrame({"line": ["a", "a", "b", "b"], "drug": ["DMSO", "x"] * 2})
    write_h5ad(tmp_path / "cells.h5ad", np.ones((4, 2)), obs)
    base = ["pseudobulk", tmp_path / "cells.h5ad", "--perturbation", "drug", "-o",
            tmp_path / "e.h5ad", "--min-cells", "1"]
    line = error_of(capsys, *base, "--context", "cell_line", "--control", "DMSO")
    assert line == (f"c3tl pseudobulk: error: {tmp_path / 'cells.h5ad'}: obs has no column "
                    "'cell_line'; available columns: ['drug', 'line']. Pass the obs column "
                    "that holds the labels.")
    line = error_of(capsys, *base, "--context", "line", "--control", "NTC")
    assert line.startswith(f"c3tl pseudobulk: error: {tmp_path / 'cells.h5ad'}: control "
                           "label(s) ['NTC'] not found in obs['drug']")
    assert not (tmp_path / "e.h5ad").exists()


def test_errors_have_no_traceback_in_a_subprocess(tmp_path):
    done = c3tl_subprocess("predict", tmp_path / "missing.c3tl", "--pairs", "x.csv", "-o",
                           "y.csv", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == (f"c3tl predict: error: the model file "
                           f"'{tmp_path / 'missing.c3tl'}' does not exist; check the path.\n")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- small round trip
@pytest.mark.parametrize("fmt", ["csv", "h5ad", "parquet"])
def test_fit_predict_evaluate_round_trip(capsys, effects, fmt):
    path, X, Y = effects
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
        pd.concat([X, Y], axis=1).to_parquet(path / "effects.parquet", index=False)
    source = path / f"effects.{fmt}"
    status, _, err = run(capsys, "fit", source, "--model", "mean", "-o", path / "m.c3tl")
    assert status == 0, err
    assert "fitted MeanBaseline on 24 pairs in 4 contexts x 8 genes" in err
    # the same prediction as the library's, gene names kept, in the format asked for
    status, _, err = run(capsys, "predict", path / "m.c3tl", "--pairs", source, "-o",
                         path / f"p.{fmt}")
    assert status == 0, err
    expected = MeanBaseline().fit(X, Y).predict(X)
    if fmt == "h5ad":
        predicted = anndata.read_h5ad(path / "p.h5ad")
        assert list(predicted.obs.columns) == ["context", "perturbation"]
        values, genes = predicted.X, list(predicted.var_names)
    else:
        table = pd.read_csv(path / "p.csv") if fmt == "csv" else pd.read_parquet(
            path / "p.parquet")
        assert list(table.columns[:2]) == ["context", "perturbation"]
        values, genes = table.iloc[:, 2:].to_numpy(), list(table.columns[2:])
    assert genes == list(Y.columns)
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    status, out, err = run(capsys, "evaluate", path / f"p.{fmt}", source, "-o",
                           path / "scores.csv")
    assert status == 0, err
    scores = pd.read_csv(path / "scores.csv", index_col=0)
    assert scores.index.tolist() == ["ctx0", "ctx1", "ctx2", "ctx3", "overall"]
    assert scores.columns.tolist() == ["pearson_delta", "centered_pearson_delta",
                                       "discrimination_score", "top_k_overlap", "mse",
                                       "n_rows"]
    assert "overall" in out and "pearson_delta" in out


def test_threads_are_limited_during_the_command_and_restored(capsys, effects, monkeypatch):
    import torch

    from c3tl_sklearn import C3TLRegressor

    path = effects[0]
    original_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    original = C3TLRegressor.fit

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(C3TLRegressor, "fit", spy)
    try:
        status, _, err = run(capsys, "fit", path / "effects.csv", "--threads", "1",
                             "--set", "max_epochs=2", "-o", path / "m.c3tl")
        assert status == 0, err
        # c3tl_main called from Python leaves the caller's threads as they were
        # (the fallback's sub-fits are fits too: every one ran on the limit)
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original_threads)


@pytest.mark.parametrize("suffix", [".csv.gz", ".tsv.bz2", ".csv.xz"])
def test_compressed_outputs_are_compressed(capsys, effects, suffix):
    path, X, Y = effects
    assert run(capsys, "fit", path / "effects.csv", "--model", "mean", "-o",
               path / "m.c3tl")[0] == 0
    out = path / f"p{suffix}"
    status, _, err = run(capsys, "predict", path / "m.c3tl", "--pairs", path / "effects.csv",
                         "-o", out)
    assert status == 0, err
    # pandas reads it back by its suffix, and it is not the plain text
    sep = "\t" if ".tsv" in suffix else ","
    table = pd.read_csv(out, sep=sep)
    np.testing.assert_allclose(table.iloc[:, 2:].to_numpy(),
                               MeanBaseline().fit(X, Y).predict(X), rtol=1e-6)
    assert not out.read_bytes().startswith(b"context")
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == []


def test_evaluate_matches_rows_and_genes_in_any_order(capsys, effects):
    path, X, Y = effects
    order = np.random.default_rng(0).permutation(len(X))
    shuffled = pd.concat([X, Y], axis=1).iloc[order][
        ["perturbation", "context", *reversed(Y.columns)]]
    shuffled.to_csv(path / "shuffled.csv", index=False)
    status, out, _ = run(capsys, "evaluate", path / "shuffled.csv", path / "effects.csv")
    assert status == 0
    overall = out.strip().splitlines()[-1].split()
    # identical effects: perfect correlation and discrimination, zero error
    assert overall[0] == "overall" and overall[1] == "1.0000" and overall[-2] == "0.0000"


def test_predict_all_perturbations_of_a_context(capsys, effects):
    path, X, Y = effects
    MeanBaseline().fit(X, Y).save(path / "mean.c3tl")
    status, _, _ = run(capsys, "predict", path / "mean.c3tl", "--context", "ctx1",
                       "--context", "ctx2", "--all-perturbations", "-o", path / "p.csv")
    assert status == 0
    table = pd.read_csv(path / "p.csv")
    assert table["context"].tolist() == ["ctx1"] * 6 + ["ctx2"] * 6
    assert table["perturbation"].tolist() == sorted(X["perturbation"].unique()) * 2


# ------------------------------------------------------------------------- progress
class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def eager_bar(*args, **kwargs):
    """The command's bar, drawn at every update (tqdm redraws at most every 0.1 s)."""
    bar = progress_bar(*args, **kwargs)
    if bar is not None:
        bar.mininterval = 0
    return bar


def test_progress_bars_on_a_terminal_only(capsys, effects, monkeypatch):
    path, _, _ = effects
    argv = ["fit", path / "effects.csv", "-o", path / "m.c3tl", "--set", "max_epochs=3",
            "--set", "validation_fraction=0"]
    status, _, err = run(capsys, *argv)
    assert status == 0
    # not a terminal (as here, in a log or a pipe): the one status line, no bar
    assert "\r" not in err and err.count("\n") == 1
    assert "fitted C3TLRegressor on 24 pairs in 4 contexts x 8 genes" in err
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_cmd_fit, "progress_bar", eager_bar)
    assert c3tl_main([str(a) for a in argv]) == 0
    shown = terminal.getvalue()
    assert "fit C3TL" in shown and "3/3" in shown and "epoch" in shown
    # the bar's callback is a live object: the saved model must not hold it
    from c3tl_sklearn import C3TLRegressor

    assert C3TLRegressor.load(path / "m.c3tl").callbacks is None
    terminal.truncate(0)
    assert c3tl_main([str(a) for a in argv] + ["--quiet"]) == 0
    assert terminal.getvalue() == ""


def test_pseudobulk_progress_and_report(capsys, tmp_path, monkeypatch):
    obs = pd.DataFrame({"line": ["a"] * 5 + ["b"] * 5,
                        "drug": ["DMSO", "DMSO", "x", "x", "y"] * 2})
    values = np.arange(20, dtype=np.float32).reshape(10, 2) / 10
    write_h5ad(tmp_path / "cells.h5ad", values, obs)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    status = c3tl_main(["pseudobulk", str(tmp_path / "cells.h5ad"), "--context", "line",
                        "--perturbation", "drug", "--control", "DMSO", "--min-cells", "2",
                        "-o", str(tmp_path / "e.h5ad")])
    assert status == 0
    assert "pseudo-bulk" in terminal.getvalue() and "10/10" in terminal.getvalue()
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"2 pairs in 2 contexts x 2 genes -> {tmp_path / 'e.h5ad'}; 2 group(s) dropped "
        "(report in uns['pseudobulk_groups'])",
        "  dropped pair (a, y): 1 cells, too_few_cells",
        "  dropped pair (b, y): 1 cells, too_few_cells",
    ]
    effects = anndata.read_h5ad(tmp_path / "e.h5ad")
    assert effects.obs["perturbation"].tolist() == ["x", "x"]
    # row i is (2i, 2i + 1) / 10: x (rows 2, 3) minus DMSO (rows 0, 1) is 0.4 in each line
    np.testing.assert_allclose(effects.X, [[0.4, 0.4], [0.4, 0.4]], rtol=1e-6)
    groups = effects.uns["pseudobulk_groups"]
    assert groups["status"].tolist().count("too_few_cells") == 2
    assert effects.uns["pseudobulk_control_mean"].shape == (2, 2)


def test_output_that_is_a_folder_or_cannot_be_written(capsys, effects, monkeypatch):
    path, _, _ = effects
    assert error_of(capsys, "fit", path / "effects.csv", "--model", "mean", "-o", path) == (
        f"c3tl fit: error: -o '{path}' is a folder; give a file name, e.g. "
        f"'{path / 'model.c3tl'}'."
    )
    assert error_of(capsys, "fit", path / "effects.csv", "-o", path / "no" / "m.c3tl") == (
        f"c3tl fit: error: the folder of '{path / 'no' / 'm.c3tl'}' does not exist; create it "
        "first."
    )

    def refuse(self, target):  # what a read-only folder or a full disk does to save()
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(MeanBaseline, "save", refuse)
    line = error_of(capsys, "fit", path / "effects.csv", "--model", "mean", "-o",
                    path / "m.c3tl")
    assert line == (f"c3tl fit: error: Permission denied ({path / 'm.c3tl'}); check the path, "
                    "its permissions and the free space.")


def test_progress_bar_learns_the_epochs_auto_allows(capsys, effects, monkeypatch):
    import c3tl_sklearn.estimator as estimator

    path, _, _ = effects
    monkeypatch.setattr(estimator, "AUTO_MAX_EPOCHS", 7)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(_cmd_fit, "progress_bar", eager_bar)
    argv = ["fit", path / "effects.csv", "-o", path / "m.c3tl", "--set", "validation_fraction=0"]
    assert c3tl_main([str(a) for a in argv]) == 0  # max_epochs="auto": 7 here
    assert "7/7" in terminal.getvalue()
