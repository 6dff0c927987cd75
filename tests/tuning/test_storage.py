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


