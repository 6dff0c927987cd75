"""Checks of the generators' knobs: one message per kind of value, bools refused as numbers."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int, refused unless a whole number (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_non_negative(name: str, value) -> float:
    """``value`` as a float, refused unless a real number (not a bool or NaN) >= 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number; got {value!r}.")
    return float(value)


def check_positive(name: str, value) -> float:
    """``value`` as a float, refused unless a real number (not a bool or NaN) > 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}.")
    return float(value)


def check_fraction(name: str, value, *, low_open: bool = False) -> float:
    """``value`` as a float in [0, 1] (or (0, 1] with ``low_open``), bools and NaN refused."""
    inside = isinstance(value, Real) and not isinstance(value, bool) and (
        0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0
    )
    if not inside:
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {interval}; got {value!r}.")
    return float(value)


def check_flag(name: str, value) -> bool:
    """``value`` as a bool, refused unless ``True``/``False`` (or a numpy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}.")
    return bool(value)
