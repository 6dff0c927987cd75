"""Benchmark: default fits on an idle machine and beside another process busy on one core.

Two measurements, each run in fresh processes, by default with torch's threads
and ``OMP_NUM_THREADS`` unset, as a user's would; ``busy`` runs them while a
second process spins on one core (``while True: pass``). A third condition,
``idle, one thread``, runs them idle with ``OMP_NUM_THREADS=1`` (a count the
user chose): what a fit can reach on the one core a busy machine leaves, so
that the busy figures can be told apart into the second core's share and any
slowdown of the first.

- The fold (default): ``make demo``'s A375 fold (the LINCS knockdowns,
  ``LeaveOneContextOut(adaptation_fraction=0.1, random_state=0)``, default
  ``C3TLRegressor(random_state=0)``), ``--repeats`` times. With
  ``--reference PATH`` (another checkout, for example ``git worktree add
  /tmp/ref REV``) both versions run in the same session, interleaved, so
  that they see the same load. Reported per condition and version: each
  run's fit seconds, epochs and the torch threads the fit ran with (read
  inside it), and the median of the epochs' own durations (skorch's
  ``dur``; the epoch count differs between runs with more than one thread,
  so the median epoch compares the conditions where fit seconds cannot), and
  the median fit's busy / idle and busy / one-thread ratios.
- ``--demo``: ``make demo`` itself (``examples/lincs_demo.py``) in each
  condition, and per fold the seconds of C3TL's fit and prediction as the
  demo recorded them, with the busy / idle and busy / one-thread ratios.

Usage::

    python benchmarks/threads.py --reference /tmp/ref --out c3tl-results/threads.md
    python benchmarks/threads.py --demo --out c3tl-results/threads-demo.md

Nothing is written unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _common import emit, load_average  # beside this script

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, statistics, time
import torch
from skorch.callbacks import Callback
from c3tl_sklearn import C3TLRegressor, LeaveOneContextOut, load_lincs_knockdowns

class Threads(Callback):  # the count the fit runs with, not the one restored after it
    def on_epoch_begin(self, net, **kwargs):
        self.n = torch.get_num_threads()

X, Y = load_lincs_knockdowns()
for train, test in LeaveOneContextOut(adaptation_fraction=0.1, random_state=0).split(X):
    if X["context"].iloc[test[0]] == "A375":
        break
threads = Threads()
start = time.perf_counter()
model = C3TLRegressor(random_state=0, callbacks=[threads]).fit(X.iloc[train], Y.iloc[train])
fit_s = time.perf_counter() - start
print(json.dumps({"fit_s": fit_s, "epochs": int(model.n_epochs_), "threads": threads.n,
                  "epoch_ms": 1000 * statistics.median(model.history_[:, "dur"])}))
"""

DEMO = REPO / "examples" / "lincs_demo.py"


#: Each condition: whether a process spins on one core, and the child's OMP_NUM_THREADS.
CONDITIONS: dict[str, tuple[bool, str | None]] = {
    "idle": (False, None),
    "idle, one thread": (False, "1"),
    "busy": (True, None),
}


