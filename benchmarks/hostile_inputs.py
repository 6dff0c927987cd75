"""Hostile inputs and conditions at the package's boundaries: what each one does, measured.

Runs every case against the package on ``sys.path`` and prints one markdown
row per case: the case, the measured outcome (what returned, or the exception
and the start of its message; peak memory and time for the cases about
cost). Run it once with an old checkout first on ``PYTHONPATH`` and once with
this one to get the before and after columns::

    PYTHONPATH=/path/to/old python benchmarks/hostile_inputs.py --out before.json
    PYTHONPATH=. python benchmarks/hostile_inputs.py --out after.json
    python benchmarks/hostile_inputs.py --table before.json after.json

The verdicts of the old and the new outcome (silent result, crash with a
foreign message, misleading message, unbounded load, or fine) are judgments,
written next to each case (the new one is "fine" unless the case says
otherwise); the outcomes are measured. Sizes are kept small enough for a
laptop: the unbounded cases are shrunk (a 160 MB text array, a 4-million-unit
layer) so that the old behaviour can be measured without taking the
machine down; their cost grows with the number in the header.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

SILENT, FOREIGN, MISLEADING, UNBOUNDED, FINE = (
    "silent result", "foreign crash", "misleading message", "unbounded load", "fine")

# (name, old verdict, new verdict, function name, isolated)
CASES: list[tuple[str, str, str, str, bool]] = []


def case(name: str, old: str, isolated: bool = False, new: str = FINE):
    def register(fn):
        CASES.append((name, old, new, fn.__name__, isolated))
        return fn
    return register


# ----------------------------------------------------------------------------- helpers

def data():
    from c3tl_sklearn.datasets import make_synthetic_perturbations

    return make_synthetic_perturbations(4, 12, 8, random_state=1)


def tiny(**params):
    from c3tl_sklearn import C3TLRegressor

    return C3TLRegressor(**{**dict(max_epochs=3, hidden_dims=(4,), latent_dim=2,
                                   random_state=0), **params})


def ctrl_c_at(epoch: int):
    from skorch.callbacks import Callback

    class CtrlC(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == epoch:
                signal.raise_signal(signal.SIGINT)
    return CtrlC()


def effect_csv(path: Path, contexts, n_pert=6, genes=("g0", "g1", "g2", "g3")):
    rng = np.random.RandomState(0)
    lines = [",".join(["context", "perturbation", *genes])]
    for c in contexts:
        for j in range(n_pert):
            values = rng.normal(size=len(genes))
            lines.append(",".join([c, f"p{j}", *(f"{v:.4f}" for v in values)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(*argv) -> str:
    import contextlib
    import io

    from c3tl_sklearn.cli import c3tl_main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = c3tl_main([str(a) for a in argv])
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return f"exit {status}: {lines[-1] if lines else ''}"


def files(folder: Path) -> str:
    return "files " + ", ".join(sorted(p.name for p in folder.iterdir()))


def rewrite(path, new_path, edit):
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


def mean_file(tmp: Path) -> Path:
    from c3tl_sklearn import MeanBaseline

    X, Y = data()
    return MeanBaseline().fit(X, Y).save(tmp / "mean.c3tl")


def c3tl_file(tmp: Path) -> Path:
    X, Y = data()
    return tiny(max_epochs=2).fit(X, Y).save(tmp / "c3tl.c3tl")


def load_crafted(tmp: Path, source: Path, edit) -> str:
    from c3tl_sklearn.persistence import load

    path = rewrite(source, tmp / "crafted.c3tl", edit)
    size = path.stat().st_size
    model = load(path)
    return f"loaded a {type(model).__name__} from a {size}-byte file"


def set_attr(name, **fields):
    def edit(doc):
        doc["estimator"]["attributes"][name].update(fields)
    return edit


def set_net(name, value):
    def edit(doc):
        doc["estimator"]["attributes"]["net_"]["params"][name] = value
    return edit


# ------------------------------------------------------------------------ interruption

@case("Ctrl-C (SIGINT) at epoch 2 of 5 during fit", SILENT, isolated=True)
def ctrl_c_fit(tmp):
    X, Y = data()
    model = tiny(max_epochs=5, callbacks=[ctrl_c_at(2)])
    try:
        model.fit(X, Y)
    except KeyboardInterrupt as exc:
        return f"KeyboardInterrupt: {exc}; fitted attributes left: " + str(
            [n for n in vars(model) if n.endswith("_")])
    return f"returned normally, n_epochs_={model.n_epochs_}"


@case("Ctrl-C during a refit of a fitted model", SILENT, isolated=True)
def ctrl_c_refit(tmp):
    X, Y = data()
    model = tiny(max_epochs=5).fit(X, Y)
    model.set_params(callbacks=[ctrl_c_at(2)])
    try:
        model.fit(X, Y)
    except KeyboardInterrupt:
        pass
    try:
        model.predict(X)
        return "predict works after the interrupted refit"
    except Exception as exc:
        return f"predict: {type(exc).__name__}"


@case("Ctrl-C during cross_val_score", SILENT, isolated=True)
def ctrl_c_cv(tmp):
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import LeaveOneContextOut
    from c3tl_sklearn.metrics import get_scorer

    X, Y = data()
    scores = cross_val_score(tiny(max_epochs=5, callbacks=[ctrl_c_at(2)]), X, Y,
                             cv=LeaveOneContextOut(random_state=0),
                             scoring=get_scorer("pearson_delta"))
    return f"returned {len(scores)} fold scores"


@case("Ctrl-C in a member of C3TLEnsemble", SILENT, isolated=True)
def ctrl_c_ensemble(tmp):
    from c3tl_sklearn import C3TLEnsemble

    X, Y = data()
    ens = C3TLEnsemble(tiny(max_epochs=5, callbacks=[ctrl_c_at(2)]), n_estimators=2,
                       random_state=0)
    ens.fit(X, Y)
    return "returned a fitted ensemble"


@case("Ctrl-C at epoch 2 of 3,000 during `c3tl fit`", SILENT, isolated=True)
def ctrl_c_cli_fit(tmp):
    from skorch import NeuralNet

    effect_csv(tmp / "e.csv", ["a", "b", "c", "d"], n_pert=8)
    # the user presses Ctrl-C (a SIGINT to the process) at the end of epoch 2; patched into
    # skorch's own epoch hook, as no callback can be passed that the saved model would keep
    real = NeuralNet.on_epoch_end

    def on_epoch_end(self, net, **kwargs):
        real(self, net, **kwargs)
        if len(net.history) == 2:
            signal.raise_signal(signal.SIGINT)

    NeuralNet.on_epoch_end = on_epoch_end
    out = cli("fit", tmp / "e.csv", "-o", tmp / "m.c3tl", "--set", "max_epochs=3000",
              "--set", "hidden_dims=(4,)", "--set", "validation_fraction=0.0")
    return f"{out}; {files(tmp)}"


@case("a callback raising KeyboardInterrupt to stop (skorch's idiom)", FINE, isolated=True)
def callback_stop(tmp):
    from skorch.callbacks import Callback

    class Stop(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt

    X, Y = data()
    return f"n_epochs_={tiny(max_epochs=5, callbacks=[Stop()]).fit(X, Y).n_epochs_}"


def _half_then_ctrl_c():
    real = pd.DataFrame.to_csv

    def write(self, path, *args, **kwargs):
        real(self.iloc[: max(len(self) // 2, 1)], path, *args, **kwargs)
        raise KeyboardInterrupt
    pd.DataFrame.to_csv = write


@case("Ctrl-C half-way through writing `c3tl evaluate -o scores.csv`", SILENT, isolated=True)
def interrupted_scores(tmp):
    effect_csv(tmp / "e.csv", ["a", "b", "c"])
    _half_then_ctrl_c()
    return f"{cli('evaluate', tmp / 'e.csv', tmp / 'e.csv', '-o', tmp / 'scores.csv')}; " \
        f"{files(tmp)}"


@case("Ctrl-C half-way through writing `c3tl predict -o p.csv` over an old file", FINE,
      isolated=True)
def interrupted_predictions(tmp):
    effect_csv(tmp / "e.csv", ["a", "b", "c"])
    cli("fit", tmp / "e.csv", "-o", tmp / "m.c3tl", "--model", "mean", "--quiet")
    (tmp / "p.csv").write_text("old\n")
    _half_then_ctrl_c()
    out = cli("predict", tmp / "m.c3tl", "--context", "a", "--all-perturbations",
              "-o", tmp / "p.csv")
    kept = "kept" if (tmp / "p.csv").read_text() == "old\n" else "changed"
    return f"{out}; p.csv {kept}; {files(tmp)}"


# -------------------------------------------------------------------------- divergence

@case("lr=1e10 (training produces NaN)", MISLEADING)
def lr_huge(tmp):
    X, Y = data()
    tiny(lr=1e10).fit(X, Y)
    return "fitted"


@case("lr=1e10 with adaptation=None", SILENT)
def lr_huge_no_readout(tmp):
    X, Y = data()
    pred = tiny(lr=1e10, adaptation=None).fit(X, Y).predict(X)
    return f"fitted; {int(np.isnan(pred).sum())} of {pred.size} predictions NaN"


@case("effects of 1e19 (squares overflow float32)", SILENT)
def effects_huge(tmp):
    X, Y = data()
    model = tiny(n_components=None, validation_fraction=0.0).fit(X, Y * 1e19)
    pred = model.predict(X)
    return (f"fitted with train_loss {model.history_[-1, 'train_loss']}; finite predictions: "
            f"{bool(np.isfinite(pred).all())}")


# ------------------------------------------------------------------------- model files

@case("model file: text array declared <U10000000 (4 labels, 5 KB file)", UNBOUNDED,
      isolated=True)
def file_text_dtype(tmp):
    return load_crafted(tmp, mean_file(tmp), set_attr("contexts_", dtype="<U10000000"))


@case("model file: structured dtype V8", FINE)
def file_void(tmp):
    return load_crafted(tmp, mean_file(tmp), set_attr("effects_", dtype="V8"))


@case("model file: sub-array dtype (1000000000,)f8", FINE)
def file_subarray(tmp):
    return load_crafted(tmp, mean_file(tmp), set_attr("effects_", dtype="(1000000000,)f8"))


@case("model file: negative shape [-2, -2]", FOREIGN)
def file_negative_shape(tmp):
    return load_crafted(tmp, mean_file(tmp), set_attr("contexts_", shape=[-2, -2]))


@case("model file: shape [2**70]", FOREIGN)
def file_huge_shape(tmp):
    return load_crafted(tmp, mean_file(tmp), set_attr("effects_", shape=[2**70]))


@case("model file: 100,000 nested lists", FOREIGN, isolated=True)
def file_deep(tmp):
    def edit(doc):
        doc["estimator"]["params"]["exclude_target"] = "@X@"
        return json.dumps(doc).replace('"@X@"', "[" * 100_000 + "]" * 100_000)
    return load_crafted(tmp, mean_file(tmp), edit)


@case("model file: a 5,000-digit integer", FOREIGN)
def file_long_int(tmp):
    def edit(doc):
        doc["estimator"]["params"]["exclude_target"] = "@X@"
        return json.dumps(doc).replace('"@X@"', "9" * 5000)
    return load_crafted(tmp, mean_file(tmp), edit)


@case("model file: int8 scalar of 1000", FOREIGN)
def file_scalar_overflow(tmp):
    return load_crafted(tmp, mean_file(tmp), lambda doc: doc["estimator"]["attributes"].update(
        n_genes_={"__type__": "scalar", "dtype": "|i1", "value": 1000}))


@case("model file: net hidden layer of 4 million units", UNBOUNDED, isolated=True)
def file_wide_layer(tmp):
    return load_crafted(tmp, c3tl_file(tmp), set_net(
        "module__hidden_dims", {"__type__": "tuple", "items": [4_000_000]}))


@case("model file: 20,000 hidden layers", UNBOUNDED, isolated=True)
def file_many_layers(tmp):
    return load_crafted(tmp, c3tl_file(tmp), set_net(
        "module__hidden_dims", {"__type__": "tuple", "items": [4] * 20_000}))


@case("model file: latent width 10**12", FOREIGN, isolated=True)
def file_latent(tmp):
    return load_crafted(tmp, c3tl_file(tmp), set_net("module__latent_dim", 10**12))


@case("model file: net parameter callbacks__print_log__sink", SILENT, isolated=True)
def file_callback_param(tmp):
    return load_crafted(tmp, c3tl_file(tmp), set_net("callbacks__print_log__sink", "print"))


@case("model file: net parameter verbose=5 (allowed)", FINE, isolated=True)
def file_verbose(tmp):
    return load_crafted(tmp, c3tl_file(tmp), set_net("verbose", 5))


@case("model file: truncated by 100 bytes", FINE)
def file_truncated(tmp):
    from c3tl_sklearn.persistence import load

    good = mean_file(tmp)
    (tmp / "t.c3tl").write_bytes(good.read_bytes()[:-100])
    load(tmp / "t.c3tl")
    return "loaded"


@case("model file: a CSV passed as the model to `c3tl predict`", FINE)
def file_csv_as_model(tmp):
    effect_csv(tmp / "e.csv", ["a", "b"])
    return cli("predict", tmp / "e.csv", "--context", "a", "--all-perturbations",
               "-o", tmp / "p.csv")


# ------------------------------------------------------------------------------ metrics

@case("score_table with Y_pred's genes in reverse order", SILENT)
def genes_reversed(tmp):
    from c3tl_sklearn.metrics import score_table

    X, Y = data()
    table = score_table(X, Y, Y[Y.columns[::-1]], k=3)
    return f"pearson_delta {table.loc['overall', 'pearson_delta']:.3f}"


@case("pearson_delta with one gene renamed in Y_pred", SILENT)
def genes_renamed(tmp):
    from c3tl_sklearn.metrics import pearson_delta

    _, Y = data()
    return f"pearson_delta {pearson_delta(Y, Y.rename(columns={Y.columns[0]: 'other'})):.3f}"


@case("genes '1' and 1 (print alike, differ)", SILENT)
def genes_print_alike(tmp):
    from c3tl_sklearn.metrics import pearson_delta

    a = pd.DataFrame([[1.0, 2.0, 4.0]], columns=["1", "2", "3"])
    return f"pearson_delta {pearson_delta(a, a.set_axis([1, '2', '3'], axis=1)):.3f}"


@case("duplicate gene names on both sides, in another order", SILENT)
def genes_duplicated(tmp):
    from c3tl_sklearn.metrics import pearson_delta

    a = pd.DataFrame([[1.0, 2.0, 4.0]], columns=["a", "b", "b"])
    b = pd.DataFrame([[2.0, 1.0, 4.0]], columns=["b", "a", "b"])
    return f"pearson_delta {pearson_delta(a, b):.3f}"


@case("a scorer given y_true with its gene columns reordered", SILENT)
def scorer_genes(tmp):
    from c3tl_sklearn import MeanBaseline
    from c3tl_sklearn.metrics import pearson_scorer

    X, Y = data()
    model = MeanBaseline().fit(X, Y)
    return f"{pearson_scorer(model, X, Y):.3f} in order, " \
        f"{pearson_scorer(model, X, Y[Y.columns[::-1]]):.3f} reordered"


@case("cross_val_score on X.sample(frac=1), Y in the original order", MISLEADING)
def shuffled_cv(tmp):
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import AdditiveBaseline, LeaveOneContextOut
    from c3tl_sklearn.datasets import make_synthetic_perturbations

    X, Y = make_synthetic_perturbations(4, 30, 12, observed_fraction=0.9, random_state=0)
    cross_val_score(AdditiveBaseline(), X.sample(frac=1, random_state=0), Y,
                    cv=LeaveOneContextOut(random_state=0), error_score="raise")
    return "scored"


@case("the scorer named 'centered_pearson_delta' with context_col='cell'", SILENT)
def scoring_by_name(tmp):
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import AdditiveBaseline, LeaveOneContextOut

    try:
        from c3tl_sklearn.metrics import get_scorer
    except ImportError:  # before the scorers were objects, the name went to scikit-learn
        scoring = "centered_pearson_delta"
    else:
        scoring = get_scorer("centered_pearson_delta")
    X, Y = data()
    cells = X.rename(columns={"context": "cell"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(AdditiveBaseline(context_col="cell"), cells, Y,
                                 cv=LeaveOneContextOut(context_col="cell", random_state=0),
                                 scoring=scoring)
    return f"fold scores {np.round(scores, 3).tolist()}"


@case("make_context_scorer(...) on a table without the 'context' column", MISLEADING)
def context_scorer_column(tmp):
    from c3tl_sklearn import AdditiveBaseline
    from c3tl_sklearn.metrics import centered_pearson_delta, make_context_scorer

    X, Y = data()
    cells = X.rename(columns={"context": "cell"})
    model = AdditiveBaseline(context_col="cell").fit(cells, Y)
    return str(make_context_scorer(centered_pearson_delta)(model, cells, Y))


# ------------------------------------------------------------------------------- tables

def _read_labels(tmp, labels):
    from c3tl_sklearn.cli._files import read_effects

    X, _ = read_effects(effect_csv(tmp / "e.csv", labels))
    return f"contexts {list(dict.fromkeys(X['context']))}"


@case("CSV contexts 001, 002", SILENT)
def table_leading_zeros(tmp):
    return _read_labels(tmp, ["001", "002", "3"])


@case("CSV contexts 1 and 01", MISLEADING)
def table_collide(tmp):
    return _read_labels(tmp, ["1", "01", "2"])


@case("CSV contexts NA, None, nan", MISLEADING)
def table_na(tmp):
    return _read_labels(tmp, ["NA", "None", "nan"])


@case("CSV contexts TRUE, false, ' a'", SILENT)
def table_bools(tmp):
    return _read_labels(tmp, ["TRUE", "false", " a"])


@case("CSV with two 'gene' columns", SILENT)
def table_dup_header(tmp):
    from c3tl_sklearn.cli._files import read_effects

    _, Y = read_effects(effect_csv(tmp / "e.csv", ["a", "b"], genes=("gene", "g1", "gene")))
    return f"genes {list(Y.columns)}"


@case("CSV with an empty label cell", FINE)
def table_empty_label(tmp):
    (tmp / "e.csv").write_text("context,perturbation,g0,g1\na,p,1,2\n,q,1,2\nb,p,1,2\n")
    return cli("fit", tmp / "e.csv", "-o", tmp / "m.c3tl", "--model", "mean")


@case("CSV with an NA effect cell", FINE)
def table_na_effect(tmp):
    (tmp / "e.csv").write_text("context,perturbation,g0,g1\na,p,1,NA\nb,p,1,2\n")
    return cli("fit", tmp / "e.csv", "-o", tmp / "m.c3tl", "--model", "mean")


@case("`c3tl fit` on contexts 001/002/1, then `predict --context 1`", MISLEADING)
def table_predict_text(tmp):
    effect_csv(tmp / "e.csv", ["001", "002", "1"])
    cli("fit", tmp / "e.csv", "-o", tmp / "m.c3tl", "--model", "additive", "--quiet")
    return cli("predict", tmp / "m.c3tl", "--context", "1", "--all-perturbations",
               "-o", tmp / "p.csv")


@case("Python model on integer contexts, `c3tl predict --context 1`", MISLEADING)
def table_predict_int(tmp):
    from c3tl_sklearn import AdditiveBaseline

    X, Y = data()
    X = X.assign(context=X["context"].map({"ctx0": 1, "ctx1": 2, "ctx2": 10, "ctx3": 11}))
    AdditiveBaseline().fit(X, Y).save(tmp / "m.c3tl")
    return cli("predict", tmp / "m.c3tl", "--context", "1", "--all-perturbations",
               "-o", tmp / "p.csv")


# ------------------------------------------------------------------------------ studies

WORKER = """
import sys, time
from c3tl_sklearn.baselines import AdditiveBaseline
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.model_selection import LeaveOneContextOut
from c3tl_sklearn.tuning import C3TLSearchCV
X, Y = make_synthetic_perturbations(4, 12, 6, random_state=0)
start = float(sys.argv[2])
while time.time() < start:
    pass
