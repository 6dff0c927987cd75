"""Benchmark: training speed, prediction speed and memory of ``C3TLRegressor``.

Builds the paper's three data shapes with
:func:`~c3tl_sklearn.datasets.make_synthetic_perturbations` (float32 effects)

======== ============ ============= ======= =============
shape    contexts     perturbations genes   test contexts
======== ============ ============= ======= =============
tahoe    48           1,138         2,000   5
replogle 4            1,677         2,000   1
parse    24           90            2,000   5
======== ============ ============= ======= =============

and, for each, fits **one** model in the paper's held-out-context protocol:
:class:`~c3tl_sklearn.model_selection.LeaveOneContextOut` with
``adaptation_fraction=0.1`` picks the test contexts (5, or 1 for a shape with
fewer than 10 contexts: holding out most of Replogle's 4 contexts at once would
leave little to learn from, and the paper holds its contexts out one at a
time), the model is trained on every row of the other contexts plus the 10%
adaptation rows of *all* test contexts together (the intersection of the
splits' training sets), and predicts every held-out pair (the union of their
test sets). The estimator keeps its default hyperparameters, its own 10%
validation split and early stopping included; only ``max_epochs``,
``random_state`` and ``device`` are set.

Reported per shape (each configuration in a fresh Python subprocess, so that
memory figures belong to that configuration alone):

- **s/epoch**: median of skorch's per-epoch ``dur`` (training plus the
  validation pass) over the epochs after the first, which is dropped as
  warm-up; ``--epochs`` (default 8) epochs are trained, so 7 are measured.
- **fit s**: wall time of the whole ``fit`` call (input checks, PCA of the
  effects, network set-up and every epoch). Without ``--full-fit`` this is a
  fit of ``--epochs`` epochs; with ``--full-fit`` the shapes are fitted with
  the default ``max_epochs`` and early stopping decides when to stop (the
  target "whole default fit in 2 minutes"; this can take many minutes).
- **fit outside epochs s**: ``fit s`` minus the sum of every epoch's ``dur``
  (validation of the input, PCA, network and optimiser set-up, including
  imports that happen on a process's first fit).
- **predict s**: median wall time of 3 ``predict`` calls on all held-out pairs.
- **peak RSS GB**: peak resident set size from just before ``fit`` to the end
  of the three ``predict`` calls (the kernel's ``VmHWM``, reset through
  ``/proc/self/clear_refs`` after the data were generated and split). It
  includes everything resident then: interpreter, torch and the other
  libraries, and the training data. **RSS before fit** is the resident size
  when ``fit`` started, so the difference is what fitting and predicting add.
  **process peak** is ``getrusage(RUSAGE_SELF).ru_maxrss`` of the whole
  subprocess, data generation included. GB are 10^9 bytes. Where
  ``clear_refs`` cannot be written, the peak column falls back to the process
  peak and says so.

A scaling series measures s/epoch at 12, 24 and 48 contexts (1,138
perturbations x 2,000 genes; more contexts means more observed pairs) and at
500, 1,000 and 2,000 genes (48 x 1,138), and checks, for every step of a
series, that epoch time grew at most 10% more than the size did (``time ratio
<= 1.1 x size ratio``; for a doubling: at most doubled plus 10%). The series
runs ``--rounds`` times (each configuration once per round, in a fresh
subprocess) and quotes the median over rounds; a shape that is also a step of
the series (Tahoe) keeps that median s/epoch beside its first round's fit
time and memory.

Read-out memory cases (``--memory``, on by default) fit one default model on a
sparse design, each context measuring a few pairs: 1,000 contexts x 10 pairs x
20,000 genes (an atlas of donors) and 100 x 2 x 10,000, and report fit and
predict time, peak RSS, the context read-out's size beside what the dense
per-context sums of model format 2 took, and the saved file's size.

The paper's figures are GPU figures (1.7, 0.25 and 0.11 s per epoch, 2.1 GB of
GPU memory); the table shows our/paper ratios beside them. On a machine with
CUDA, a Tahoe-shape row on ``device="cuda"`` is added (``--cuda-row``), with the
GPU's peak allocated memory. Timings on a shared machine are noisy: they are
reported, never asserted. When other processes keep the cores busy, torch's
default of one thread per core can make small epochs far slower (threads wait
for each other); ``--threads 1`` shows whether that is happening. The report
records the load average before and after the run.

Usage::

    python benchmarks/speed.py                 # three shapes + scaling -> speed.md
    python benchmarks/speed.py --full-fit      # also time the whole default fit
    python benchmarks/speed.py --shapes tahoe --no-scaling --threads 1
    python benchmarks/speed.py --tiny --epochs 3   # seconds; a smoke test, prints only

Full size takes several minutes (one subprocess per configuration, and the
scaling series' once more per extra round; longer with ``--full-fit``).
``--tiny`` runs miniature shapes, all in one subprocess unless ``--isolate``,
and writes a file only when ``--out`` is given. The table goes to
``speed.md`` in ``--out`` (default ``./c3tl-results/speed``; ``--out
benchmarks/results``, as ``make speed`` does, regenerates the committed copy).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = Path("c3tl-results") / "speed"
DEFAULT_EPOCHS = 8
PREDICT_REPEATS = 3
ADAPTATION_FRACTION = 0.1
SEED = 0
TOLERANCE = 1.1  # "doubling at most doubles the epoch time plus 10%"

# name: (contexts, perturbations, genes)
SHAPES: dict[str, tuple[int, int, int]] = {
    "tahoe": (48, 1138, 2000),
    "replogle": (4, 1677, 2000),
    "parse": (24, 90, 2000),
}
TINY_SHAPES: dict[str, tuple[int, int, int]] = {
    "tahoe": (12, 20, 16),
    "replogle": (4, 20, 16),
    "parse": (6, 10, 16),
}
# scaling series: (varied quantity, sizes, shape builder)
SCALING = {
    "contexts": ((12, 24, 48), lambda n: (n, 1138, 2000)),
    "genes": ((500, 1000, 2000), lambda n: (48, 1138, n)),
}
TINY_SCALING = {
    "contexts": ((3, 6, 12), lambda n: (n, 20, 16)),
    "genes": ((4, 8, 16), lambda n: (12, 20, n)),
}
# read-out memory cases: (contexts, perturbations, genes, measured pairs per context);
# each context is predicted for one perturbation it did not measure
MEMORY_CASES: dict[str, tuple[int, int, int, int]] = {
    "atlas": (1000, 200, 20000, 10),
    "wide": (100, 40, 10000, 2),
}
TINY_MEMORY_CASES: dict[str, tuple[int, int, int, int]] = {
    "atlas": (30, 12, 50, 4),
    "wide": (10, 6, 40, 2),
}
# the targets for them: peak RSS GB and model file MiB
MEMORY_TARGETS = {"atlas": (4.0, 1e9 / 2**20), "wide": (None, 30.0)}
# the paper's GPU figures (seconds per epoch) and the CPU targets
PAPER_EPOCH_S = {"tahoe": 1.7, "replogle": 0.25, "parse": 0.11}
PAPER_GPU_GB = 2.1
TARGET_FIT_S = 30.0
TARGET_PREDICT_S = 1.0
TARGET_RSS_GB = 2.5

TABLE_HEADER = (
    "| shape | contexts x perturbations x genes | test contexts | train pairs | test pairs "
    "| s/epoch (median) | epochs measured | first epoch s | fit s | fit outside epochs s "
    "| epochs run | predict s "
    "| peak RSS GB | RSS before fit GB | process peak RSS GB | GPU peak GB "
    "| paper GPU s/epoch | ours/paper |"
)


def n_test_contexts(n_contexts: int) -> int:
    """Held-out contexts of a shape: 5, or 1 when it has fewer than 10 contexts."""
    return 5 if n_contexts >= 10 else 1


# ----------------------------------------------------------------------------
# One configuration (worker subprocess)
# ----------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak RSS (VmHWM) to the current RSS; False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _gb(kib: float | None) -> float | None:
    return None if kib is None else kib * 1024 / 1e9


def held_out_rows(X, n_test: int, seed: int):
    """Training rows and held-out rows of one model that serves ``n_test`` test contexts.

    ``LeaveOneContextOut`` yields one split per test context; the model is
    trained on the rows every split trains on (all other contexts plus the
    adaptation rows of each test context) and scores the union of the test
    sets.
    """
    import numpy as np

    from c3tl_sklearn.model_selection import LeaveOneContextOut

    cv = LeaveOneContextOut(
        adaptation_fraction=ADAPTATION_FRACTION, n_test_contexts=n_test, random_state=seed
    )
    in_train = np.ones(len(X), dtype=bool)
    in_test = np.zeros(len(X), dtype=bool)
    for train, test in cv.split(X):
        keep = np.zeros(len(X), dtype=bool)
        keep[train] = True
        in_train &= keep
        in_test[test] = True
    return np.flatnonzero(in_train), np.flatnonzero(in_test)


def run_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Generate one shape, fit, predict; return timings and memory (in the worker)."""
    import numpy as np
    import torch

    from c3tl_sklearn import C3TLRegressor
    from c3tl_sklearn.datasets import make_synthetic_perturbations

    n_contexts, n_perturbations, n_genes = cfg["shape"]
    device = cfg["device"]
    seed = cfg.get("seed", SEED)
    t0 = time.perf_counter()
    X, Y = make_synthetic_perturbations(
        n_contexts, n_perturbations, n_genes, as_frame=False, random_state=seed
    )
    gen_s = time.perf_counter() - t0
    n_test = n_test_contexts(n_contexts)
    train, test = held_out_rows(X, n_test, seed)
    X_train = X.iloc[train].reset_index(drop=True)
    Y_train = np.ascontiguousarray(Y[train])
    X_test = X.iloc[test].reset_index(drop=True)
    del X, Y
    if device.startswith("cuda"):
        torch.zeros(1, device=device)  # CUDA context creation is not part of fit
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    gc.collect()

    rss_before = _proc_status_kib("VmRSS")
    exact_peak = _reset_peak_rss()
    params: dict[str, Any] = {"random_state": seed, "device": device}
    if not cfg["full_fit"]:
        params["max_epochs"] = cfg["epochs"]
    model = C3TLRegressor(**params)
    t0 = time.perf_counter()
    model.fit(X_train, Y_train)
    fit_s = time.perf_counter() - t0

    predict_s = []
    for _ in range(PREDICT_REPEATS):
        t0 = time.perf_counter()
        Y_pred = model.predict(X_test)
        predict_s.append(time.perf_counter() - t0)
    if Y_pred.shape != (len(X_test), n_genes) or not np.isfinite(Y_pred).all():
        raise RuntimeError(f"bad predictions: shape {Y_pred.shape}, expected "
                           f"{(len(X_test), n_genes)}, all finite: {np.isfinite(Y_pred).all()}")

    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    peak = _proc_status_kib("VmHWM") if exact_peak else None
    if peak is None:
        peak, exact_peak = process_peak, False
    gpu_peak = None
    if device.startswith("cuda"):
        gpu_peak = torch.cuda.max_memory_allocated() / 1e9

    durations = [float(d) for d in model.history_[:, "dur"]]
    measured = durations[1:] if len(durations) > 1 else durations
    return {
        "key": cfg["key"],
        "shape": [n_contexts, n_perturbations, n_genes],
        "device": device,
        "full_fit": cfg["full_fit"],
        "n_test_contexts": n_test,
        "n_train_pairs": len(X_train),
        "n_test_pairs": len(X_test),
        "epoch_s": statistics.median(measured),
        "epoch_s_min": min(measured),
        "epochs_measured": len(measured),
        "first_epoch_s": durations[0],
        "fit_s": fit_s,
        "outside_epochs_s": max(fit_s - sum(durations), 0.0),
        "n_epochs": int(model.n_epochs_),
        "predict_s": statistics.median(predict_s),
        "peak_rss_gb": _gb(peak),
        "peak_exact": exact_peak,
        "rss_before_fit_gb": _gb(rss_before),
        "process_peak_rss_gb": _gb(process_peak),
        "gpu_peak_gb": gpu_peak,
        "generate_s": gen_s,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
    }


