"""Writing a file so that an interruption leaves either the old file or the new, never half."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path``; renamed onto it when the block ends without error.

    The temporary name is unique (process id and a random token, so two writers
    never share one) and keeps the real suffixes, which tell pandas and
    matplotlib the format and compression. On any exception, ``KeyboardInterrupt``
    included, the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".part-{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """``Path(path).write_text(text, encoding="utf-8")``, atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
