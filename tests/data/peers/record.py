"""How the recorded peer outputs in this folder were made (run once; not part of the suite).

1. A real run of each peer on the shipped glioblastoma cells, held-out line
   U87MG (its MAPK1 cells in training), its work folder kept::

       from c3tl_sklearn.datasets import load_glioblastoma_crispri
       from c3tl_sklearn.preprocessing import pseudobulk
       from c3tl_sklearn.peers import CellFlowPeer, PeerCells, StatePeer
       a = load_glioblastoma_crispri()
       X, Y = pseudobulk(a, "cell_line", "perturbation", "control")
       test = (X.context == "U87MG") & (X.perturbation != "MAPK1")
       cells = PeerCells(a, "cell_line", "perturbation", "control")
       StatePeer(cells, python=STATE_ENV, max_steps=200, keep_files=True,
                 workdir="/tmp/w22/state").fit(X[~test], Y[~test]).predict(X[test])
       CellFlowPeer(cells, python=CELLFLOW_ENV, num_iterations=300, keep_files=True,
                    workdir="/tmp/w22/cf").fit(X[~test], Y[~test]).predict(X[test])

   (arc-state 0.11.1 with torch 2.13.0+cpu; cellflow-tools 0.0.9; one CPU thread.)
2. This script trimmed the outputs: ``python tests/data/peers/record.py STATE_DIR CELLFLOW_DIR``.

- ``state_predicted.h5ad``: ``state tx infer``'s output, the control cells and 2
  predicted pairs of U87MG, 6 cells each, the first 12 genes (State writes the
  predicted expression into ``X`` and keeps the query's ``obs``).
- ``state_split.toml``: the split file the adapter wrote for that run (the data
  folder replaced by a placeholder).
- ``cellflow_predicted.npz`` and ``cellflow_conditions.csv``: the runner's output
  for the first 2 pairs, 6 predicted cells each, all 30 PCA components.
"""

import sys
from pathlib import Path

import anndata
import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def main(state_dir: str, cellflow_dir: str) -> None:
    state = anndata.read_h5ad(Path(state_dir) / "predicted.h5ad")
    keep = []
    for label in ["control", *[p for p in pd.unique(state.obs["perturbation"].astype(str))
                               if p != "control"][:2]]:
        keep += list(np.flatnonzero(state.obs["perturbation"].astype(str) == label)[:6])
    small = state[keep, :12].copy()
    small.write_h5ad(HERE / "state_predicted.h5ad", compression="gzip")
    toml = (Path(state_dir) / "split.toml").read_text()
    lines = [('c3tl = "DATA_DIR/"' if line.startswith("c3tl = \"/") else line)
             for line in toml.splitlines()]
    (HERE / "state_split.toml").write_text("\n".join(lines) + "\n")
    conditions = pd.read_csv(Path(cellflow_dir) / "conditions.csv", dtype=str).iloc[:2]
    conditions.to_csv(HERE / "cellflow_conditions.csv", index=False)
    with np.load(Path(cellflow_dir) / "predicted.npz") as data:
        np.savez_compressed(HERE / "cellflow_predicted.npz",
                            **{f"pair{i}": data[f"pair{i}"][:6] for i in range(2)})


if __name__ == "__main__":
    main(*sys.argv[1:3])
