"""Writing a model file: the fitted state as tensors plus a JSON document."""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._format import (
    _CHECKSUM_KEY,
    _EXTENSION_DTYPES,
    _FORMAT,
    _META_KEY,
    _PLAIN_OBJECTS,
    FORMAT_VERSION,
    _checksum,
    _is_history,
    _is_skorch_net,
    _is_tensor,
    _plain,
    _public_name,
    _versions,
)


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
            # float() first: a NumPy float's repr is "np.float64(nan)"
            return {"__type__": "float", "value": repr(float(value))}
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
        """A skorch net: scalar params, tensors, module state, history; no classes.

        Loading builds the net through its owner's ``make_net``, so the file
        names no class a refactor could move.
        """
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
        return {"__type__": "skorch_net", "id": n, "device": str(net.device),
                "params": params, "state_dict": state, "training": bool(module.training),
                "history": self.value(net.history, f"{where}.history")}




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


