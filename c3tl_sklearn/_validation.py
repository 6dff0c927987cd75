"""Former home of the input checks; they live in :mod:`c3tl_sklearn._data` now."""

from ._data import check_index_table, check_no_duplicate_pairs, check_response, encode_labels

__all__ = [
    "check_index_table",
    "check_no_duplicate_pairs",
    "check_response",
    "encode_labels",
]
