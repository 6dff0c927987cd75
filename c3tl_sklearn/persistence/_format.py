"""The model-file format: its constants, the classes a file may name, versions and checksums."""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

#: Version of the file layout written. Version 2 no longer names the class of a
#: skorch net (its owner's ``make_net`` builds it); version 3 stores a context
#: read-out as factors sized by the measured pairs instead of dense sums. Files
#: of versions 1 and 2 still load.
FORMAT_VERSION = 3
#: Versions this version reads.
READABLE_VERSIONS = (1, 2, 3)
#: Parameters added since model files were first written whose default computes
#: something else than the models of older files, with the value those were
#: trained with: a file without one predates it. Any other parameter a file lacks
#: keeps its default.
PARAMS_OF_OLDER_FILES: dict[str, Any] = {"context_input": "effect"}
#: What version 1 files call the net of a C3TLRegressor; only checked, never imported.
V1_NET_CLASS = "c3tl_sklearn.estimator.C3TLNet"
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
    "sklearn.decomposition.PCA": ("sklearn.decomposition", "PCA"),
    "sklearn.linear_model.Ridge": ("sklearn.linear_model", "Ridge"),
}
#: Of those, the plain-data classes rebuilt from their attributes alone, by their
#: ``from_attributes`` class method (which checks them).
_PLAIN_OBJECTS = {"c3tl_sklearn.adaptation.ContextReadout"}
#: Subclasses of PersistenceMixin defined outside the table, by "module.qualname".
_REGISTERED: dict[str, type] = {}
#: pandas extension dtypes a saved DataFrame column may have.
_EXTENSION_DTYPES = {"string", "str", "boolean", "Int8", "Int16", "Int32", "Int64",
                     "UInt8", "UInt16", "UInt32", "UInt64", "Float32", "Float64"}
#: Scalar params of a skorch net that travel in the file; the rest (module
#: class, callbacks, iterators) come from the estimator's public ``make_net``.
_PLAIN = (type(None), bool, int, float, str)


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
    from .. import __version__

    out = {"python": platform.python_version(), "c3tl-sklearn": __version__}
    for dist in ("numpy", "scikit-learn", "pandas", "torch", "skorch", "safetensors"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out



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

