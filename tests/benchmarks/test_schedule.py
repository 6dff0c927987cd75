"""``benchmarks/schedule.py``: its configurations and its table (the fits take minutes)."""

from __future__ import annotations

import argparse
import shlex

import pytest

from c3tl_sklearn import C3TLRegressor

from ._scripts import load_script


def _module():
    return load_script("schedule")


def test_configurations_are_keyword_literals_the_estimator_accepts():
    kwargs, schedule = load_script("_common"), _module()
    assert kwargs.parse_kwargs("") == {}
    assert kwargs.parse_kwargs("lr=0.01, hidden_dims=(64, 32), lr_schedule='plateau'") == {
        "lr": 0.01, "hidden_dims": (64, 32), "lr_schedule": "plateau"}
    for text in schedule.CONFIGS:  # the settings compared by default are valid parameters
        C3TLRegressor(**kwargs.parse_kwargs(text))._validate_params()
    with pytest.raises(argparse.ArgumentTypeError, match="keyword arguments"):
        kwargs.parse_kwargs("0.01")
    with pytest.raises(argparse.ArgumentTypeError, match="literals"):
        kwargs.parse_kwargs("lr=compute()")
    for not_kwargs in ("**{'lr': 1}", "lr=", "__import__('os')"):
        with pytest.raises(argparse.ArgumentTypeError, match="keyword arguments"):
            kwargs.parse_kwargs(not_kwargs)


def test_report_finds_the_epoch_each_run_reaches_the_defaults_best():
    schedule = _module()
    runs = [
        ("default", {"valid": [3.0, 2.0, 1.0, 1.5], "dur": [9.0, 0.5, 0.7, 0.6],
                     "fit_s": 12.0, "mse": 0.02, "centred": 0.98}),
        ("lr=0.01", {"valid": [2.0, 0.9, 0.5], "dur": [9.0, 0.4, 0.4],
                     "fit_s": 11.0, "mse": 0.019, "centred": 0.981}),
        ("lr=1.0", {"valid": [5.0, 4.0], "dur": [9.0, 0.3], "fit_s": 10.0, "mse": 0.5,
                    "centred": 0.1}),
    ]
    text = schedule.report(runs, argparse.Namespace(threads=2), ["--threads", "2"])
    lines = text.splitlines()
    assert "`python benchmarks/schedule.py --threads 2`" in lines
    # the first epoch is left out of the median epoch time (set-up and first-use costs)
    # outside the epochs: the fit's wall time less the sum of the epochs' durations
    assert "| default | 4 | 1.0000 (3) | 3 | 0.600 | 12.0 | 1.2 | 0.0200 | 0.9800 |" in lines
    assert "| lr=0.01 | 3 | 0.5000 (3) | 2 | 0.400 | 11.0 | 1.2 | 0.0190 | 0.9810 |" in lines
    assert "| lr=1.0 | 2 | 4.0000 (2) | - | 0.300 | 10.0 | 0.7 | 0.5000 | 0.1000 |" in lines


def test_report_quotes_the_command_so_that_it_runs_again():
    schedule = _module()
    run = {"valid": [2.0, 1.0], "dur": [1.0, 0.5], "fit_s": 1.5, "mse": 0.1, "centred": 0.5}
    argv = ["--config", "lr=0.01, max_epochs=40", "--threads", "2"]
    text = schedule.report([("default", run)], argparse.Namespace(threads=2), argv)
    command = next(line for line in text.splitlines() if line.startswith("`python"))
    assert shlex.split(command.strip("`")) == ["python", "benchmarks/schedule.py", *argv]
