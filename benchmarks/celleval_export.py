"""Benchmark: export predictions for cell-eval from single cells (``to_cell_eval(X, Y, cells)``).

Draws synthetic log-normalised cells (sparse, ~10% non-zero; ``--contexts``
contexts, each with ``--perturbations`` perturbations and a control of
``--cells-per-group`` cells), random predicted effects for every pair, and
times the export of both files in memory (writing them is not included).
Memory is the peak of Python's own allocations during the call
(``tracemalloc``, numpy's arrays included).

Usage::

    python benchmarks/celleval_export.py                     # 102,000 cells x 2,000 genes
    python benchmarks/celleval_export.py --cells-per-group 20   # a smoke run
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=10)
    parser.add_argument("--perturbations", type=int, default=50)
    parser.add_argument("--cells-per-group", type=int, default=200)
    parser.add_argument("--genes", type=int, default=2000)
    args = parser.parse_args(argv)

    import anndata

    from c3tl_sklearn.preprocessing import to_cell_eval

    rng = np.random.default_rng(0)
    groups = ["ctrl"] + [f"p{j}" for j in range(args.perturbations)]
    contexts = [f"c{i}" for i in range(args.contexts)]
    n = len(contexts) * len(groups) * args.cells_per_group
    X = sp.random(n, args.genes, density=0.1, format="csr", random_state=0, dtype=np.float32)
    X.data = np.log1p(X.data * 20).astype(np.float32)  # log-normalised-like values in [0, 3]
    obs = pd.DataFrame({
        "context": np.repeat(contexts, len(groups) * args.cells_per_group),
        "perturbation": np.tile(np.repeat(groups, args.cells_per_group), len(contexts)),
    }, index=[str(i) for i in range(n)])
    cells = anndata.AnnData(X, obs=obs)
    pairs = pd.DataFrame({"context": np.repeat(contexts, args.perturbations),
                          "perturbation": groups[1:] * len(contexts)})
    predicted = rng.normal(0.0, 0.05, (len(pairs), args.genes))
    tracemalloc.start()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the bounded means of random effects
        files = to_cell_eval(pairs, predicted, cells, control="ctrl",
                             genes=list(cells.var_names))
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    line = (f"{n:,} cells x {args.genes:,} genes, {len(pairs)} pairs: export {seconds:.1f} s, "
            f"peak {peak:,.0f} MiB (tracemalloc); pred.h5ad {files.pred.n_obs:,} rows")
    print(line)
    return line


if __name__ == "__main__":
    main()
