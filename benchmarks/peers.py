"""Head-to-head: C3TL against State and CellFlow (and the baselines) on two single-cell sets.

Writes, under ``--out``:

- ``data/glioblastoma.h5ad`` (or in ``--data-dir``): the shipped real cells
  (:func:`~c3tl_sklearn.datasets.load_glioblastoma_crispri`, 3 lines x 9
  CRISPRi knockdowns, 500 genes, log-normalised);
- ``data/synthetic-*.h5ad``: :func:`~c3tl_sklearn.datasets.make_synthetic_cells`
  at the paper's Parse shape (24 contexts x 90 perturbations; ``--genes``
  genes, ``--cells`` cells per group), raw counts;
- ``glioblastoma/`` and ``synthetic/``: the full output of one ``c3tl
  benchmark`` run each (held-out contexts, 10% adaptation, no tuning: the
  peers have no search space and C3TL keeps its defaults; every model in a
  measured subprocess, ``--isolate``), with ``table.md``, ``fits.csv``,
  ``scores.csv`` and its README (command, versions);
- ``README.md``: both tables, the commands, the peers' versions and
  licences; ``peers.png``: accuracy against fit time and peak memory.

Run it with ``make peers`` (see the Makefile) or::

    python benchmarks/peers.py --out DIR [--state-python P] [--cellflow-python P]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

MODELS = "c3tl,state,cellflow,additive,mean,linear"


def _write_data(folder: Path, *, genes: int, cells: int, seed: int) -> dict:
    from c3tl_sklearn.datasets import load_glioblastoma_crispri, make_synthetic_cells

    folder.mkdir(parents=True, exist_ok=True)
    glio = folder / "glioblastoma.h5ad"
    if not glio.exists():
        load_glioblastoma_crispri().write_h5ad(glio)
    synth = folder / f"synthetic-{genes}g-{cells}c-seed{seed}.h5ad"
    if not synth.exists():
        make_synthetic_cells(24, 90, genes, n_cells=cells, random_state=seed).write_h5ad(synth)
    return {"glioblastoma": glio, "synthetic": synth}


def _commands(data: dict, out: Path, args) -> dict[str, list[str]]:
    common = ["--models", MODELS, "--protocol", "heldout", "--n-trials", "0",
              "--threads", "1", "--isolate", "--seed", str(args.seed),
              "--peer-option", f"state.max_steps={args.state_steps}",
              "--peer-option", f"cellflow.num_iterations={args.cellflow_iterations}"]
    for name in ("state", "cellflow"):
        python = getattr(args, f"{name}_python")
        if python:
            common += [f"--{name}-python", python]
    return {
        "glioblastoma": [
            "--h5ad", str(data["glioblastoma"]), "--context-key", "cell_line",
            "--perturbation-key", "perturbation", "--control", "control",
            *common, "--out", str(out / "glioblastoma"),
        ],
        "synthetic": [
            "--h5ad", str(data["synthetic"]), "--context-key", "context",
            "--perturbation-key", "perturbation", "--control", "control",
            "--transform", "normalize_log1p", "--min-cells", str(min(10, args.cells)),
            "--n-test-contexts", str(args.synthetic_test_contexts),
            *common, "--out", str(out / "synthetic"),
        ],
    }


def _summary(out: Path, ran, seconds: dict) -> pd.DataFrame:
    rows = []
    for name in ran:
        scores = pd.read_csv(out / name / "scores.csv")
        fits = pd.read_csv(out / name / "fits.csv")
        wide = scores.pivot_table(index="model", columns="metric", values="value",
                                  aggfunc="mean")
        peak = fits[["fit_peak_rss_mib", "predict_peak_rss_mib"]].max(axis=1)
        timing = fits.assign(peak=peak).groupby("model").agg(
            fit_s=("fit_seconds", "mean"), predict_s=("predict_seconds", "mean"),
            peak_mib=("peak", "max"))
        rows.append(wide.join(timing).reset_index().assign(data=name))
    return pd.concat(rows, ignore_index=True)


def _plot(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(summary["data"]))
    fig, axes = plt.subplots(len(sets), 2, figsize=(10, 4 * len(sets)), squeeze=False)
    for i, name in enumerate(sets):
        sub = summary[summary["data"] == name]
        for j, (column, label) in enumerate((("fit_s", "fit seconds per fold (log)"),
                                             ("peak_mib", "peak memory, MiB (log)"))):
            ax = axes[i, j]
            for _, row in sub.iterrows():
                ax.scatter(row[column], row["centered_pearson_delta"], s=40)
                ax.annotate(row["model"], (row[column], row["centered_pearson_delta"]),
                            textcoords="offset points", xytext=(4, 4), fontsize=9)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("centred Pearson Δ (mean over folds)")
            ax.set_title(name)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


_NOTES = """\
Notes:

