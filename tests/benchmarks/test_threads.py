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
        ("busy", "this checkout"): [
            {"fit_s": 11.0, "epochs": 100, "threads": 1, "epoch_ms": 95.0}],
    }
    text = threads.report(runs, {"this checkout": Path("/x")},
                          ["--repeats", "2", "--config", "a b"], ("0.1", "0.2"))
    lines = text.splitlines()
    # the command as a shell would take it back
    assert "`python benchmarks/threads.py --repeats 2 --config 'a b'`" in lines
    # the median of the runs' epoch medians, not fit time over epochs (50 and 100 here)
    assert "| this checkout | idle | 10.0, 30.0 | 200, 300 | 2, 2 | 65 |" in lines
    assert "| this checkout | busy | 11.0 | 100 | 1 | 95 |" in lines


def test_demo_report_gives_each_folds_busy_over_idle_ratio():
    threads = _module()

    def table(seconds, wall):
        t = pd.DataFrame({"context": ["A375", "A375", "PC3", "PC3"],
                          "model": ["C3TLRegressor", "MeanBaseline"] * 2,
                          "seconds": [seconds[0], 0.1, seconds[1], 0.1]})
        t.attrs["wall_s"] = wall
        return t

    text = threads.report_demo({"idle": table((10.0, 8.0), 60.0),
                                "busy": table((13.0, 12.0), 90.0)}, ["--demo"], ("1", "2"))
    lines = text.splitlines()
    assert "| A375 | 10.0 | 13.0 | 1.30 |" in lines
    assert "| PC3 | 8.0 | 12.0 | 1.50 |" in lines
    assert "| whole demo (wall, every model) | 60 | 90 | 1.50 |" in lines


def test_demo_and_reference_together_are_refused(capsys):
    threads = _module()
    with pytest.raises(SystemExit) as exc:
        threads.main(["--demo", "--reference", "/tmp"])
    assert exc.value.code == 2
    assert "--demo runs this checkout's demo only" in capsys.readouterr().err
