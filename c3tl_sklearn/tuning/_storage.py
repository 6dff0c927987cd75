"""Where a study lives: one factory from a URL, a file path or a storage object."""

from __future__ import annotations

import os
import warnings

import optuna

__all__ = ["make_storage"]

_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def make_storage(storage) -> optuna.storages.BaseStorage | str | None:
    """Turn a storage option into something :func:`optuna.create_study` accepts.

    Parameters
    ----------
    storage : str, os.PathLike, optuna.storages.BaseStorage or None
        ``None``: in memory. A URL with ``://``: an RDB storage with
        heartbeats (``sqlite:///...``, ``postgresql://...``, ``mysql://...``;
        trials of a dead worker are marked failed and retried once), or a
        Redis journal for ``redis://...``. A path ending in ``.log``,
        ``.jsonl`` or ``.journal``: a journal file
        (:class:`optuna.storages.journal.JournalFileBackend`). A path ending in
        ``.db``, ``.sqlite`` or ``.sqlite3``: a SQLite database file.

    Returns
    -------
    storage : optuna.storages.BaseStorage or None

    Raises
    ------
    ValueError
        For a path with another ending.

    Examples
    --------
    >>> import os, tempfile
    >>> from c3tl_sklearn.tuning import make_storage
    >>> path = os.path.join(tempfile.mkdtemp(), "study.log")
    >>> type(make_storage(path)).__name__
    'JournalStorage'
    """
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    if not isinstance(storage, (str, os.PathLike)):
        raise TypeError(
            "storage must be an Optuna storage URL, a journal/SQLite file path or an "
            f"optuna.storages.BaseStorage; got {type(storage).__name__}."
        )
    text = os.fspath(storage)
    if text.startswith("redis://") or text.startswith("rediss://"):
        from optuna.storages.journal import JournalRedisBackend

        return optuna.storages.JournalStorage(JournalRedisBackend(text))
    if "://" in text:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry_class = getattr(
                optuna.storages,
                "RetryHeartbeatStaleTrialCallback",
                optuna.storages.RetryFailedTrialCallback,
            )
            retry = retry_class(max_retry=1)
            try:  # optuna >= 4.9
                return optuna.storages.RDBStorage(
                    text, heartbeat_interval=60, grace_period=180,
                    heartbeat_stale_trial_callback=retry,
                )
            except TypeError:  # pragma: no cover - older optuna
                return optuna.storages.RDBStorage(
                    text, heartbeat_interval=60, grace_period=180, failed_trial_callback=retry
                )
    lower = text.lower()
    if lower.endswith(_JOURNAL_SUFFIXES):
        from optuna.storages.journal import JournalFileBackend

        parent = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(parent):
            raise ValueError(f"The folder of the journal file {text!r} does not exist.")
        return optuna.storages.JournalStorage(JournalFileBackend(text))
    if lower.endswith(_SQLITE_SUFFIXES):
        return make_storage("sqlite:///" + os.path.abspath(text))
    raise ValueError(
        f"Cannot tell what kind of storage {text!r} is. Use a URL such as "
        "'sqlite:///study.db' or 'postgresql://user:pass@host/db', a journal file ending "
        f"in {', '.join(_JOURNAL_SUFFIXES)}, or a SQLite file ending in "
        f"{', '.join(_SQLITE_SUFFIXES)}."
    )
