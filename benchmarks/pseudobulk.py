"""Benchmark: pseudo-bulk a single-cell .h5ad larger than you would like to load.

Generates a synthetic sparse AnnData (default 1,000,000 cells x 2,000 genes,
~10% non-zero float32 log1p-like values, 10 contexts x 100 perturbations plus
a control), writes it to an ``.h5ad`` in a temporary directory in row chunks
(so the generator itself stays small), then times
:func:`c3tl_sklearn.preprocessing.pseudobulk`:

- ``path``: from the file path (obs label columns + X read in row blocks);
- ``backed``: from ``anndata.read_h5ad(path, backed="r")``;
- ``in-memory``: from the AnnData loaded whole (``read_h5ad``; load time is
  reported separately and not included in the pseudobulk time).

Each run is a fresh Python subprocess. Memory is the **peak resident set
size** of that subprocess, read from the kernel: ``VmHWM`` after resetting it
(``/proc/self/clear_refs``) right before the ``pseudobulk`` call, so the
figure is the peak *during* the call (imports and, for ``in-memory``, the
loaded data are included because they are resident, the load's own transient
peak is not); the whole-process peak (``getrusage(RUSAGE_SELF).ru_maxrss``)
and the resident size just before the call are reported too. Where
``clear_refs`` is not writable the step column falls back to the
whole-process peak. The file was just written, so it is read from the page
cache (a warm-cache figure; a cold disk adds its read time).

Usage::

    python benchmarks/pseudobulk.py                    # full size, writes pseudobulk.md
    python benchmarks/pseudobulk.py --n-cells 20000 --repeats 1   # smoke run, prints only

At the default size the table goes to ``pseudobulk.md`` in ``--out`` (default
``./c3tl-results/pseudobulk``; ``--out benchmarks/results`` regenerates the
committed copy); other sizes only print unless ``--out`` is given.
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
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_N_CELLS = 1_000_000
DEFAULT_OUT = Path("c3tl-results") / "pseudobulk"
MODES = ("path", "backed", "in-memory")


# ----------------------------------------------------------------------------
# Data generation (parent process)
# ----------------------------------------------------------------------------
def generate_h5ad(path: Path, *, n_cells: int, n_genes: int, n_contexts: int,
                  n_perturbations: int, density: float, control_fraction: float = 0.1,
                  chunk_cells: int = 20_000, seed: int = 0) -> dict:
    """Write a synthetic sparse single-cell .h5ad chunk by chunk; return its facts."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    try:
        from anndata.io import sparse_dataset, write_elem
    except ImportError:  # anndata 0.10
        from anndata.experimental import sparse_dataset, write_elem

    rng = np.random.default_rng(seed)
    contexts = np.array([f"cellline_{i:02d}" for i in range(n_contexts)])
    perturbations = np.array(["control"] + [f"drug_{i:03d}" for i in range(n_perturbations)])
    # ~control_fraction of the cells are controls, the rest spread over the drugs
    p = np.full(n_perturbations + 1, (1 - control_fraction) / n_perturbations)
    p[0] = control_fraction
    ctx_code = rng.integers(0, n_contexts, n_cells)
    pert_code = rng.choice(n_perturbations + 1, size=n_cells, p=p)
    obs = pd.DataFrame(
        {
            "cell_line": pd.Categorical.from_codes(ctx_code, contexts),
            "drug": pd.Categorical.from_codes(pert_code, perturbations),
        },
        index=pd.Index([f"cell_{i}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(index=[f"gene_{j:04d}" for j in range(n_genes)])
    ad.AnnData(obs=obs, var=var).write_h5ad(path)

    # Gene detection rates around `density`, gene base levels, and multiplicative
    # context / perturbation effects on a subset of genes (so effects are not zero).
    detect = np.clip(rng.beta(2, 2 / density - 2, n_genes), 0.002, 0.95).astype(np.float32)
    base = np.exp(rng.normal(0.0, 0.8, n_genes)).astype(np.float32)
    ctx_fac = np.exp(rng.normal(0, 0.3, (n_contexts, n_genes))).astype(np.float32)
    pert_fac = np.exp(rng.normal(0, 0.5, (n_perturbations + 1, n_genes)) *
                      (rng.random((n_perturbations + 1, n_genes)) < 0.1)).astype(np.float32)
    pert_fac[0] = 1.0
    nnz = 0
    with h5py.File(path, "a") as f:
        for start in range(0, n_cells, chunk_cells):
            stop = min(start + chunk_cells, n_cells)
            mask = rng.random((stop - start, n_genes), dtype=np.float32) < detect
            rows, cols = np.nonzero(mask)
            del mask
            lam = base[cols] * ctx_fac[ctx_code[start:stop][rows], cols]
            lam *= pert_fac[pert_code[start:stop][rows], cols]
            values = np.log1p(1.0 + rng.poisson(lam)).astype(np.float32)
            indptr = np.zeros(stop - start + 1, dtype=np.int64)
            np.cumsum(np.bincount(rows, minlength=stop - start), out=indptr[1:])
            block = sp.csr_matrix((values, cols.astype(np.int32), indptr),
                                  shape=(stop - start, n_genes))
            nnz += block.nnz
            if start == 0:
                write_elem(f, "X", block, dataset_kwargs={"chunks": (2**20,)})
            else:
                sparse_dataset(f["X"]).append(block)
    return {"nnz": nnz, "size_mb": path.stat().st_size / 2**20}


# ----------------------------------------------------------------------------
# One timed run (child process)
# ----------------------------------------------------------------------------
def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def child(mode: str, path: str, out_npy: str, chunk_size: int | None) -> None:
    import warnings

    import anndata as ad

    from c3tl_sklearn.preprocessing import PseudobulkOptions, pseudobulk

    load_s = 0.0
    if mode == "path":
        source = path
    elif mode == "backed":
        source = ad.read_h5ad(path, backed="r")
    else:
        t0 = time.perf_counter()
        source = ad.read_h5ad(path)
        load_s = time.perf_counter() - t0
    before_mb = _rss_mb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak RSS (VmHWM) to the current RSS
        step_peak_exact = True
    except OSError:
        step_peak_exact = False
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        X, Y = pseudobulk(source, "cell_line", "drug", "control",
                          options=PseudobulkOptions(chunk_size=chunk_size))
    wall = time.perf_counter() - t0
    step_peak = _rss_mb("VmHWM")
    np.save(out_npy, Y.to_numpy())
    print(json.dumps({
        "wall_s": wall,
        "load_s": load_s,
        "rss_before_mb": before_mb,
        "step_peak_mb": step_peak,
        "step_peak_exact": step_peak_exact,
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_pairs": len(X),
        "n_genes": Y.shape[1],
    }))


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------
def run_child(mode, path, out_npy, chunk_size) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "_child", mode, str(path),
           str(out_npy), str(chunk_size or 0)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child ({mode}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "pandas", "anndata", "h5py", "c3tl-sklearn"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[pkg] = "n/a"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-cells", type=int, default=DEFAULT_N_CELLS)
    parser.add_argument("--n-genes", type=int, default=2000)
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--n-contexts", type=int, default=10)
    parser.add_argument("--n-perturbations", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (median shown)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="cells per block (default: pseudobulk's automatic size)")
    parser.add_argument("--workdir", default=None, help="where the .h5ad goes (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the generated .h5ad")
    parser.add_argument("--out", default=None,
                        help="directory for pseudobulk.md (default: ./c3tl-results/pseudobulk "
                             "at the default size, none otherwise)")
    args = parser.parse_args(argv)
    if args.out is not None and Path(args.out).suffix == ".md":
        parser.error(f"--out takes a directory (the table is pseudobulk.md in it); got {args.out}")

    workdir = Path(tempfile.mkdtemp(prefix="c3tl_pb_", dir=args.workdir))
    path = workdir / "cells.h5ad"
    try:
        print(f"generating {args.n_cells:,} cells x {args.n_genes:,} genes -> {path}",
              flush=True)
        t0 = time.perf_counter()
        facts = generate_h5ad(path, n_cells=args.n_cells, n_genes=args.n_genes,
                              n_contexts=args.n_contexts,
                              n_perturbations=args.n_perturbations, density=args.density)
        gen_s = time.perf_counter() - t0
        print(f"  {facts['nnz']:,} non-zeros ({facts['nnz'] / args.n_cells / args.n_genes:.1%})"
              f", {facts['size_mb']:.0f} MiB, written in {gen_s:.1f} s", flush=True)

        results, reference = {}, None
        for mode in args.modes:
            runs = []
            for r in range(args.repeats):
                out_npy = workdir / f"Y_{mode}.npy"
                res = run_child(mode, path, out_npy, args.chunk_size)
                runs.append(res)
                print(f"  {mode:9s} run {r + 1}: {res['wall_s']:.2f} s, step peak "
                      f"{res['step_peak_mb']:.0f} MiB", flush=True)
            Y = np.load(out_npy)
            if reference is None:
                reference, ref_mode = Y, mode
                diff = 0.0
            else:
                diff = float(np.abs(Y - reference).max())
            results[mode] = (runs, diff)

        lines = render(args, facts, gen_s, results, ref_mode)
        print("\n".join(lines))
        out = args.out
        if out is None and args.n_cells == DEFAULT_N_CELLS:
            out = DEFAULT_OUT
        if out:
            out = Path(out) / "pseudobulk.md"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("\n".join(lines) + "\n")
            print(f"\nwritten to {out}")
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def render(args, facts, gen_s, results, ref_mode) -> list[str]:
    try:
        n_cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        n_cores = os.cpu_count()
    v = versions()
    any_run = next(iter(results.values()))[0][0]
    lines = [
        "# pseudobulk benchmark",
        "",
        f"Command: `python benchmarks/pseudobulk.py --n-cells {args.n_cells} "
        f"--n-genes {args.n_genes} --repeats {args.repeats}`"
        + (f" `--chunk-size {args.chunk_size}`" if args.chunk_size else ""),
        "",
        f"Data: {args.n_cells:,} cells x {args.n_genes:,} genes, CSR float32, "
        f"{facts['nnz']:,} non-zeros ({facts['nnz'] / args.n_cells / args.n_genes:.1%}), "
        f"{facts['size_mb']:.0f} MiB .h5ad (uncompressed); {args.n_contexts} contexts x "
        f"{args.n_perturbations} perturbations + control -> {any_run['n_pairs']:,} effect "
        f"rows x {any_run['n_genes']:,} genes. Generated and written in {gen_s:.0f} s.",
        "",
        f"Machine: {n_cores} usable core(s) ({os.cpu_count()} visible), "
        f"{platform.machine()}, {platform.system()} {platform.release()}; "
        + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "Each run is a fresh subprocess; time is the `pseudobulk` call only (median of "
        f"{args.repeats}, min in brackets). *Step peak* is the peak resident set size during "
        "the call (kernel `VmHWM` reset just before it), *before* the resident size when the "
        "call started (interpreter, libraries, and for in-memory the loaded matrix), "
        "*process peak* the whole subprocess (`getrusage` `ru_maxrss`, includes loading). "
        "The file is in the page cache (just written).",
        "",
        "| source | pseudobulk time (s) | step peak RSS (MiB) | RSS before (MiB) "
        "| process peak RSS (MiB) | load time (s) | max abs diff vs " + ref_mode + " |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, (runs, diff) in results.items():
        walls = [r["wall_s"] for r in runs]

        def med(key, runs=runs):
            return statistics.median(r[key] for r in runs)

        exact = all(r["step_peak_exact"] for r in runs)
        lines.append(
            f"| {mode} | {statistics.median(walls):.2f} [{min(walls):.2f}] "
            f"| {med('step_peak_mb'):.0f}{'' if exact else ' (process)'} "
            f"| {med('rss_before_mb'):.0f} | {med('process_peak_mb'):.0f} "
            f"| {med('load_s'):.2f} | {diff:.1e} |"
        )
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        _, _, mode, path, out_npy, chunk = sys.argv
        child(mode, path, out_npy, int(chunk) or None)
    else:
        sys.exit(main())