def memory_data(shape: tuple[int, int, int, int], seed: int):
    """Fit rows and query rows of a sparse design: each context measures ``per`` pairs.

    Effects are a perturbation's own profile plus a context's offset in a few
    shared directions plus noise, float32, drawn in blocks so that generating
    them never holds more than the effects themselves.
    """
    import numpy as np
    import pandas as pd

    n_ctx, n_p, n_genes, per = shape
    rng = np.random.default_rng(seed)
    chosen = np.stack([rng.choice(n_p, per + 1, replace=False) for _ in range(n_ctx)])
    profile = rng.normal(size=(n_p, n_genes)).astype(np.float32)
    offset = rng.normal(size=(n_ctx, 8)).astype(np.float32)
    mix = (0.3 * rng.normal(size=(8, n_genes))).astype(np.float32)

    def table(c, p):
        Y = np.empty((len(c), n_genes), dtype=np.float32)
        for start in range(0, len(c), 1000):
            block = slice(start, start + 1000)
            noise = rng.standard_normal(size=(len(Y[block]), n_genes), dtype=np.float32)
            Y[block] = profile[p[block]] + offset[c[block]] @ mix + 0.5 * noise
        X = pd.DataFrame({"context": [f"ctx{i}" for i in c],
                          "perturbation": [f"pert{i}" for i in p]})
        return X, Y

    c_fit = np.repeat(np.arange(n_ctx), per)
    X_fit, Y_fit = table(c_fit, chosen[:, 1:].ravel())
    X_query, _ = table(np.arange(n_ctx), chosen[:, 0])
    return X_fit, Y_fit, X_query


