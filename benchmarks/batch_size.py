"""Benchmark: what ``batch_size`` costs and buys on a large data set.

Up to ``batch_size`` training pairs, ``C3TLRegressor`` takes one exact
full-batch step per epoch. Beyond that it steps on batches of whole
perturbations whose context codes are means over the batch's pairs only. This
script measures the trade on the Tahoe shape (48 contexts x 1,138
perturbations x 2,000 genes, ``make_synthetic_perturbations``, the split of
``benchmarks/speed.py``: five test contexts with 10% adaptation rows): for each
batch size, a default fit with early stopping, then the held-out pairs'
mean squared error, mean Pearson correlation (per pair, over genes) and
centred Pearson, the fit time and the epochs run. ``none`` is full-batch training.

    python benchmarks/batch_size.py --threads 2

The table goes to ``batch_size.md`` in ``--out`` (default
``./c3tl-results/batch_size``; ``--out benchmarks/results`` regenerates the
committed copy).

Accuracy is measured on held-out pairs only. One seed per setting; every fit
runs in this process, one after another.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_OUT = Path("c3tl-results") / "batch_size"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", default="8192,4096,2048,none",
                        help="comma-separated batch sizes; 'none' is full-batch "
                             "(default: 8192,4096,2048,none)")
    parser.add_argument("--shape", default="48,1138,2000",
                        help="contexts,perturbations,genes (default: the Tahoe shape)")
    parser.add_argument("--max-epochs", type=int, default=None,
                        help="cap on epochs (default: the estimator's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="directory for batch_size.md (default: ./c3tl-results/batch_size)")
    args = parser.parse_args(argv)
    if Path(args.out).suffix == ".md":
        parser.error(f"--out takes a directory (the table is batch_size.md in it); got {args.out}")
    try:
        args.batch_sizes = [None if b.strip().lower() == "none" else int(b)
                            for b in args.batch_sizes.split(",") if b.strip()]
        args.shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError as exc:
        parser.error(f"--batch-sizes and --shape take comma-separated integers: {exc}")
    if len(args.shape) != 3 or min(args.shape) < 1:
        parser.error("--shape takes three positive integers")
    if any(b is not None and b < 1 for b in args.batch_sizes) or not args.batch_sizes:
        parser.error("--batch-sizes must be positive integers or 'none'")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from speed import held_out_rows, n_test_contexts

    from c3tl_sklearn import C3TLRegressor
    from c3tl_sklearn.datasets import make_synthetic_perturbations
    from c3tl_sklearn.metrics import centered_pearson_delta, pearson_delta

    X, Y = make_synthetic_perturbations(*args.shape, as_frame=False, random_state=args.seed)
    train, test = held_out_rows(X, n_test_contexts(args.shape[0]), args.seed)
    X_train, Y_train = X.iloc[train].reset_index(drop=True), np.ascontiguousarray(Y[train])
    X_test, Y_test = X.iloc[test].reset_index(drop=True), Y[test]

    rows = []
    for batch_size in args.batch_sizes:
        params = {"batch_size": batch_size, "random_state": args.seed}
        if args.max_epochs:
            params["max_epochs"] = args.max_epochs
        model = C3TLRegressor(**params)
        t0 = time.perf_counter()
        model.fit(X_train, Y_train)
        fit_s = time.perf_counter() - t0
        Y_pred = model.predict(X_test)
        steps = "1 (full batch)" if not model.net_.module_.batch_sets else "several"
        row = {
            "batch_size": "none" if batch_size is None else f"{batch_size}",
            "steps per epoch": steps,
            "epochs": model.n_epochs_,
            "fit s": fit_s,
            "s/epoch (median)": float(np.median(model.history_[:, "dur"])),
            "held-out MSE": float(np.mean((Y_pred - Y_test) ** 2)),
            "held-out Pearson": float(pearson_delta(Y_test, Y_pred)),
            "held-out centred Pearson": float(
                centered_pearson_delta(Y_test, Y_pred, X_test["context"].to_numpy())
            ),
        }
        rows.append(row)
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()), flush=True)

    lines = [
        "# C3TLRegressor: batch size, speed and held-out accuracy",
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}. "
        f"Command: `python benchmarks/batch_size.py {shlex.join(argv)}`.",
        "",
        f"Machine: {os.cpu_count()} CPU core(s), {platform.machine()}, python "
        f"{platform.python_version()}; torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s).",
        "",
        f"Data: `make_synthetic_perturbations{args.shape}` (seed {args.seed}); "
        f"{len(X_train)} training pairs, {len(X_test)} held-out pairs in "
        f"{n_test_contexts(args.shape[0])} test contexts (10% adaptation rows in training). "
        "Default parameters apart from `batch_size`; early stopping decides the epochs. "
        "Pearson is `pearson_delta` (per pair, over genes, averaged); centred Pearson "
        "subtracts each test context's mean held-out effect first "
        "(`centered_pearson_delta`).",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
    ]
    for row in rows:
        lines.append("| " + " | ".join(
            f"{v:.4f}" if k.startswith("held-out") else f"{v:.3f}" if k == "s/epoch (median)"
            else f"{v:.1f}" if isinstance(v, float) else str(v) for k, v in row.items()) + " |")
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    out = Path(args.out) / "batch_size.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
