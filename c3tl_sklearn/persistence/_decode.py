"""Reading a model file: every check before anything is built, then the estimator."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from ._format import (
    _CHECKSUM_KEY,
    _EXTENSION_DTYPES,
    _FORMAT,
    _META_KEY,
    _PLAIN_OBJECTS,
    PARAMS_OF_OLDER_FILES,
    READABLE_VERSIONS,
    V1_NET_CLASS,
    _checksum,
    _resolve,
)

#: Deepest nesting of the model description; a model needs about a dozen levels.
#: Bounding it keeps every recursion (JSON's and the decoder's) far from Python's limit.
MAX_DEPTH = 64
#: What decoding may allocate beyond the stored arrays, as a multiple of the file's
#: size, plus a floor for tiny files: a header cannot ask for more than the file holds.
_ALLOC_FACTOR = 4
_ALLOC_FLOOR = 1 << 20
#: Largest number of dimensions and size of one dimension an array may declare.
_MAX_NDIM = 32
_MAX_DIM = 1 << 48
#: The dtypes a file may declare: booleans, integers, floats, datetimes, text, objects.
_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|c(8|16)|O|U\d{1,10}|[Mm]8(\[\w+\])?)")
#: A JSON string literal (brackets inside strings do not nest).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _check_depth(payload: str, path: str) -> None:
    """Refuse a description nested deeper than :data:`MAX_DEPTH`, before parsing it."""
    depth = 0
    for match in re.finditer(r"[\[\]{}]", _JSON_STRING.sub('""', payload)):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_DEPTH:
            raise ValueError(
                f"{path}: the model description nests deeper than {MAX_DEPTH} levels, which no "
                "model of this package does; the file was crafted or corrupted."
            )


def _dtype(text: Any, where: str) -> np.dtype:
    """A declared dtype, from the short list a model uses (never a structured or void one)."""
    if not isinstance(text, str) or not _DTYPE.fullmatch(text):
        raise ValueError(f"malformed file: dtype {text!r} at {where} refused")
    return np.dtype(text)


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > _MAX_NDIM or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= _MAX_DIM
            for s in value):
        raise ValueError(f"malformed file: array shape {value!r} at {where} refused")
    return tuple(value)


# ------------------------------------------------------------------ decoding
class _PendingNet:
    """A skorch net to rebuild once its owning estimator has all its attributes."""

    def __init__(self, spec: dict, history, state: dict, params: dict):
        self.spec, self.history, self.state, self.params = spec, history, state, params


class _Decoder:
    def __init__(self, arrays: dict[str, np.ndarray], device, budget: int = _ALLOC_FLOOR):
        self.arrays = arrays
        self.device = device
        self.objects: dict[int, Any] = {}
        # bytes the description may still make us allocate (text arrays, mostly)
        self.budget = budget

    def _charge(self, nbytes: int, where: str) -> None:
        if nbytes > self.budget:
            raise ValueError(
                f"malformed file: the array at {where} would take {nbytes} bytes, more than a "
                f"file of this size can describe ({_ALLOC_FACTOR} times its size); refused "
                "before allocating."
            )
        self.budget -= nbytes

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
            dtype = _dtype(spec["dtype"], where)
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
            attributes = spec["attributes"]
            if not isinstance(attributes, dict):
                raise ValueError(f"malformed file: attributes of {where}")
            # a plain object checks (and, from older layouts, converts) what it is given
            return self._store(spec, cls.from_attributes(
                {name: self.value(v, f"{where}.{name}") for name, v in attributes.items()}))
        if kind == "estimator":
            return self.estimator(spec, where)
        if kind == "skorch_net":
            # version 1 named the net's class; the owner's make_net decides it now
            if "class" in spec and spec["class"] != V1_NET_CLASS:
                raise ValueError(f"malformed file: network class {spec['class']!r} at {where}")
            history = self.value(spec["history"], f"{where}.history")
            state = {k: self.value(v, f"{where}.module_.{k}")
                     for k, v in spec["state_dict"].items()}
            params = {k: self.value(v, f"{where}.{k}") for k, v in spec["params"].items()}
            return self._store(spec, _PendingNet(spec, history, state, params))
        raise ValueError(f"malformed file: unknown entry type {kind!r} at {where}")

    def ndarray(self, spec: dict, where: str) -> np.ndarray:
        dtype = _dtype(spec["dtype"], where)
        shape = _shape(spec["shape"], where)
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
            if not isinstance(spec["labels"], list) or len(spec["labels"]) != math.prod(shape):
                raise ValueError(f"malformed file: array of {where} has the wrong size")
            # a text dtype's width is the file's word: <U400000000 is 1.6 GB per label
            self._charge(dtype.itemsize * len(spec["labels"]), where)
            labels = [self.value(v, where) for v in spec["labels"]]
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
        for name, value in PARAMS_OF_OLDER_FILES.items():
            if name in names and name not in spec["params"]:
                params[name] = value
        # any other parameter added since the file was written keeps its default
        est = self._store(spec, cls(**params))
        self.set_attributes(est, spec["attributes"], where)
        for name, value in list(vars(est).items()):
            if isinstance(value, _PendingNet):
                setattr(est, name, self.rebuild_net(est, value, f"{where}.{name}"))
        return est

    def rebuild_net(self, owner, pending: _PendingNet, where: str):
        """The skorch net through the owner's public ``make_net``, then the saved module state.

        ``make_net(**params)`` builds an uninitialised net of the owner's
        configuration with the saved scalar parameters on top (the module's
        sizes among them), so the module is built with the saved sizes before
        its weights are loaded; which classes it uses is the owner's business,
        never the file's.
        """
        import torch

        make = getattr(owner, "make_net", None)
        if not callable(make):
            raise ValueError(f"{type(owner).__name__} cannot rebuild the skorch net at {where}.")
        params = dict(pending.params)
        _check_net_params(params, where)
        hidden = params.get("module__hidden_dims", ())
        if not isinstance(hidden, tuple | list) or len(hidden) > len(pending.state):
            raise ValueError(f"malformed file: module__hidden_dims at {where} refused")
        params["module__hidden_dims"] = tuple(hidden)
        params["device"] = str(self.device)
        try:
            net = make(**params)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot rebuild the network at {where} with this version of "
                f"{type(owner).__name__} ({exc}); load the file with the version that saved it."
            ) from None
        _check_module_shapes(net, pending.state, where)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        # a net that can (C3TLNet) is rebuilt without its optimizer, made when first used:
        # predicting needs none, and torch's first one imports torch._dynamo (seconds)
        initialize = getattr(net, "initialize_for_prediction", net.initialize)
        # initialize() draws random weights: keep the caller's torch RNG untouched
        with torch.random.fork_rng(devices=cuda):
            initialize()
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


#: skorch net parameters a file may set, and those it may only hold at the value
#: the package writes: ``compile=True`` would run torch's compiler from a header.
_NET_PARAMS = {"lr", "max_epochs", "batch_size", "verbose", "device", "context_weight"}
_NET_PREFIXES = ("module__", "optimizer__", "iterator_train__", "iterator_valid__")
_NET_FIXED = {"compile": False, "torch_load_kwargs": None, "predict_nonlinearity": "auto",
              "use_caching": "auto", "warm_start": False, "train_split": None}


def _check_net_params(params: dict, where: str) -> None:
    for name, value in params.items():
        if name in _NET_FIXED:
            fixed = _NET_FIXED[name]
            if value != fixed or type(value) is not type(fixed):
                raise ValueError(
                    f"malformed file: the network at {where} sets {name}={value!r}; a model "
                    f"file may only hold {name}={fixed!r}."
                )
        elif name not in _NET_PARAMS and not name.startswith(_NET_PREFIXES):
            raise ValueError(
                f"malformed file: the network at {where} sets {name!r}, which a model file "
                "never holds."
            )


def _check_module_shapes(net, state: dict, where: str) -> None:
    """The network the saved parameters describe must be the one the saved weights fill.

    Built on torch's ``meta`` device, which allocates nothing: a header asking for
    a layer of 40 million units is refused here, before ``initialize`` would take
    gigabytes, rather than after, when the weights are found not to fit.
    """
    import torch

    kwargs = net.get_params_for("module")
    try:
        with torch.device("meta"):
            module = net.module(**kwargs) if isinstance(net.module, type) else None
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise ValueError(f"malformed file: the network at {where} cannot be built ({exc})") \
            from None
    if module is None:  # pragma: no cover - the package's nets name a module class
        return
    for name, param in module.named_parameters():
        saved = state.get(name)
        if saved is None or tuple(saved.shape) != tuple(param.shape):
            found = "missing" if saved is None else f"of shape {tuple(saved.shape)}"
            raise ValueError(
                f"the weights at {where} do not fit the network: its parameters ask for "
                f"{name!r} of shape {tuple(param.shape)}, the file's weight is {found}."
            )


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
    _check_depth(payload, path)
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # bad JSON, or an integer of 4,300+ digits
        raise ValueError(f"{path}: the model description is not valid JSON ({exc}).") from None
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a c3tl-sklearn model file (format field missing).")
    found = document.get("format_version")
    if found not in READABLE_VERSIONS or isinstance(found, bool):
        saved_by = (document.get("versions") or {}).get("c3tl-sklearn", "unknown")
        raise ValueError(
            f"{path} has model format version {found!r} (saved by c3tl-sklearn {saved_by}); "
            f"this version reads format versions {list(READABLE_VERSIONS)}. Load it with the "
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
    (3, 'c3tl_sklearn.MeanBaseline')
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
        from .._device import check_device

        device = check_device(device)
    budget = _ALLOC_FACTOR * os.path.getsize(path) + _ALLOC_FLOOR
    try:
        return _Decoder(arrays, device, budget).value(spec, cls.__name__)
    except (KeyError, TypeError, IndexError, AttributeError, OverflowError,
            RecursionError) as exc:
        raise ValueError(f"{os.fspath(path)}: malformed model file ({exc!r}).") from None


def _needs_torch(spec) -> bool:
    if isinstance(spec, dict):
        if spec.get("__type__") in ("tensor", "skorch_net"):
            return True
        return any(_needs_torch(v) for v in spec.values())
    if isinstance(spec, list):
        return any(_needs_torch(v) for v in spec)
    return False

