"""Benchmark: the README's command-line walkthrough, each command timed, and its scores.

Runs, in a work folder, exactly the commands of the README's "From the
command line" section on the shipped glioblastoma cells (holding out U87MG
except 2 of its 9 knockdowns), ``--repeats`` times, and reports each step's
median wall time. Then, outside the walkthrough, the figures the README quotes
about it: the scores ``c3tl evaluate`` wrote, the mean baseline's
pearson_delta on the same test pairs, and the model fitted without U87MG
scored on U87MG's 7 test knockdowns with and without ``--observed``.

Every command is a fresh process (``python -m c3tl_sklearn.cli``, which the
``c3tl`` script runs), with ``OMP_NUM_THREADS`` as the user's shell has it.

Usage::

    python benchmarks/walkthrough.py --out c3tl-results/walkthrough.md

Nothing is written into the repository unless ``--out`` says so; the files
go to ``--workdir`` (default: a temporary folder, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import emit, load_average  # beside this script

REPO = Path(__file__).resolve().parents[1]

#: The README's split (its ``python - <<'PY'`` block).
SPLIT = """
import anndata
effects = anndata.read_h5ad("effects.h5ad")
test = (effects.obs["context"] == "U87MG") & ~effects.obs["perturbation"].isin(["MAPK1", "PLK4"])
effects[~test].write_h5ad("train.h5ad")
effects[test].write_h5ad("test.h5ad")
u87mg = effects.obs["context"] == "U87MG"
effects[~u87mg].write_h5ad("other_lines.h5ad")             # for --observed, below
effects[u87mg & ~test].write_h5ad("u87mg_measured.h5ad")   # MAPK1 and PLK4 in U87MG
"""

_C3TL = ["-m", "c3tl_sklearn.cli"]

#: (label, arguments after ``python``), in the README's order.
STEPS = [
    ("write the cells", ["-c", "from c3tl_sklearn import load_glioblastoma_crispri as load; "
                         "load().write_h5ad('cells.h5ad')"]),
    ("c3tl pseudobulk", [*_C3TL, "pseudobulk", "cells.h5ad", "--context", "cell_line",
                         "--perturbation", "perturbation", "--control", "control", "-o",
                         "effects.h5ad"]),
    ("the split (python)", ["-c", SPLIT]),
    ("c3tl fit (C3TL)", [*_C3TL, "fit", "train.h5ad", "-o", "c3tl.model", "--threads", "1"]),
    ("c3tl fit --model mean", [*_C3TL, "fit", "train.h5ad", "-o", "mean.model", "--model",
                               "mean"]),
    ("c3tl predict", [*_C3TL, "predict", "c3tl.model", "--pairs", "test.h5ad", "-o",
                      "predictions.h5ad"]),
    ("c3tl evaluate", [*_C3TL, "evaluate", "predictions.h5ad", "test.h5ad", "-o",
                       "scores.csv"]),
    ("c3tl fit (C3TL) on the two other lines", [*_C3TL, "fit", "other_lines.h5ad", "-o",
                                                "without_u87mg.model", "--threads", "1"]),
    ("c3tl predict --observed", [*_C3TL, "predict", "without_u87mg.model", "--context",
                                 "U87MG", "--all-perturbations", "--observed",
                                 "u87mg_measured.h5ad", "-o", "u87mg.csv"]),
]

#: Not in the walkthrough: what the README says about its results.
SCORES = """
import json
import anndata, pandas as pd
from c3tl_sklearn.cli import c3tl_main
from c3tl_sklearn.metrics import pearson_delta
args = ["--quiet"]
c3tl_main(["predict", "mean.model", "--pairs", "test.h5ad", "-o", "mean.h5ad", *args])
c3tl_main(["predict", "without_u87mg.model", "--pairs", "test.h5ad", "-o", "zero_shot.csv",
           *args])
test = anndata.read_h5ad("test.h5ad")
truth = pd.DataFrame(test.X, columns=test.var_names)
pairs = list(test.obs["perturbation"].astype(str))

