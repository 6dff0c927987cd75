"""Model files without pickle: ``save`` / ``load`` of fitted estimators as one safetensors file.

A model file is a single `safetensors <https://huggingface.co/docs/safetensors>`_
file. Every numeric array of the fitted state (network weights and buffers,
PCA bases, read-out statistics, effect tables) is one of its tensors; the
rest (estimator class, ``get_params()``, labels, gene names, training
history, versions) is a JSON document stored in the file's header metadata,
with a SHA-256 checksum over the document and every tensor.

Why one safetensors file rather than a directory or skops: one file is what
people copy, attach and archive, and its JSON and weights cannot get out of
step; safetensors' header parser and JSON are the only parsers that touch
the file, so loading never executes code (no pickle anywhere, torch's
unpickler included), and any safetensors tool can list the tensors and print
the JSON (``safe_open(path, "numpy").metadata()``).

What loading checks, in order: the file is a safetensors file (a pickle or a
truncated file is named as such), it carries this package's metadata, its
format version is one this version reads, its checksum matches, and every
class it names is on a fixed list (the package's estimators, scikit-learn's
``PCA`` and ``Ridge``, :class:`~c3tl_sklearn.adaptation.ContextReadout`,
skorch's ``History``); nothing else is ever imported or constructed. Any
failure is a ``ValueError`` that says what is wrong.

Examples
--------
>>> import tempfile, pathlib
>>> from c3tl_sklearn import MeanBaseline
>>> from c3tl_sklearn.datasets import make_synthetic_perturbations
>>> X, Y = make_synthetic_perturbations(3, 10, 5, random_state=0)
>>> model = MeanBaseline().fit(X, Y)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
>>> _ = model.save(path)
>>> restored = MeanBaseline.load(path)
>>> bool((restored.predict(X) == model.predict(X)).all())
True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import secrets
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FORMAT_VERSION", "PersistenceMixin", "load", "read_metadata", "save"]

#: Version of the file layout. A file of another version is refused.
FORMAT_VERSION = 1
_FORMAT = "c3tl-sklearn-model"
_META_KEY = "c3tl_sklearn"
_CHECKSUM_KEY = "c3tl_sklearn_sha256"

#: Classes a file may name, by the stable public name written in the file.
#: Loading imports only from this table (and classes already registered by
#: subclassing :class:`PersistenceMixin`), never a module named by the file.
_ALLOWED: dict[str, tuple[str, str]] = {
    "c3tl_sklearn.C3TLRegressor": ("c3tl_sklearn.estimator", "C3TLRegressor"),
    "c3tl_sklearn.C3TLEnsemble": ("c3tl_sklearn.ensemble", "C3TLEnsemble"),
    "c3tl_sklearn.MeanBaseline": ("c3tl_sklearn.baselines", "MeanBaseline"),
    "c3tl_sklearn.AdditiveBaseline": ("c3tl_sklearn.baselines", "AdditiveBaseline"),
    "c3tl_sklearn.ClosestContextBaseline": ("c3tl_sklearn.baselines", "ClosestContextBaseline"),
    "c3tl_sklearn.LinearTransferBaseline": ("c3tl_sklearn.baselines", "LinearTransferBaseline"),
    "c3tl_sklearn.adaptation.ContextReadout": ("c3tl_sklearn.adaptation", "ContextReadout"),
    "c3tl_sklearn.estimator.C3TLNet": ("c3tl_sklearn.estimator", "C3TLNet"),
    "sklearn.decomposition.PCA": ("sklearn.decomposition", "PCA"),
    "sklearn.linear_model.Ridge": ("sklearn.linear_model", "Ridge"),
}
#: Of those, the plain-data classes rebuilt from their attributes alone.
_PLAIN_OBJECTS = {"c3tl_sklearn.adaptation.ContextReadout"}
#: Subclasses of PersistenceMixin defined outside the table, by "module.qualname".
_REGISTERED: dict[str, type] = {}
#: pandas extension dtypes a saved DataFrame column may have.
_EXTENSION_DTYPES = {"string", "str", "boolean", "Int8", "Int16", "Int32", "Int64",
                     "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64"}
#: Scalar params of a skorch net that travel in the file; the rest (module
#: class, callbacks, iterators) come from the estimator's own ``_make_net``.
_PLAIN = (type(None), bool, int, float, str)


class PersistenceMixin:
    """``save(path)`` and ``Cls.load(path)``: model files that load without pickle.

    Added to the package's estimators. The file format, what loading
    checks and what it refuses are described in :mod:`c3tl_sklearn.persistence`.
    Pickle keeps working as for any scikit-learn estimator.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTERED[f"{cls.__module__}.{cls.__qualname__}"] = cls

    def save(self, path: str | os.PathLike) -> Path:
        """Write the estimator (fitted or not) to ``path`` as one safetensors file.

        Parameters
        ----------
        path : str or path-like
            File to write (replaced atomically if it exists); the usual
            suffix is ``.safetensors``.

        Returns
        -------
        path : pathlib.Path
            The file written.

        Raises
        ------
        ValueError
            If a parameter or fitted attribute cannot be stored without
            pickle (for example skorch ``callbacks`` or a label that is not a
            str, int, float, bool, None or tuple); the message names it.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from c3tl_sklearn import AdditiveBaseline
        >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
        >>> X, Y = make_synthetic_perturbations(3, 10, 5, random_state=0)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "additive.safetensors"
        >>> AdditiveBaseline().fit(X, Y).save(path).name
        'additive.safetensors'
        """
        return save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: Any = "cpu"):
        """Read an estimator written by :meth:`save`, without executing anything from the file.

        Parameters
        ----------
        path : str or path-like
            A file written by :meth:`save`.
        device : str or torch.device, default="cpu"
            Where the network weights go; every ``device`` parameter of the
            loaded model (ensemble members included) is set to it, so a model
            trained on a GPU loads on a CPU-only machine as it is. Models
            without network weights (the baselines) ignore it and load
            without importing torch.

        Returns
        -------
        estimator : instance of this class
            Predictions are identical to those of the saved model on the
            same device.

        Raises
        ------
        ValueError
            If the file is not a model file of this package, is of another
            format version, was modified or truncated, names a class that is
            not allowed, or holds another estimator class than ``cls``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from c3tl_sklearn import MeanBaseline
        >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
        >>> X, Y = make_synthetic_perturbations(3, 10, 5, random_state=0)
        >>> path = MeanBaseline().fit(X, Y).save(pathlib.Path(tempfile.mkdtemp()) / "m")
        >>> MeanBaseline.load(path).predict(X).shape
        (30, 5)
        """
        return load(path, device=device, expected=cls)