def run_memory_case(cfg: dict[str, Any]) -> dict[str, Any]:
    """Fit, predict and save one read-out memory case; return sizes and memory (in the worker)."""
    import tempfile

    import numpy as np

    from c3tl_sklearn import C3TLRegressor

    X_fit, Y_fit, X_query = memory_data(tuple(cfg["shape"]), cfg.get("seed", SEED))
    gc.collect()
    rss_before = _proc_status_kib("VmRSS")
    exact_peak = _reset_peak_rss()
    model = C3TLRegressor(random_state=cfg.get("seed", SEED))
    t0 = time.perf_counter()
    model.fit(X_fit, Y_fit)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    Y_pred = model.predict(X_query)
    predict_s = time.perf_counter() - t0
    if not np.isfinite(Y_pred).all():
        raise RuntimeError("bad predictions: not all finite")
    peak = _proc_status_kib("VmHWM") if exact_peak else None
    if peak is None:
        peak, exact_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    readout = model.readout_
    readout_bytes = sum(a.nbytes + b.nbytes
                        for a, b in zip(readout.factor_f_, readout.factor_r_, strict=True))
    # what format 2's dense per-context sums took: F^T R in float32, F^T F, the sums
    k, d, n_ctx = readout.n_features, readout.n_outputs, readout.n_contexts
    dense_bytes = n_ctx * (4 * k * d + 8 * k * k + 8 * (k + d + 2))
    with tempfile.TemporaryDirectory() as folder:
        path = model.save(Path(folder) / "model")
        file_bytes = os.path.getsize(path)
    return {
        "key": cfg["key"], "kind": "memory", "shape": cfg["shape"],
        "n_fit_pairs": len(X_fit), "n_query_pairs": len(X_query),
        "fit_s": fit_s, "n_epochs": int(model.n_epochs_), "predict_s": predict_s,
        "peak_rss_gb": _gb(peak), "peak_exact": exact_peak,
        "rss_before_fit_gb": _gb(rss_before),
        "readout_mib": readout_bytes / 2**20, "dense_readout_mib": dense_bytes / 2**20,
        "file_mib": file_bytes / 2**20,
    }