- Held-out contexts, one at a time, 10% of each test context's pairs in training; scored
  only on pairs never seen in the test context (the benchmark's protocol). No tuning
  (`--n-trials 0`): the peers have no search space here and C3TL keeps its defaults.
- The peers are CPU-sized: State `state_sm` shrunk to hidden 64, 2 layers, cell sets of 32,
  {state_steps} steps; CellFlow layers of 128, 30 PCA components, {cellflow_iterations}
  iterations. The paper trains State on GPUs for far longer; these rows show what each
  peer gives on a 2-core CPU in minutes, not its best.
- Every model runs in its own measured subprocess (`--isolate` for C3TL and the
  baselines): fit and predict seconds include the interpreter start and imports (a few
  seconds, which dominate the baselines), and Peak MiB is the largest peak resident set
  of a fit or predict subprocess (`wait4`'s `ru_maxrss`, through a small launcher).
- The machine (2 cores) was shared with other jobs during the run, so times are noisy.
- Licences: State (arc-state) CC BY-NC-SA 4.0, CellFlow (cellflow-tools) PolyForm
  Noncommercial 1.0.0, both non-commercial. They run in their own virtual environments
  (`c3tl peers install state|cellflow`) and are never dependencies of c3tl-sklearn.
- CPA (cpa-tools) and PIE (arc-pie) are not carried: CPA runs only with nine hand-found
  2023 pins (old scvi-tools, numpy 1.26, jax 0.4.30) installed with `--no-deps`; PIE needs
  Python 3.12, a 7.5 GB CUDA build and knowledge sources from a model hub.
"""


def _report(out: Path, names, argv, started: str, args) -> None:
    """README.md, summary.csv and peers.png from the benchmark folders of a run."""
    summary = _summary(out, names, {})
    summary.to_csv(out / "summary.csv", index=False)
    _plot(summary, out / "peers.png")
    lines = [
        "# Head-to-head: C3TL, State, CellFlow and the baselines",
        "",
        f"{started} `benchmarks/peers.py` (`make peers`):",
        "",
        "```",
        shlex.join(["python", "benchmarks/peers.py", *argv]),
        "```",
        "",
        _NOTES.format(state_steps=args.state_steps,
                      cellflow_iterations=args.cellflow_iterations),
    ]
    for name in names:
        sub = (out / name / "README.md").read_text(encoding="utf-8").splitlines()
        command = sub[sub.index("```") + 1]
        facts = [line for line in sub if line.startswith(("- Wall time", "- Data",
                                                           "- Test contexts", "- Software",
                                                           "- Peer:", "- Machine"))]
        table = (out / name / "table.md").read_text(encoding="utf-8")
        lines += [f"## {name}", "", "```", command, "```", "", *facts, "", table, ""]
    lines += ["`peers.png`: centred Pearson Δ against fit seconds and peak memory; "
              "`summary.csv`: the means behind it. Every benchmark folder holds its "
              "`scores.csv`, `fits.csv`, `params.json`, `scatter.png` and README.", ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {out / 'README.md'}, {out / 'summary.csv'}, {out / 'peers.png'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--data-dir", help="where the two .h5ad files are written (default: "
                        "OUT/data; reused when present)")
    parser.add_argument("--state-python", help="State's Python or environment")
    parser.add_argument("--cellflow-python", help="CellFlow's Python or environment")
    parser.add_argument("--genes", type=int, default=2000,
                        help="genes of the synthetic set (default: 2000, the paper's)")
    parser.add_argument("--cells", type=int, default=10,
                        help="cells per (context, perturbation) of the synthetic set (default 10)")
    parser.add_argument("--synthetic-test-contexts", type=int, default=3,
                        help="held-out contexts of the synthetic set (default: 3)")
    parser.add_argument("--state-steps", type=int, default=400, help="State's max_steps")
    parser.add_argument("--cellflow-iterations", type=int, default=1000,
                        help="CellFlow's training iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["glioblastoma", "synthetic"],
                        help="run one data set")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild README.md, summary.csv and peers.png from "
                        "the benchmark folders already in --out")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    out = Path(args.out)
    names = [args.only] if args.only else ["glioblastoma", "synthetic"]
    if args.report_only:
        started = ("Tables rebuilt from the folders that each data set's command below wrote "
                   "(its start time and wall time are listed with it), by")
        _report(out, [n for n in names if (out / n / "table.md").exists()], argv, started,
                args)
        return 0
    started = f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by"
    data = _write_data(Path(args.data_dir) if args.data_dir else out / "data",
                       genes=args.genes, cells=args.cells, seed=args.seed)
    commands = _commands(data, out, args)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in names:
        full = [sys.executable, "-m", "c3tl_sklearn.cli", "benchmark", *commands[name]]
        print("+", shlex.join(full), flush=True)
        subprocess.run(full, check=True, env=env)
    _report(out, names, argv, started, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
