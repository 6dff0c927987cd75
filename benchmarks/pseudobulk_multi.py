"""Benchmark: pseudo-bulk an atlas split into plate files, one file per worker at a time.

Generates ``--n-files`` synthetic sparse ``.h5ad`` files (default 10 x 1,000,000
cells x 2,000 genes, ~5% non-zero, 10 contexts x 100 perturbations plus a
control spread over every file, so every pair and every context's controls
span all files) in a temporary directory with the generator of
``benchmarks/pseudobulk.py``, then times
``pseudobulk(paths, ..., n_jobs=n)`` for every ``--n-jobs`` value, each run in a
fresh subprocess, and deletes the files.

Per run it reports the wall time of the call, the seconds per file, and the
peak resident memory (``getrusage`` ``ru_maxrss``) of every worker process
(read by the worker after each of its files) and of the calling process (which
holds the merge: one ``(n_groups, n_genes)`` float64 array per file). With
``n_jobs=1`` the calling process is the only worker.

Usage::

    python benchmarks/pseudobulk_multi.py --out benchmarks/results       # full size
    python benchmarks/pseudobulk_multi.py --cells-per-file 20000 --n-files 3   # smoke run

Check the free disk space first (``df -h /tmp``): the default files take about
8 GiB (``--workdir`` puts them elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from pseudobulk import generate_h5ad, versions  # noqa: E402


def child(paths_file: str, n_jobs: int, out_npy: str) -> None:
    """One timed call in a fresh process; prints a JSON line."""
    import warnings

    from c3tl_sklearn.preprocessing import pseudobulk

    paths = json.loads(Path(paths_file).read_text())
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, Y, report = pseudobulk(paths, "cell_line", "drug", "control", n_jobs=n_jobs,
                                  return_report=True)
    wall = time.perf_counter() - t0
    np.save(out_npy, Y.to_numpy())
    files = report.files
    workers = files.groupby("worker")["worker_peak_rss_mib"].max()
    print(json.dumps({
        "wall_s": wall,
        "file_seconds": files["seconds"].tolist(),
        "worker_peak_mib": workers.tolist(),
        "files_per_worker": files.groupby("worker").size().tolist(),
        "caller_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_cells": int(files["n_cells"].sum()),
        "n_pairs": len(X), "n_genes": Y.shape[1],
    }))


def baseline() -> None:
    """Peak memory of a process that only imports the package (torch included)."""
    import c3tl_sklearn.preprocessing  # noqa: F401

    print(json.dumps({"import_peak_mib":
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_child(paths_file: Path | None, n_jobs: int = 0, out_npy: Path | None = None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", str(paths_file),
           str(n_jobs), str(out_npy)]
    if paths_file is None:
        cmd = [sys.executable, str(Path(__file__).resolve()), "_baseline"]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    # one BLAS/OpenMP thread per process: the workers share the cores
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child (n_jobs={n_jobs}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def generate(workdir: Path, args) -> tuple[list[Path], dict, float]:
    """The files, written ``--gen-jobs`` at a time (each with its own seed)."""
    paths = [workdir / f"plate_{k:02d}.h5ad" for k in range(args.n_files)]
    t0 = time.perf_counter()
    facts = Parallel(n_jobs=args.gen_jobs)(
        delayed(generate_h5ad)(path, n_cells=args.cells_per_file, n_genes=args.n_genes,
                               n_contexts=args.n_contexts,
                               n_perturbations=args.n_perturbations, density=args.density,
                               seed=k)
        for k, path in enumerate(paths))
    total = {"nnz": sum(f["nnz"] for f in facts), "size_mb": sum(f["size_mb"] for f in facts)}
    return paths, total, time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-files", type=int, default=10)
    parser.add_argument("--cells-per-file", type=int, default=1_000_000)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--n-contexts", type=int, default=10)
    parser.add_argument("--n-perturbations", type=int, default=100)
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="runs per n_jobs (median)")
    parser.add_argument("--gen-jobs", type=int, default=2, help="files generated at once")
    parser.add_argument("--workdir", default=None, help="where the files go (default: temp)")
    parser.add_argument("--out", default=None, help="directory for pseudobulk_multi.md")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="c3tl_pbm_", dir=args.workdir))
    try:
        n_cells = args.n_files * args.cells_per_file
        print(f"generating {args.n_files} files x {args.cells_per_file:,} cells x "
              f"{args.n_genes:,} genes in {workdir}", flush=True)
        paths, facts, gen_s = generate(workdir, args)
        print(f"  {facts['nnz']:,} non-zeros, {facts['size_mb']:.0f} MiB, "
              f"{gen_s:.0f} s", flush=True)
        paths_file = workdir / "paths.json"
        paths_file.write_text(json.dumps([str(p) for p in paths]))
        results, reference, max_diff = {}, None, 0.0
        import_peak = run_child(None)["import_peak_mib"]
        for n_jobs in args.n_jobs:
            runs = []
            for r in range(args.repeats):
                out_npy = workdir / f"Y_{n_jobs}.npy"
                res = run_child(paths_file, n_jobs, out_npy)
                assert res["n_cells"] == n_cells
                runs.append(res)
                print(f"  n_jobs={n_jobs} run {r + 1}: {res['wall_s']:.1f} s, worker peaks "
                      f"{[round(m) for m in res['worker_peak_mib']]} MiB, caller "
                      f"{res['caller_peak_mib']:.0f} MiB", flush=True)
                Y = np.load(out_npy)
                if reference is None:
                    reference = Y
                max_diff = max(max_diff, float(np.abs(Y - reference).max()))
            results[n_jobs] = runs
        lines = render(args, facts, gen_s, results, max_diff, import_peak)
        print("\n".join(lines))
        if args.out:
            out = Path(args.out) / "pseudobulk_multi.md"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines) + "\n")
            print(f"\nwritten to {out}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def render(args, facts, gen_s, results, max_diff, import_peak) -> list[str]:
    n_cells = args.n_files * args.cells_per_file
    first = next(iter(results.values()))[0]
    lines = [
        "# pseudobulk over many files",
        "",
        f"Command: `python benchmarks/pseudobulk_multi.py --n-files {args.n_files} "
        f"--cells-per-file {args.cells_per_file} --n-genes {args.n_genes} "
        f"--density {args.density} --n-jobs {' '.join(map(str, args.n_jobs))} "
        f"--repeats {args.repeats}`",
        "",
        f"Data: {n_cells:,} cells in {args.n_files} CSR float32 `.h5ad` files x "
        f"{args.n_genes:,} genes, {facts['nnz']:,} non-zeros "
        f"({facts['nnz'] / n_cells / args.n_genes:.1%}), {facts['size_mb']:.0f} MiB in all; "
        f"{args.n_contexts} contexts x {args.n_perturbations} perturbations + control, every "
        f"pair and every context's controls in every file -> {first['n_pairs']:,} effect "
        f"rows x {first['n_genes']:,} genes. Generated in {gen_s:.0f} s (then deleted).",
        "",
        f"Machine: {os.cpu_count()} core(s), {platform.machine()}, {platform.system()} "
        f"{platform.release()}; " + ", ".join(f"{k} {v}" for k, v in versions().items())
        + ". Files in the page cache (just written).",
        "",
        "Each run is a fresh process calling `pseudobulk(paths, n_jobs=...)` (joblib's "
        "default loky backend; one BLAS thread per process). Wall time: median of "
        f"{args.repeats} [min]. Peak memory is `getrusage` `ru_maxrss` of each worker "
        "process (median over runs of the largest worker) and of the calling process, "
        "which merges the per-file sums (with `n_jobs=1` it is the only worker); a "
        f"process that only imports the package (torch included) peaks at {import_peak:.0f} "
        "MiB, so the reading itself adds the difference. "
        f"All runs gave the same effects (max abs difference {max_diff:.1e}).",
        "",
        "| n_jobs | wall time (s) | seconds per file (median) | peak RSS per worker (MiB) "
        "| caller peak RSS (MiB) | cells per second |",
        "|---|---|---|---|---|---|",
    ]
    for n_jobs, runs in results.items():
        walls = [r["wall_s"] for r in runs]
        wall = statistics.median(walls)
        per_file = statistics.median(s for r in runs for s in r["file_seconds"])
        worker_peak = statistics.median(max(r["worker_peak_mib"]) for r in runs)
        caller = statistics.median(r["caller_peak_mib"] for r in runs)
        lines.append(f"| {n_jobs} | {wall:.1f} [{min(walls):.1f}] | {per_file:.2f} "
                     f"| {worker_peak:.0f} | {caller:.0f} | {n_cells / wall:,.0f} |")
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "_baseline":
        baseline()
    else:
        sys.exit(main())
