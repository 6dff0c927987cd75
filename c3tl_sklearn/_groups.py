"""Group means, taken one way: per-group means by one sparse product, the leave-one-out mean."""

from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = [
    "BLOCK_VALUES",
    "leave_one_out_mean",
    "row_blocks",
    "segment_means",
]


def leave_one_out_mean(mean, count, own):
    """The mean of ``count`` values without one of them, ``own``: ``(k m - own) / (k - 1)``.

    The one formula of the package's leave-one-out means (baselines, network,
    read-out). Works on numpy arrays and torch tensors alike (``count``
    broadcasts); a ``count`` of 1 divides by 1 (nothing is left to average: the
    caller decides what such a row gets).

    Examples
    --------
    >>> from c3tl_sklearn._groups import leave_one_out_mean
    >>> float(leave_one_out_mean(2.0, 3, 4.0))  # mean of (1, 1, 4) without the 4
    1.0
    """
    rest = count - 1
    rest = rest.clamp(min=1) if hasattr(rest, "clamp") else np.maximum(rest, 1)
    return (mean * count - own) / rest


#: Values per block when rows are summed in blocks: bounds the float64 copy of a
#: block (32 MB) whatever the number of genes, rather than copying all the rows.
BLOCK_VALUES = 1 << 22


def row_blocks(n_rows: int, n_columns: int):
    """Slices of at most :data:`BLOCK_VALUES` values (at least one row) covering ``n_rows``."""
    step = max(1, BLOCK_VALUES // max(n_columns, 1))
    return (slice(start, start + step) for start in range(0, n_rows, step))


def segment_means(codes: np.ndarray, n_groups: int, values: np.ndarray):
    """Per-group means of the rows of ``values`` (float64) and the group sizes.

    Sparse indicator-matrix products over blocks of rows, no Python loop over
    rows and no float64 copy of all of ``values``. Groups without rows get a
    mean of 0.

    Examples
    --------
    >>> import numpy as np
    >>> from c3tl_sklearn._groups import segment_means
    >>> means, counts = segment_means(np.array([0, 0, 2]), 3, np.array([[1.0], [3.0], [5.0]]))
    >>> means.ravel().tolist(), counts.tolist()
    ([2.0, 0.0, 5.0], [2, 0, 1])
    """
    n = len(codes)
    values = np.asarray(values)
    indicator = sparse.csc_matrix(
        (np.ones(n, dtype=np.float64), (codes, np.arange(n))), shape=(n_groups, n)
    )
    sums = np.zeros((n_groups, values.shape[1]))
    for block in row_blocks(n, values.shape[1]):
        sums += indicator[:, block] @ np.asarray(values[block], dtype=np.float64)
    counts = np.bincount(codes, minlength=n_groups)
    means = sums / np.maximum(counts, 1)[:, None]
    return means, counts
