"""Benchmark: how many epochs a fit needs, and what it reaches, per training schedule.

The data are ``make speed``'s Tahoe shape (48 contexts x 1,138 perturbations
x 2,000 genes from ``make_synthetic_perturbations``, five test contexts with
10% of their pairs measured, the model trained on everything else and scored
on the held-out pairs; ``benchmarks/speed.py``'s split). Each configuration is
one ``C3TLRegressor(random_state=SEED, **configuration)`` fit in its own
process, one after the other, with ``--threads`` torch threads.

Reported per configuration: the epochs run, the best validation loss and
its epoch, the first epoch at which the validation loss reached the default's
best (the default runs first), seconds per epoch (median), the fit's wall
time and the part of it outside the epochs (the wall time less every epoch's
duration: input checks, PCA, set-up, read-out), and held-out MSE and centred
Pearson. The validation loss is what early
stopping sees; the held-out scores are the test contexts' unmeasured pairs,
which the fit never saw.

Usage::

    python benchmarks/schedule.py --threads 2 --out c3tl-results/schedule.md
    python benchmarks/schedule.py --config "lr=0.01, lr_schedule='plateau'"

Without ``--config`` the default (``max_epochs="auto"``, which bounds a fit
of this shape at 45 epochs) is compared with a fit that runs until early
stopping (``max_epochs=500``) and with the default before
``context_input="departure"`` (``context_input='effect', max_epochs=500``);
``--config`` (keyword arguments of ``C3TLRegressor``, literals only,
repeatable) gives other configurations instead. Nothing is written unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from _common import load_average, parse_kwargs  # beside this script

REPO = Path(__file__).resolve().parents[1]
SHAPE = (48, 1138, 2000)
SEED = 0

#: The default, and what is compared with it unless ``--config`` says otherwise.
CONFIGS = ["", "max_epochs=500", "context_input='effect', max_epochs=500"]

CHILD = """
import json, sys, time
import numpy as np, torch
sys.path.insert(0, {benchmarks!r})
from speed import held_out_rows
from c3tl_sklearn import C3TLRegressor
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.metrics import centered_pearson_delta
torch.set_num_threads({threads})
X, Y = make_synthetic_perturbations(*{shape}, as_frame=False, random_state={seed})
train, test = held_out_rows(X, 5, {seed})
X_test, Y_test = X.iloc[test].reset_index(drop=True), Y[test]
model = C3TLRegressor(random_state={seed}, **{kwargs!r})
start = time.perf_counter()
model.fit(X.iloc[train].reset_index(drop=True), np.ascontiguousarray(Y[train]))
fit_s = time.perf_counter() - start
pred = model.predict(X_test)
print(json.dumps({{
    "fit_s": fit_s, "valid": [float(v) for v in model.history_[:, "valid_loss"]],
    "dur": [float(d) for d in model.history_[:, "dur"]],
    "mse": float(np.mean((pred - Y_test) ** 2)),
    "centred": float(centered_pearson_delta(Y_test, pred, X_test["context"].to_numpy())),
}}))
"""


def run(kwargs: dict, threads: int) -> dict:
    """One fit in a fresh process."""
    code = CHILD.format(benchmarks=str(REPO / "benchmarks"), threads=threads, shape=SHAPE,
                        seed=SEED, kwargs=kwargs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the fit with {kwargs} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def first_at(losses: list[float], level: float) -> int | None:
    """The first epoch (1-based) whose validation loss is at most ``level``."""
    return next((i + 1 for i, v in enumerate(losses) if v <= level), None)


def report(results: list[tuple[str, dict]], args: argparse.Namespace, argv: list[str]) -> str:
    default_best = min(results[0][1]["valid"])
    lines = [
        "# Epochs and accuracy per training schedule (Tahoe shape)", "",
        f"`{shlex.join(['python', 'benchmarks/schedule.py', *argv])}`", "",
        f"- {datetime.now():%Y-%m-%d %H:%M}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {args.threads} torch thread(s); one fit per configuration "
        f"(seed {SEED}), in its own process.",
        "- Load average (1, 5, 15 min) at the end: "
        + load_average() + ".",
        f"- *reaches default's best*: first epoch with a validation loss at most the default "
        f"fit's best ({default_best:.4f}).", "",
        "| configuration | epochs | best validation loss (epoch) | reaches default's best "
        "| s/epoch | fit s | outside epochs s | held-out MSE | held-out centred Pearson |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, res in results:
        valid = res["valid"]
        best = min(valid)
        lines.append(
            f"| {label} | {len(valid)} | {best:.4f} ({valid.index(best) + 1}) | "
            f"{first_at(valid, default_best) or '-'} | {statistics.median(res['dur'][1:]):.3f} | "
            f"{res['fit_s']:.1f} | {res['fit_s'] - sum(res['dur']):.1f} | {res['mse']:.4f} | "
            f"{res['centred']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    parser.add_argument("--config", action="append", default=None, metavar="KWARGS",
                        help="C3TLRegressor keyword arguments to compare with the default "
                             "(repeatable; replaces the setting compared by default)")
    parser.add_argument("--out", type=Path, metavar="FILE.md", help="also write the report here")
    args = parser.parse_args(argv)
    texts = [""] + (args.config if args.config is not None else CONFIGS[1:])
    configs = [(text or "default", parse_kwargs(text)) for text in texts]
    results = []
    for label, kwargs in configs:
        res = run(kwargs, args.threads)
        print(f"{label}: {len(res['valid'])} epochs, {res['fit_s']:.1f} s, "
              f"held-out MSE {res['mse']:.4f}", flush=True)
        results.append((label, res))
    text = report(results, args, argv)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
