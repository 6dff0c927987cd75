"""Tests of the storage factory (``c3tl_sklearn.tuning._storage``)."""


import pytest

optuna = pytest.importorskip("optuna")


from c3tl_sklearn.tuning import (  # noqa: E402
    make_storage,
)

# --------------------------------------------------------------------------- storage


def test_make_storage_kinds(tmp_path):
    assert make_storage(None) is None
    journal = make_storage(tmp_path / "s.jsonl")
    assert type(journal).__name__ == "JournalStorage"
    assert make_storage(journal) is journal
    sqlite = make_storage(tmp_path / "s.db")
    assert type(sqlite).__name__ == "RDBStorage"
    assert type(make_storage(f"sqlite:///{tmp_path / 'u.sqlite3'}")).__name__ == "RDBStorage"
    with pytest.raises(ValueError, match="Cannot tell what kind of storage"):
        make_storage(tmp_path / "study.txt")
    with pytest.raises(ValueError, match="folder of the journal file"):
        make_storage(tmp_path / "missing" / "s.log")
    with pytest.raises(TypeError, match="storage must be"):
        make_storage(3)




def test_make_storage_heartbeat_settings(tmp_path):
    # a SQLite file path keeps the settings of the URL it stands for
    storage = make_storage(tmp_path / "s.db", heartbeat_interval=7, grace_period=30,
                           max_retry=0)
    assert (storage.heartbeat_interval, storage.grace_period) == (7, 30)
    assert storage.get_heartbeat_stale_trial_callback() is None
    storage = make_storage("sqlite:///:memory:", heartbeat_interval=2, grace_period=7,
                           max_retry=3)
    assert (storage.heartbeat_interval, storage.grace_period) == (2, 7)
    callback = storage.get_heartbeat_stale_trial_callback()
    assert callback is not None and callback._max_retry == 3
    assert make_storage("sqlite:///:memory:", heartbeat_interval=5).grace_period == 15
    assert make_storage("sqlite:///:memory:",
                        max_retry=0).get_heartbeat_stale_trial_callback() is None
    with pytest.raises(ValueError, match="must exceed heartbeat_interval"):
        make_storage("sqlite:///:memory:", heartbeat_interval=5, grace_period=5)
