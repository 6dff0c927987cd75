"""Rebuild ``c3tl_sklearn/datasets/data/glioblastoma_crispri.npz`` from PerturBench's devel.h5ad.

Usage: ``python scripts/build_glioblastoma_crispri.py path/to/devel.h5ad``.

Keeps the ``dataset == "mcfaline23"`` cells (CRISPRi in three glioblastoma
lines) and stores the log-normalised matrix as CSR float32 with int16 gene
indices: the values are the source's float64 to float32 precision (2.4e-7 at
most), and the file stays under 1 MB so it can ship inside the package.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
from scipy import sparse

OUT = Path(__file__).resolve().parents[1] / "c3tl_sklearn/datasets/data/glioblastoma_crispri.npz"


def main(path: str) -> None:
    adata = ad.read_h5ad(path)
    part = adata[adata.obs["dataset"] == "mcfaline23"]
    matrix = sparse.csr_matrix(part.X, dtype=np.float32)
    matrix.sort_indices()
    # int16 indices are exact only while the gene count fits
    assert matrix.shape[1] <= np.iinfo(np.int16).max
    obs = part.obs
    np.savez_compressed(
        OUT,
        data=matrix.data,
        indices=matrix.indices.astype(np.int16),
        indptr=matrix.indptr.astype(np.int32),
        shape=np.asarray(matrix.shape, dtype=np.int64),
        obs_names=np.asarray(part.obs_names, dtype=str),
        cell_line=obs["cell_type"].to_numpy(dtype=str),
        perturbation=obs["perturbation"].to_numpy(dtype=str),
        ncounts=obs["ncounts"].to_numpy(dtype=np.float32),
        ngenes=obs["ngenes"].to_numpy(dtype=np.int32),
        genes=np.asarray(part.var_names, dtype=str),
    )
    print(f"{OUT}: {matrix.shape[0]} cells x {matrix.shape[1]} genes, "
          f"{OUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1])
