"""Where a study lives: one factory from a URL, a file path or a storage object."""

from __future__ import annotations

import os
import random
import time
import warnings

import optuna

__all__ = ["make_storage"]

_JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


#: How long workers that start together on a new database retry its creation.
_CREATE_PATIENCE_S = 30.0


def _rdb_storage(url: str, kwargs: dict) -> optuna.storages.RDBStorage:
    """``RDBStorage(url, **kwargs)``, retried while another worker creates the same tables.

    Optuna creates the schema of a new database without a lock, so workers that
    start together race: all but one fail with "table alembic_version already
    exists" (SQLite) or a duplicate-key error (PostgreSQL). Once the winner has
    finished, the schema exists and a retry simply opens it.
    """
    import sqlalchemy.exc

    deadline = time.monotonic() + _CREATE_PATIENCE_S
    delay = 0.05
    while True:
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError,
                sqlalchemy.exc.ProgrammingError) as exc:
            if time.monotonic() > deadline:
                raise ValueError(
                    f"cannot open the study storage {_safe_url(url)!r} after "
                    f"{_CREATE_PATIENCE_S:.0f} s of retries ({type(exc).__name__}: "
                    f"{str(exc).splitlines()[0]}); check that the database is reachable and "
                    "that no other program holds it locked."
                ) from None
            # jittered, so that the workers that lost the race do not collide again
            time.sleep(delay * (1 + random.random()))
            delay = min(2 * delay, 1.0)


def _safe_url(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.partition("://")
    if "@" in tail:
        credentials, _, host = tail.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{head}{sep}{user}:***@{host}"
    return url


def make_storage(
    storage, *, heartbeat_interval: int = 60, grace_period: int | None = None,
    max_retry: int | None = 1,
) -> optuna.storages.BaseStorage | str | None:
    """Turn a storage option into something :func:`optuna.create_study` accepts.

    Parameters
    ----------
    storage : str, os.PathLike, optuna.storages.BaseStorage or None
        ``None``: in memory. A URL with ``://``: an RDB storage with
        heartbeats (``sqlite:///...``, ``postgresql://...``, ``mysql://...``;
        the trial of a worker that died is marked failed once its heartbeat
        is ``grace_period`` seconds old, and queued again up to ``max_retry``
        times), or a Redis journal for ``redis://...``. A path ending in ``.log``,
        ``.jsonl`` or ``.journal``: a journal file
        (:class:`optuna.storages.journal.JournalFileBackend`). A path ending in
        ``.db``, ``.sqlite`` or ``.sqlite3``: a SQLite database file.
    heartbeat_interval : int, default=60
        RDB storages: seconds between the heartbeats a running trial writes.
    grace_period : int, default=None
        RDB storages: seconds without a heartbeat after which a running trial
        is marked failed (by the next worker that starts or waits for a
        trial); ``None`` is three heartbeat intervals.
    max_retry : int or None, default=1
        RDB storages: times a failed trial's parameters are queued again
        (:class:`optuna.storages.RetryHeartbeatStaleTrialCallback`); ``None``
        without limit, ``0`` never.

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

    A shared study on a database server, whose dead workers' trials are
    failed and retried after 30 s without a heartbeat:

    >>> storage = make_storage("sqlite:///:memory:", heartbeat_interval=10, grace_period=30)
    >>> storage.heartbeat_interval, storage.grace_period
    (10, 30)
    """
    if heartbeat_interval < 1:
        raise ValueError(f"heartbeat_interval must be >= 1; got {heartbeat_interval}.")
    grace = 3 * heartbeat_interval if grace_period is None else grace_period
    if grace <= heartbeat_interval:
        # a grace period that a live worker's heartbeat cannot beat fails live trials
        raise ValueError(f"grace_period ({grace}) must exceed heartbeat_interval "
                         f"({heartbeat_interval}).")
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
            retry = retry_class(max_retry=max_retry) if max_retry != 0 else None
            kwargs = {"heartbeat_interval": heartbeat_interval, "grace_period": grace}
            try:  # optuna >= 4.9
                return _rdb_storage(text, dict(kwargs, heartbeat_stale_trial_callback=retry))
            except TypeError:  # pragma: no cover - older optuna
                return _rdb_storage(text, dict(kwargs, failed_trial_callback=retry))
    lower = text.lower()
    if lower.endswith(_JOURNAL_SUFFIXES):
        from optuna.storages.journal import JournalFileBackend

        parent = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(parent):
            raise ValueError(f"The folder of the journal file {text!r} does not exist.")
        return optuna.storages.JournalStorage(JournalFileBackend(text))
    if lower.endswith(_SQLITE_SUFFIXES):
        return make_storage("sqlite:///" + os.path.abspath(text),
                            heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                            max_retry=max_retry)
    raise ValueError(
        f"Cannot tell what kind of storage {text!r} is. Use a URL such as "
        "'sqlite:///study.db' or 'postgresql://user:pass@host/db', a journal file ending "
        f"in {', '.join(_JOURNAL_SUFFIXES)}, or a SQLite file ending in "
        f"{', '.join(_SQLITE_SUFFIXES)}."
    )
