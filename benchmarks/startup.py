"""Benchmark: how long ``import c3tl_sklearn``, ``c3tl --help`` and ``c3tl predict`` take to start.

Each case runs ``--repeats`` times in a fresh Python process, for this checkout
and, with ``--reference PATH``, for another checkout of the package (for
example ``git worktree add /tmp/ref REV``) in the same run: every case and
version once per round, so that all see the same load. The code under test is chosen by
``PYTHONPATH``; the interpreter is this one (``--python`` for another).

Cases
-----
``import c3tl_sklearn``
    ``python -c "import c3tl_sklearn"``.
``c3tl --help``
    ``python -m c3tl_sklearn.cli --help`` (what the ``c3tl`` script runs).
``c3tl predict``
    The README walkthrough's ``c3tl predict c3tl.model --pairs test.h5ad -o
    predictions.h5ad``, on the README's data, made in the work folder first
    (the shipped glioblastoma cells, ``c3tl pseudobulk``, the README's split,
    ``c3tl fit``, with the reference when there is one, since this checkout
    reads older model formats but not the other way round; both versions
    predict the same model file).
``floor``
    ``python -c "import torch, skorch, anndata"``: what a C3TL ``predict`` of
    ``.h5ad`` files cannot avoid importing (the network, its skorch net and
    scikit-learn, the files), without any of the package.
``floor without skorch``
    ``python -c "import torch, anndata"``: what even a ``predict`` without
    skorch and scikit-learn (the torch module alone, as a second inference
    path would need) would import.

Reported: the median wall time of each case and version, with its range
(and the reference's over this checkout's ratio), and the imports that cost most, from one more run
with ``python -X importtime``: the libraries the package (or the command)
imports directly, by cumulative time.

Nothing is written into the repository: the data go to ``--workdir`` (default
a temporary folder, removed afterwards), the report is printed and, with
``--out``, also written there as Markdown.

Example::

    git worktree add /tmp/ref-startup d0f0db8
    python benchmarks/startup.py --reference /tmp/ref-startup \\
        --out benchmarks/results/startup.md
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import load_average  # beside this script
from walkthrough import SPLIT  # the README's split

REPO = Path(__file__).resolve().parents[1]

#: The issue's targets on an idle 2-core machine (seconds of wall time).
TARGETS = {"import c3tl_sklearn": 1.0, "c3tl --help": 0.5, "c3tl predict": 2.0}

def _cases(python: str) -> dict[str, list[str]]:
    c3tl = [python, "-m", "c3tl_sklearn.cli"]
    return {
        "import c3tl_sklearn": [python, "-c", "import c3tl_sklearn"],
        "c3tl --help": [*c3tl, "--help"],
        "c3tl predict": [*c3tl, "predict", "c3tl.model", "--pairs", "test.h5ad", "-o",
                         "predictions.h5ad"],
        "floor": [python, "-c", "import torch, skorch, anndata"],
        "floor without skorch": [python, "-c", "import torch, anndata"],
    }


#: The cases that are not the package: lower bounds, run with one interpreter only.
FLOORS = {"floor": "what predict cannot avoid",
          "floor without skorch": "what a predict without skorch or scikit-learn cannot avoid"}


def _env(checkout: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(checkout), *filter(None, [env.get("PYTHONPATH")])])
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = str(threads)
    return env


def _run(cmd, env, cwd, importtime: bool = False) -> tuple[float, str]:
    """Wall seconds of one fresh process, and its stderr (the import times with ``-X``)."""
    if importtime:
        cmd = [cmd[0], "-X", "importtime", *cmd[1:]]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return seconds, done.stderr


def _prepare(workdir: Path, python: str, env: dict[str, str]) -> None:
    """The README walkthrough's files up to the model predict reads."""
    c3tl = [python, "-m", "c3tl_sklearn.cli"]
    steps = [
        [python, "-c", "from c3tl_sklearn import load_glioblastoma_crispri as load; "
         "load().write_h5ad('cells.h5ad')"],
        [*c3tl, "pseudobulk", "cells.h5ad", "--context", "cell_line", "--perturbation",
         "perturbation", "--control", "control", "-o", "effects.h5ad", "--quiet"],
        [python, "-c", SPLIT],
        [*c3tl, "fit", "train.h5ad", "-o", "c3tl.model", "--threads", "1", "--quiet"],
    ]
    for cmd in steps:
        _run(cmd, env, workdir)


_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def top_imports(stderr: str, k: int) -> list[tuple[float, str, str]]:
    """``(seconds, module, importer)`` of the costliest imports from outside the package.

    Read from ``-X importtime``: every module another package (or the command
    itself) imports directly, by cumulative time, with who imported it; the
    package's own modules are looked through, so that ``pandas`` shows as
    imported by ``c3tl_sklearn.cli._files`` rather than hidden in it.
    """
    rows = [(int(m[2]), len(m[3]), m[4]) for m in map(_LINE.match, stderr.splitlines()) if m]
    found = []
    stack: list[tuple[int, str]] = []  # ancestors of the line, read bottom-up
    for cumulative, depth, name in reversed(rows):  # a parent comes after its children
        while stack and stack[-1][0] >= depth:
            stack.pop()
        importer = stack[-1][1] if stack else "top level"
        inside_foreign = any(not n.startswith("c3tl_sklearn") for _, n in stack)
        if not (name.startswith("c3tl_sklearn") or inside_foreign or _is_stdlib(name)):
            found.append((cumulative / 1e6, name, importer))
        stack.append((depth, name))
    return sorted(found, reverse=True)[:k]


