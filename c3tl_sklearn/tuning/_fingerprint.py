"""What a stored study was made on: its data and its search space, as short fingerprints.

A study continued on other data, or with another search space, would return
the old best score and parameters as if they described the new search. The
search records both fingerprints in the study's user attributes when it
creates the study and refuses to continue one whose fingerprints differ.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
from optuna.distributions import BaseDistribution, distribution_to_json

from .._contract import match_rows

__all__ = ["data_fingerprint", "space_fingerprint"]


def _callable_name(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def space_description(space) -> str:
    """The search space as canonical JSON (a callable by its qualified name)."""
    if not isinstance(space, Mapping):
        return json.dumps({"callable": _callable_name(space)})
    out = {}
    for name in sorted(space):
        spec = space[name]
        if isinstance(spec, BaseDistribution):
            out[name] = json.loads(distribution_to_json(spec))
        elif isinstance(spec, list):
            out[name] = {"choices": [repr(v) for v in spec]}
        else:
            out[name] = {"callable": _callable_name(spec)}
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def space_fingerprint(space) -> str:
    return hashlib.sha256(space_description(space).encode()).hexdigest()[:16]


def data_fingerprint(X, Y) -> str:
    """``"<rows> rows x <genes> genes, <hash>"``, the same for the rows in any order.

    Each row's hash combines its index-table values and its effects (a pandas
    ``Y`` matched to ``X`` by label, as in ``fit``); the sorted row hashes are
    hashed, so a shuffled copy of the same data has the same fingerprint.
    """
    Y = match_rows(Y, X.index if isinstance(X, pd.DataFrame) else None, name="Y")
    values = np.ascontiguousarray(np.asarray(Y, dtype=np.float64))
    if values.ndim == 1:
        values = values[:, None]
    x_rows = pd.util.hash_pandas_object(pd.DataFrame(X).astype(str), index=False).to_numpy()
    y_rows = pd.util.hash_pandas_object(pd.DataFrame(values), index=False).to_numpy()
    rows = np.sort(x_rows ^ (y_rows * np.uint64(0x9E3779B97F4A7C15)))
    h = hashlib.sha256(rows.tobytes())
    columns = list(map(str, X.columns)) if isinstance(X, pd.DataFrame) else []
    genes = list(map(str, Y.columns)) if isinstance(Y, pd.DataFrame) else []
    h.update(json.dumps([columns, genes]).encode())
    return f"{values.shape[0]} rows x {values.shape[1]} genes, {h.hexdigest()[:16]}"
