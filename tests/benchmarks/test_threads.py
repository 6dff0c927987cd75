"""``benchmarks/threads.py``: its tables from given runs (the fits themselves take minutes)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ._scripts import load_script


def _module():
    return load_script("threads")


def test_report_lists_every_run_and_the_median_epoch_time():
    threads = _module()
    runs = {
        ("idle", "this checkout"): [
            {"fit_s": 10.0, "epochs": 200, "threads": 2, "epoch_ms": 40.0},
            {"fit_s": 30.0, "epochs": 300, "threads": 2, "epoch_ms": 90.0}],
        ("idle, one thread", "this checkout"): [
            {"fit_s": 16.0, "epochs": 100, "threads": 1, "epoch_ms": 80.0}],
        ("busy", "this checkout"): [
            {"fit_s": 24.0, "epochs": 100, "threads": 1, "epoch_ms": 95.0}],
    }
    text = threads.report(runs, {"this checkout": Path("/x")},
                          ["--repeats", "2", "--config", "a b"], ("0.1", "0.2"))
    lines = text.splitlines()
    # the command as a shell would take it back
    assert "`python benchmarks/threads.py --repeats 2 --config 'a b'`" in lines
    # the median of the runs' epoch medians, not fit time over epochs (50 and 100 here)
    assert "| this checkout | idle | 10.0, 30.0 | 200, 300 | 2, 2 | 65 |" in lines
    assert "| this checkout | idle, one thread | 16.0 | 100 | 1 | 80 |" in lines
    assert "| this checkout | busy | 24.0 | 100 | 1 | 95 |" in lines
    # median fits: 20 s idle, 16 s on one thread, 24 s busy
    assert ("- this checkout, median fit: busy / idle 1.20, busy / idle with one thread 1.50."
            in lines)


def test_only_the_one_thread_condition_sets_omp_num_threads(monkeypatch):
    threads = _module()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # the caller's own setting never leaks in
    envs = {name: threads._child_env(Path("/code"), n)
            for name, (_, n) in threads.CONDITIONS.items()}
    assert envs["idle, one thread"]["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in envs["idle"]
    assert "OMP_NUM_THREADS" not in envs["busy"]
    assert {env["PYTHONPATH"] for env in envs.values()} == {"/code"}
    assert [spins for spins, _ in threads.CONDITIONS.values()] == [False, False, True]


def test_demo_report_gives_each_folds_busy_over_idle_and_one_thread_ratios():
    threads = _module()

    def table(seconds, wall):
        t = pd.DataFrame({"context": ["A375", "A375", "PC3", "PC3"],
                          "model": ["C3TLRegressor", "MeanBaseline"] * 2,
                          "seconds": [seconds[0], 0.1, seconds[1], 0.1]})
        t.attrs["wall_s"] = wall
        return t

    text = threads.report_demo({"idle": table((10.0, 8.0), 60.0),
                                "idle, one thread": table((12.0, 12.0), 75.0),
                                "busy": table((13.0, 12.0), 90.0)}, ["--demo"], ("1", "2"))
    lines = text.splitlines()
    assert "| A375 | 10.0 | 12.0 | 13.0 | 1.30 | 1.08 |" in lines
    assert "| PC3 | 8.0 | 12.0 | 12.0 | 1.50 | 1.00 |" in lines
    assert "| whole demo (wall, every model) | 60 | 75 | 90 | 1.50 | 1.20 |" in lines


def test_demo_and_reference_together_are_refused(capsys):
    threads = _module()
    with pytest.raises(SystemExit) as exc:
        threads.main(["--demo", "--reference", "/tmp"])
    assert exc.value.code == 2
    assert "--demo runs this checkout's demo only" in capsys.readouterr().err
