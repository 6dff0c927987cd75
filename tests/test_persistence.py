"""Model files without pickle: round trips in a fresh process, refused files, devices."""

import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from sklearn.utils.validation import check_is_fitted

from c3tl_sklearn import (
    AdditiveBaseline,
    C3TLRegressor,
    ClosestContextBaseline,
    LinearTransferBaseline,
    MeanBaseline,
)
from c3tl_sklearn.ensemble import C3TLEnsemble
from c3tl_sklearn.persistence import FORMAT_VERSION, load, read_metadata
from c3tl_sklearn.persistence._format import _checksum

from .conftest import HANG_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(max_epochs=8, hidden_dims=(16,), latent_dim=4, n_components=5, random_state=0)
#: The data of every model here; the fresh process rebuilds it from these arguments.
DATA = "make_synthetic_perturbations(5, 24, 12, observed_fraction=0.8, random_state=3)"


def data():
    from c3tl_sklearn.datasets import make_synthetic_perturbations

    return eval(DATA, {"make_synthetic_perturbations": make_synthetic_perturbations})


def split():
    """Fit data without ctx4, and a few ctx4 measurements as ``observed``."""
    X, Y = data()
    new = (X["context"] == "ctx4").to_numpy()
    return X[~new], Y[~new], (X[new].iloc[:4], Y[new].iloc[:4]), X[new].iloc[4:]


MODELS = {
    "C3TLRegressor": lambda: C3TLRegressor(**TINY),
    "C3TLRegressor-offset-genes": lambda: C3TLRegressor(
        **{**TINY, "n_components": None, "adaptation": "offset", "validation_fraction": 0.0}),
    "MeanBaseline": MeanBaseline,
    "AdditiveBaseline": AdditiveBaseline,
    "ClosestContextBaseline": ClosestContextBaseline,
    "LinearTransferBaseline": lambda: LinearTransferBaseline(n_components=4),
    "C3TLEnsemble": lambda: C3TLEnsemble(C3TLRegressor(**TINY), n_estimators=2, random_state=0),
    "C3TLEnsemble-baselines": lambda: C3TLEnsemble(
        AdditiveBaseline(), n_estimators=2, random_state=0),
}

#: Run in a fresh interpreter: load each file, predict, write the predictions.
FRESH = """
import sys, warnings
import numpy as np
import torch
sys.path.insert(0, {tests!r})
from tests.test_persistence import split
from c3tl_sklearn.persistence import load
warnings.simplefilter("ignore")
torch.set_num_threads(1)
X, Y, observed, X_new = split()
out = {{}}
for name in {names!r}:
    model = load({folder!r} + "/" + name + ".safetensors")
    out[name + "/fit"] = model.predict(X)
    out[name + "/new"] = model.predict(X_new)
    if hasattr(model, "estimators_") or name.startswith("C3TLRegressor"):
        out[name + "/observed"] = model.predict(X_new, observed=observed)
    if hasattr(model, "estimators_"):
        out[name + "/std"] = model.predict(X_new, return_std=True, observed=observed)[1]
np.savez({folder!r} + "/fresh.npz", **out)
"""


def predictions(model, name):
    X, _, observed, X_new = split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {f"{name}/fit": model.predict(X), f"{name}/new": model.predict(X_new)}
        if hasattr(model, "estimators_") or name.startswith("C3TLRegressor"):
            out[f"{name}/observed"] = model.predict(X_new, observed=observed)
        if hasattr(model, "estimators_"):
            out[f"{name}/std"] = model.predict(X_new, return_std=True, observed=observed)[1]
    return out


@pytest.fixture(scope="module")
def fitted():
    X, Y, _, _ = split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: make().fit(X, Y) for name, make in MODELS.items()}