# --------------------------------------------------------------------- names
def _public_name(cls: type) -> str | None:
    """The name a file gives ``cls``: its entry in ``_ALLOWED``, else its registered name.

    ``None`` for a class that cannot go in a file (a subclass of an allowed
    class included: it may override what loading relies on).
    """
    for name, (module, attr) in _ALLOWED.items():
        if module.split(".")[0] == cls.__module__.split(".")[0] and attr == cls.__name__:
            if getattr(import_module(module), attr) is cls:
                return name
    name = f"{cls.__module__}.{cls.__qualname__}"
    return name if _REGISTERED.get(name) is cls else None


def _resolve(name: Any, where: str) -> type:
    """The class a file names, from the fixed table or the registry; never another import."""
    if not isinstance(name, str):
        raise ValueError(f"malformed class name at {where}: {name!r}")
    if name in _ALLOWED:
        module, attr = _ALLOWED[name]
        return getattr(import_module(module), attr)
    if name in _REGISTERED:
        return _REGISTERED[name]
    raise ValueError(
        f"the file names class {name!r} at {where}, which is not allowed: a model file may "
        f"only hold {sorted(_ALLOWED)} (or a subclass of PersistenceMixin already imported). "
        "Nothing was imported or executed."
    )


def _versions() -> dict[str, str]:
    """Versions of what produced the file (informative: loading checks the format version)."""
    from . import __version__

    out = {"python": platform.python_version(), "c3tl-sklearn": __version__}
    for dist in ("numpy", "scikit-learn", "pandas", "torch", "skorch", "safetensors"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


# ------------------------------------------------------------------ encoding
class _Encoder:
    """Turns a fitted estimator into a JSON-able document and a dict of arrays.

    Every container, array and object becomes a tagged JSON object
    (``{"__type__": ...}``); arrays of numbers go to the tensors. An object
    met twice (``history_`` is ``net_.history``) is written once and
    referenced by id afterwards, so shared state stays shared.
    """

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}
        self._ids: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps ids unique while encoding

    def _memo(self, value) -> tuple[int, dict | None]:
        key = id(value)
        if key in self._ids:
            return self._ids[key], {"__type__": "ref", "id": self._ids[key]}
        n = len(self._ids)
        self._ids[key] = n
        self._keep.append(value)
        return n, None

    def label(self, value, where: str):
        if value is None or isinstance(value, (str, bool)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            return {"__type__": "float", "value": repr(value)}
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return {"__type__": "scalar", "dtype": value.dtype.str,
                    "value": self.label(value.item(), where)}
        if isinstance(value, tuple):
            return {"__type__": "tuple", "items": [self.label(v, where) for v in value]}
        raise ValueError(
            f"cannot save {where}: it holds {value!r} of type {type(value).__name__}, and model "
            "files store labels that are str, int, float, bool, None or tuples of these. "
            "Convert the labels (for example X[col].astype(str)) before fit, or save with pickle."
        )

    def value(self, value, where: str):
        if value is None or isinstance(value, (str, bool, int, float, np.generic, tuple)):
            if isinstance(value, tuple):
                return {"__type__": "tuple",
                        "items": [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]}
            return self.label(value, where)
        if type(value) is list:
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if type(value) is dict:
            return {"__type__": "dict",
                    "items": [[self.label(k, f"{where} key"), self.value(v, f"{where}[{k!r}]")]
                              for k, v in value.items()]}
        if type(value).__module__.startswith("torch") and type(value).__name__ == "device":
            return {"__type__": "device", "value": str(value)}
        n, ref = self._memo(value)
        if ref is not None:
            return ref
        if isinstance(value, np.ndarray):
            return self.ndarray(value, n, where)
        if _is_tensor(value):
            arr = value.detach().cpu()
            try:
                arr = arr.numpy()
            except TypeError as exc:  # bfloat16 and friends have no numpy dtype
                raise ValueError(
                    f"cannot save {where}: tensor of dtype {value.dtype} ({exc})"
                ) from None
            out = self.ndarray(arr, n, where)
            out.update({"__type__": "tensor", "device": str(value.device)})
            return out
        if isinstance(value, pd.DataFrame):
            return self.dataframe(value, n, where)
        if _is_history(value):
            return {"__type__": "history", "id": n,
                    "items": self.value(list(value), f"{where} (history)")}
        if _is_skorch_net(value):
            return self.net(value, n, where)
        name = _public_name(type(value))
        if name in _PLAIN_OBJECTS:
            return {"__type__": "object", "id": n, "class": name,
                    "attributes": self.attributes(value, set(), where)}
        if name is not None:
            params = value.get_params(deep=False)
            return {"__type__": "estimator", "id": n, "class": name,
                    "params": {k: self.value(v, f"{where}.{k}") for k, v in params.items()},
                    "attributes": self.attributes(value, set(params), where)}
        raise ValueError(
            f"cannot save {where}: objects of type {type(value).__module__}."
            f"{type(value).__qualname__} have no safe encoding. Remove or reset it "
            "with set_params (for example callbacks=None, or an int random_state), or save "
            "with pickle."
        )

    def attributes(self, obj, skip: set[str], where: str) -> dict:
        return {k: self.value(v, f"{where}.{k}") for k, v in vars(obj).items() if k not in skip}

    def ndarray(self, arr: np.ndarray, n: int, where: str) -> dict:
        out = {"__type__": "ndarray", "id": n, "dtype": arr.dtype.str, "shape": list(arr.shape)}
        kind = arr.dtype.kind
        if kind in "biufMm":
            data = arr.view(np.int64) if kind in "Mm" else arr
            if data.ndim > 1 and data.flags.f_contiguous and not data.flags.c_contiguous:
                # keep Fortran order (sklearn's PCA and Ridge hold such arrays):
                # BLAS results depend on the layout in the last bits
                data = data.T
                out["order"] = "F"
            # little-endian and C order, 0-d arrays staying 0-d (ascontiguousarray would not)
            data = data.astype(data.dtype.newbyteorder("<"), order="C", copy=False)
            key = f"t{n}"
            self.arrays[key] = data
            out["key"] = key
        elif kind in "OU":
            out["labels"] = [self.label(v, f"{where} (element of an array)")
                             for v in arr.ravel().tolist()]
        else:
            raise ValueError(f"cannot save {where}: arrays of dtype {arr.dtype} are not supported")
        return out

    def dataframe(self, df: pd.DataFrame, n: int, where: str) -> dict:
        columns = []
        for j, col in enumerate(df.columns):
            s = df.iloc[:, j]
            at = f"{where}[{col!r}]"
            if isinstance(s.dtype, pd.CategoricalDtype):
                columns.append({"__type__": "categorical",
                                "codes": self.value(s.cat.codes.to_numpy(), at),
                                "categories": self.value(
                                    np.asarray(s.cat.categories, dtype=object), at),
                                "ordered": bool(s.cat.ordered)})
            elif isinstance(s.dtype, np.dtype):
                columns.append(self.value(s.to_numpy(copy=True), at))
            elif str(s.dtype) in _EXTENSION_DTYPES:
                values = s.astype(object).where(s.notna(), None).to_numpy(dtype=object)
                columns.append({"__type__": "extension", "dtype": str(s.dtype),
                                "values": self.value(values, at)})
            else:
                raise ValueError(f"cannot save {at}: columns of dtype {s.dtype} are not supported")
        index = df.index
        return {
            "__type__": "dataframe", "id": n,
            "columns": [self.label(c, f"{where} column name") for c in df.columns],
            "data": columns,
            "index": self.value(np.asarray(index, dtype=object if
                                           isinstance(index, pd.MultiIndex) else None),
                                f"{where}.index"),
            "index_names": [self.label(x, f"{where}.index name") for x in index.names],
            "multiindex": isinstance(index, pd.MultiIndex),
        }

    def net(self, net, n: int, where: str) -> dict:
        """A skorch net: scalar params, tensors, module state, history; no classes."""
        name = _public_name(type(net))
        if name is None:
            raise ValueError(f"cannot save {where}: skorch nets of type {type(net).__name__}.")
        if not getattr(net, "initialized_", False):
            raise ValueError(f"cannot save {where}: the skorch net is not initialized.")
        params = {}
        for k, v in net.get_params(deep=False).items():
            if k.startswith("_"):
                continue
            if _is_tensor(v) or _plain(v):
                params[k] = self.value(v, f"{where}.{k}")
        module = net.module_
        state = {k: self.value(t, f"{where}.module_.{k}") for k, t in module.state_dict().items()}
        return {"__type__": "skorch_net", "id": n, "class": name, "device": str(net.device),
                "params": params, "state_dict": state, "training": bool(module.training),
                "history": self.value(net.history, f"{where}.history")}


def _plain(v) -> bool:
    if isinstance(v, tuple):
        return all(_plain(x) for x in v)
    return isinstance(v, _PLAIN)


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _is_history(value) -> bool:
    history = sys.modules.get("skorch.history")
    return history is not None and isinstance(value, history.History)


def _is_skorch_net(value) -> bool:
    net = sys.modules.get("skorch.net")
    return net is not None and isinstance(value, net.NeuralNet)


def _checksum(payload: str, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(payload.encode())
    for key in sorted(arrays):
        a = np.asarray(arrays[key], order="C")
        h.update(f"\n{key}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(estimator, path: str | os.PathLike) -> Path:
    """Write ``estimator`` to ``path``; see :meth:`PersistenceMixin.save`."""
    from safetensors.numpy import save as safetensors_save

    name = _public_name(type(estimator))
    if name is None:
        raise ValueError(
            f"{type(estimator).__name__} cannot be saved in the safe format: only the package's "
            "estimators (and subclasses of PersistenceMixin) can. Use pickle."
        )
    encoder = _Encoder()
    document = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "estimator": encoder.value(estimator, type(estimator).__name__),
    }
    payload = json.dumps(document, allow_nan=False, separators=(",", ":"))
    metadata = {_META_KEY: payload, _CHECKSUM_KEY: _checksum(payload, encoder.arrays)}
    path = Path(path)
    # Write next to the target and rename: an interrupted save never leaves a
    # half-written file in place of a good one. The bytes are written here rather
    # than by safetensors' save_file, which creates files with mode 0600: a model
    # file gets the usual permissions, so the people it is shared with can read it.
    data = safetensors_save(encoder.arrays, metadata=metadata)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    f = open(tmp, "xb")  # before the try: on failure, only a file of ours is removed
    try:
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------ decoding
class _PendingNet:
    """A skorch net to rebuild once its owning estimator has all its attributes."""

    def __init__(self, spec: dict, history, state: dict, params: dict):
        self.spec, self.history, self.state, self.params = spec, history, state, params


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], device):
        self.arrays = arrays
        self.device = device
        self.objects: dict[int, Any] = {}

    def _store(self, spec: dict, obj):
        n = spec["id"]
        if not isinstance(n, int) or n in self.objects:
            raise ValueError(f"malformed file: duplicate or invalid object id {n!r}")
        self.objects[n] = obj
        return obj

    def value(self, spec, where: str):
        if spec is None or isinstance(spec, (str, bool, int, float)):
            return spec
        if isinstance(spec, list):
            return [self.value(v, f"{where}[{i}]") for i, v in enumerate(spec)]
        if not isinstance(spec, dict) or "__type__" not in spec:
            raise ValueError(f"malformed file: unexpected entry at {where}")
        kind = spec["__type__"]
        if kind == "float":
            if spec["value"] not in ("nan", "inf", "-inf"):
                raise ValueError(f"malformed file: bad float at {where}")
            return float(spec["value"])
        if kind == "scalar":
            dtype = np.dtype(spec["dtype"])
            if dtype.kind not in "biuf":
                raise ValueError(f"malformed file: bad scalar dtype at {where}")
            return dtype.type(self.value(spec["value"], where))
        if kind == "tuple":
            return tuple(self.value(v, f"{where}[{i}]") for i, v in enumerate(spec["items"]))
        if kind == "dict":
            return {self.value(k, where): self.value(v, f"{where}[{k!r}]")
                    for k, v in spec["items"]}
        if kind == "device":
            return str(spec["value"])
        if kind == "ref":
            if spec["id"] not in self.objects:
                raise ValueError(f"malformed file: reference to unknown object at {where}")
            return self.objects[spec["id"]]
        if kind == "ndarray":
            return self._store(spec, self.ndarray(spec, where))
        if kind == "tensor":
            import torch

            arr = self.ndarray(spec, where)
            return self._store(spec, torch.from_numpy(arr).to(self.device))
        if kind == "dataframe":
            return self._store(spec, self.dataframe(spec, where))
        if kind == "history":
            from skorch.history import History

            history = self._store(spec, History())
            history.extend(self.value(spec["items"], where))
            return history
        if kind == "object":
            cls = _resolve(spec["class"], where)
            if spec["class"] not in _PLAIN_OBJECTS:
                raise ValueError(f"malformed file: {spec['class']} is not a plain object")
            obj = self._store(spec, cls.__new__(cls))
            self.set_attributes(obj, spec["attributes"], where)
            return obj
        if kind == "estimator":
            return self.estimator(spec, where)
        if kind == "skorch_net":
            _resolve(spec["class"], where)
            history = self.value(spec["history"], f"{where}.history")
            state = {k: self.value(v, f"{where}.module_.{k}")
                     for k, v in spec["state_dict"].items()}
            params = {k: self.value(v, f"{where}.{k}") for k, v in spec["params"].items()}
            return self._store(spec, _PendingNet(spec, history, state, params))
        raise ValueError(f"malformed file: unknown entry type {kind!r} at {where}")

    def ndarray(self, spec: dict, where: str) -> np.ndarray:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(s) for s in spec["shape"])
        if dtype.kind in "biufMm":
            arr = self.arrays.get(spec.get("key"))
            if arr is None:
                raise ValueError(f"malformed file: tensor {spec.get('key')!r} of {where} missing")
            stored = np.dtype(np.int64) if dtype.kind in "Mm" else dtype.newbyteorder("<")
            fortran = spec.get("order") == "F"
            if arr.dtype != stored or arr.shape != (shape[::-1] if fortran else shape):
                raise ValueError(f"malformed file: tensor of {where} has the wrong dtype or shape")
            out = np.array(arr.view(dtype) if dtype.kind in "Mm" else arr.astype(dtype))
            return out.T if fortran else out
        if dtype.kind in "OU":
            labels = [self.value(v, where) for v in spec["labels"]]
            if len(labels) != math.prod(shape):
                raise ValueError(f"malformed file: array of {where} has the wrong size")
            if dtype.kind == "U":
                return np.array(labels, dtype=dtype).reshape(shape)
            out = np.empty(len(labels), dtype=object)
            out[:] = labels
            return out.reshape(shape)
        raise ValueError(f"malformed file: array dtype {dtype} at {where}")

    def dataframe(self, spec: dict, where: str) -> pd.DataFrame:
        data = {}
        for j, col in enumerate(spec["data"]):
            if isinstance(col, dict) and col.get("__type__") == "categorical":
                values = pd.Categorical.from_codes(
                    self.value(col["codes"], where), self.value(col["categories"], where),
                    ordered=bool(col["ordered"]))
            elif isinstance(col, dict) and col.get("__type__") == "extension":
                if col["dtype"] not in _EXTENSION_DTYPES:
                    raise ValueError(f"malformed file: column dtype {col['dtype']!r} at {where}")
                values = pd.array(list(self.value(col["values"], where)), dtype=col["dtype"])
            else:
                values = self.value(col, where)
            data[j] = values
        columns = [self.value(c, where) for c in spec["columns"]]
        index_values = self.value(spec["index"], f"{where}.index")
        names = [self.value(x, where) for x in spec["index_names"]]
        if spec["multiindex"]:
            index = pd.MultiIndex.from_tuples(list(index_values), names=names)
        else:
            index = pd.Index(index_values, name=names[0] if names else None)
        df = pd.DataFrame(data, index=index)
        df.columns = pd.Index(columns, tupleize_cols=False) if columns else df.columns
        return df

    def set_attributes(self, obj, attributes: dict, where: str) -> None:
        if not isinstance(attributes, dict):
            raise ValueError(f"malformed file: attributes of {where}")
        for name, spec in attributes.items():
            # a file sets data attributes only, never a method, property or dunder
            if not (isinstance(name, str) and name.isidentifier()) or name.startswith("__") \
                    or hasattr(type(obj), name):
                raise ValueError(f"malformed file: attribute name {name!r} at {where} refused")
            setattr(obj, name, self.value(spec, f"{where}.{name}"))

    def estimator(self, spec: dict, where: str):
        cls = _resolve(spec["class"], where)
        if spec["class"] in _PLAIN_OBJECTS or not hasattr(cls, "_get_param_names"):
            raise ValueError(f"malformed file: {spec['class']} is not an estimator")
        names = set(cls._get_param_names())
        params = {}
        for k, v in spec["params"].items():
            if k not in names:
                raise ValueError(
                    f"the file gives {cls.__name__} the parameter {k!r}, which this version "
                    f"does not have (parameters: {sorted(names)})."
                )
            params[k] = self.value(v, f"{where}.{k}")
        if "device" in names:
            params["device"] = str(self.device)
        # a parameter added since the file was written keeps its default
        est = self._store(spec, cls(**params))
        self.set_attributes(est, spec["attributes"], where)
        for name, value in list(vars(est).items()):
            if isinstance(value, _PendingNet):
                setattr(est, name, self.rebuild_net(est, value, f"{where}.{name}"))
        return est

    def rebuild_net(self, owner, pending: _PendingNet, where: str):
        """The skorch net through the owner's ``_make_net``, then the saved module state.

        ``_make_net`` gets one-row placeholders for the training data (it only
        reads shapes and counts from them); every scalar parameter of the saved
        net then overrides what it derived from them, so the module is built
        with the saved sizes before its weights are loaded.
        """
        import torch

        make = getattr(owner, "_make_net", None)
        if make is None:
            raise ValueError(f"{type(owner).__name__} cannot rebuild the skorch net at {where}.")
        params = dict(pending.params)
        hidden = tuple(params.get("module__hidden_dims", ()))
        try:
            # no observations: the saved module state brings them
            net = make(hidden, np.zeros(1, dtype=bool), np.zeros((1, 3), dtype=np.int64),
                       np.zeros((1, 1), dtype=np.float32), 1, None)
            params["device"] = str(self.device)
            net.set_params(**params)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot rebuild the network at {where} with this version of "
                f"{type(owner).__name__} ({exc}); load the file with the version that saved it."
            ) from None
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        # initialize() draws random weights: keep the caller's torch RNG untouched
        with torch.random.fork_rng(devices=cuda):
            net.initialize()
        module = net.module_
        buffers = dict(module.named_buffers())
        for key, tensor in pending.state.items():
            # observation buffers are sized by the data: resize before the copy
            if key in buffers and buffers[key].shape != tensor.shape:
                owner_name, _, leaf = key.rpartition(".")
                sub = module.get_submodule(owner_name) if owner_name else module
                setattr(sub, leaf, torch.empty_like(tensor, device=buffers[key].device))
        try:
            module.load_state_dict(pending.state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"the weights at {where} do not fit the network: {exc}") from None
        module.train(bool(pending.spec.get("training", False)))
        net.history = pending.history
        return net