def score(frame):
    frame = frame.set_index(frame["perturbation"].astype(str)).loc[pairs]
    return float(pearson_delta(truth.to_numpy(), frame[list(truth.columns)].to_numpy()))

mean = anndata.read_h5ad("mean.h5ad")
print(json.dumps({
    "evaluate": pd.read_csv("scores.csv", index_col=0).to_dict("index"),
    "mean": score(pd.concat([mean.obs.reset_index(drop=True),
                             pd.DataFrame(mean.X, columns=mean.var_names)], axis=1)),
    "observed": score(pd.read_csv("u87mg.csv")),
    "zero_shot": score(pd.read_csv("zero_shot.csv")),
}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _run(python: str, args: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([python, *args], cwd=cwd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)[:200]} failed ({done.returncode}):\n"
                           f"{done.stderr[-2000:]}")
    return seconds, done.stdout


def measure(python: str, workdir: Path, repeats: int) -> tuple[dict[str, list[float]], dict]:
    """Every step's wall seconds per repeat (a fresh folder each time), then the scores."""
    times: dict[str, list[float]] = {}
    for i in range(repeats):
        folder = workdir / f"run{i}"
        folder.mkdir()
        for label, args in STEPS:
            times.setdefault(label, []).append(_run(python, args, folder)[0])
        print(f"run {i + 1}: {sum(t[-1] for t in times.values()):.1f} s", flush=True)
    _, out = _run(python, ["-c", SCORES], workdir / "run0")
    return times, json.loads(out.strip().splitlines()[-1])


def report(times: dict[str, list[float]], scores: dict, argv: list[str],
           load: tuple[str, str]) -> str:
    lines = [
        "# The README's command-line walkthrough",
        "",
        "`" + shlex.join(["python", "benchmarks/walkthrough.py", *argv]) + "`",
        "",
        f"- {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; load average before {load[0]}, "
        f"after {load[1]}.",
        f"- Median (and range) of {len(next(iter(times.values())))} runs of each step, each "
        "a fresh process.",
        "",
        "| step | wall s |",
        "| --- | ---: |",
    ]
    for label, got in times.items():
        lines.append(f"| {label} | {statistics.median(got):.2f} ({min(got):.2f}-"
                     f"{max(got):.2f}) |")
    total = [sum(run) for run in zip(*times.values(), strict=True)]
    lines.append(f"| all {len(times)} steps | {statistics.median(total):.1f} |")
    lines += ["", "`c3tl evaluate`'s scores.csv (first run):", "",
              "| row | pearson_delta | centered_pearson_delta | discrimination_score "
              "| top_k_overlap | mse | n_rows |", "| --- |" + " ---: |" * 6]
    for row, values in scores["evaluate"].items():
        cells = [f"{values[k]:.4f}" for k in ("pearson_delta", "centered_pearson_delta",
                                              "discrimination_score", "top_k_overlap", "mse")]
        lines.append(f"| {row} | " + " | ".join([*cells, str(int(values["n_rows"]))]) + " |")
    lines += [
        "",
        "pearson_delta on U87MG's 7 test knockdowns (outside the walkthrough):",
        "",
        f"- the mean baseline (`mean.model`): {scores['mean']:.4f}",
        f"- the model fitted without U87MG, with MAPK1 and PLK4 as `--observed`: "
        f"{scores['observed']:.4f}",
        f"- the same model without `--observed` (U87MG zero-shot): {scores['zero_shot']:.4f}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="walkthroughs (default: 3)")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="folder for the files (default: a temporary one)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the report here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    own = args.workdir is None
    if not own and args.workdir.exists() and any(args.workdir.iterdir()):
        parser.error(f"--workdir {args.workdir}: give an empty or new folder")
    workdir = Path(tempfile.mkdtemp(prefix="c3tl-walkthrough-")) if own else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    before = load_average()
    try:
        times, scores = measure(args.python, workdir, args.repeats)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    after = load_average()
    text = report(times, scores, argv, (before, after))
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