@pytest.fixture(scope="module")
def fresh_predictions(fitted, tmp_path_factory):
    """Every model saved here, loaded and predicted in a new Python process."""
    folder = tmp_path_factory.mktemp("models")
    for name, model in fitted.items():
        model.save(folder / f"{name}.safetensors")
    script = FRESH.format(tests=str(ROOT), names=list(fitted), folder=str(folder))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    with np.load(folder / "fresh.npz") as npz:
        return dict(npz)


@pytest.mark.parametrize("name", list(MODELS))
def test_fresh_process_gives_identical_predictions(fitted, fresh_predictions, name):
    expected = predictions(fitted[name], name)
    assert len(expected) >= 2
    for key, value in expected.items():
        np.testing.assert_array_equal(fresh_predictions[key], value, err_msg=key)


@pytest.mark.parametrize("name", ["C3TLRegressor", "C3TLEnsemble", "C3TLEnsemble-baselines"])
def test_loaded_model_state(fitted, tmp_path, name):
    model = fitted[name]
    restored = type(model).load(model.save(tmp_path / "m.safetensors"))
    assert type(restored) is type(model)
    assert restored.get_params(deep=False).keys() == model.get_params(deep=False).keys()
    for key, value in model.get_params(deep=False).items():
        if key == "estimator":
            assert type(restored.estimator) is type(value)
            assert restored.estimator.get_params() == value.get_params()
        else:
            assert restored.get_params(deep=False)[key] == value
    np.testing.assert_array_equal(restored.contexts_, model.contexts_)
    assert restored.contexts_.dtype == object
    if name == "C3TLRegressor":
        # shared state stays shared, and the history comes back whole
        assert restored.history_ is restored.net_.history
        assert restored.history_[:, "valid_loss"] == model.history_[:, "valid_loss"]
        assert not restored.net_.module_.training
        for key, tensor in model.net_.module_.state_dict().items():
            assert torch.equal(restored.net_.module_.state_dict()[key], tensor)
        for got, want in zip(restored.readout_.factor_r_, model.readout_.factor_r_, strict=True):
            np.testing.assert_array_equal(got, want)
        assert restored.pca_.components_.flags.f_contiguous == \
            model.pca_.components_.flags.f_contiguous
    else:
        assert len(restored.estimators_) == len(model.estimators_)
        pd.testing.assert_frame_equal(restored.measured_, model.measured_)


def test_loaded_model_pickles_and_refits(fitted, tmp_path):
    X, Y, _, _ = split()
    restored = C3TLRegressor.load(fitted["C3TLRegressor"].save(tmp_path / "m"))
    again = pickle.loads(pickle.dumps(restored))
    np.testing.assert_array_equal(again.predict(X), restored.predict(X))
    refit = restored.fit(X, Y)  # a loaded model is an ordinary estimator
    np.testing.assert_array_equal(refit.predict(X), fitted["C3TLRegressor"].predict(X))


def test_a_loaded_net_makes_its_optimizer_when_first_used(fitted, tmp_path):
    # loading skips the optimizer (torch's first one imports torch._dynamo)
    net = C3TLRegressor.load(fitted["C3TLRegressor"].save(tmp_path / "m")).net_
    assert "optimizer_" not in vars(net)
    net.set_params(lr=0.5)  # a virtual parameter of the optimizer, as on a fitted net
    optimizer = net.optimizer_
    assert isinstance(optimizer, torch.optim.AdamW)
    assert [g["lr"] for g in optimizer.param_groups] == [0.5]
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == \
        {id(p) for p in net.module_.parameters()}
    assert net.optimizer_ is optimizer


def test_load_leaves_the_torch_rng_alone(fitted, tmp_path):
    path = fitted["C3TLRegressor"].save(tmp_path / "m")
    state = torch.get_rng_state()
    C3TLRegressor.load(path)
    assert torch.equal(torch.get_rng_state(), state)


def test_unfitted_round_trip(tmp_path):
    model = C3TLRegressor(hidden_dims=(8, 4), adaptation=None, batch_size=None)
    restored = C3TLRegressor.load(model.save(tmp_path / "m"))
    assert restored.get_params() == model.get_params()
    with pytest.raises(Exception, match="not fitted"):
        check_is_fitted(restored)