def _child_env(code_path: Path, threads: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(code_path)
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    return env


def run_fit(code_path: Path, threads: str | None = None) -> dict:
    """One fit in a fresh process importing the package from ``code_path``."""
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=_child_env(code_path, threads), cwd=code_path, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the fit with {code_path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def condition(name: str):
    """A process spinning on one core for the block where ``CONDITIONS`` says so."""
    if not CONDITIONS[name][0]:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(1.0)
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def measure(versions: dict[str, Path], repeats: int) -> dict[tuple[str, str], list[dict]]:
    """Every (condition, version) run of the A375 fold."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for name_of_condition, (_, threads) in CONDITIONS.items():
        with condition(name_of_condition):
            for _ in range(repeats):
                for name, path in versions.items():
                    run = run_fit(path, threads)
                    runs.setdefault((name_of_condition, name), []).append(run)
                    print(f"{name_of_condition:4s} {name}: {run['fit_s']:.1f} s, "
                          f"{run['epochs']} epochs, {run['threads']} torch thread(s)",
                          flush=True)
    return runs


def measure_demo(workdir: Path) -> dict[str, pd.DataFrame]:
    """``examples/lincs_demo.py`` in each condition: its per-fold table of each run."""
    tables = {}
    for i, (name, (_, threads)) in enumerate(CONDITIONS.items()):
        out = workdir / str(i)
        with condition(name):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, str(DEMO), "--out", str(out)],
                                  capture_output=True, text=True,
                                  env=_child_env(REPO, threads), cwd=REPO, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"make demo ({name}) failed:\n{done.stderr[-2000:]}")
        table = pd.read_csv(out / "lincs_demo.csv")
        table.attrs["wall_s"] = time.perf_counter() - start
        tables[name] = table
        print(f"{name}: the demo took {table.attrs['wall_s']:.0f} s", flush=True)
    return tables


def _header(title: str, argv: list[str], load: tuple[str, str]) -> list[str]:
    return [
        f"# {title}",
        "",
        "`" + shlex.join(["python", "benchmarks/threads.py", *argv]) + "`",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; load average before "
        f"{load[0]}, after {load[1]}.",
    ]


def report(runs: dict[tuple[str, str], list[dict]], versions: dict[str, Path],
           argv: list[str], load: tuple[str, str]) -> str:
    lines = [
        *_header("A default fit on an idle machine and beside a busy core", argv, load),
        *(f"- {name}: `{path}`" for name, path in versions.items()),
        "",
        "| version | condition | fits (s) | epochs | torch threads in the fit "
        "| median ms/epoch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in versions:
        for name_of_condition in CONDITIONS:
            got = runs[name_of_condition, name]
            per_epoch = statistics.median(r["epoch_ms"] for r in got)
            fits = ", ".join(f"{r['fit_s']:.1f}" for r in got)
            epochs = ", ".join(str(r["epochs"]) for r in got)
            threads = ", ".join(str(r["threads"]) for r in got)
            lines.append(f"| {name} | {name_of_condition} | {fits} | {epochs} | {threads} "
                         f"| {per_epoch:.0f} |")
    lines += ["", "ms/epoch: the median of the fits' median epoch durations (skorch's `dur`: "
              "the epoch alone, not the fit's set-up).", ""]
    for name in versions:
        fit = {c: statistics.median(r["fit_s"] for r in runs[c, name]) for c in CONDITIONS}
        lines.append(f"- {name}, median fit: busy / idle {fit['busy'] / fit['idle']:.2f}, "
                     f"busy / idle with one thread "
                     f"{fit['busy'] / fit['idle, one thread']:.2f}.")
    return "\n".join(lines) + "\n"


def report_demo(tables: dict[str, pd.DataFrame], argv: list[str],
                load: tuple[str, str]) -> str:
    idle, one, busy = (
        tables[c][tables[c]["model"] == "C3TLRegressor"].set_index("context")["seconds"]
        for c in ("idle", "idle, one thread", "busy"))
    lines = [
        *_header("`make demo` on an idle machine and beside a busy core", argv, load),
        "",
        "Seconds of each fold's C3TL fit and prediction, as `examples/lincs_demo.py` "
        "recorded them in `lincs_demo.csv` (*one thread*: idle, `OMP_NUM_THREADS=1`):",
        "",
        "| held out | idle | one thread | busy | busy / idle | busy / one thread |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for context in idle.index:
        lines.append(f"| {context} | {idle[context]:.1f} | {one[context]:.1f} "
                     f"| {busy[context]:.1f} | {busy[context] / idle[context]:.2f} "
                     f"| {busy[context] / one[context]:.2f} |")
    wall = {c: t.attrs["wall_s"] for c, t in tables.items()}
    lines.append(f"| whole demo (wall, every model) | {wall['idle']:.0f} "
                 f"| {wall['idle, one thread']:.0f} | {wall['busy']:.0f} "
                 f"| {wall['busy'] / wall['idle']:.2f} "
                 f"| {wall['busy'] / wall['idle, one thread']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, metavar="PATH",
                        help="another checkout, measured in the same session")
    parser.add_argument("--repeats", type=int, default=2, help="fits per condition and version")
    parser.add_argument("--demo", action="store_true",
                        help="run make demo in each condition instead of the A375 fold")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the table here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.demo and args.reference is not None:
        parser.error("--demo runs this checkout's demo only; leave out --reference")
    before = load_average()
    if args.demo:
        with tempfile.TemporaryDirectory(prefix="c3tl-threads-") as workdir:
            tables = measure_demo(Path(workdir))
        after = load_average()
        text = report_demo(tables, argv, (before, after))
    else:
        versions = {"this checkout": REPO}
        if args.reference is not None:
            versions = {"reference": args.reference.resolve(), **versions}
        runs = measure(versions, args.repeats)
        after = load_average()
        text = report(runs, versions, argv, (before, after))
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
