"""JSON-safe copies of parameter values, for stored studies and the benchmark's reports."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import numpy as np

__all__ = ["jsonable"]


def jsonable(value):
    """A JSON-safe copy of ``value``: tuples become lists, NaN and infinities ``None``.

    Strict JSON has no NaN, so a value that is not finite is written as
    ``null``; anything that is not a number, string, sequence or mapping is
    written as its ``repr``.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn.persistence import jsonable
    >>> jsonable({"dims": (64, np.int64(32)), "alpha": np.float32(0.5), "bad": float("nan")})
    {'dims': [64, 32], 'alpha': 0.5, 'bad': None}
    """
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)