try:
    C3TLSearchCV(AdditiveBaseline(), n_trials=1, storage=sys.argv[1], study_name="s",
                 cv=LeaveOneContextOut(random_state=0)).fit(X, Y)
    print("ok")
except Exception as exc:
    print(type(exc).__name__, str(exc).splitlines()[0][:80])
"""


@case("3 workers starting together on a new SQLite study (x3 databases)", FOREIGN,
      isolated=True)
def study_race(tmp):
    script = tmp / "w.py"
    script.write_text(WORKER)
    outcomes = []
    for attempt in range(3):
        start = time.time() + 8
        procs = [subprocess.Popen([sys.executable, str(script), str(tmp / f"s{attempt}.db"),
                                   str(start)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True) for _ in range(3)]
        outcomes += [p.communicate(timeout=300)[0].strip() for p in procs]
    failed = [o for o in outcomes if o != "ok"]
    return f"{len(outcomes) - len(failed)} of {len(outcomes)} workers ran" + (
        f"; {failed[0]}" if failed else "")


def _search(storage, **params):
    from c3tl_sklearn import AdditiveBaseline, LeaveOneContextOut
    from c3tl_sklearn.tuning import C3TLSearchCV

    return C3TLSearchCV(AdditiveBaseline(), n_trials=1, storage=str(storage), study_name="s",
                        cv=LeaveOneContextOut(random_state=0), random_state=0, **params)


@case("resuming a stored study on other data (Y * 2)", SILENT)
def study_other_data(tmp):
    X, Y = data()
    _search(tmp / "s.log").fit(X, Y)
    s = _search(tmp / "s.log").fit(X, Y * 2.0)
    return f"resumed: {len(s.cv_results_['trial'])} trials, best from the old data"


@case("resuming a stored study with another search space", SILENT)
def study_other_space(tmp):
    from optuna.distributions import FloatDistribution

    X, Y = data()
    _search(tmp / "s.log", param_space={"shrinkage": FloatDistribution(0.0, 5.0)}).fit(X, Y)
    s = _search(tmp / "s.log", param_space={"shrinkage": FloatDistribution(0.0, 50.0)})
    return f"resumed: {len(s.fit(X, Y).cv_results_['trial'])} trials"


@case("resuming a stored study on the same data, rows shuffled", FINE)
def study_shuffled(tmp):
    X, Y = data()
    _search(tmp / "s.log").fit(X, Y)
    order = np.random.RandomState(0).permutation(len(X))
    s = _search(tmp / "s.log").fit(X.iloc[order], Y.iloc[order])
    return f"resumed: {len(s.cv_results_['trial'])} trials"


# ------------------------------------------------------------------ parameters and labels

def _fit_params(**params):
    X, Y = data()
    model = tiny(**params).fit(X, Y)
    return f"fitted, net hidden_dims={model.net_.module__hidden_dims}"


@case("hidden_dims=(4.5,)", SILENT)
def hidden_float(tmp):
    return _fit_params(hidden_dims=(4.5,))


@case("hidden_dims=(True,)", SILENT)
def hidden_bool(tmp):
    return _fit_params(hidden_dims=(True,))


@case("hidden_dims=('64',)", SILENT)
def hidden_text(tmp):
    return _fit_params(hidden_dims=("64",))


@case("hidden_dims=(10**12,)", FOREIGN)
def hidden_huge(tmp):
    return _fit_params(hidden_dims=(10**12,), n_components=None)


def _fit_labels(mapping):
    from c3tl_sklearn import MeanBaseline

    X, Y = data()
    labels = X["context"].map(mapping).astype(object)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MeanBaseline().fit(X.assign(context=labels), Y)
    shown = f"; warning: {str(caught[0].message)[:100]}" if caught else ""
    return f"fitted, {len(model.contexts_)} contexts {list(model.contexts_)}{shown}"


@case("context labels 1 (int) and '1' (str)", SILENT)
def labels_int_str(tmp):
    return _fit_labels({"ctx0": 1, "ctx1": "1", "ctx2": "x", "ctx3": "y"})


@case("context labels 'ctx1' and 'ctx1 '", SILENT)
def labels_space(tmp):
    return _fit_labels({"ctx0": "ctx1", "ctx1": "ctx1 ", "ctx2": "x", "ctx3": "y"})


@case("context labels 'café' composed and decomposed", SILENT)
def labels_unicode(tmp):
    return _fit_labels({"ctx0": "caf\u00e9", "ctx1": "cafe\u0301", "ctx2": "x", "ctx3": "y"})


@case("context labels that are lists", FOREIGN)
def labels_lists(tmp):
    from c3tl_sklearn import MeanBaseline

    X, Y = data()
    MeanBaseline().fit(X.assign(context=[[c] for c in X["context"]]), Y)
    return "fitted"


def _fit_one(**params):
    X, Y = data()
    tiny(**params).fit(X, Y)
    return "fitted"


for _name, _params in [("lr=nan", {"lr": float("nan")}), ("lr='0.01'", {"lr": "0.01"}),
                       ("max_epochs=2.5", {"max_epochs": 2.5}), ("dropout=1.0", {"dropout": 1.0}),
                       ("batch_size=0", {"batch_size": 0}), ("device='tpu'", {"device": "tpu"}),
                       ("adaptation='Ridge'", {"adaptation": "Ridge"}),
                       ("validation_fraction=1.0", {"validation_fraction": 1.0})]:
    def _make(params=_params):
        def fn(tmp):
            return _fit_one(**params)
        fn.__name__ = "param_" + "_".join(f"{k}" for k in params) + str(len(CASES))
        return fn
    _fn = _make()
    globals()[_fn.__name__] = _fn
    case(_name, FINE)(_fn)


# ------------------------------------------------------------------ command-line extremes

def _cli_case(name, old, argv, setup="mean"):
    def fn(tmp):
        os.chdir(tmp)
        effect_csv(tmp / "e.csv", ["a", "b", "c", "d"], n_pert=8)
        cli("fit", "e.csv", "-o", "m.c3tl", "--model", "mean", "--quiet")
        return f"{cli(*argv)}; {files(tmp)}"
    fn.__name__ = "cli_" + str(len(CASES))
    globals()[fn.__name__] = fn
    case(name, old)(fn)


_cli_case("`c3tl fit --threads 0`", MISLEADING, ["fit", "e.csv", "-o", "x.c3tl", "--threads", "0"])
_cli_case("`c3tl predict --context ''`", MISLEADING,
          ["predict", "m.c3tl", "--context", "", "--all-perturbations", "-o", "p.csv"])
_cli_case("`c3tl fit --context-col perturbation` (both labels one column)", MISLEADING,
          ["fit", "e.csv", "-o", "x.c3tl", "--context-col", "perturbation"])
_cli_case("`c3tl fit --set hidden_dims=(10**13,)`", FOREIGN,
          ["fit", "e.csv", "-o", "x.c3tl", "--set", "hidden_dims=(10000000000000,)",
           "--set", "n_components=None"])
_cli_case("`c3tl fit --set lr=1e10`", MISLEADING,
          ["fit", "e.csv", "-o", "x.c3tl", "--set", "lr=1e10", "--set", "max_epochs=3"])
_cli_case("`c3tl fit --seed -1`", FINE, ["fit", "e.csv", "-o", "x.c3tl", "--seed", "-1"])
_cli_case("`c3tl fit -o nowhere/x.c3tl`", FINE, ["fit", "e.csv", "-o", "nowhere/x.c3tl"])
_cli_case("`c3tl fit -o e.csv` (the input)", FINE, ["fit", "e.csv", "-o", "e.csv"])
_cli_case("`c3tl fit --set max_epochs=0`", FINE,
          ["fit", "e.csv", "-o", "x.c3tl", "--set", "max_epochs=0"])
_cli_case("`c3tl fit --set lr=float('nan')`", FINE,
          ["fit", "e.csv", "-o", "x.c3tl", "--set", "lr=float('nan')"])
_cli_case("`c3tl evaluate --k 0`", FINE, ["evaluate", "e.csv", "e.csv", "--k", "0"])
_cli_case("`c3tl predict .` (a folder as the model)", FINE,
          ["predict", ".", "--context", "a", "--all-perturbations", "-o", "p.csv"])
_cli_case("`c3tl predict -o p.xlsx`", FINE,
          ["predict", "m.c3tl", "--pairs", "e.csv", "-o", "p.xlsx"])
_cli_case("`c3tl predict --observed` with a baseline", FINE,
          ["predict", "m.c3tl", "--context", "a", "--all-perturbations", "--observed", "e.csv",
           "-o", "p.csv"])


# ------------------------------------------------------------------ numerical tolerance

@case("row-order check of TinyC3TLEnsemble, permutation seed 3: the old rtol=1e-4 "
      "against the suite's atol of 4 x eps32*sqrt(n)*max|Y|", FOREIGN)
def row_order(tmp):
    from sklearn.base import clone

    from c3tl_sklearn import C3TLEnsemble, C3TLRegressor
    from c3tl_sklearn.datasets import make_synthetic_perturbations

    X, Y = make_synthetic_perturbations(4, 30, 12, observed_fraction=0.9, random_state=0)
    member = C3TLRegressor(max_epochs=2, hidden_dims=(4,), latent_dim=2, n_components=None,
                           validation_fraction=0.0, random_state=0)
    est = C3TLEnsemble(member, n_estimators=1, calibration_fraction=0.0, random_state=0)
    perm = np.random.RandomState(3).permutation(len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = clone(est).fit(X, Y).predict(X)
        b = clone(est).fit(X.iloc[perm], Y.iloc[perm]).predict(X)
    unit = np.finfo(np.float32).eps * np.sqrt(len(X)) * np.abs(Y.to_numpy()).max()
    rel = np.abs(a - b) / np.abs(a)
    units = np.abs(a - b).max() / unit
    return (f"max relative difference {rel.max():.3g} (the old rtol=1e-4 "
            f"{'fails' if rel.max() > 1e-4 else 'passes'}); max absolute difference "
            f"{units:.2f} x eps32*sqrt(n)*max|Y| (the suite's atol of 4 units "
            f"{'fails' if units > 4 else 'passes'})")


# ------------------------------------------------------------------------------ running

def run_case(fn_name: str) -> str:
    import torch

    torch.set_num_threads(1)
    # Ctrl-C as at a terminal: a process started in the background by a
    # non-interactive shell inherits SIGINT ignored, and no Ctrl-C case would fire
    signal.signal(signal.SIGINT, signal.default_int_handler)
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outcome = globals()[fn_name](tmp)
    except BaseException as exc:  # KeyboardInterrupt included: it is an outcome here
        where = traceback.extract_tb(exc.__traceback__)[-1].filename
        where = where.split("site-packages/")[-1].split("/")[0] if "site-packages" in where \
            else "c3tl_sklearn" if "c3tl_sklearn" in where else Path(where).name
        first = str(exc).splitlines()[0] if str(exc) else ""
        outcome = f"{type(exc).__name__} (from {where}): {first[:220]}"
    seconds = time.perf_counter() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return f"{outcome} [{seconds:.1f} s, +{grown:.0f} MB peak]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the outcomes as JSON here")
    parser.add_argument("--case", help="run one case (by function name) and print its outcome")
    parser.add_argument("--table", nargs=2, metavar=("BEFORE", "AFTER"),
                        help="print the markdown table of two JSON runs")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    if args.table:
        return print_table(*args.table)
    outcomes = {}
    for name, _old, _new, fn_name, isolated in CASES:
        if isolated:
            done = subprocess.run([sys.executable, __file__, "--case", fn_name],
                                  capture_output=True, text=True, timeout=600)
            lines = done.stdout.strip().splitlines()
            outcomes[name] = json.loads(lines[-1]) if done.returncode == 0 and lines else (
                f"process ended with status {done.returncode}: "
                f"{(done.stderr.strip().splitlines() or [''])[-1][:200]}")
        else:
            outcomes[name] = run_case(fn_name)
        print(f"{name}: {outcomes[name]}", file=sys.stderr, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(outcomes, indent=1, ensure_ascii=False))
    return 0


def print_table(before_path: str, after_path: str) -> int:
    before = json.loads(Path(before_path).read_text())
    after = json.loads(Path(after_path).read_text())
    totals: dict[str, dict[str, int]] = {"old": {}, "new": {}}
    print("| # | input or condition | before | after | verdict before | verdict after |")
    print("|---|---|---|---|---|---|")
    for i, (name, old, new, _fn, _iso) in enumerate(CASES, 1):
        for side, verdict in (("old", old), ("new", new)):
            totals[side][verdict] = totals[side].get(verdict, 0) + 1
        cell = [str(x).replace("|", "\\|").replace("\n", " ") for x in
                (before.get(name, "(not run)"), after.get(name, "(not run)"))]
        print(f"| {i} | {name} | {cell[0]} | {cell[1]} | {old} | {new} |")
    print()
    for side, label in (("old", "before"), ("new", "after")):
        counted = ", ".join(f"{totals[side].get(v, 0)} {v}"
                            for v in (SILENT, FOREIGN, MISLEADING, UNBOUNDED, FINE))
        print(f"Totals {label}: {counted}; {len(CASES)} cases.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
