"""From a single-cell .h5ad to predicted effects in an under-measured context.

The whole path in a few steps:

1. a single-cell ``.h5ad`` (by default a small synthetic one is written first);
2. :func:`~c3tl_sklearn.preprocessing.pseudobulk` turns cells into per-context
   effects (mean of the perturbed cells minus mean of the same context's
   controls), read from the file in blocks, keeping highly variable genes;
3. one context is held out except ~10% of its perturbations (the adaptation
   set), :class:`~c3tl_sklearn.C3TLRegressor` is fitted on everything else;
4. the held-out pairs are predicted, scored (mean per-pair Pearson across
   genes, with the perturbation-mean baseline for reference), and written as
   an AnnData (:func:`~c3tl_sklearn.preprocessing.to_anndata`) for scanpy, in
   ``--out`` (default ``./c3tl-results/h5ad_to_predictions``).

Run::

    python examples/h5ad_to_predictions.py                       # synthetic data
    python examples/h5ad_to_predictions.py --h5ad cells.h5ad --context-key cell_line \\
        --perturbation-key drug --control DMSO --held-out A549 --out my-predictions

Needs the anndata extra: ``pip install c3tl-sklearn[anndata]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from c3tl_sklearn import C3TLRegressor
from c3tl_sklearn.datasets import PerturbationDesign, make_synthetic_perturbations
from c3tl_sklearn.preprocessing import PseudobulkOptions, PseudobulkWarning, pseudobulk, to_anndata


def write_synthetic_h5ad(path: Path, *, n_contexts=6, n_perturbations=60, n_genes=300,
                         cells_per_pair=(20, 40), control_cells=200, seed=0) -> None:
    """Simulate log-normalised single cells whose pseudo-bulk effects share structure.

    The true effects come from :func:`make_synthetic_perturbations` (the paper's
    causal manifold assumption); each cell is its context's baseline plus the
    effect of its perturbation plus noise, floored at zero like log1p data.
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    X_true, Y_true = make_synthetic_perturbations(
        n_contexts, n_perturbations, n_genes, design=PerturbationDesign(noise=0.05),
        random_state=seed
    )
    effects = 0.4 * Y_true.to_numpy()
    baseline = rng.gamma(2.0, 0.6, size=(n_contexts, n_genes))  # per-context expression
    ctx_code = pd.factorize(X_true["context"], sort=True)[0]
    blocks, obs = [], []
    for c in range(n_contexts):
        sizes = [(("control", None), control_cells)]
        rows = np.flatnonzero(ctx_code == c)
        sizes += [((X_true["perturbation"].iloc[i], i), int(rng.integers(*cells_per_pair)))
                  for i in rows]
        for (label, row), n in sizes:
            mean = baseline[c] + (0.0 if row is None else effects[row])
            cells = mean + rng.normal(0.0, 0.6, size=(n, n_genes))
            blocks.append(np.maximum(cells, 0.0).astype(np.float32))
            obs += [(f"ctx{c}", label)] * n
    obs = pd.DataFrame(obs, columns=["cell_line", "treatment"])
    obs.index = [f"cell{i}" for i in range(len(obs))]
    adata = ad.AnnData(
        sp.csr_matrix(np.vstack(blocks)), obs=obs,
        var=pd.DataFrame(index=list(Y_true.columns)),
    )
    adata.write_h5ad(path)


def mean_pearson(Y_true: np.ndarray, Y_pred: np.ndarray) -> float:
    """Pearson correlation across genes, per pair, averaged over pairs."""
    a = Y_true - Y_true.mean(axis=1, keepdims=True)
    b = Y_pred - Y_pred.mean(axis=1, keepdims=True)
    r = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return float(np.nanmean(r))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--h5ad", help="single-cell .h5ad (default: write a synthetic one)")
    parser.add_argument("--context-key", default="cell_line")
    parser.add_argument("--perturbation-key", default="treatment")
    parser.add_argument("--control", default="control")
    parser.add_argument("--held-out", help="context to predict (default: the last one)")
    parser.add_argument("--adaptation-fraction", type=float, default=0.1)
    parser.add_argument("--n-top-genes", type=int, default=200)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("c3tl-results") / "h5ad_to_predictions",
                        help="directory for <input name>_predictions.h5ad "
                             "(default: ./c3tl-results/h5ad_to_predictions)")
    args = parser.parse_args(argv)
    if args.out.suffix == ".h5ad":
        parser.error(f"--out takes a directory (the predictions are written in it); "
                     f"got {args.out}")

    workdir = Path(tempfile.mkdtemp(prefix="c3tl_example_"))
    if args.h5ad is None:
        path = workdir / "cells.h5ad"
        write_synthetic_h5ad(path)
        print(f"wrote synthetic cells to {path}")
    else:
        path = Path(args.h5ad)

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PseudobulkWarning)
        X, Y = pseudobulk(path, args.context_key, args.perturbation_key, args.control,
                          options=PseudobulkOptions(n_top_genes=args.n_top_genes, min_cells=10))
    for w in caught:
        print(f"  note: {w.message}")
    print(f"pseudobulk: {len(X)} (context, perturbation) pairs x {Y.shape[1]} genes "
          f"in {time.perf_counter() - t0:.1f} s")

    # Hold out one context, keeping ~10% of its perturbations for adaptation.
    rng = np.random.default_rng(0)
    held_out = args.held_out if args.held_out is not None else X["context"].iloc[-1]
    in_target = (X["context"] == held_out).to_numpy()
    if not in_target.any():
        raise SystemExit(f"context {held_out!r} not found; contexts: {sorted(set(X.context))}")
    target_rows = np.flatnonzero(in_target)
    n_adapt = max(1, round(args.adaptation_fraction * target_rows.size))
    adapt = rng.choice(target_rows, size=n_adapt, replace=False)
    train = ~in_target
    train[adapt] = True
    test = in_target & ~train
    print(f"held-out context {held_out!r}: {n_adapt} pairs observed, {int(test.sum())} to "
          f"predict; training on {int(train.sum())} pairs from "
          f"{X.loc[train, 'context'].nunique()} contexts")

    t0 = time.perf_counter()
    model = C3TLRegressor(max_epochs=args.max_epochs, random_state=0)
    model.fit(X[train], Y[train])
    Y_pred = model.predict(X[test])
    print(f"C3TLRegressor fitted and predicted in {time.perf_counter() - t0:.1f} s")

    Y_test = Y[test].to_numpy()
    # Reference: each perturbation's mean effect over the training contexts.
    pert_mean = Y[~in_target].groupby(X.loc[~in_target, "perturbation"]).mean()
    baseline = pert_mean.reindex(X.loc[test, "perturbation"]).to_numpy()
    print(f"held-out mean per-pair Pearson: C3TL {mean_pearson(Y_test, Y_pred):.3f}, "
          f"perturbation-mean baseline {mean_pearson(Y_test, baseline):.3f}")

    predictions = to_anndata(X[test], Y_pred, genes=Y.columns)
    predictions.layers["observed"] = Y_test  # to compare in scanpy
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / (path.stem + "_predictions.h5ad")
    predictions.write_h5ad(out)
    print(f"predictions: {predictions.n_obs} x {predictions.n_vars} AnnData -> {out}")
    return predictions


if __name__ == "__main__":
    main()
