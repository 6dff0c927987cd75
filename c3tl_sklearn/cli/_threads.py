"""The ``--threads`` of the commands: checked, then applied to torch and the BLAS/OpenMP pools."""

from __future__ import annotations

import contextlib

from ._errors import CommandError

__all__ = ["check_threads", "thread_limits"]


def check_threads(threads: int | None) -> None:
    """Refuse ``--threads`` below 1."""
    if threads is not None and threads < 1:
        raise CommandError(f"--threads {threads}: give a number >= 1.")


def thread_limits(threads: int | None, uses_torch: bool = False):
    """A context limiting torch's and the BLAS/OpenMP threads to ``threads``, then restoring them.

    ``uses_torch`` imports torch first, so that a model that imports it only
    in ``fit`` is limited too.
    """
    if threads is None:
        return contextlib.nullcontext()
    check_threads(threads)
    if uses_torch:
        import torch  # noqa: F401  (limit_threads limits torch once it is imported)
    from .._parallel import limit_threads  # joblib: only for --threads

    return limit_threads(threads)
