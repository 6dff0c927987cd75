"""Hostile inputs and conditions at the package's boundaries, each with its exact outcome.

Every case here was once silent, crashed with a foreign library's message,
misled, or let a small file take unbounded memory. Each test pins the
outcome now: the exact message, and where the message gives advice, the
advice is followed and the result checked.
"""

from __future__ import annotations

import re
import signal
import warnings

import numpy as np
import pandas as pd
import pytest
from skorch.callbacks import Callback

from c3tl_sklearn import C3TLEnsemble, C3TLRegressor
from c3tl_sklearn.callbacks import TrainingDivergedError, TrainingGuard, TrainingInterrupted
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.metrics import get_scorer

from .conftest import HANG_TIMEOUT_S, warns_at


def tiny(**params) -> C3TLRegressor:
    base = dict(max_epochs=3, hidden_dims=(4,), latent_dim=2, random_state=0)
    return C3TLRegressor(**{**base, **params})


@pytest.fixture(autouse=True)
def sigint_as_at_a_terminal():
    """Python's own SIGINT handler, as in a process started at a terminal.

    A process started in the background by a non-interactive shell (nohup jobs,
    some CI runners) inherits SIGINT ignored: a real Ctrl-C could not reach it,
    the guard rightly leaves an ignored signal alone, and the interruption tests
    below would see a fit that was never interrupted.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="module")
def data():
    return make_synthetic_perturbations(4, 12, 8, random_state=1)


class CtrlCAt(Callback):
    """Sends this process a real SIGINT (what Ctrl-C does) at the end of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            signal.raise_signal(signal.SIGINT)


