"""The errors a ``c3tl`` command reports as one line; importing them costs nothing."""

from __future__ import annotations

import sys

__all__ = ["CommandError", "input_errors"]


class CommandError(ValueError):
    """A ``c3tl`` command cannot do what it was asked; the message says why and what to do."""


def input_errors() -> tuple[type[Exception], ...]:
    """The errors that mean "this input cannot be used": :class:`CommandError` and, once the
    data reader ``_io`` is imported, its ``BenchmarkDataError``.

    ``_io`` imports pandas, so it is looked up rather than imported: a command
    that never imported it cannot have raised its error.
    """
    io = sys.modules.get(f"{__package__}._io")
    return (CommandError,) if io is None else (CommandError, io.BenchmarkDataError)