def _read(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON document and the arrays of a model file, after every file-level check."""
    from safetensors import SafetensorError, safe_open

    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        raise ValueError(
            f"{path} is a pickle file, not a c3tl-sklearn model file; it was not opened. "
            "Unpickle it (pickle.load / joblib.load) only if you trust its source."
        )
    if head[:2] == b"PK":
        raise ValueError(
            f"{path} is a zip archive (torch.save or similar), not a c3tl-sklearn model file; "
            "it was not opened."
        )
    try:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a readable c3tl-sklearn model file (not a safetensors file, or "
            f"truncated or corrupted): {exc}"
        ) from None
    if _META_KEY not in metadata:
        raise ValueError(
            f"{path} is a safetensors file but not a c3tl-sklearn model file (no "
            f"{_META_KEY!r} metadata); plain weight files are not estimators."
        )
    payload = metadata[_META_KEY]
    try:
        document = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the model description is not valid JSON ({exc}).") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a c3tl-sklearn model file (format field missing).")
    found = document.get("format_version")
    if found != FORMAT_VERSION:
        saved_by = (document.get("versions") or {}).get("c3tl-sklearn", "unknown")
        raise ValueError(
            f"{path} has model format version {found!r} (saved by c3tl-sklearn {saved_by}); "
            f"this version reads format version {FORMAT_VERSION} only. Load it with the "
            "c3tl-sklearn version that saved it, or refit the model."
        )
    if metadata.get(_CHECKSUM_KEY) != _checksum(payload, arrays):
        raise ValueError(
            f"{path}: the checksum does not match the contents; the file was modified or "
            "corrupted after it was saved."
        )
    return document, arrays


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON description of a model file (class, parameters, versions), after its checks.

    Nothing is built: use it to see what a file holds before loading it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from c3tl_sklearn import MeanBaseline
    >>> path = MeanBaseline().save(pathlib.Path(tempfile.mkdtemp()) / "unfitted")
    >>> info = read_metadata(path)
    >>> info["format_version"], info["estimator"]["class"]
    (1, 'c3tl_sklearn.MeanBaseline')
    """
    return _read(path)[0]


def load(path: str | os.PathLike, *, device: Any = "cpu", expected: type | None = None):
    """Read an estimator written by :func:`save`; see :meth:`PersistenceMixin.load`.

    ``expected``: the class the file must hold (or a subclass of it).
    """
    document, arrays = _read(path)
    spec = document.get("estimator")
    if not isinstance(spec, dict) or spec.get("__type__") != "estimator":
        raise ValueError(f"{os.fspath(path)}: malformed file, no estimator in it.")
    cls = _resolve(spec.get("class"), "the top level")
    if expected is not None and not issubclass(cls, expected):
        raise ValueError(
            f"{os.fspath(path)} holds a {cls.__name__} model, not a {expected.__name__}; "
            f"load it with {cls.__name__}.load or c3tl_sklearn.persistence.load."
        )
    if _needs_torch(spec):
        from ._device import check_device

        device = check_device(device)
    else:
        device = _CpuOnly(device)
    try:
        return _Decoder(arrays, device).value(spec, cls.__name__)
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"{os.fspath(path)}: malformed model file ({exc!r}).") from None


class _CpuOnly:
    """The device of a model without torch state: kept as given, torch not imported."""

    def __init__(self, device):
        self.value = device

    def __str__(self) -> str:
        return str(self.value)


def _needs_torch(spec) -> bool:
    if isinstance(spec, dict):
        if spec.get("__type__") in ("tensor", "skorch_net"):
            return True
        return any(_needs_torch(v) for v in spec.values())
    if isinstance(spec, list):
        return any(_needs_torch(v) for v in spec)
    return False