def _is_stdlib(name: str) -> bool:
    root = name.split(".")[0]
    # "_"-names: interpreter internals and the hooks of editable installs
    return root in sys.stdlib_module_names or root.startswith("_")


def _revision(checkout: Path) -> str:
    try:
        done = subprocess.run(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip()[:90] or "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per case and version "
                        "(median shown; default: 7)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS (and BLAS threads) of every child (default: 1)")
    parser.add_argument("--reference", type=Path, metavar="PATH",
                        help="another checkout of the package, measured in the same run")
    parser.add_argument("--workdir", type=Path, metavar="DIR",
                        help="folder for the README's data (default: a temporary one)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to run")
    parser.add_argument("--top", type=int, default=6, help="imports listed per case")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the report here")
    args = parser.parse_args(argv)

    versions = {"this checkout": REPO}
    if args.reference is not None:
        if not (args.reference / "c3tl_sklearn" / "__init__.py").is_file():
            parser.error(f"--reference {args.reference}: not a checkout of c3tl-sklearn")
        versions = {"reference": args.reference.resolve(), **versions}
    envs = {name: _env(path, args.threads) for name, path in versions.items()}

    own = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="c3tl-startup-")) if own else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    try:
        # the children run in the work folder, first on sys.path: PYTHONPATH must then
        # pick the version, not a checkout there or an installed copy
        for name, env in envs.items():
            _, where = _run([args.python, "-c", "import sys, c3tl_sklearn; "
                             "print(c3tl_sklearn.__file__, file=sys.stderr)"], env, workdir)
            if not Path(where.strip()).is_relative_to(versions[name]):
                raise RuntimeError(f"{name}: c3tl_sklearn imported from {where.strip()}")
        # the reference writes the model when there is one: this checkout reads the
        # older file formats, an older version may not read today's
        _prepare(workdir, args.python, envs.get("reference", envs["this checkout"]))
        runs = [(case, cmd, name) for case, cmd in _cases(args.python).items()
                for name in (["this checkout"] if case in FLOORS else versions)]
        times: dict[tuple[str, str], list[float]] = {}
        imports: dict[tuple[str, str], list] = {}
        for _, cmd, name in runs:  # one untimed run each: byte-compiles a fresh checkout
            _run(cmd, envs[name], workdir)
        # every case and version once per round, so that each sees the same load as the
        # others (the floor bounds predict only if they are measured alike)
        for _ in range(args.repeats):
            for case, cmd, name in runs:
                times.setdefault((case, name), []).append(_run(cmd, envs[name], workdir)[0])
        for case, cmd, name in runs:
            imports[case, name] = top_imports(
                _run(cmd, envs[name], workdir, importtime=True)[1], args.top)
    finally:
        if own:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = load_average()

    command = "python benchmarks/startup.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv))
    report = _report(args, command, versions, times, imports, load_before, load_after)
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")
    return 0


def _report(args, command, versions, times, imports, load_before, load_after) -> str:
    median = {key: statistics.median(v) for key, v in times.items()}
    lines = [
        "# Start-up time of `import c3tl_sklearn`, `c3tl --help` and `c3tl predict`",
        "",
        f"`{command}`",
        "",
        f"- {datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.machine()}); OMP_NUM_THREADS={args.threads}; "
        f"median (and range) of {args.repeats} fresh processes per case and version, every "
        "case and version once per round.",
        f"- Load average (1, 5, 15 min) before: {load_before}; after: {load_after}. The "
        "machine is shared with other jobs, so the figures carry their load; compare the "
        "columns (measured together), not runs on different days.",
    ]
    for name, path in versions.items():
        lines.append(f"- {name}: `{path}` ({_revision(path)})")
    header = "| case | " + " | ".join(f"{n} (s)" for n in versions)
    if "reference" in versions:
        header += " | reference / this checkout"
    header += " | target (idle machine) |"
    lines += ["", header, "|" + " --- |" * (header.count("|") - 1)]
    for case in _cases(args.python):
        cells = [f"{median[case, n]:.2f} ({min(times[case, n]):.2f}-{max(times[case, n]):.2f})"
                 if (case, n) in median else "" for n in versions]
        row = f"| {case} | " + " | ".join(cells)
        if "reference" in versions:
            ratio = (median[case, "reference"] / median[case, "this checkout"]
                     if (case, "reference") in median else None)
            row += " | " + (f"{ratio:.1f}x" if ratio else "")
        target = TARGETS.get(case)
        row += " | " + (f"<= {target:.1f} s" if target else FLOORS[case]) + " |"
        lines.append(row)
    lines += ["", "Costliest imports (one `python -X importtime` run each; cumulative seconds, "
              "imported by):", ""]
    for (case, name), found in imports.items():
        shown = "; ".join(f"`{mod}` {s:.2f} ({importer})" for s, mod, importer in found)
        lines.append(f"- {case}, {name}: {shown or 'nothing outside the standard library'}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
