"""``benchmarks/threads.py``: its table from given runs (the fits themselves take a minute)."""

from __future__ import annotations

from pathlib import Path

from ._scripts import load_script


def _module():
    return load_script("threads")


def test_report_lists_every_run_and_the_median_time_per_epoch():
    threads = _module()
    runs = {
        ("idle", "this checkout"): [{"fit_s": 10.0, "epochs": 200, "threads": 2},
                                    {"fit_s": 30.0, "epochs": 300, "threads": 2}],
        ("busy", "this checkout"): [{"fit_s": 11.0, "epochs": 100, "threads": 2}],
    }
    text = threads.report(runs, {"this checkout": Path("/x")}, ["--repeats", "2"], ("0.1", "0.2"))
    lines = text.splitlines()
    assert "`python benchmarks/threads.py --repeats 2`" in lines
    # medians of 50 and 100 ms/epoch, and 110 ms/epoch
    assert "| this checkout | idle | 10.0, 30.0 | 200, 300 | 2, 2 | 75 |" in lines
    assert "| this checkout | busy | 11.0 | 100 | 2 | 110 |" in lines
