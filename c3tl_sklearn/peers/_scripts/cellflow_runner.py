"""Train and run CellFlow; executed by CellFlow's own Python, never imported by c3tl_sklearn.

Usage (the adapter :class:`c3tl_sklearn.peers.CellFlowPeer` writes the files)::

    python cellflow_runner.py train CONFIG.json
    python cellflow_runner.py predict CONFIG.json

``train`` reads ``train.h5ad`` (cells in PCA space in ``obsm["X_pca"]``,
``obs``: ``perturbation``, ``context``, boolean ``control``; one-hot
condition encodings in ``uns["pert_emb"]`` and ``uns["ctx_emb"]``), trains
an OT flow-matching CellFlow model and pickles it. ``predict`` reads
``query.h5ad`` (control cells of the contexts to predict) and
``conditions.csv`` (the pairs), and writes ``predicted.npz``: for every pair
the predicted cells in PCA space, keyed ``"pair<i>"`` for row ``i`` of
``conditions.csv``.
This file only uses the standard library, numpy, pandas, anndata and
CellFlow, so it runs in CellFlow's environment.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _config(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def train(cfg: dict) -> None:
    import anndata
    import cellflow
    import optax

    folder = Path(cfg["folder"])
    adata = anndata.read_h5ad(folder / "train.h5ad")
    cf = cellflow.model.CellFlow(adata, solver="otfm")
    cf.prepare_data(
        sample_rep="X_pca",
        control_key="control",
        perturbation_covariates={"pert": ("perturbation",)},
        perturbation_covariate_reps={"pert": "pert_emb"},
        sample_covariates=["context"],
        sample_covariate_reps={"context": "ctx_emb"},
        split_covariates=["context"],
    )
    width = int(cfg["hidden_dim"])
    cf.prepare_model(
        condition_embedding_dim=int(cfg["condition_dim"]),
        cond_output_dropout=float(cfg["condition_dropout"]),
        time_freqs=int(cfg["time_freqs"]),
        time_encoder_dims=(width, width),
        hidden_dims=(width, width),
        decoder_dims=(width, width),
        optimizer=optax.adam(float(cfg["lr"])),
        seed=int(cfg["seed"]),
    )
    t0 = time.perf_counter()
    cf.train(num_iterations=int(cfg["num_iterations"]), batch_size=int(cfg["batch_size"]),
             valid_freq=int(cfg["num_iterations"]) + 1)
    print(f"trained {cfg['num_iterations']} iterations in {time.perf_counter() - t0:.1f} s")
    cf.save(str(folder), file_prefix="c3tl", overwrite=True)


def predict(cfg: dict) -> None:
    import anndata
    import cellflow
    import numpy as np
    import pandas as pd

    folder = Path(cfg["folder"])
    cf = cellflow.model.CellFlow.load(str(folder / "c3tl_CellFlow.pkl"))
    query = anndata.read_h5ad(folder / "query.h5ad")
    # CellFlow reads the condition encodings from the predicted AnnData's uns
    for key in ("pert_emb", "ctx_emb"):
        query.uns[key] = cf.adata.uns[key]
    conditions = pd.read_csv(folder / "conditions.csv", dtype=str, keep_default_na=False)
    conditions["control"] = False
    for column in ("perturbation", "context"):
        categories = cf.adata.obs[column].cat.categories
        conditions[column] = pd.Categorical(conditions[column], categories=categories)
    conditions["condition"] = [f"pair{i}" for i in range(len(conditions))]
    out = cf.predict(query, covariate_data=conditions, sample_rep="X_pca",
                     condition_id_key="condition")
    np.savez(folder / "predicted.npz", **{str(k): np.asarray(v) for k, v in out.items()})
    print(f"predicted {len(out)} conditions")


if __name__ == "__main__":
    action, config = sys.argv[1:3]
    {"train": train, "predict": predict}[action](_config(config))
