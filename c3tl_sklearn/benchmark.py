"""Deprecated location of the benchmark application; it lives in :mod:`c3tl_sklearn.cli` now.

``from c3tl_sklearn.benchmark import run_benchmark`` (and the other public names)
keeps working with a :class:`DeprecationWarning`; import from
:mod:`c3tl_sklearn.cli` instead. ``python -m c3tl_sklearn.benchmark`` still runs
the command.
"""

import sys
import warnings

from . import cli as _cli

__all__ = list(_cli.__all__)


def __getattr__(name):
    if name in __all__:
        return getattr(_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_cli.main())
else:
    warnings.warn(
        "c3tl_sklearn.benchmark is deprecated; import from c3tl_sklearn.cli instead.",
        DeprecationWarning,
        stacklevel=2,
    )
