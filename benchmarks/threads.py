"""Benchmark: a default fit on an idle machine and beside another process busy on one core.

The fit is ``make demo``'s A375 fold (the LINCS knockdowns,
``LeaveOneContextOut(adaptation_fraction=0.1, random_state=0)``, default
``C3TLRegressor(random_state=0)``), each run in a fresh process with torch's
default threads and ``OMP_NUM_THREADS`` unset, as a user's would. ``busy``
runs it while a second process spins on one core (``while True: pass``).
With ``--reference PATH`` (another checkout, for example ``git worktree add
/tmp/ref REV``) both versions run in the same session, interleaved, so that
they see the same load.

Reported per condition and version: each run's fit seconds, epochs and the
torch threads the process had, and the median seconds per epoch (the epochs
differ between runs with more than one thread, so the per-epoch time is the
fairer comparison of the conditions).

Usage::

    python benchmarks/threads.py --reference /tmp/ref --out c3tl-results/threads.md

Nothing is written unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, time
import torch
from c3tl_sklearn import C3TLRegressor, LeaveOneContextOut, load_lincs_knockdowns
X, Y = load_lincs_knockdowns()
for train, test in LeaveOneContextOut(adaptation_fraction=0.1, random_state=0).split(X):
    if X["context"].iloc[test[0]] == "A375":
        break
start = time.perf_counter()
model = C3TLRegressor(random_state=0).fit(X.iloc[train], Y.iloc[train])
print(json.dumps({"fit_s": time.perf_counter() - start, "epochs": int(model.n_epochs_),
                  "threads": torch.get_num_threads()}))
"""


def run_fit(code_path: Path) -> dict:
    """One fit in a fresh process importing the package from ``code_path``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = str(code_path)
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, cwd=code_path, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the fit with {code_path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(versions: dict[str, Path], repeats: int) -> dict[tuple[str, str], list[dict]]:
    """Every (condition, version) run; the busy condition starts one spinning process."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for condition in ("idle", "busy"):
        spinner = None
        if condition == "busy":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for _ in range(repeats):
                for name, path in versions.items():
                    run = run_fit(path)
                    runs.setdefault((condition, name), []).append(run)
                    print(f"{condition:4s} {name}: {run['fit_s']:.1f} s, {run['epochs']} "
                          f"epochs, {run['threads']} torch thread(s)", flush=True)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
    return runs


def report(runs: dict[tuple[str, str], list[dict]], versions: dict[str, Path],
           argv: list[str], load: tuple[str, str]) -> str:
    lines = [
        "# A default fit on an idle machine and beside a busy core",
        "",
        "`" + " ".join(["python", "benchmarks/threads.py", *argv]) + "`",
        "",
        f"- {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; load average before "
        f"{load[0]}, after {load[1]}.",
        *(f"- {name}: `{path}`" for name, path in versions.items()),
        "",
        "| version | condition | fits (s) | epochs | torch threads | median ms/epoch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in versions:
        for condition in ("idle", "busy"):
            got = runs[condition, name]
            per_epoch = statistics.median(1000 * r["fit_s"] / r["epochs"] for r in got)
            fits = ", ".join(f"{r['fit_s']:.1f}" for r in got)
            epochs = ", ".join(str(r["epochs"]) for r in got)
            threads = ", ".join(str(r["threads"]) for r in got)
            lines.append(f"| {name} | {condition} | {fits} | {epochs} | {threads} "
                         f"| {per_epoch:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, metavar="PATH",
                        help="another checkout, measured in the same session")
    parser.add_argument("--repeats", type=int, default=2, help="fits per condition and version")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the table here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    versions = {"this checkout": REPO}
    if args.reference is not None:
        versions = {"reference": args.reference.resolve(), **versions}
    before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    runs = measure(versions, args.repeats)
    after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    text = report(runs, versions, argv, (before, after))
    print("\n" + text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