def worker(configs_json: str) -> int:
    """Run configurations one after another, printing one JSON line per result."""
    configs = json.loads(configs_json)
    import torch

    if configs and configs[0].get("threads"):
        torch.set_num_threads(int(configs[0]["threads"]))
    for cfg in configs:
        if cfg.get("optional") and cfg["device"] == "cuda" and not torch.cuda.is_available():
            result = {"key": cfg["key"], "skipped": "torch sees no CUDA device"}
        elif cfg.get("kind") == "memory":
            result = run_memory_case(cfg)
        else:
            result = run_config(cfg)
        print("RESULT " + json.dumps(result), flush=True)
    return 0


# ----------------------------------------------------------------------------
# Driver (parent process: imports nothing heavy)
# ----------------------------------------------------------------------------
def run_worker(configs: list[dict[str, Any]], threads: int | None) -> dict[str, dict]:
    """Run ``configs`` in one fresh subprocess; map each key to its result or error."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(HERE.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONWARNINGS", "ignore")
    if threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(configs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT "):])
            results[res["key"]] = res
    missing = [cfg["key"] for cfg in configs if cfg["key"] not in results]
    if missing:
        tail = (proc.stderr or proc.stdout).strip().splitlines() or ["(no output)"]
        print("\n".join(tail[-20:]), file=sys.stderr, flush=True)
        for key in missing:  # the first one failed; later ones did not run
            results[key] = {"key": key, "error": f"exit {proc.returncode}: {tail[-1][:300]}"}
    return results


def build_configs(args: argparse.Namespace) -> tuple[list[dict], list[tuple[str, str]],
                                                      dict[str, list[tuple[int, str]]]]:
    """Unique configurations, the main table's rows and the scaling series' points."""
    shapes = TINY_SHAPES if args.tiny else SHAPES
    scaling = TINY_SCALING if args.tiny else SCALING
    configs: dict[str, dict] = {}

    def add(shape: tuple[int, int, int], device: str, full_fit: bool) -> str:
        key = f"{shape[0]}x{shape[1]}x{shape[2]}-{device}-{'full' if full_fit else args.epochs}"
        configs.setdefault(key, {
            "key": key, "shape": list(shape), "device": device, "full_fit": full_fit,
            "epochs": args.epochs, "threads": args.threads, "seed": SEED,
        })
        return key

    rows = [(name, add(shapes[name], args.device, args.full_fit)) for name in args.shapes]
    if args.cuda_row is not False:
        # None: only where the worker sees a CUDA device (it skips the row otherwise)
        key = add(shapes["tahoe"], "cuda", args.full_fit)
        configs[key]["optional"] = args.cuda_row is None
        rows.append(("tahoe (cuda)", key))
    series: dict[str, list[tuple[int, str]]] = {}
    if args.scaling:
        for what, (sizes, make) in scaling.items():
            series[what] = [(n, add(make(n), args.device, False)) for n in sizes]
    if args.memory:
        for name, shape in (TINY_MEMORY_CASES if args.tiny else MEMORY_CASES).items():
            key = f"memory-{name}-" + "x".join(map(str, shape))
            configs[key] = {"key": key, "kind": "memory", "shape": list(shape),
                            "device": "cpu", "threads": args.threads, "seed": SEED}
    return list(configs.values()), rows, series


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shapes", default="tahoe,replogle,parse",
                        help="comma-separated shapes among tahoe, replogle, parse "
                             "(default: all three)")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True,
                        help="run the scaling series (default: yes)")
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help="epochs per timed fit; the first is dropped as warm-up "
                             f"(default: {DEFAULT_EPOCHS})")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="torch device of every configuration (default: cpu)")
    parser.add_argument("--cuda-row", action=argparse.BooleanOptionalAction, default=None,
                        help="add a Tahoe-shape row on cuda when --device is cpu (default: "
                             "when torch sees a CUDA device)")
    parser.add_argument("--full-fit", action="store_true",
                        help="fit the shapes with the default max_epochs (early stopping "
                             "decides; minutes) instead of --epochs epochs")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads and OMP/BLAS threads in the workers "
                             "(default: library defaults)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the scaling series: each round runs every scaling "
                             "configuration once, and the tables quote the median over "
                             "rounds, so a burst of load on a shared machine hits one "
                             "round rather than one size (default: 3)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="run the read-out memory cases: 1,000 contexts x 10 measured "
                             "pairs x 20,000 genes and 100 x 2 x 10,000 (default: yes)")
    parser.add_argument("--tiny", action="store_true",
                        help="miniature shapes for smoke tests (seconds)")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="one fresh subprocess per configuration (default: yes, "
                             "except with --tiny, which runs them all in one)")
    parser.add_argument("--out", default=None,
                        help=f"directory for speed.md (default: ./{DEFAULT_OUT}"
                             "; with --tiny none unless given)")
    args = parser.parse_args(argv)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = sorted(set(args.shapes) - set(SHAPES))
    if unknown or not args.shapes:
        parser.error(f"--shapes takes names among {', '.join(SHAPES)}; got {unknown or '[]'}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is dropped)")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be positive")
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    if args.isolate is None:
        args.isolate = not args.tiny
    if args.device == "cuda":
        args.cuda_row = False
    if args.out is not None and Path(args.out).suffix == ".md":
        parser.error(f"--out takes a directory (the table is speed.md in it); got {args.out}")
    if args.out is None and not args.tiny:
        args.out = str(DEFAULT_OUT)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    configs, rows, series = build_configs(args)
    started = time.perf_counter()
    args.load_before = _load_average()
    args.code_version = _code_version()
    results: dict[str, dict] = {}
    batches = [[c] for c in configs] if args.isolate else [configs]
    for batch in batches:
        names = ", ".join("x".join(map(str, c["shape"])) + f" ({c['device']})" for c in batch)
        print(f"running {names} ...", flush=True)
        out = run_worker(batch, args.threads)
        results.update(out)
        for key, res in out.items():
            if "error" in res:
                print(f"  {key}: FAILED {res['error']}", flush=True)
            elif "skipped" in res:
                print(f"  {key}: skipped ({res['skipped']})", flush=True)
            elif res.get("kind") == "memory":
                print(f"  {key}: fit {res['fit_s']:.1f} s, peak RSS {res['peak_rss_gb']:.2f} GB,"
                      f" read-out {res['readout_mib']:.1f} MiB, file {res['file_mib']:.1f} MiB",
                      flush=True)
            else:
                print(f"  {key}: {res['epoch_s']:.3f} s/epoch, fit {res['fit_s']:.1f} s "
                      f"({res['n_epochs']} epochs), predict {res['predict_s']:.3f} s, "
                      f"peak RSS {res['peak_rss_gb']:.2f} GB", flush=True)
    scaling_keys = sorted({k for points in series.values() for _, k in points})
    by_key = {c["key"]: c for c in configs}
    rounds = {k: [results[k]["epoch_s"]] for k in scaling_keys if "epoch_s" in results[k]}
    for r in range(2, args.rounds + 1):
        for key in list(rounds):
            print(f"scaling round {r}/{args.rounds}: {key} ...", flush=True)
            res = run_worker([by_key[key]], args.threads)[key]
            if "error" in res:  # the rounds before stand; this one is left out
                print(f"  {key}: round {r} FAILED {res['error']}", flush=True)
                continue
            rounds[key].append(res["epoch_s"])
            print(f"  {key}: {res['epoch_s']:.3f} s/epoch", flush=True)
    for key, values in rounds.items():
        results[key] = {**results[key], "epoch_s": statistics.median(values),
                        "epoch_s_rounds": values}
    total_s = time.perf_counter() - started
    args.load_after = _load_average()

    lines = render(args, argv, rows, series, results, total_s)
    print()
    print("\n".join(lines))
    if args.out:
        out_path = Path(args.out) / "speed.md"
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text("\n".join(lines) + "\n")
        print(f"\nwritten to {out_path}")
    return 1 if any("error" in r for r in results.values()) else 0


# ----------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------
def _code_version() -> str:
    """Git commit of the repository, and a digest of the package sources as measured."""
    import hashlib

    root = HERE.parent
    digest = hashlib.sha1()
    for path in sorted((root / "c3tl_sklearn").rglob("*.py")):
        digest.update(path.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "c3tl_sklearn"],
                               cwd=root, capture_output=True, text=True, check=True).stdout
        commit += " with uncommitted changes to c3tl_sklearn" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown commit"
    return f"{commit}; sha1 of c3tl_sklearn/**/*.py {digest.hexdigest()[:12]}"


def _load_average() -> str:
    """The 1-minute load average, or "n/a" where the platform has none."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return "n/a"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(args: argparse.Namespace, argv: list[str], rows: list[tuple[str, str]],
           series: dict[str, list[tuple[int, str]]], results: dict[str, dict],
           total_s: float) -> list[str]:
    """The markdown report."""
    ok = [r for r in results.values() if "epoch_s" in r]
    torch_version = ok[0]["torch_version"] if ok else "n/a"
    threads = ok[0]["torch_threads"] if ok else "n/a"
    cuda = ok[0]["cuda_available"] if ok else "n/a"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    fit_what = ("the whole default fit (early stopping)" if args.full_fit
                else f"a fit of {args.epochs} epochs")
    lines = [
        "# C3TLRegressor speed benchmark" + (" (tiny shapes: smoke test)" if args.tiny else ""),
        "",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}. "
        "Command: `" + shlex.join(["python", "benchmarks/speed.py", *argv]) + "`.",
        "",
        f"Code: {args.code_version}.",
        "",
        f"Machine: {os.cpu_count()} CPU core(s) ({usable} usable), {platform.machine()}, "
        f"{platform.system()} {platform.release()}, python {platform.python_version()}; "
        f"torch {torch_version} with {threads} thread(s)"
        + (f" (--threads {args.threads})" if args.threads else " (torch default)")
        + f"; device {args.device}; CUDA available: {cuda}. "
        f"Benchmark wall time {total_s:.0f} s; 1-minute load average {args.load_before} "
        f"at the start and {args.load_after} at the end (other processes share the cores).",
        "",
        "Synthetic float32 effects (`make_synthetic_perturbations`); default "
        "`C3TLRegressor` hyperparameters. One model per shape, trained on all other "
        f"contexts plus {ADAPTATION_FRACTION:.0%} adaptation rows of each test context, "
        "predicting every held-out pair (5 test contexts, 1 for shapes with fewer than 10 "
        "contexts). *s/epoch*: median skorch epoch `dur` after dropping the first epoch; "
        f"*fit s*: wall time of {fit_what}; *fit outside epochs*: fit s minus the sum of "
        "all epoch durations (input checks, PCA, network set-up, first-use imports); "
        f"*predict s*: median of {PREDICT_REPEATS} "
        "`predict` calls on all held-out pairs; *peak RSS*: peak resident memory from just "
        "before `fit` to the end of `predict` (kernel `VmHWM`, reset after data generation; "
        "includes libraries and the resident training data); *RSS before fit*: resident "
        "size when `fit` started; *process peak*: `ru_maxrss` of the whole worker "
        "subprocess including data generation; GB = 10^9 bytes. "
        + ("Every configuration ran in a fresh subprocess." if args.isolate else
           "All configurations ran in **one** subprocess (`--no-isolate`): RSS figures "
           "carry what earlier configurations left behind."),
        "",
        "## Shapes",
        "",
        TABLE_HEADER,
        "|" + "---|" * TABLE_HEADER.count(" | ") + "---|",
    ]
    notes: list[str] = []
    for name, key in rows:
        res = results[key]
        if "skipped" in res:
            notes.append(f"No `{name}` row: {res['skipped']}.")
            continue
        if "error" in res:
            lines.append(f"| {name} | FAILED: {res['error'].replace('|', '/')} |")
            continue
        base = name.split(" ")[0]
        paper = PAPER_EPOCH_S.get(base)
        shape = " x ".join(f"{n:,}" for n in res["shape"])
        peak = _fmt(res["peak_rss_gb"], 2) + ("" if res["peak_exact"] else " (process)")
        lines.append(
            f"| {name} | {shape} | {res['n_test_contexts']} | {res['n_train_pairs']} "
            f"| {res['n_test_pairs']} | {_fmt(res['epoch_s'])} | {res['epochs_measured']} "
            f"| {_fmt(res['first_epoch_s'])} | {_fmt(res['fit_s'], 2)} "
            f"| {_fmt(res['outside_epochs_s'], 2)} | {res['n_epochs']} "
            f"| {_fmt(res['predict_s'])} | {peak} | {_fmt(res['rss_before_fit_gb'], 2)} "
            f"| {_fmt(res['process_peak_rss_gb'], 2)} | {_fmt(res['gpu_peak_gb'], 2)} "
            f"| {_fmt(paper, 2)} "
            f"| {'-' if paper is None or args.tiny else _fmt(res['epoch_s'] / paper, 2)} |"
        )
    lines += [
        "",
        f"Paper (GPU): {PAPER_EPOCH_S['tahoe']} s/epoch Tahoe, {PAPER_EPOCH_S['replogle']} s "
        f"Replogle, {PAPER_EPOCH_S['parse']} s Parse, {PAPER_GPU_GB} GB of GPU memory."
        + "".join(" " + note for note in notes),
    ]
    if not args.tiny:
        lines += ["", *targets(args, rows, results)]
    if series:
        lines += ["", *render_scaling(series, results)]
    memory = [r for key, r in results.items() if key.startswith("memory-")]
    if memory:
        lines += ["", *render_memory(memory, args.tiny)]
    return lines