class StopAt(Callback):
    """skorch's own idiom to stop training: raise KeyboardInterrupt from a callback."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


# ------------------------------------------------------------------------ interruption

INTERRUPTED = (
    "fit was interrupted (Ctrl-C) after 2 of 5 epochs; no model was kept. To keep the "
    "partially trained model instead, pass callbacks=[TrainingGuard(keep_on_interrupt=True)] "
    "(from c3tl_sklearn.callbacks)."
)


def test_ctrl_c_during_fit_is_raised_and_leaves_no_model(data):
    X, Y = data
    model = tiny(max_epochs=5, callbacks=[CtrlCAt(2)])
    with pytest.raises(TrainingInterrupted, match=f"^{re.escape(INTERRUPTED)}$"):
        model.fit(X, Y)
    assert not [name for name in vars(model) if name.endswith("_")]
    # Python's own handler is back: a later Ctrl-C outside fit is a plain KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_sigint_stays_ignored_and_the_fit_runs_to_its_end(data):
    # whoever set SIG_IGN (nohup, a scheduler) decided what Ctrl-C does
    X, Y = data
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    model = tiny(max_epochs=4, callbacks=[CtrlCAt(2)], fallback=None).fit(X, Y)
    assert model.n_epochs_ == 4
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_ctrl_c_during_refit_discards_the_earlier_fit(data):
    X, Y = data
    model = tiny(max_epochs=5).fit(X, Y)
    model.set_params(callbacks=[CtrlCAt(2)])
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        model.predict(X)


def test_following_the_interrupt_advice_keeps_the_partial_model(data):
    X, Y = data
    model = tiny(max_epochs=5, callbacks=[TrainingGuard(keep_on_interrupt=True), CtrlCAt(2)])
    with warns_at(__file__, UserWarning, match=re.escape(
        "fit was interrupted (Ctrl-C) after 2 of 5 epochs; the partially trained model is "
        "kept, as keep_on_interrupt=True asks."
    )):
        model.fit(X, Y)
    assert model.n_epochs_ == 2
    assert np.isfinite(model.predict(X)).all()


def test_a_callback_stopping_training_is_not_an_interruption(data):
    X, Y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = tiny(max_epochs=5, callbacks=[StopAt(2)]).fit(X, Y)
    assert model.n_epochs_ == 2


def test_early_stopping_is_not_an_interruption(data):
    X, Y = data
    model = tiny(max_epochs=200, patience=1, validation_fraction=0.3, lr=0.3).fit(X, Y)
    assert model.n_epochs_ < 200


def test_ctrl_c_in_cross_val_score_stops_it(data):
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import LeaveOneContextOut

    X, Y = data
    with pytest.raises(KeyboardInterrupt):
        cross_val_score(tiny(max_epochs=5, callbacks=[CtrlCAt(2)]), X, Y,
                        cv=LeaveOneContextOut(), scoring=get_scorer("pearson_delta"))


def test_ctrl_c_in_an_ensemble_member_leaves_the_ensemble_unfitted(data):
    X, Y = data
    ens = C3TLEnsemble(tiny(max_epochs=5, callbacks=[CtrlCAt(2)]), n_estimators=2,
                       random_state=0)
    with pytest.raises(KeyboardInterrupt):
        ens.fit(X, Y)
    assert not [name for name in vars(ens) if name.endswith("_")]


# -------------------------------------------------------------------------- divergence

def diverged(what: str, epoch: int, lr: str, scale: str) -> str:
    return (
        f"Training diverged: {what} at epoch {epoch} of 3 (lr={lr}; the largest absolute "
        f"target value the network fits is {scale}). The learning rate is likely too large, "
        "or the effects' scale too far from 1. Try a smaller learning rate (set_params(lr=...); "
        "the default is 0.003), or rescale the effects (for example divide Y by its standard "
        "deviation, or wrap the model in TransformedTargetRegressor with a StandardScaler)."
    )


@pytest.mark.parametrize("adaptation", ["ridge", None])
def test_a_huge_learning_rate_stops_with_the_cause_and_the_fix(data, adaptation):
    X, Y = data
    model = tiny(lr=1e10, adaptation=adaptation, validation_fraction=0.0)
    scale = f"{np.abs(Y.to_numpy()).max():.3g}"
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(X, Y)
    message = str(info.value)
    # which epoch and whether inf or nan comes first depends on rounding; the rest is exact
    pattern = re.escape(diverged("@WHAT@", 0, "1e+10", scale)).replace(
        "@WHAT@", r"the (train_loss|weight '[a-z_.0-9]+') became (nan|inf)"
    ).replace(r"epoch\ 0", r"epoch\ [123]")
    assert re.fullmatch(pattern, message), message
    assert isinstance(info.value, ValueError)
    assert not [name for name in vars(model) if name.endswith("_")]
    # the advice: the default learning rate fits, with finite predictions
    model.set_params(lr=3e-3).fit(X, Y)
    assert np.isfinite(model.predict(X)).all()


def test_effects_far_too_large_for_float32_are_refused_or_diverge_with_the_fix(data):
    X, Y = data
    big = Y * 1e19  # squares overflow float32 (3.4e38)
    model = tiny(n_components=None, validation_fraction=0.0)
    with pytest.raises(ValueError, match="rescale the effects"):
        model.fit(X, big)
    # the advice: divide Y by its standard deviation; the fit is then finite
    sd = float(np.std(big.to_numpy(dtype=np.float64)))
    model.fit(X, big / sd)
    assert np.isfinite(model.predict(X) * sd).all()


# ----------------------------------------------------------------------------- metrics

def test_score_table_matches_genes_by_name(data):
    from c3tl_sklearn.metrics import score_table

    X, Y = data
    shuffled = Y[Y.columns[::-1]]
    table = score_table(X, Y, shuffled, k=3)
    assert table.loc["overall", "pearson_delta"] == 1.0
    assert table.loc["overall", "mse"] == 0.0


def test_metrics_refuse_different_gene_sets_and_the_fix_scores_the_common_genes(data):
    from c3tl_sklearn.metrics import pearson_delta

    _, Y = data
    Y_pred = Y.rename(columns={Y.columns[0]: "other"})
    message = (
        f"Y_true and Y_pred name different genes: 1 gene(s) of Y_true are not in Y_pred "
        f"({Y.columns[0]!r}); 1 gene(s) of Y_pred are not in Y_true ('other'). Genes are "
        "matched by name when both are DataFrames; to score the genes both have, select them: "
        "genes = Y_true.columns.intersection(Y_pred.columns), then pass Y_true[genes] and "
        "Y_pred[genes]."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        pearson_delta(Y, Y_pred)
    genes = Y.columns.intersection(Y_pred.columns)
    assert len(genes) == Y.shape[1] - 1
    assert pearson_delta(Y[genes], Y_pred[genes]) == pytest.approx(1.0, abs=1e-12)


def test_genes_that_print_alike_but_differ_are_different_genes():
    from c3tl_sklearn.metrics import pearson_delta

    Y_true = pd.DataFrame([[1.0, 2.0, 4.0]], columns=["1", "2", "3"])
    Y_pred = pd.DataFrame([[1.0, 2.0, 4.0]], columns=[1, "2", "3"])
    with pytest.raises(ValueError, match=re.escape(
        "1 gene(s) of Y_true are not in Y_pred ('1'); 1 gene(s) of Y_pred are not in "
        "Y_true (1)."
    )):
        pearson_delta(Y_true, Y_pred)


def test_duplicate_gene_names_cannot_be_matched():
    from c3tl_sklearn.metrics import pearson_delta

    Y_true = pd.DataFrame([[1.0, 2.0, 4.0]], columns=["a", "b", "b"])
    Y_pred = pd.DataFrame([[1.0, 2.0, 4.0]], columns=["b", "a", "b"])
    with pytest.raises(ValueError, match=re.escape(
        "Y_true has duplicate gene names ('b'), so genes cannot be matched by name; give every "
        "gene column one name."
    )):
        pearson_delta(Y_true, Y_pred)


def test_a_scorer_matches_the_models_genes_to_y_true_by_name(data):
    from c3tl_sklearn.baselines import MeanBaseline
    from c3tl_sklearn.metrics import pearson_scorer

    X, Y = data
    model = MeanBaseline().fit(X, Y)
    in_order = pearson_scorer(model, X, Y)
    assert pearson_scorer(model, X, Y[Y.columns[::-1]]) == pytest.approx(in_order, rel=1e-12)


def test_the_misleading_reset_index_advice_is_gone_and_the_new_one_pairs_the_right_rows():
    """The issue's case: cross_val_score on X.sample(frac=1) with Y in the original order."""
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import LeaveOneContextOut
    from c3tl_sklearn.baselines import AdditiveBaseline

    X, Y = make_synthetic_perturbations(4, 30, 12, observed_fraction=0.9, random_state=0)
    shuffled = X.sample(frac=1, random_state=0)
    cv = LeaveOneContextOut(random_state=0)
    with pytest.raises(ValueError, match=re.escape(
        "align it by label: Y = Y.loc[X.index]; only if row i of Y describes row i of X, "
        "reset both indexes"
    )):
        cross_val_score(AdditiveBaseline(), shuffled, Y, cv=cv,
                        scoring=get_scorer("pearson_delta"),
                        error_score="raise")
    # the advice followed: the same scores as on the rows in their original order
    followed = cross_val_score(AdditiveBaseline(), shuffled, Y.loc[shuffled.index], cv=cv,
                               scoring=get_scorer("pearson_delta"))
    by_position = cross_val_score(AdditiveBaseline(), shuffled,
                                  Y.loc[shuffled.index].to_numpy(), cv=cv,
                                  scoring=get_scorer("pearson_delta"))
    np.testing.assert_array_equal(followed, by_position)
    # the adaptation pairs are drawn by row, so the shuffled folds differ a little
    original = cross_val_score(AdditiveBaseline(), X, Y, cv=cv,
                               scoring=get_scorer("pearson_delta"))
    assert followed.mean() == pytest.approx(original.mean(), abs=0.05)
    # what the old advice did: pairs the wrong rows, and the score collapses
    wrong = cross_val_score(AdditiveBaseline(), shuffled.reset_index(drop=True),
                            Y.reset_index(drop=True), cv=cv, scoring=get_scorer("pearson_delta"))
    assert wrong.mean() < original.mean() - 0.3


