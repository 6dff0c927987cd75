"""``benchmarks/walkthrough.py`` and ``benchmarks/startup.py``: their reports from given runs."""

from __future__ import annotations

from types import SimpleNamespace

from ._scripts import load_script


def test_walkthrough_runs_the_readmes_commands_in_order():
    walkthrough = load_script("walkthrough")
    readme = (walkthrough.REPO / "README.md").read_text()
    assert walkthrough.SPLIT.strip() in readme
    # every c3tl step is the README's own command line, found after the one before it
    text = " ".join(readme.replace("\\\n", " ").split())
    at = text.index("## From the command line")
    for _, args in walkthrough.STEPS:
        if args[:2] == ["-m", "c3tl_sklearn.cli"]:
            command = "c3tl " + " ".join(args[2:])
            found = text.find(command, at)
            assert found > at, command
            at = found


def test_walkthrough_report_gives_medians_ranges_and_the_total():
    walkthrough = load_script("walkthrough")
    times = {"a": [1.0, 3.0, 2.0], "b": [0.5, 0.5, 4.0]}
    scores = {"evaluate": {"U87MG": {"pearson_delta": 0.35, "centered_pearson_delta": -0.01,
                                     "discrimination_score": 0.4, "top_k_overlap": 0.25,
                                     "mse": 0.0136, "n_rows": 7}},
              "mean": 0.0493, "observed": 0.35, "zero_shot": 0.06}
    lines = walkthrough.report(times, scores, ["--repeats", "3"], ("1", "2")).splitlines()
    assert "| a | 2.00 (1.00-3.00) |" in lines
    assert "| b | 0.50 (0.50-4.00) |" in lines
    assert "| all 2 steps | 3.5 |" in lines  # the median of the runs' totals 1.5, 3.5, 6.0
    assert "| U87MG | 0.3500 | -0.0100 | 0.4000 | 0.2500 | 0.0136 | 7 |" in lines
    assert "- the mean baseline (`mean.model`): 0.0493" in lines


def test_startup_top_imports_names_the_libraries_the_package_imports():
    startup = load_script("startup")
    stderr = "\n".join([
        "import time: self [us] | cumulative | imported package",
        # a module's imports come before it, one level deeper (two more spaces)
        "import time:       100 |        100 |       numpy.core",
        "import time:      2000 |       2100 |     numpy",
        "import time:       300 |        300 |     json",
        "import time:       500 |       2900 |   c3tl_sklearn._contract",
        "import time:       900 |        900 |   torch",
        "import time:        10 |       3810 | c3tl_sklearn",
    ])
    found = startup.top_imports(stderr, 5)
    # numpy (2.1 ms, through the package's module), torch (0.9 ms); no stdlib, no package
    assert found == [(0.0021, "numpy", "c3tl_sklearn._contract"),
                     (0.0009, "torch", "c3tl_sklearn")]


def test_startup_report_gives_the_ratio_and_the_range():
    startup = load_script("startup")
    args = SimpleNamespace(threads=1, repeats=3, python="python")
    times = {("c3tl --help", "reference"): [1.0, 1.2, 1.1],
             ("c3tl --help", "this checkout"): [0.1, 0.2, 0.1]}
    text = startup._report(args, "python benchmarks/startup.py", {"reference": "/r",
                                                                   "this checkout": "/c"},
                           times, {}, "0", "0")
    assert "| c3tl --help | 1.10 (1.00-1.20) | 0.10 (0.10-0.20) | 11.0x | <= 0.5 s |" in \
        text.splitlines()


def test_startup_floors_run_once_and_say_what_they_bound():
    startup = load_script("startup")
    cases = startup._cases("python")
    # every case that is not the package is a floor, and the floors import no package code
    assert set(cases) - set(startup.TARGETS) == set(startup.FLOORS)
    for case in startup.FLOORS:
        assert "c3tl_sklearn" not in " ".join(cases[case])
    args = SimpleNamespace(threads=1, repeats=2, python="python")
    times = {("floor without skorch", "this checkout"): [1.5, 1.7]}
    text = startup._report(args, "python benchmarks/startup.py", {"this checkout": "/c"},
                           times, {}, "0", "0")
    assert ("| floor without skorch | 1.60 (1.50-1.70) | what a predict without skorch or "
            "scikit-learn cannot avoid |") in text.splitlines()