def render_memory(results: list[dict], tiny: bool) -> list[str]:
    """The read-out memory cases: what a model of many sparsely measured contexts costs."""
    lines = [
        "## Read-out memory with many contexts",
        "",
        "Each context measures a few pairs (one more per context is predicted): effects "
        "are a perturbation profile plus a context offset in 8 shared directions plus "
        "noise, float32. Default `C3TLRegressor`, one model per case, run like the "
        "shapes above. *peak RSS*: from just before `fit` to the end of `predict` (kernel "
        "`VmHWM`), the caller's data and the libraries included; *read-out MiB*: the "
        "context read-out's factors in memory; *dense read-out MiB*: what the dense "
        "per-context sums of model format 2 took for the same model (contexts x "
        "features x genes, computed); *file MiB*: the saved model.",
        "",
        "| case | contexts x perturbations x genes | measured pairs per context | fit s "
        "| epochs | predict s (one call) | peak RSS GB | RSS before fit GB | read-out MiB "
        "| dense read-out MiB | file MiB | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        name = res["key"].split("-")[1]
        if "error" in res:
            lines.append(f"| {name} | FAILED: {res['error'].replace('|', '/')} |")
            continue
        n_ctx, n_p, n_genes, per = res["shape"]
        max_gb, max_mib = MEMORY_TARGETS.get(name, (None, None))
        met = []
        if not tiny and max_gb is not None:
            met.append(f"RSS <= {max_gb:g} GB: {_met(res['peak_rss_gb'] <= max_gb)}")
        if not tiny and max_mib is not None:
            met.append(f"file <= {max_mib:.0f} MiB: {_met(res['file_mib'] <= max_mib)}")
        peak = _fmt(res["peak_rss_gb"], 2) + ("" if res["peak_exact"] else " (process)")
        lines.append(
            f"| {name} | {n_ctx:,} x {n_p:,} x {n_genes:,} | {per} | {_fmt(res['fit_s'], 1)} "
            f"| {res['n_epochs']} | {_fmt(res['predict_s'])} | {peak} "
            f"| {_fmt(res['rss_before_fit_gb'], 2)} | {_fmt(res['readout_mib'], 1)} "
            f"| {_fmt(res['dense_readout_mib'], 1)} | {_fmt(res['file_mib'], 1)} "
            f"| {'; '.join(met) or '-'} |"
        )
    return lines


def targets(args: argparse.Namespace, rows: list[tuple[str, str]],
            results: dict[str, dict]) -> list[str]:
    """The issue's targets against this run (a report, not a test)."""
    lines = [
        "## Targets (2-core CPU, float32)",
        "",
        "| shape | quantity | measured | target | |",
        "|---|---|---|---|---|",
    ]
    for name, key in rows:
        res = results[key]
        if "epoch_s" not in res or name not in PAPER_EPOCH_S:
            continue
        lines.append(f"| {name} | s/epoch | {res['epoch_s']:.3f} | {PAPER_EPOCH_S[name]} "
                     f"| {_met(res['epoch_s'] <= PAPER_EPOCH_S[name])} |")
        if name != "tahoe":
            continue
        if args.full_fit:
            lines.append(f"| tahoe | default fit s ({res['n_epochs']} epochs) "
                         f"| {res['fit_s']:.1f} | {TARGET_FIT_S:.0f} "
                         f"| {_met(res['fit_s'] <= TARGET_FIT_S)} |")
        else:
            lines.append(f"| tahoe | default fit s | not measured (`--full-fit`) "
                         f"| {TARGET_FIT_S:.0f} | |")
        lines.append(f"| tahoe | predict s | {res['predict_s']:.3f} | {TARGET_PREDICT_S} "
                     f"| {_met(res['predict_s'] <= TARGET_PREDICT_S)} |")
        lines.append(f"| tahoe | peak RSS GB | {res['peak_rss_gb']:.2f} | {TARGET_RSS_GB} "
                     f"| {_met(res['peak_rss_gb'] <= TARGET_RSS_GB)} |")
    return lines


def render_scaling(series: dict[str, list[tuple[int, str]]],
                   results: dict[str, dict]) -> list[str]:
    """Scaling tables: epoch time against observed pairs and against genes."""
    lines = [
        "## Scaling",
        "",
        "Each step compares a size with the previous one: the size ratio (observed pairs "
        "or genes), the epoch-time ratio, and whether time grew at most "
        f"{TOLERANCE:g} x the size ratio (a doubling at most doubles the epoch time plus "
        f"{TOLERANCE - 1:.0%}). Ratios to the smallest size are shown too. "
        "Timings on a shared machine are noisy: each s/epoch is the median over rounds "
        "(`--rounds`) of a run's median epoch, and *rounds* lists every run's figure.",
    ]
    for what, points in series.items():
        ok = [(n, results[k]) for n, k in points if "error" not in results[k]]
        if not ok:
            lines += ["", f"### {what}: every configuration failed"]
            continue
        shapes = [" x ".join(f"{v:,}" for v in res["shape"]) for _, res in ok]
        lines += [
            "",
            f"### Scaling in {what} ({', '.join(shapes)})",
            "",
            f"| {what} | train pairs | genes | s/epoch (median) | rounds | size x (vs smallest) "
            "| time x (vs smallest) | step: size x -> time x | linear + 10% |",
            "|---|---|---|---|---|---|---|---|---|",
        ]

        def size(res: dict, what: str = what) -> float:
            return res["n_train_pairs"] if what == "contexts" else res["shape"][2]

        first = ok[0][1]
        for i, (n, res) in enumerate(ok):
            rel_size = size(res) / size(first)
            rel_time = res["epoch_s"] / first["epoch_s"]
            if i == 0:
                step, holds = "-", "-"
            else:
                prev = ok[i - 1][1]
                r_size = size(res) / size(prev)
                r_time = res["epoch_s"] / prev["epoch_s"]
                step = f"x{r_size:.2f} -> x{r_time:.2f}"
                holds = "yes" if r_time <= TOLERANCE * r_size else "**no**"
            runs = ", ".join(f"{v:.3f}" for v in res.get("epoch_s_rounds", [res["epoch_s"]]))
            lines.append(
                f"| {n:,} | {res['n_train_pairs']} | {res['shape'][2]} | {res['epoch_s']:.3f} "
                f"| {runs} | {rel_size:.2f} | {rel_time:.2f} | {step} | {holds} |"
            )
        failed = [n for n, k in points if "error" in results[k]]
        if failed:
            lines.append(f"\nFailed: {failed}")
    return lines


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2]))
    sys.exit(main())