def test_labels_of_every_supported_type(tmp_path):
    X, Y = data()
    contexts = {f"ctx{i}": lab for i, lab in enumerate([3, 2.5, ("a", 1), True, "e"])}
    X = X.assign(context=X["context"].map(contexts))
    X["perturbation"] = np.int64(7) + X["perturbation"].str[4:].astype(np.int64)
    Y = pd.DataFrame(Y.to_numpy(), columns=[f"g{j}" for j in range(Y.shape[1])])
    model = MeanBaseline().fit(X, Y)
    restored = MeanBaseline.load(model.save(tmp_path / "m"))
    assert list(restored.contexts_) == list(model.contexts_)
    assert [type(c) for c in restored.contexts_] == [type(c) for c in model.contexts_]
    assert [type(p) for p in restored.perturbations_] == [type(p) for p in model.perturbations_]
    np.testing.assert_array_equal(restored.gene_names_, model.gene_names_)
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_every_kind_of_array_and_container_round_trips(tmp_path):
    X, Y = data()
    model = MeanBaseline().fit(X, Y)
    extra = {
        "zero_d_": np.array(3.5), "empty_": np.zeros((4, 0)),
        "half_": np.arange(6, dtype=np.float16).reshape(2, 3),
        "big_endian_": np.arange(3, dtype=">f8"), "fortran_": np.asfortranarray(np.eye(3)[:, :2]),
        "dates_": np.array(["2024-01-01", "NaT"], dtype="datetime64[D]"),
        "text_": np.array([["a", "bc"]]), "flags_": np.array([True, False]),
        "mixed_": {"a": [1, 2.0, None, (1, "x")], 3: np.int32(4), (1, 2): float("-inf")},
        # NumPy floats are floats: a NaN loss in a history, for example
        "nonfinite_": [np.float64("nan"), np.float64("-inf"), np.float32("inf")],
    }
    for name, value in extra.items():
        setattr(model, name, value)
    restored = MeanBaseline.load(model.save(tmp_path / "m"))
    for name, value in extra.items():
        got = getattr(restored, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == value.dtype and got.shape == value.shape, name
            assert got.flags.f_contiguous == value.flags.f_contiguous, name
            np.testing.assert_array_equal(got, value)
            assert got.flags.writeable, name
        elif name == "nonfinite_":
            assert np.isnan(got[0]) and got[1:] == [-np.inf, np.inf]
        else:
            assert got == value and type(got[3]) is np.int32


class Label:
    """A hashable label type the file format cannot store."""

    def __init__(self, name):
        self.name = name

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        return isinstance(other, Label) and other.name == self.name

    def __lt__(self, other):
        return self.name < other.name

    def __repr__(self):
        return f"Label({self.name!r})"


def test_what_cannot_be_encoded_is_refused(tmp_path):
    X, Y = data()
    X = X.assign(context=X["context"].map(Label))
    model = MeanBaseline().fit(X, Y)
    with pytest.raises(ValueError, match=re.escape(
            "cannot save MeanBaseline.contexts_ (element of an array): it holds Label('ctx0') "
            "of type Label, and model files store labels that are str, int, float, bool, None "
            "or tuples of these. Convert the labels (for example X[col].astype(str)) before "
            "fit, or save with pickle.")):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()
    with_callbacks = C3TLRegressor(callbacks=[object()])
    with pytest.raises(ValueError, match=re.escape(
            "cannot save C3TLRegressor.callbacks[0]: objects of type builtins.object have no "
            "safe encoding. Remove or reset it with set_params (for example callbacks=None, or "
            "an int random_state), or save with pickle.")):
        with_callbacks.save(tmp_path / "m")


# ------------------------------------------------------------ refused files
def rewrite(path, new_path, edit=None, *, checksum=True):
    """Copy a model file with its JSON edited; ``checksum=True`` recomputes the checksum,
    as someone crafting a file on purpose would."""
    with safe_open(str(path), framework="numpy") as f:
        metadata = f.metadata()
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    document = json.loads(metadata["c3tl_sklearn"])
    if edit is not None:
        edit(document)
    payload = json.dumps(document)
    metadata["c3tl_sklearn"] = payload
    if checksum:
        metadata["c3tl_sklearn_sha256"] = _checksum(payload, arrays)
    save_file(arrays, str(new_path), metadata=metadata)
    return new_path


class Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def find(spec, key, value):
    """Every dict in the JSON document with ``spec[key] == value``."""
    if isinstance(spec, dict):
        if spec.get(key) == value:
            yield spec
        for v in spec.values():
            yield from find(v, key, value)
    elif isinstance(spec, list):
        for v in spec:
            yield from find(v, key, value)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    return fitted["LinearTransferBaseline"].save(
        tmp_path_factory.mktemp("good") / "model.safetensors")


def set_class(name):
    def edit(doc):
        next(find(doc, "class", "sklearn.decomposition.PCA"))["class"] = name
    return edit


def set_top(key, value):
    def edit(doc):
        doc[key] = value
    return edit


def add_param(doc):
    doc["estimator"]["params"]["evil"] = "__import__('os').system('touch pwned')"


def dunder_attribute(doc):
    doc["estimator"]["attributes"]["__class__"] = "x"


def bad_shape(doc):
    next(s for s in find(doc, "__type__", "ndarray") if "key" in s)["shape"] = [3, 3, 3]


TAMPERED = [
    ("pickle renamed", "{path} is a pickle file, not a c3tl-sklearn model file; it was not "
     "opened. Unpickle it (pickle.load / joblib.load) only if you trust its source."),
    ("torch.save file", "{path} is a zip archive (torch.save or similar), not a c3tl-sklearn "
     "model file; it was not opened."),
    ("truncated", "{path} is not a readable c3tl-sklearn model file (not a safetensors file, "
     "or truncated or corrupted): "),
    ("plain text", "{path} is not a readable c3tl-sklearn model file (not a safetensors file, "
     "or truncated or corrupted): "),
    ("foreign safetensors", "{path} is a safetensors file but not a c3tl-sklearn model file "
     "(no 'c3tl_sklearn' metadata); plain weight files are not estimators."),
    ("format version 99", "{path} has model format version 99 (saved by c3tl-sklearn 0.1.0); "
     "this version reads format versions [1, 2, 3]. Load it with the c3tl-sklearn version that "
     "saved it, or refit the model."),
    ("no format", "{path} is not a c3tl-sklearn model file (format field missing)."),
    ("edited, old checksum", "{path}: the checksum does not match the contents; the file was "
     "modified or corrupted after it was saved."),
    ("class os.system", "the file names class 'os.system' at LinearTransferBaseline.pca_, "
     "which is not allowed"),
    ("class builtins.eval", "the file names class 'builtins.eval' at LinearTransferBaseline.pca_"
     ", which is not allowed"),
    ("unknown parameter", "the file gives LinearTransferBaseline the parameter 'evil', which "
     "this version does not have"),
    ("dunder attribute", "malformed file: attribute name '__class__' at LinearTransferBaseline "
     "refused"),
    ("wrong shape", "malformed file: tensor of LinearTransferBaseline.effects_ has the wrong "
     "dtype or shape"),
    ("another estimator", "{path} holds a LinearTransferBaseline model, not a MeanBaseline; "
     "load it with LinearTransferBaseline.load or c3tl_sklearn.persistence.load."),
]


def make_tampered(case, good, path, marker):
    if case == "pickle renamed":
        path.write_bytes(pickle.dumps(Payload(marker)))
    elif case == "torch.save file":
        torch.save({"w": torch.zeros(2), "payload": Payload(marker)}, path)
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:-100])
    elif case == "plain text":
        path.write_text("import os; os.system('touch pwned')\n")
    elif case == "foreign safetensors":
        save_file({"weight": np.zeros(3, dtype=np.float32)}, str(path))
    elif case == "format version 99":
        rewrite(good, path, set_top("format_version", 99))
    elif case == "no format":
        rewrite(good, path, set_top("format", "other"))
    elif case == "edited, old checksum":
        rewrite(good, path, add_param, checksum=False)
    elif case == "class os.system":
        rewrite(good, path, set_class("os.system"))
    elif case == "class builtins.eval":
        rewrite(good, path, set_class("builtins.eval"))
    elif case == "unknown parameter":
        rewrite(good, path, add_param)
    elif case == "dunder attribute":
        rewrite(good, path, dunder_attribute)
    elif case == "wrong shape":
        rewrite(good, path, bad_shape)
    elif case == "another estimator":
        path.write_bytes(good.read_bytes())


