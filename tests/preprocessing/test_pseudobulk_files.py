"""Pseudo-bulk over several files equals pseudo-bulk over one file with the same cells."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

ad = pytest.importorskip("anndata")

from c3tl_sklearn.preprocessing import (  # noqa: E402
    PseudobulkOptions,
    PseudobulkWarning,
    pseudobulk,
)

from .test_pseudobulk import make_cells  # noqa: E402


def split_into_files(adata, tmp_path, *, sparse: bool) -> list[str]:
    """Three files: shuffled cells spread so that pairs span files, and all of context
    C's controls in the last file (its perturbed cells sit in the first two)."""
    obs = adata.obs
    rng = np.random.default_rng(1)
    part = rng.integers(0, 3, size=adata.n_obs)
    c_ctrl = ((obs["cell_line"] == "C") & (obs["drug"] == "ctrl")).to_numpy()
    c_pert = ((obs["cell_line"] == "C") & (obs["drug"] != "ctrl")).to_numpy()
    part[c_ctrl] = 2
    part[c_pert] = rng.integers(0, 2, size=int(c_pert.sum()))
    paths = []
    for k in range(3):
        piece = adata[part == k].copy()
        if sparse:
            piece.X = sp.csr_matrix(piece.X)
        path = tmp_path / f"plate{k}.h5ad"
        piece.write_h5ad(path)
        paths.append(str(path))
    return paths


def run(source, n_jobs=None, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PseudobulkWarning)
        result = pseudobulk(source, "cell_line", "drug", "ctrl", PseudobulkOptions(**kw),
                            return_report=True, n_jobs=n_jobs)
    # every warning points at the caller's line, one file or many
    assert {w.filename for w in caught if w.category is PseudobulkWarning} <= {__file__}
    return result, sorted(str(w.message) for w in caught)


@pytest.mark.parametrize(("hvg_on", "sparse", "n_jobs"),
                         [("effects", True, 1), ("cells", False, 2)])
def test_files_equal_one_file(tmp_path, hvg_on, sparse, n_jobs):
    counts = {(c, p): n for c, n0 in zip("ABC", (30, 16, 24), strict=True)
              for p, n in zip(["ctrl", "p1", "p2", "p3"], (n0, n0 - 3, 9, 14), strict=True)}
    counts[("B", "ctrl")] = 11  # under min_cells: context B and its pairs are dropped
    # enough genes per dispersion bin that the normalised dispersions have no ties,
    # which rounding could order differently
    adata = make_cells(3, counts=counts, n_genes=300)
    paths = split_into_files(adata, tmp_path, sparse=sparse)
    whole = tmp_path / "whole.h5ad"
    adata.write_h5ad(whole)
    kw = {"min_cells": 12, "n_top_genes": 40, "hvg_on": hvg_on, "chunk_size": 17}
    (X1, Y1, r1), warned1 = run(str(whole), **kw)
    (Xn, Yn, rn), warnedn = run(paths, n_jobs=n_jobs, **kw)

    pd.testing.assert_frame_equal(Xn, X1)
    np.testing.assert_allclose(Yn.to_numpy(), Y1.to_numpy(), rtol=1e-6, atol=1e-6)
    assert list(Yn.columns) == list(Y1.columns)  # the same genes were selected
    pd.testing.assert_frame_equal(rn.groups, r1.groups)
    pd.testing.assert_frame_equal(rn.gene_stats, r1.gene_stats, rtol=1e-9)
    pd.testing.assert_frame_equal(rn.control_mean, r1.control_mean, rtol=1e-6, atol=1e-6)
    assert warnedn == warned1 and any("min_cells=12" in w for w in warned1)
    # context C: its pairs were only in the first two files, its controls only in the last
    assert (Xn["context"] == "C").sum() == 2 and (Xn["context"] == "B").sum() == 0
    # a pair with 9 cells spread over files stays dropped; one with 27 in pieces is kept
    assert not (Xn["perturbation"] == "p2").any()
    assert rn.files["n_cells"].sum() == adata.n_obs and r1.files is None
    assert (rn.files["worker_peak_rss_mib"] > 0).all()


def test_glob_and_errors(tmp_path):
    adata = make_cells(4)
    paths = split_into_files(adata, tmp_path, sparse=True)
    X_glob, Y_glob = pseudobulk(str(tmp_path / "plate*.h5ad"), "cell_line", "drug", "ctrl")
    X_list, Y_list = pseudobulk(paths, "cell_line", "drug", "ctrl")
    pd.testing.assert_frame_equal(X_glob, X_list)
    pd.testing.assert_frame_equal(Y_glob, Y_list)
    with pytest.raises(ValueError, match="No file matches"):
        pseudobulk(str(tmp_path / "nothing*.h5ad"), "cell_line", "drug", "ctrl")
    with pytest.raises(ValueError, match="not found in obs"):
        pseudobulk(paths, "cell_line", "drug", "DMSO")
    other = adata[:40, :5].copy()
    other.write_h5ad(tmp_path / "other.h5ad")
    with pytest.raises(ValueError, match="same var_names"):
        pseudobulk([*paths, str(tmp_path / "other.h5ad")], "cell_line", "drug", "ctrl")


def test_benchmark_reads_a_glob_of_files(tmp_path):
    from c3tl_sklearn.cli import H5adCells, load_benchmark_data

    adata = make_cells(5)
    paths = split_into_files(adata, tmp_path, sparse=True)
    options = PseudobulkOptions(min_cells=5)
    X, Y, description = load_benchmark_data(
        h5ad=H5adCells(str(tmp_path / "plate*.h5ad"), "cell_line", "drug", "ctrl", options))
    X_ref, Y_ref = pseudobulk(paths, "cell_line", "drug", "ctrl", options)
    assert len(X) == len(X_ref) > 0 and "plate*.h5ad" in description
    np.testing.assert_allclose(np.asarray(Y, dtype=float), Y_ref.to_numpy(), rtol=1e-6)
