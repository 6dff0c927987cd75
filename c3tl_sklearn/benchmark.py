"""Deprecated location of the benchmark application; it lives in :mod:`c3tl_sklearn.cli` now.

``from c3tl_sklearn.benchmark import run_benchmark`` (and the other public names)
keeps working with a :class:`DeprecationWarning`; import from
:mod:`c3tl_sklearn.cli` instead. ``python -m c3tl_sklearn.benchmark`` still runs
the command.
"""

import sys
import warnings

from .cli import (
    METRICS,
    MODELS,
    BenchmarkDataError,
    BenchmarkResult,
    build_parser,
    check_benchmark_data,
    load_benchmark_data,
    main,
    make_model,
    run_benchmark,
)

__all__ = [
    "METRICS",
    "MODELS",
    "BenchmarkDataError",
    "BenchmarkResult",
    "build_parser",
    "check_benchmark_data",
    "load_benchmark_data",
    "main",
    "make_model",
    "run_benchmark",
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
else:
    warnings.warn(
        "c3tl_sklearn.benchmark is deprecated; import from c3tl_sklearn.cli instead.",
        DeprecationWarning,
        stacklevel=2,
    )