def test_scoring_by_name_reads_the_estimators_own_context_column(data):
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import LeaveOneContextOut
    from c3tl_sklearn.baselines import AdditiveBaseline
    from c3tl_sklearn.metrics import centered_pearson_delta, make_context_scorer

    X, Y = data
    cells = X.rename(columns={"context": "cell"})
    model = AdditiveBaseline(context_col="cell")
    cv = LeaveOneContextOut(context_col="cell", random_state=0)
    by_name = cross_val_score(model, cells, Y, cv=cv,
                              scoring=get_scorer("centered_pearson_delta"),
                              error_score="raise")
    explicit = cross_val_score(model, cells, Y, cv=cv, error_score="raise",
                               scoring=make_context_scorer(centered_pearson_delta,
                                                           context_col="cell"))
    assert np.isfinite(by_name).all()
    np.testing.assert_array_equal(by_name, explicit)


def test_a_context_scorer_without_its_column_names_the_fix(data):
    from c3tl_sklearn.baselines import AdditiveBaseline
    from c3tl_sklearn.metrics import centered_pearson_delta, make_context_scorer

    X, Y = data
    cells = X.rename(columns={"context": "cell"})
    model = AdditiveBaseline(context_col="cell").fit(cells, Y)
    scorer = make_context_scorer(centered_pearson_delta)
    message = (
        "make_context_scorer(centered_pearson_delta) reads the context of every row from the "
        "column 'context' of X, so X must be the index table (a DataFrame with that column). If "
        "the contexts are in another column, score with scoring=make_context_scorer("
        "centered_pearson_delta, context_col=...) (from c3tl_sklearn.metrics)."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        scorer(model, cells, Y)
    fixed = make_context_scorer(centered_pearson_delta, context_col="cell")(model, cells, Y)
    assert fixed == pytest.approx(centered_pearson_delta(Y, model.predict(cells), cells["cell"]),
                                  rel=1e-12)


# ------------------------------------------------------------------- command-line tables

def c3tl(capsys, *args) -> tuple[int, str]:
    from c3tl_sklearn.cli import c3tl_main

    status = c3tl_main([str(a) for a in args])
    return status, capsys.readouterr().err


def _effect_csv(path, contexts, n_pert: int = 6, n_genes: int = 4, genes=None, seed: int = 0):
    rng = np.random.RandomState(seed)
    rows = [(c, f"p{j}") for c in contexts for j in range(n_pert)]
    genes = genes or [f"g{k}" for k in range(n_genes)]
    values = rng.normal(size=(len(rows), len(genes))).round(4)
    header = ",".join(["context", "perturbation", *genes])
    lines = [header] + [",".join([c, p, *map(str, v)])
                        for (c, p), v in zip(rows, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return rows, values


@pytest.mark.parametrize("labels", [["001", "002", "1"], ["NA", "None", "nan"],
                                    ["1", "01", "1.0"], ["TRUE", "true", " a"]])
def test_table_labels_stay_exactly_as_written(tmp_path, labels):
    from c3tl_sklearn.cli._files import read_effects

    _effect_csv(tmp_path / "e.csv", labels)
    X, Y = read_effects(tmp_path / "e.csv")
    assert list(dict.fromkeys(X["context"])) == labels
    assert all(isinstance(v, str) for v in X["context"])
    assert Y.dtypes.unique().tolist() == [np.dtype(np.float32)]


def test_a_repeated_gene_column_is_refused_with_its_name(tmp_path, capsys):
    _effect_csv(tmp_path / "e.csv", ["a", "b", "c"], genes=["gene", "g1", "gene", "g3", "g1"])
    status, err = c3tl(capsys, "fit", tmp_path / "e.csv", "-o", tmp_path / "m.c3tl",
                       "--model", "mean")
    assert status == 2
    assert err.strip() == (
        f"c3tl fit: error: The effects file {str(tmp_path / 'e.csv')!r} repeats the column "
        "name(s) 'gene', 'g1'; every column needs its own name (a gene measured twice: keep "
        "one column or rename one)."
    )
    assert not (tmp_path / "m.c3tl").exists()


def test_an_empty_label_cell_is_a_missing_label(tmp_path, capsys):
    (tmp_path / "e.csv").write_text("context,perturbation,g0,g1\na,p,1,2\n,q,1,2\nb,p,1,2\n")
    status, err = c3tl(capsys, "fit", tmp_path / "e.csv", "-o", tmp_path / "m.c3tl",
                       "--model", "mean")
    assert (status, err.strip()) == (2, (
        f"c3tl fit: error: {tmp_path / 'e.csv'!s}: some rows have no context or "
        "perturbation label; fill or drop them."
    ))


def test_missing_effect_cells_are_refused_with_the_first_place(tmp_path, capsys):
    (tmp_path / "e.csv").write_text("context,perturbation,g0,g1\na,p,1,NA\nb,p,1,2\n")
    status, err = c3tl(capsys, "fit", tmp_path / "e.csv", "-o", tmp_path / "m.c3tl",
                       "--model", "mean")
    assert (status, err.strip()) == (2, (
        f"c3tl fit: error: {tmp_path / 'e.csv'!s}: the effects hold NaN or infinite values "
        "(first at row 0, gene 'g1'); remove or impute them."
    ))


def test_numeric_looking_contexts_fit_and_predict_as_written(tmp_path, capsys):
    _effect_csv(tmp_path / "e.csv", ["001", "002", "1"])
    assert c3tl(capsys, "fit", tmp_path / "e.csv", "-o", tmp_path / "m.c3tl",
                "--model", "additive")[0] == 0
    from c3tl_sklearn.persistence import load

    model = load(tmp_path / "m.c3tl")
    assert list(model.contexts_) == ["001", "002", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no zero-shot warning: '1' was seen
        status, err = c3tl(capsys, "predict", tmp_path / "m.c3tl", "--context", "1",
                           "--all-perturbations", "-o", tmp_path / "p.csv")
    assert status == 0 and "warning" not in err, err
    out = pd.read_csv(tmp_path / "p.csv", dtype={"context": str})
    assert set(out["context"]) == {"1"}


def test_a_model_fitted_on_integer_labels_predicts_them_from_the_command_line(tmp_path, capsys):
    from c3tl_sklearn.baselines import AdditiveBaseline

    X, Y = make_synthetic_perturbations(3, 6, 4, random_state=0)
    X = X.assign(context=X["context"].map({"ctx0": 1, "ctx1": 2, "ctx2": 10}))
    model = AdditiveBaseline().fit(X, Y)
    model.save(tmp_path / "m.c3tl")
    status, err = c3tl(capsys, "predict", tmp_path / "m.c3tl", "--context", "1",
                       "--all-perturbations", "-o", tmp_path / "p.csv")
    assert status == 0 and "warning" not in err, err
    out = pd.read_csv(tmp_path / "p.csv")
    query = pd.DataFrame({"context": 1, "perturbation": model.perturbations_})
    np.testing.assert_allclose(out.iloc[:, 2:].to_numpy(), model.predict(query), rtol=1e-6)


# ------------------------------------------------------------------ command-line interruption

def test_ctrl_c_during_c3tl_fit_exits_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    _effect_csv(tmp_path / "e.csv", ["a", "b", "c", "d"], n_pert=8)
    from c3tl_sklearn.cli import _cmd_fit

    real = _cmd_fit._build_model

    def with_ctrl_c(args):  # the user presses Ctrl-C at the end of the second epoch
        return real(args).set_params(callbacks=[CtrlCAt(2)])

    monkeypatch.setattr(_cmd_fit, "_build_model", with_ctrl_c)
    status, err = c3tl(capsys, "fit", tmp_path / "e.csv", "-o", tmp_path / "m.c3tl",
                       "--set", "max_epochs=50", "--set", "hidden_dims=(4,)", "--quiet")
    assert status == 130
    assert err.strip() == ("c3tl fit: interrupted; no half-written file was left (each output is "
                           "written whole or not at all).")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


# -------------------------------------------------------------------------- model files

def _rewrite(path, new_path, edit):
    """A model file with its description edited and its checksum recomputed: a crafted file."""
    import json

    from safetensors import safe_open
    from safetensors.numpy import save_file

    from c3tl_sklearn.persistence._format import _checksum

    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    document = json.loads(metadata["c3tl_sklearn"])
    payload = edit(document)
    payload = json.dumps(document) if payload is None else payload
    metadata["c3tl_sklearn"] = payload
    metadata["c3tl_sklearn_sha256"] = _checksum(payload, arrays)
    save_file(arrays, str(new_path), metadata=metadata)
    return new_path


@pytest.fixture(scope="module")
def model_files(data, tmp_path_factory):
    from c3tl_sklearn.baselines import MeanBaseline

    X, Y = data
    folder = tmp_path_factory.mktemp("models")
    mean = MeanBaseline().fit(X, Y).save(folder / "mean.c3tl")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        c3tl = tiny(max_epochs=2).fit(X, Y).save(folder / "c3tl.c3tl")
    return {"mean": mean, "c3tl": c3tl}


def _attr(name, **fields):
    def edit(doc):
        doc["estimator"]["attributes"][name].update(fields)
    return edit


def _net_param(name, value):
    def edit(doc):
        doc["estimator"]["attributes"]["net_"]["params"][name] = value
    return edit


def _deep(doc):
    doc["estimator"]["params"]["exclude_target"] = "@DEEP@"
    return json_dumps(doc).replace('"@DEEP@"', "[" * 100_000 + "]" * 100_000)


def _long_int(doc):
    doc["estimator"]["params"]["exclude_target"] = "@INT@"
    return json_dumps(doc).replace('"@INT@"', "9" * 5000)


def json_dumps(doc) -> str:
    import json

    return json.dumps(doc)


CRAFTED = [
    ("mean", "text dtype of 1.6 GB per label", _attr("contexts_", dtype="<U400000000"),
     "malformed file: the array at MeanBaseline.contexts_ would take 6400000000 bytes, more "
     "than a file of this size can describe (4 times its size); refused before allocating."),
    ("mean", "structured dtype", _attr("effects_", dtype="V8"),
     "malformed file: dtype 'V8' at MeanBaseline.effects_ refused"),
    ("mean", "sub-array dtype", _attr("effects_", dtype="(1000000000,)f8"),
     "malformed file: dtype '(1000000000,)f8' at MeanBaseline.effects_ refused"),
    ("mean", "negative shape", _attr("contexts_", shape=[-2, -2]),
     "malformed file: array shape [-2, -2] at MeanBaseline.contexts_ refused"),
    ("mean", "shape of 2**70", _attr("effects_", shape=[2**70]),
     f"malformed file: array shape [{2**70}] at MeanBaseline.effects_ refused"),
    ("mean", "100,000 nested lists", _deep,
     "{path}: the model description nests deeper than 64 levels, which no model of this "
     "package does; the file was crafted or corrupted."),
    ("mean", "a 5,000-digit integer", _long_int,
     "{path}: the model description is not valid JSON (Exceeds the limit (4300 digits) for "
     "integer string conversion: value has 5000 digits; use sys.set_int_max_str_digits() to "
     "increase the limit)."),
    ("mean", "an int8 scalar of 1000",
     lambda doc: doc["estimator"]["attributes"].update(
         n_genes_={"__type__": "scalar", "dtype": "|i1", "value": 1000}),
     "{path}: malformed model file (OverflowError('Python integer 1000 out of bounds for "
     "int8'))."),
    ("c3tl", "a hidden layer of 40 million units",
     _net_param("module__hidden_dims", {"__type__": "tuple", "items": [40_000_000]}),
     "the weights at C3TLRegressor.net_ do not fit the network: its parameters ask for "
     "'input_proj.weight' of shape (80000000, 8), the file's weight is of shape (8, 8)."),
    ("c3tl", "a million hidden layers",
     _net_param("module__hidden_dims", {"__type__": "tuple", "items": [4] * 1_000_000}),
     "malformed file: module__hidden_dims at C3TLRegressor.net_ refused"),
    ("c3tl", "latent width of 10**12", _net_param("module__latent_dim", 10**12),
     "the weights at C3TLRegressor.net_ do not fit the network: its parameters ask for "
     "'theta_z.2.0.weight' of shape (1000000000000, 4), the file's weight is of shape (2, 4)."),
    ("c3tl", "torch.compile from the header", _net_param("compile", True),
     "malformed file: the network at C3TLRegressor.net_ sets compile=True; a model file may "
     "only hold compile=False."),
    ("c3tl", "a callback from the header", _net_param("callbacks__print_log__sink", "print"),
     "malformed file: the network at C3TLRegressor.net_ sets 'callbacks__print_log__sink', "
     "which a model file never holds."),
]


@pytest.mark.parametrize(("which", "case", "edit", "message"), CRAFTED,
                         ids=[case for _, case, _, _ in CRAFTED])
def test_a_crafted_model_file_is_refused_before_it_costs_anything(
        model_files, tmp_path, which, case, edit, message):
    import resource
    import time

    from c3tl_sklearn.persistence import load

    path = _rewrite(model_files[which], tmp_path / "crafted.c3tl", edit)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.process_time()
    with pytest.raises(ValueError) as info:
        load(path)
    message = message.format(path=path)
    assert str(info.value).startswith(message), str(info.value)
    # bounded by the file: no more than a small multiple of its size in new peak memory
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grown <= 64 * path.stat().st_size + (64 << 20), grown
    assert time.process_time() - start < 30  # the unbounded cases took 14 s and more


# ------------------------------------------------------------------------ shared studies

STUDY_WORKER = """
import sys, time
from c3tl_sklearn.baselines import AdditiveBaseline
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.model_selection import LeaveOneContextOut
from c3tl_sklearn.tuning import C3TLSearchCV

X, Y = make_synthetic_perturbations(4, 12, 6, random_state=0)
start = float(sys.argv[2])
while time.time() < start:  # every worker opens the new database at the same moment
    pass
search = C3TLSearchCV(AdditiveBaseline(), n_trials=1, storage=sys.argv[1], study_name="s",
                      cv=LeaveOneContextOut(random_state=0), max_trials=3)
search.fit(X, Y)
print("ok")
"""


def test_workers_starting_together_on_a_new_sqlite_study_all_run(tmp_path):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "worker.py"
    script.write_text(STUDY_WORKER)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]), "OMP_NUM_THREADS": "1"}
    for attempt in range(2):  # two fresh databases; before the fix 2 of 3 workers died
        db = tmp_path / f"study{attempt}.db"
        start = time.time() + 8  # time for all three to import
        procs = [subprocess.Popen([sys.executable, str(script), str(db), str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for _ in range(3)]
        for proc in procs:
            out, err = proc.communicate(timeout=HANG_TIMEOUT_S)
            assert proc.returncode == 0 and out.strip() == "ok", err


def _search(storage, **params):
    from c3tl_sklearn.baselines import AdditiveBaseline
    from c3tl_sklearn.model_selection import LeaveOneContextOut
    from c3tl_sklearn.tuning import C3TLSearchCV

    return C3TLSearchCV(AdditiveBaseline(), n_trials=1, storage=storage, study_name="s",
                        cv=LeaveOneContextOut(random_state=0), random_state=0, **params)


def test_resuming_a_study_on_other_data_is_refused_and_the_fix_starts_afresh(tmp_path, data):
    X, Y = data
    storage = str(tmp_path / "study.log")
    first = _search(storage).fit(X, Y)
    # the same data with shuffled rows is the same data: the study continues
    order = np.random.RandomState(0).permutation(len(X))
    again = _search(storage).fit(X.iloc[order], Y.iloc[order])
    assert len(again.cv_results_["trial"]) == 2
    other = Y * 2.0
    message = (
        f"The stored study 's' was made on other data ('48 rows x 8 genes, "
        f"{first.study_.user_attrs['data'].rsplit(', ', 1)[1]}'), not '48 rows x 8 genes, "
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}") as info:
        _search(storage).fit(X, other)
    assert str(info.value).endswith(
        "; its scores are not comparable, and its best score and parameters would not describe "
        "this search. Use another study_name (or remove the stored study: "
        "optuna.delete_study(study_name=..., storage=...))."
    )
    # the advice, followed: another study_name runs a fresh study on the new data
    fresh = _search(storage).set_params(study_name="s-doubled").fit(X, other)
    assert fresh.cv_results_["trial"].tolist() == [0]
    # ... and so does removing the stored one
    import optuna

    from c3tl_sklearn.tuning import make_storage

    optuna.delete_study(study_name="s", storage=make_storage(storage))
    assert _search(storage).fit(X, other).cv_results_["trial"].tolist() == [0]


def test_resuming_a_study_with_another_search_space_is_refused(tmp_path, data):
    from optuna.distributions import FloatDistribution

    X, Y = data
    storage = str(tmp_path / "study.log")
    _search(storage, param_space={"shrinkage": FloatDistribution(0.0, 5.0)}).fit(X, Y)
    with pytest.raises(ValueError, match=re.escape(
        "The stored study 's' was made with another search space")):
        _search(storage, param_space={"shrinkage": FloatDistribution(0.0, 50.0)}).fit(X, Y)


# -------------------------------------------------------------------- interrupted writes

def _interrupt_after_writing_half(monkeypatch):
    """``DataFrame.to_csv`` writes half the file, then the user presses Ctrl-C."""
    real = pd.DataFrame.to_csv

    def half_then_ctrl_c(self, path, *args, **kwargs):
        real(self.iloc[: max(len(self) // 2, 1)], path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_ctrl_c)


def test_an_interrupted_prediction_write_leaves_the_old_file_and_no_temporary(
        tmp_path, capsys, monkeypatch):
    _effect_csv(tmp_path / "e.csv", ["a", "b", "c"])
    assert c3tl(capsys, "fit", tmp_path / "e.csv", "-o", tmp_path / "m.c3tl",
                "--model", "mean")[0] == 0
    (tmp_path / "p.csv").write_text("the old predictions\n")
    _interrupt_after_writing_half(monkeypatch)
    status, err = c3tl(capsys, "predict", tmp_path / "m.c3tl", "--context", "a",
                       "--all-perturbations", "-o", tmp_path / "p.csv")
    assert (status, err.strip()) == (130, "c3tl predict: interrupted; no half-written file was "
                                  "left (each output is written whole or not at all).")
    assert (tmp_path / "p.csv").read_text() == "the old predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "m.c3tl", "p.csv"]


def test_an_interrupted_score_write_leaves_nothing(tmp_path, capsys, monkeypatch):
    _effect_csv(tmp_path / "e.csv", ["a", "b", "c"])
    _interrupt_after_writing_half(monkeypatch)
    status, err = c3tl(capsys, "evaluate", tmp_path / "e.csv", tmp_path / "e.csv",
                       "-o", tmp_path / "scores.csv")
    assert status == 130, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv"]


def test_an_interrupted_model_save_keeps_the_old_model_and_no_temporary(
        tmp_path, data, monkeypatch):
    from c3tl_sklearn.baselines import AdditiveBaseline, MeanBaseline
    from c3tl_sklearn.persistence import _encode, load

    X, Y = data
    path = MeanBaseline().fit(X, Y).save(tmp_path / "m.c3tl")
    before = path.read_bytes()

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_encode.os, "replace", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        AdditiveBaseline().fit(X, Y).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.c3tl"]
    assert type(load(path)).__name__ == "MeanBaseline"


# ------------------------------------------------------------ parameters and labels, Python

@pytest.mark.parametrize("hidden, bad", [((4.5,), "4.5"), ((True,), "True"), ((0,), "0"),
                                         (("64",), "'64'"), ((8, -1), "-1")])
def test_hidden_dims_that_are_not_positive_integers_are_refused_not_truncated(
        data, hidden, bad):
    X, Y = data
    message = ("hidden_dims must be a tuple of positive integers (layer widths), e.g. (256,) "
               f"or (128, 64); got {hidden!r}, in which {bad} is not one.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        tiny(hidden_dims=hidden).fit(X, Y)


def test_a_network_too_large_for_memory_names_its_sizes_and_the_fix(data):
    X, Y = data
    model = tiny(hidden_dims=(10**12,), n_components=None)
    with pytest.raises(MemoryError, match=re.escape(
        "the network does not fit in memory (n_genes=8, latent_dim=2, "
        "hidden_dims=(1000000000000,); torch: ")) as info:
        model.fit(X, Y)
    assert str(info.value).endswith(
        "Choose smaller hidden_dims or latent_dim, or set n_components to compress the genes "
        "the network reads.")
    assert not [name for name in vars(model) if name.endswith("_")]
    model.set_params(hidden_dims=(8,)).fit(X, Y)  # the advice: a smaller width fits
    assert np.isfinite(model.predict(X)).all()


def test_labels_that_print_alike_but_differ_are_refused_and_the_fix_merges_them(data):
    from c3tl_sklearn.baselines import MeanBaseline

    X, Y = data
    # one context written 1 in some rows and '1' in others (a table glued from two files)
    one = (X["context"] == "ctx0").to_numpy()
    labels = np.where(one, "1", X["context"].to_numpy()).astype(object)
    labels[np.flatnonzero(one)[::2]] = 1
    mixed = X.assign(context=labels)
    message = (
        "X column 'context' has different labels that print alike: 1 (int) and '1' (str); "
        "every file or table written from them would merge the two. If they name the same "
        "thing, make the labels one type, e.g. X['context'] = X['context'].astype(str); if not, "
        "rename one of them."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MeanBaseline().fit(mixed, Y)
    # the advice followed: the same model as with one label for the context throughout
    fixed = MeanBaseline().fit(mixed.assign(context=mixed["context"].astype(str)), Y)
    expected = MeanBaseline().fit(X.assign(context=X["context"].replace("ctx0", "1")), Y)
    assert list(fixed.contexts_) == ["1", "ctx1", "ctx2", "ctx3"]
    np.testing.assert_array_equal(fixed.predict(X.assign(context="1")),
                                  expected.predict(X.assign(context="1")))


@pytest.mark.parametrize("a, b", [("ctx1", "ctx1 "), ("caf\u00e9", "cafe\u0301")])
def test_labels_differing_only_in_white_space_or_unicode_form_are_named(data, a, b):
    from c3tl_sklearn.baselines import MeanBaseline

    X, Y = data
    labels = X.assign(context=X["context"].map({"ctx0": a, "ctx1": b, "ctx2": "x", "ctx3": "y"}))
    with pytest.warns(UserWarning, match=re.escape(
        f"X column 'context' has labels that differ only in white space or Unicode form: "
        f"{a!r} and {b!r}; they are treated as different labels.")):
        model = MeanBaseline().fit(labels, Y)
    assert len(model.contexts_) == 4


def test_unhashable_labels_are_refused_with_the_conversion(data):
    from c3tl_sklearn.baselines import MeanBaseline

    X, Y = data
    lists = X.assign(context=[[c] for c in X["context"]])
    with pytest.raises(TypeError, match=re.escape(
        "X column 'context' holds a label of type list in row 0 (['ctx0']), which is not "
        "hashable; labels must be values such as str, int or tuple: convert them, e.g. "
        "X['context'].map(tuple) or X['context'].astype(str).")):
        MeanBaseline().fit(lists, Y)
    model = MeanBaseline().fit(lists.assign(context=lists["context"].map(tuple)), Y)
    assert model.contexts_[0] == ("ctx0",)


# ------------------------------------------------------- command-line options at their extremes

CLI_REFUSALS = [
    (["fit", "e.csv", "-o", "x.c3tl", "--threads", "0"],
     "c3tl fit: error: --threads 0: give a number >= 1."),
    (["fit", "e.csv", "-o", "x.c3tl", "--threads", "-3"],
     "c3tl fit: error: --threads -3: give a number >= 1."),
    (["fit", "e.csv", "-o", "x.c3tl", "--seed", "-1"],
     "c3tl fit: error: cannot fit c3tl on e.csv: The 'random_state' parameter of C3TLRegressor "
     "must be an int in the range [0, 4294967295], an instance of 'numpy.random.mtrand."
     "RandomState' or None. Got -1 instead."),
    (["fit", "e.csv", "-o", "x.c3tl", "--set", "max_epochs=0"],
     "c3tl fit: error: cannot fit c3tl on e.csv: The 'max_epochs' parameter of C3TLRegressor "
     "must be an int in the range [1, inf) or a str among {'auto'}. Got 0 instead."),
    (["fit", "e.csv", "-o", "x.c3tl", "--set", "lr=float('nan')"],
     "c3tl fit: error: --set \"lr=float('nan')\": \"float('nan')\" is not a Python literal; "
     "write numbers as 1e-3, tuples as (128,64), strings as words or 'quoted'."),
    (["fit", "e.csv", "-o", "x.c3tl", "--set", "hidden_dims=(4.5,)"],
     "c3tl fit: error: cannot fit c3tl on e.csv: hidden_dims must be a tuple of positive "
     "integers (layer widths), e.g. (256,) or (128, 64); got (4.5,), in which 4.5 is not one."),
    (["fit", "e.csv", "-o", "x.c3tl", "--set", "callbacks=None"], None),  # reserved: listed
    (["fit", "e.csv", "-o", "x.c3tl", "--set", "lr=1e10", "--set", "max_epochs=3",
      "--set", "validation_fraction=0.0"], None),  # divergence: checked below
    (["fit", "e.csv", "-o", "x.c3tl", "--device", "cuda:7"], None),  # depends on the machine
    (["fit", "e.csv", "-o", "nowhere/x.c3tl"],
     "c3tl fit: error: the folder of 'nowhere/x.c3tl' does not exist; create it first."),
    (["fit", "e.csv", "-o", "e.csv"],
     "c3tl fit: error: -o 'e.csv' is also an input file; choose another output name (inputs "
     "are never overwritten)."),
    (["fit", "e.csv", "-o", "."],
     "c3tl fit: error: -o '.' is a folder; give a file name, e.g. 'model.c3tl'."),
    (["fit", "e.csv", "-o", "x.c3tl", "--context-col", "perturbation"],
     "c3tl fit: error: --context-col and --perturbation-col both name the column "
     "'perturbation'; give the context and the perturbation column each its own name."),
    (["predict", "m.c3tl", "--context", "", "--all-perturbations", "-o", "p.csv"],
     "c3tl predict: error: --context '': give the name of a context (an empty label names "
     "nothing)."),
    (["predict", "m.c3tl", "--context", "a", "--all-perturbations", "-o", "p.csv",
      "--threads", "0"], "c3tl predict: error: --threads 0: give a number >= 1."),
    (["predict", ".", "--context", "a", "--all-perturbations", "-o", "p.csv"],
     "c3tl predict: error: the model path '.' is a folder; pass a file."),
    (["predict", "m.c3tl", "--pairs", "e.csv", "-o", "p.xlsx"],
     "c3tl predict: error: cannot write the predictions as 'p.xlsx': end the name with .h5ad "
     "or .csv or .tsv or .parquet."),
    (["predict", "m.c3tl", "--context", "a", "--all-perturbations", "--observed", "e.csv",
      "-o", "p.csv"],
     "c3tl predict: error: --observed needs a model that adapts without refitting (c3tl); a "
     "MeanBaseline does not: fit it on effects that include these measurements instead."),
    (["evaluate", "e.csv", "e.csv", "--k", "0"],
     "c3tl evaluate: error: --k 0: give a number >= 1."),
    (["evaluate", "e.csv", "m.c3tl"],
     "c3tl evaluate: error: cannot read the truth file 'm.c3tl': use .h5ad, .csv, .tsv or "
     ".parquet."),
]


@pytest.fixture
def cli_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _effect_csv(tmp_path / "e.csv", ["a", "b", "c", "d"], n_pert=8, n_genes=5)
    assert c3tl(capsys, "fit", "e.csv", "-o", "m.c3tl", "--model", "mean", "--quiet")[0] == 0
    return tmp_path


@pytest.mark.parametrize("argv, message", [c for c in CLI_REFUSALS if c[1] is not None],
                         ids=lambda v: " ".join(v)[:60] if isinstance(v, list) else "")
def test_command_line_options_at_their_extremes_are_refused_with_the_fix(
        cli_folder, capsys, argv, message):
    before = sorted(p.name for p in cli_folder.iterdir())
    status, err = c3tl(capsys, *argv)
    assert (status, err.strip().splitlines()[-1]) == (2, message)
    assert sorted(p.name for p in cli_folder.iterdir()) == before  # nothing written


def test_a_diverging_command_line_fit_names_the_fix_and_following_it_fits(cli_folder, capsys):
    argv = ["fit", "e.csv", "-o", "x.c3tl", "--set", "max_epochs=3", "--set",
            "validation_fraction=0.0", "--set", "hidden_dims=(4,)", "--quiet"]
    status, err = c3tl(capsys, *argv, "--set", "lr=1e10")
    assert status == 2 and "Training diverged" in err and "Try a smaller learning rate" in err
    assert not (cli_folder / "x.c3tl").exists()
    assert c3tl(capsys, *argv, "--set", "lr=0.003")[0] == 0
    assert (cli_folder / "x.c3tl").exists()


def test_a_network_too_large_is_a_command_line_error_not_a_traceback(cli_folder, capsys):
    status, err = c3tl(capsys, "fit", "e.csv", "-o", "x.c3tl", "--set",
                       "hidden_dims=(10000000000000,)", "--set", "n_components=None")
    assert status == 2 and "Traceback" not in err
    assert err.strip().startswith(
        "c3tl fit: error: cannot fit c3tl on e.csv: the network does not fit in memory "
        "(n_genes=5, latent_dim=64, hidden_dims=(10000000000000,); torch: ")