@pytest.mark.parametrize(("case", "message"), TAMPERED, ids=[c for c, _ in TAMPERED])
def test_tampered_or_foreign_file_is_refused_without_running_anything(
        saved, tmp_path, case, message, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a 'touch pwned' payload would land
    marker = tmp_path / "payload-ran"
    path = tmp_path / "model.safetensors"
    make_tampered(case, saved, path, marker)
    assert not marker.exists()
    cls = MeanBaseline if case == "another estimator" else LinearTransferBaseline
    with pytest.raises(ValueError, match="^" + re.escape(message.format(path=path))):
        cls.load(path)
    assert not marker.exists()
    assert not (tmp_path / "pwned").exists()


def test_tampered_message_table_is_complete():
    # the closing report's table of refused inputs is this list: keep it in sync
    assert len(TAMPERED) == len({c for c, _ in TAMPERED}) == 14


def test_read_metadata_describes_the_file(saved):
    info = read_metadata(saved)
    assert info["format_version"] == FORMAT_VERSION
    assert info["estimator"]["class"] == "c3tl_sklearn.LinearTransferBaseline"
    assert info["estimator"]["params"]["n_components"] == 4
    assert {"c3tl-sklearn", "numpy", "scikit-learn", "safetensors"} <= set(info["versions"])


# ------------------------------------------------------------------ devices
def test_model_saved_on_cuda_loads_on_cpu(fitted, tmp_path):
    """A file whose model and tensors say "cuda" loads on a CPU-only machine.

    The file stores tensors as bytes with the device they came from as a label; here
    the labels and the model's device parameters claim CUDA, as after training on a GPU.
    """
    model = fitted["C3TLRegressor"]

    def on_cuda(doc):
        doc["estimator"]["params"]["device"] = "cuda"
        net = next(find(doc, "__type__", "skorch_net"))
        net["device"] = net["params"]["device"] = "cuda"
        tensors = list(find(doc, "__type__", "tensor"))
        assert len(tensors) >= 10
        for spec in tensors:
            spec["device"] = "cuda:0"

    path = rewrite(model.save(tmp_path / "cpu.safetensors"), tmp_path / "cuda.safetensors",
                   on_cuda)
    assert read_metadata(path)["estimator"]["params"]["device"] == "cuda"
    restored = C3TLRegressor.load(path)
    assert restored.device == "cpu" and str(restored.net_.device) == "cpu"
    assert all(t.device.type == "cpu" for t in restored.net_.module_.state_dict().values())
    X, *_ = split()
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_ensemble_members_follow_the_load_device(fitted, tmp_path):
    model = fitted["C3TLEnsemble"]
    restored = C3TLEnsemble.load(model.save(tmp_path / "m"), device=torch.device("cpu"))
    assert restored.estimator.device == "cpu"
    assert {m.device for m in restored.estimators_} == {"cpu"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_load_on_a_missing_device_says_what_the_machine_has(fitted, tmp_path):
    path = fitted["C3TLRegressor"].save(tmp_path / "m")
    with pytest.raises(ValueError, match=re.escape(
            "device='cuda' was requested but torch sees no CUDA device; use device='cpu'.")):
        C3TLRegressor.load(path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_cuda_trained_model_round_trips_to_cpu_and_back(tmp_path):
    X, Y, _, _ = split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu = C3TLRegressor(**{**TINY, "device": "cuda"}).fit(X, Y)
    path = gpu.save(tmp_path / "gpu.safetensors")
    cpu = C3TLRegressor.load(path)
    assert cpu.net_.module_.obs_x.device.type == "cpu"
    np.testing.assert_allclose(cpu.predict(X), gpu.predict(X), atol=1e-4)
    again = C3TLRegressor.load(path, device="cuda")
    np.testing.assert_array_equal(again.predict(X), gpu.predict(X))


def test_baselines_load_without_torch(fitted, tmp_path):
    path = fitted["C3TLEnsemble-baselines"].save(tmp_path / "m")
    code = (f"import sys; from c3tl_sklearn.persistence import load; load({str(path)!r}); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT_S)
    assert done.returncode == 0, done.stderr


def test_module_level_load_returns_the_saved_class(fitted, tmp_path):
    path = fitted["AdditiveBaseline"].save(tmp_path / "m")
    assert type(load(path)) is AdditiveBaseline


def test_the_payload_is_live(tmp_path):
    # control for the refusal test: unpickling the same bytes does run code
    marker = tmp_path / "payload-ran"
    pickle.loads(pickle.dumps(Payload(marker))).close()
    assert marker.exists()


def test_a_parameter_added_after_the_file_was_written_keeps_its_default(fitted, tmp_path):
    model = fitted["C3TLRegressor"]

    def drop(doc):
        del doc["estimator"]["params"]["context_balance"]

    path = rewrite(model.save(tmp_path / "m"), tmp_path / "older.safetensors", drop)
    restored = C3TLRegressor.load(path)
    assert restored.context_balance == C3TLRegressor().context_balance
    X, *_ = split()
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_save_leaves_the_model_as_it_was(fitted, tmp_path):
    model = fitted["C3TLEnsemble"]
    before = {k: id(v) for k, v in vars(model).items()}
    params = model.get_params(deep=True)
    model.save(tmp_path / "m")
    assert {k: id(v) for k, v in vars(model).items()} == before
    assert model.get_params(deep=True).keys() == params.keys()
    assert list(tmp_path.iterdir()) == [tmp_path / "m"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m").stat().st_mode & 0o777 == 0o666 & ~umask  # like any new file


# ------------------------------------------------------------ older formats
def test_a_format_version_2_file_loads_and_predicts_as_when_saved(tmp_path):
    """Version 2 stored the read-out as dense sums; loading turns them into factors.

    The file and its predictions were written by the code of d0f0db8 with
    ``tests/data/persistence/make_format_v2.py``.
    """
    from .data.persistence.make_format_v2 import HERE, data

    path = HERE / "c3tl_format_v2.c3tl"
    assert read_metadata(path)["format_version"] == 2
    model = C3TLRegressor.load(path)
    assert len(model.readout_.factor_f_) == len(model.contexts_)
    query = data()[2]
    expected = np.load(HERE / "c3tl_format_v2_pred.npy")
    # the file's residual sums were float32: the factors reproduce them to that precision
    np.testing.assert_allclose(model.predict(query), expected, rtol=0,
                               atol=1e-5 * float(np.abs(expected).max()))
    # saved again, it is a file of today's version with the same predictions
    again = tmp_path / "again.c3tl"
    model.save(again)
    assert read_metadata(again)["format_version"] == FORMAT_VERSION
    np.testing.assert_array_equal(C3TLRegressor.load(again).predict(query), model.predict(query))
