"""Tests of c3tl_sklearn.preprocessing: single cells -> pseudo-bulk effects -> AnnData.

The reference for every aggregation is an explicit pandas groupby on the dense
matrix, written here independently of the implementation (and, once, scanpy's
own ``scanpy.get.aggregate``).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

ad = pytest.importorskip("anndata")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from c3tl_sklearn.preprocessing import (  # noqa: E402
    PseudobulkOptions,
    PseudobulkReport,
    PseudobulkWarning,
    pseudobulk,
    to_anndata,
)

CONTEXTS = ["A", "B", "C"]
PERTS = ["ctrl", "p1", "p2", "p3"]
N_GENES = 30
#: genes whose effect differs strongly between perturbations (for the HVG test)
RESPONSIVE = [2, 11, 23]


def make_cells(seed=0, *, counts=None, n_genes=N_GENES):
    """A small single-cell data set with known groups.

    ``counts`` maps (context, perturbation) to a number of cells; cells are
    shuffled so groups are spread over the chunks. Values are log1p-like
    non-negative floats with ~60% zeros; the genes in ``RESPONSIVE`` get a
    large perturbation-specific shift.
    """
    rng = np.random.default_rng(seed)
    if counts is None:
        counts = {(c, p): int(rng.integers(12, 20)) for c in CONTEXTS for p in PERTS}
    labels = [key for key, n in counts.items() for _ in range(n)]
    order = rng.permutation(len(labels))
    labels = [labels[i] for i in order]
    obs = pd.DataFrame(labels, columns=["cell_line", "drug"])
    obs.index = [f"cell{i}" for i in range(len(obs))]
    n = len(obs)
    scale = rng.uniform(0.2, 3.0, size=n_genes)  # varied gene means for the dispersion bins
    values = rng.gamma(2.0, 1.0, size=(n, n_genes)) * scale
    values *= rng.random((n, n_genes)) < 0.4
    shift = {"ctrl": 0.0, "p1": 4.0, "p2": -0.0, "p3": 8.0}
    for j in (j for j in RESPONSIVE if j < n_genes):
        values[:, j] += obs["drug"].map(shift).to_numpy()
    values = np.log1p(values).astype(np.float32)
    var = pd.DataFrame(index=[f"gene{j}" for j in range(n_genes)])
    return ad.AnnData(values, obs=obs, var=var)


def expected_effects(adata, *, layer=None, min_cells=1, controls=("ctrl",)):
    """Effects by an explicit pandas groupby (dense), and the cell counts."""
    mat = adata.X if layer is None else adata.layers[layer]
    dense = mat.toarray() if sp.issparse(mat) else np.asarray(mat)
    df = pd.DataFrame(dense.astype(np.float64), columns=adata.var_names)
    obs = adata.obs.reset_index(drop=True)
    pert = obs["drug"].astype(object).where(~obs["drug"].isin(controls), "__control__")
    keys = [obs["cell_line"].astype(object), pert.rename("drug")]
    means = df.groupby(keys).mean()
    sizes = df.groupby(keys).size()
    rows, effects, n_cells = [], [], []
    for (c, p), mean in means.iterrows():
        if p == "__control__" or sizes[(c, p)] < min_cells:
            continue
        rows.append((c, p))
        effects.append(mean.to_numpy() - means.loc[(c, "__control__")].to_numpy())
        n_cells.append(sizes[(c, p)])
    index = pd.MultiIndex.from_tuples(rows, names=["context", "perturbation"])
    return pd.DataFrame(effects, index=index, columns=adata.var_names), pd.Series(n_cells, index)


def assert_matches(X, Y, expected, n_cells, atol=1e-5):
    got = Y.set_axis(pd.MultiIndex.from_frame(X[["context", "perturbation"]]), axis=0)
    assert list(got.index) == list(expected.index)  # sorted by context, then perturbation
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=atol, rtol=1e-5)
    np.testing.assert_array_equal(X["n_cells"].to_numpy(), n_cells.to_numpy())
    assert list(Y.columns) == list(expected.columns)
    assert Y.index.equals(X.index)
    assert Y.dtypes.eq(np.float32).all()


def with_storage(adata, storage):
    out = adata.copy()
    if storage == "csr":
        out.X = sp.csr_matrix(out.X)
    elif storage == "csc":
        out.X = sp.csc_matrix(out.X)
    return out


def open_as(adata, access, tmp_path):
    if access == "memory":
        return adata
    path = tmp_path / "cells.h5ad"
    adata.write_h5ad(path)
    if access == "path":
        return str(path)
    return ad.read_h5ad(path, backed="r")


# ----------------------------------------------------------------------------
# Correctness
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["dense", "csr", "csc"])
@pytest.mark.parametrize("access", ["memory", "backed", "path"])
def test_pseudobulk_matches_groupby(storage, access, tmp_path):
    adata = with_storage(make_cells(), storage)
    expected, n_cells = expected_effects(adata)
    source = open_as(adata, access, tmp_path)
    # 7 cells per block (for CSC, the same share of genes): many blocks
    X, Y = pseudobulk(source, "cell_line", "drug", "ctrl",
                      options=PseudobulkOptions(min_cells=1, chunk_size=7))
    assert list(X.columns) == ["context", "perturbation", "n_cells", "n_control_cells"]
    assert "ctrl" not in set(X["perturbation"])
    assert_matches(X, Y, expected, n_cells)
    ctrl_counts = adata.obs.query("drug == 'ctrl'")["cell_line"].value_counts()
    np.testing.assert_array_equal(
        X["n_control_cells"].to_numpy(), ctrl_counts[X["context"]].to_numpy()
    )
    if access == "backed":
        source.file.close()


def test_default_chunking_and_scanpy_aggregate_agree():
    sc = pytest.importorskip("scanpy")
    adata = with_storage(make_cells(seed=3), "csr")
    X, Y, report = pseudobulk(adata, "cell_line", "drug", "ctrl",
                              options=PseudobulkOptions(min_cells=1), return_report=True)
    agg = sc.get.aggregate(adata, ["cell_line", "drug"], func="mean")
    means = pd.DataFrame(
        agg.layers["mean"], columns=agg.var_names,
        index=pd.MultiIndex.from_frame(agg.obs[["cell_line", "drug"]].astype(str)),
    )
    for i, (c, p) in enumerate(zip(X["context"], X["perturbation"], strict=True)):
        np.testing.assert_allclose(
            Y.iloc[i].to_numpy(), means.loc[(c, p)] - means.loc[(c, "ctrl")], atol=1e-5
        )
    # the report's control means are the controls' mean expression
    for c in CONTEXTS:
        np.testing.assert_allclose(report.control_mean.loc[c], means.loc[(c, "ctrl")],
                                   atol=1e-5)


@pytest.mark.parametrize("access", ["memory", "path"])
def test_layer_is_used(access, tmp_path):
    adata = make_cells(seed=1)
    adata.layers["other"] = sp.csr_matrix(adata.X * 2.0 + 1.0)
    expected, n_cells = expected_effects(adata, layer="other")
    X, Y = pseudobulk(open_as(adata, access, tmp_path), "cell_line", "drug", "ctrl",
                      options=PseudobulkOptions(layer="other", min_cells=1, chunk_size=10))
    assert_matches(X, Y, expected, n_cells)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    chunk=st.integers(1, 60),
    sparse=st.booleans(),
    n_contexts=st.integers(1, 4),
)
def test_property_any_chunking_matches_groupby(seed, chunk, sparse, n_contexts):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 80))
    obs = pd.DataFrame(
        {
            "cell_line": rng.integers(0, n_contexts, n),  # integer context labels
            "drug": rng.choice(["ctrl", "a", "b", "c"], size=n),
        },
        index=[f"c{i}" for i in range(n)],
    )
    obs.loc[obs.index[: n_contexts], "drug"] = "ctrl"  # every context gets a control
    obs.loc[obs.index[: n_contexts], "cell_line"] = np.arange(n_contexts)
    values = (rng.random((n, 5)) * (rng.random((n, 5)) < 0.5)).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(values) if sparse else values, obs=obs)
    expected, n_cells = expected_effects(adata)
    X, Y = pseudobulk(adata, "cell_line", "drug", "ctrl",
                      options=PseudobulkOptions(min_cells=1, chunk_size=chunk))
    assert X["context"].dtype.kind == "i"  # labels keep their type
    assert_matches(X, Y, expected, n_cells)


def test_multiple_control_labels_are_pooled():
    adata = make_cells(seed=2)
    obs = adata.obs.copy()
    first_ctrl = np.flatnonzero(obs["drug"].to_numpy() == "ctrl")[::2]
    obs.iloc[first_ctrl, obs.columns.get_loc("drug")] = "ntc"
    pooled = ad.AnnData(adata.X, obs=obs, var=adata.var)
    X, Y = pseudobulk(pooled, "cell_line", "drug", ["ctrl", "ntc"],
                      options=PseudobulkOptions(min_cells=1))
    X_ref, Y_ref = pseudobulk(adata, "cell_line", "drug", "ctrl",
                              options=PseudobulkOptions(min_cells=1))
    assert not {"ctrl", "ntc"} & set(X["perturbation"])
    pd.testing.assert_frame_equal(X, X_ref)
    pd.testing.assert_frame_equal(Y, Y_ref)


def test_negative_values_are_allowed():
    adata = make_cells(seed=4)
    adata.X = adata.X - 1.0  # e.g. centred data
    expected, n_cells = expected_effects(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PseudobulkWarning)
        X, Y = pseudobulk(adata, "cell_line", "drug", "ctrl",
                          options=PseudobulkOptions(min_cells=1))
    assert_matches(X, Y, expected, n_cells)


def test_input_anndata_is_not_modified(tmp_path):
    adata = with_storage(make_cells(), "csr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata: names not unique
        adata.var_names = ["dup"] * 2 + list(adata.var_names[2:])
        snapshot = adata.copy()
    with pytest.warns(PseudobulkWarning):
        pseudobulk(adata, "cell_line", "drug", "ctrl",
                   options=PseudobulkOptions(n_top_genes=5, hvg_on="cells", transform="log1p",
                                             chunk_size=9))
    assert (adata.X != snapshot.X).nnz == 0
    pd.testing.assert_frame_equal(adata.obs, snapshot.obs)
    assert list(adata.var_names) == list(snapshot.var_names)
    dense = make_cells()
    before = dense.X.copy()
    pseudobulk(dense, "cell_line", "drug", "ctrl",
               options=PseudobulkOptions(transform="normalize_log1p", chunk_size=5))
    np.testing.assert_array_equal(dense.X, before)


# ----------------------------------------------------------------------------
# Dropping: min_cells, contexts without controls, unlabelled cells
# ----------------------------------------------------------------------------
def test_min_cells_drops_small_pairs_and_reports_them(tmp_path):
    counts = {(c, p): 15 for c in CONTEXTS for p in PERTS}
    counts[("B", "p2")] = 4
    counts[("C", "p3")] = 9
    adata = make_cells(counts=counts)
    with pytest.warns(PseudobulkWarning, match=r"Dropped 2 of 9 .*min_cells=10") as rec:
        X, Y, report = pseudobulk(str(open_as(adata, "path", tmp_path)), "cell_line", "drug",
                                  "ctrl", options=PseudobulkOptions(min_cells=10, chunk_size=13),
                                  return_report=True)
    assert "('B', 'p2'): 4" in str(rec[0].message)
    assert rec[0].filename == __file__  # the warning points at the caller's line
    kept = set(zip(X["context"], X["perturbation"], strict=True))
    assert ("B", "p2") not in kept and ("C", "p3") not in kept
    assert len(X) == 7 and (X["n_cells"] == 15).all()
    expected, n_cells = expected_effects(adata, min_cells=10)
    assert_matches(X, Y, expected, n_cells)
    assert isinstance(report, PseudobulkReport)
    status = report.groups.set_index(["context", "perturbation"])["status"]
    assert status[("B", "p2")] == "too_few_cells"
    assert status[("C", "p3")] == "too_few_cells"
    assert status[("A", "p1")] == "kept"
    assert report.groups["is_control"].sum() == 3
    assert report.n_cells_unlabelled == 0


def test_context_without_controls_is_dropped_with_warning():
    counts = {(c, p): 12 for c in CONTEXTS for p in PERTS}
    counts[("C", "ctrl")] = 3  # too few controls in C
    adata = make_cells(counts=counts)
    with pytest.warns(PseudobulkWarning, match=r"1 context\(s\).*'C' \(3\).*3 .*pair"):
        X, _, report = pseudobulk(adata, "cell_line", "drug", "ctrl",
                                  options=PseudobulkOptions(min_cells=5), return_report=True)
    assert set(X["context"]) == {"A", "B"}
    assert list(report.control_mean.index) == ["A", "B"]
    status = report.groups.set_index(["context", "perturbation"])["status"]
    assert status[("C", "p1")] == "no_control"
    # a context with no control cell at all
    keep = ~((adata.obs["cell_line"] == "B") & (adata.obs["drug"] == "ctrl")).to_numpy()
    with pytest.warns(PseudobulkWarning, match=r"'B' \(0\)"):
        X, _ = pseudobulk(adata[keep], "cell_line", "drug", "ctrl",
                          options=PseudobulkOptions(min_cells=1))
    assert set(X["context"]) == {"A", "C"}


def test_error_when_no_context_has_controls():
    counts = {(c, p): 12 for c in CONTEXTS for p in PERTS}
    counts.update({(c, "ctrl"): 2 for c in CONTEXTS})
    adata = make_cells(counts=counts)
    with pytest.raises(ValueError, match=r"No context has at least min_cells=5 control cells"):
        pseudobulk(adata, "cell_line", "drug", "ctrl", options=PseudobulkOptions(min_cells=5))


def test_error_when_no_pair_survives():
    counts = {(c, p): (12 if p == "ctrl" else 3) for c in CONTEXTS for p in PERTS}
    with pytest.raises(ValueError, match=r"No \(context, perturbation\) pair.*largest pair: 3"):
        pseudobulk(make_cells(counts=counts), "cell_line", "drug", "ctrl",
                   options=PseudobulkOptions(min_cells=5))


def test_unlabelled_cells_are_ignored():
    adata = make_cells(seed=5)
    obs = adata.obs.copy()
    obs["drug"] = obs["drug"].astype(object)
    obs.iloc[:4, obs.columns.get_loc("drug")] = None
    obs.iloc[4:6, obs.columns.get_loc("cell_line")] = np.nan
    holed = ad.AnnData(adata.X, obs=obs, var=adata.var)
    with pytest.warns(PseudobulkWarning, match="6 cell\\(s\\) have no label"):
        X, Y, report = pseudobulk(holed, "cell_line", "drug", "ctrl",
                                  options=PseudobulkOptions(min_cells=1), return_report=True)
    assert report.n_cells_unlabelled == 6
    expected, n_cells = expected_effects(adata[6:])
    assert_matches(X, Y, expected, n_cells)


# ----------------------------------------------------------------------------
# Highly variable genes
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("access", ["memory", "path"])
def test_hvg_on_effects_picks_the_responsive_genes(access, tmp_path):
    adata = with_storage(make_cells(seed=6), "csr")
    options = PseudobulkOptions(n_top_genes=3, hvg_on="effects", chunk_size=11)
    _, Y, report = pseudobulk(open_as(adata, access, tmp_path), "cell_line", "drug", "ctrl",
                              options, return_report=True)
    assert list(Y.columns) == [f"gene{j}" for j in RESPONSIVE]
    _, Y_all = pseudobulk(adata, "cell_line", "drug", "ctrl")
    pd.testing.assert_frame_equal(Y, Y_all[Y.columns])
    stats = report.gene_stats
    assert list(stats.index) == list(adata.var_names) and stats["selected"].sum() == 3
    np.testing.assert_allclose(stats["score"], Y_all.astype(np.float64).var(axis=0, ddof=0),
                               rtol=1e-4)
    assert list(report.control_mean.columns) == list(Y.columns)


@pytest.mark.parametrize("storage", ["csr", "csc"])
def test_hvg_on_cells_matches_scanpy_seurat(storage, tmp_path):
    sc = pytest.importorskip("scanpy")
    adata = with_storage(make_cells(seed=7), storage)
    n_top = 8
    options = PseudobulkOptions(n_top_genes=n_top, hvg_on="cells", chunk_size=17)
    _, Y, report = pseudobulk(open_as(adata, "path", tmp_path), "cell_line", "drug", "ctrl",
                              options, return_report=True)
    ref = sc.pp.highly_variable_genes(adata.copy(), flavor="seurat", n_top_genes=n_top,
                                      inplace=False)
    ref.index = adata.var_names
    np.testing.assert_allclose(report.gene_stats["score"], ref["dispersions_norm"],
                               rtol=1e-4, atol=1e-6)
    # scanpy keeps every gene tied at the cut-off (genes alone in a mean bin all score
    # exactly 1); we keep exactly n_top_genes, ties broken by gene order
    picked = set(ref.index[ref["highly_variable"]])
    assert len(Y.columns) == n_top and set(Y.columns) <= picked
    cutoff = ref["dispersions_norm"].nlargest(n_top).min()
    assert {g for g in picked if ref.loc[g, "dispersions_norm"] > cutoff} <= set(Y.columns)


def test_n_top_genes_larger_than_gene_count_keeps_all():
    adata = make_cells(n_genes=6)
    with pytest.warns(PseudobulkWarning, match="n_top_genes=50 exceeds the 6 genes") as rec:
        _, Y = pseudobulk(adata, "cell_line", "drug", "ctrl",
                          options=PseudobulkOptions(n_top_genes=50))
    assert rec[0].filename == __file__
    assert list(Y.columns) == list(adata.var_names)


# ----------------------------------------------------------------------------
# Counts, transforms, gene names
# ----------------------------------------------------------------------------
def make_counts(seed=8):
    adata = make_cells(seed=seed)
    rng = np.random.default_rng(seed)
    adata.X = sp.csr_matrix(rng.poisson(np.expm1(adata.X)).astype(np.float32))
    return adata


def test_raw_counts_warn():
    adata = make_counts()
    with pytest.warns(PseudobulkWarning, match=r"looks like raw counts.*log-normalised") as rec:
        _, _, report = pseudobulk(adata, "cell_line", "drug", "ctrl", return_report=True)
    assert rec[0].filename == __file__
    assert report.looks_like_counts
    adata.X = adata.X.astype(np.int32)  # integer dtype too
    with pytest.warns(PseudobulkWarning, match="raw counts"):
        pseudobulk(adata, "cell_line", "drug", "ctrl")


@pytest.mark.parametrize("storage", ["csr", "csc", "dense"])
def test_normalize_log1p_matches_scanpy(storage, tmp_path):
    sc = pytest.importorskip("scanpy")
    adata = with_storage(make_counts(), storage)
    ref = adata.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    expected, n_cells = expected_effects(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PseudobulkWarning)  # no counts warning
        X, Y = pseudobulk(open_as(adata, "path", tmp_path), "cell_line", "drug", "ctrl",
                          PseudobulkOptions(transform="normalize_log1p", chunk_size=8,
                                            min_cells=1))
    assert_matches(X, Y, expected, n_cells, atol=1e-4)
    # plain log1p
    ref = adata.copy()
    sc.pp.log1p(ref)
    expected, n_cells = expected_effects(ref)
    X, Y = pseudobulk(adata, "cell_line", "drug", "ctrl",
                      options=PseudobulkOptions(transform="log1p", chunk_size=8))
    assert_matches(X, Y, expected, n_cells, atol=1e-4)


def test_transform_with_negative_values_errors():
    adata = make_cells()
    adata.X = adata.X - 1.0
    with pytest.raises(ValueError, match="negative values, so transform='log1p'"):
        pseudobulk(adata, "cell_line", "drug", "ctrl",
                   options=PseudobulkOptions(transform="log1p"))


def test_duplicated_gene_names_are_made_unique():
    adata = make_cells(n_genes=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata: names not unique
        adata.var_names = ["g", "h", "g", "k", "g"]
    with pytest.warns(PseudobulkWarning,
                      match=r"1 gene name\(s\) occur more than once.*'g'") as rec:
        _, Y = pseudobulk(adata, "cell_line", "drug", "ctrl")
    assert rec[0].filename == __file__
    assert list(Y.columns) == ["g", "h", "g-1", "k", "g-2"]


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------
@pytest.mark.parametrize("access", ["memory", "path"])
def test_missing_obs_key(access, tmp_path):
    source = open_as(make_cells(), access, tmp_path)
    with pytest.raises(ValueError, match=r"obs has no column 'cell_typ'.*'cell_line'"):
        pseudobulk(source, "cell_typ", "drug", "ctrl")
    with pytest.raises(ValueError, match=r"obs has no column 'dose'"):
        pseudobulk(source, "cell_line", "dose", "ctrl")


@pytest.mark.parametrize("access", ["memory", "path"])
def test_unknown_control_label(access, tmp_path):
    source = open_as(make_cells(), access, tmp_path)
    with pytest.raises(ValueError, match=r"control label\(s\) \['DMSO'\] not found.*'ctrl'"):
        pseudobulk(source, "cell_line", "drug", "DMSO")
    with pytest.raises(ValueError, match=r"\['ntc'\] not found"):
        pseudobulk(source, "cell_line", "drug", ["ctrl", "ntc"])


def test_control_label_type_matters():
    adata = make_cells()
    obs = adata.obs.copy()
    obs["drug"] = obs["drug"].map({"ctrl": 0, "p1": 1, "p2": 2, "p3": 3})
    coded = ad.AnnData(adata.X, obs=obs, var=adata.var)
    with pytest.raises(ValueError, match=r"\['0'\] not found.*e\.g\. \[0, 1, 2, 3\]"):
        pseudobulk(coded, "cell_line", "drug", "0")
    X, _ = pseudobulk(coded, "cell_line", "drug", 0)
    assert sorted(set(X["perturbation"])) == [1, 2, 3]


def test_every_label_is_a_control():
    adata = make_cells()
    with pytest.raises(ValueError, match="Every perturbation label"):
        pseudobulk(adata, "cell_line", "drug", PERTS)


@pytest.mark.parametrize("access", ["memory", "path"])
def test_non_numeric_matrix(access, tmp_path):
    adata = make_cells(n_genes=4)
    adata.layers["names"] = np.full(adata.shape, "x", dtype=object)
    source = open_as(adata, access, tmp_path) if access == "memory" else None
    if access == "path":
        path = tmp_path / "str.h5ad"
        adata.write_h5ad(path)
        source = str(path)
    with pytest.raises(TypeError, match="numeric"):
        pseudobulk(source, "cell_line", "drug", "ctrl", options=PseudobulkOptions(layer="names"))


@pytest.mark.parametrize(
    ("storage", "where"),
    [
        ("dense", r"cell 'cell5' \(row 5\), gene 'gene3' \(column 3\)"),
        ("csr", r"cell 'cell5' \(row 5\), gene 'gene3' \(column 3\)"),
        # CSC is read gene by gene: the first bad value in storage order
        ("csc", r"cell 'cell7' \(row 7\), gene 'gene1' \(column 1\)"),
    ],
)
def test_nan_in_matrix_names_the_cell(storage, where, tmp_path):
    adata = make_cells(seed=9)
    adata.X[5, 3] = np.nan
    adata.X[7, 1] = np.inf
    adata = with_storage(adata, storage)
    with pytest.raises(ValueError, match="NaN or infinite.*" + where):
        pseudobulk(open_as(adata, "path", tmp_path), "cell_line", "drug", "ctrl",
                   options=PseudobulkOptions(chunk_size=4))
    with pytest.raises(ValueError, match="NaN or infinite.*" + where):
        pseudobulk(adata, "cell_line", "drug", "ctrl")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_cells": 0}, r"'min_cells' parameter of pseudobulk must be an int in the "
                           r"range \[1, inf\)"),
        ({"min_cells": 2.5}, r"'min_cells' parameter of pseudobulk must be an int in the "
                             r"range \[1, inf\)"),
        ({"n_top_genes": 0}, r"'n_top_genes' parameter of pseudobulk must be an int in the "
                             r"range \[1, inf\) or None"),
        ({"hvg_on": "genes"}, r"'hvg_on' parameter of pseudobulk must be a str among "
                              r"\{'(cells|effects)', '(cells|effects)'\}"),
        ({"transform": "log2"}, r"'transform' parameter of pseudobulk must be a str among "
                                r"\{'(log1p|normalize_log1p)', '(log1p|normalize_log1p)'\} "
                                "or None"),
        ({"target_sum": -1}, r"'target_sum' parameter of pseudobulk must be a float in the "
                             r"range \(0.0, inf\)"),
        ({"chunk_size": 0}, r"'chunk_size' parameter of pseudobulk must be an int in the "
                            r"range \[1, inf\) or None"),
        ({"layer": "missing"}, "no layer 'missing'"),
        ({"layer": 3}, r"'layer' parameter of pseudobulk must be an instance of 'str' or None"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pseudobulk(make_cells(n_genes=4), "cell_line", "drug", "ctrl",
                   options=PseudobulkOptions(**kwargs))


def test_options_must_be_pseudobulk_options():
    with pytest.raises(ValueError, match=r"'options' parameter of pseudobulk must be an "
                                         r"instance of '\S*PseudobulkOptions' or None"):
        pseudobulk(make_cells(n_genes=4), "cell_line", "drug", "ctrl", {"min_cells": 2})


def test_bad_sources(tmp_path):
    with pytest.raises(ValueError, match="two different obs columns"):
        pseudobulk(make_cells(n_genes=3), "drug", "drug", "ctrl")
    with pytest.raises(TypeError, match=r"must be an anndata\.AnnData"):
        pseudobulk(np.zeros((3, 3)), "cell_line", "drug", "ctrl")
    with pytest.raises(FileNotFoundError, match=r"No such \.h5ad file"):
        pseudobulk(str(tmp_path / "nope.h5ad"), "cell_line", "drug", "ctrl")
    with pytest.raises(ValueError, match="is a directory"):
        pseudobulk(tmp_path, "cell_line", "drug", "ctrl")
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["X"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"does not look like an AnnData \.h5ad"):
        pseudobulk(tmp_path / "other.h5", "cell_line", "drug", "ctrl")
    path = tmp_path / "cells.h5ad"
    make_cells(n_genes=3).write_h5ad(path)
    with pytest.raises(ValueError, match=r"has no layer 'counts'; its layers are \[\]"):
        pseudobulk(path, "cell_line", "drug", "ctrl", options=PseudobulkOptions(layer="counts"))


def test_missing_anndata_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "anndata", None)
    with pytest.raises(ImportError, match=r"pip install c3tl-sklearn\[anndata\]"):
        to_anndata(pd.DataFrame({"context": ["a"], "perturbation": ["p"]}), [[1.0]])
    with pytest.raises(ImportError, match=r"c3tl-sklearn\[anndata\]"):
        pseudobulk(object(), "c", "p", "ctrl")


# ----------------------------------------------------------------------------
# to_anndata
# ----------------------------------------------------------------------------
def test_to_anndata_round_trip(tmp_path):
    adata = make_cells(seed=10)
    X, Y = pseudobulk(adata, "cell_line", "drug", "ctrl",
                      options=PseudobulkOptions(n_top_genes=10))
    out = to_anndata(X, Y)
    assert out.shape == Y.shape
    assert out.X.dtype == np.float32
    np.testing.assert_array_equal(out.X, Y.to_numpy())
    assert list(out.var_names) == list(Y.columns)
    assert list(out.obs_names) == [str(i) for i in X.index]
    assert list(out.obs["context"]) == list(X["context"])
    path = tmp_path / "pred.h5ad"
    out.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.X, Y.to_numpy())
    assert list(back.obs["perturbation"].astype(str)) == list(X["perturbation"])
    np.testing.assert_array_equal(back.obs["n_cells"], X["n_cells"])
    # arrays with explicit genes, and default names
    out2 = to_anndata(X, Y.to_numpy(), genes=list(Y.columns))
    assert list(out2.var_names) == list(Y.columns)
    assert list(to_anndata(X, Y.to_numpy()).var_names[:2]) == ["gene_0", "gene_1"]
    # X is not modified, non-string labels become strings
    X_int = pd.DataFrame({"context": [1, 2], "perturbation": [("a", 1), "b"]})
    out3 = to_anndata(X_int, np.zeros((2, 1)))
    assert list(out3.obs["perturbation"]) == ["('a', 1)", "b"]
    assert X_int["perturbation"].iloc[0] == ("a", 1)


def test_to_anndata_validates():
    X = pd.DataFrame({"context": ["A", "B"], "perturbation": ["x", "y"]})
    with pytest.raises(ValueError, match="Y_pred has 3 rows but the index table has 2"):
        to_anndata(X, np.zeros((3, 4)))
    with pytest.raises(ValueError, match="genes has 3 name\\(s\\) but Y_pred has 4"):
        to_anndata(X, np.zeros((2, 4)), genes=["a", "b", "c"])
    with pytest.raises(ValueError, match="Gene names must be unique"):
        to_anndata(X, np.zeros((2, 2)), genes=["a", "a"])
    with pytest.raises(ValueError, match="missing the column"):
        to_anndata(X.rename(columns={"context": "cell_line"}), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        to_anndata(X, np.array([[np.nan], [0.0]]))
    frame = pd.DataFrame(np.zeros((2, 2)), columns=["a", "b"])
    with pytest.raises(ValueError, match="genes differs from the columns"):
        to_anndata(X, frame, genes=["a", "c"])
    with pytest.raises(ValueError, match="X and Y_pred have different row indexes"):
        to_anndata(X, frame.set_axis([5, 6]))
    # the same labels in another order are matched by label
    swapped = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=[1, 0], columns=["a", "b"])
    np.testing.assert_array_equal(to_anndata(X, swapped).X, [[3.0, 4.0], [1.0, 2.0]])


def test_huge_label_space_path_gives_the_same_result(monkeypatch):
    """Beyond a size, pairs are counted by sorting instead of a full table."""
    import c3tl_sklearn.preprocessing._plan as pre

    counts = {(c, p): 12 for c in CONTEXTS for p in PERTS}
    counts[("A", "p2")] = 3
    adata = make_cells(counts=counts)
    with pytest.warns(PseudobulkWarning):
        X_ref, Y_ref = pseudobulk(adata, "cell_line", "drug", "ctrl")
    monkeypatch.setattr(pre, "_MAX_DENSE_PAIR_CODES", 1)
    with pytest.warns(PseudobulkWarning):
        X, Y = pseudobulk(adata, "cell_line", "drug", "ctrl")
    pd.testing.assert_frame_equal(X, X_ref)
    pd.testing.assert_frame_equal(Y, Y_ref)


def test_benchmark_generator_writes_a_readable_file(tmp_path):
    """The benchmark's chunked .h5ad writer, at a tiny size."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "pseudobulk.py"
    spec = importlib.util.spec_from_file_location("bench_pseudobulk", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = tmp_path / "bench.h5ad"
    facts = bench.generate_h5ad(path, n_cells=3000, n_genes=40, n_contexts=2,
                                n_perturbations=4, density=0.1, chunk_cells=700)
    back = ad.read_h5ad(path)
    assert back.shape == (3000, 40) and back.X.nnz == facts["nnz"]
    assert 0.05 < facts["nnz"] / (3000 * 40) < 0.2
    X, Y = pseudobulk(path, "cell_line", "drug", "control",
                      options=PseudobulkOptions(chunk_size=500))
    assert len(X) == 8 and Y.shape == (8, 40)
    expected, n_cells = expected_effects(back, controls=("control",))
    assert_matches(X, Y, expected, n_cells)


@pytest.mark.parametrize("storage, axis_length", [("csr", "cells"), ("dense", "cells"),
                                                  ("csc", "genes")])
def test_progress_is_called_after_every_block(storage, axis_length):
    adata = with_storage(make_cells(), storage)
    calls = []
    _, Y = pseudobulk(adata, "cell_line", "drug", "ctrl",
                      options=PseudobulkOptions(min_cells=1, chunk_size=7), progress=lambda done,
                      total: calls.append((done, total)))
    total = adata.n_obs if axis_length == "cells" else adata.n_vars
    done = [d for d, _ in calls]
    assert {t for _, t in calls} == {total}
    assert done == sorted(done) and done[-1] == total and len(calls) > 2
    # the hook only watches: the effects are those of a run without it
    _, Y0 = pseudobulk(adata, "cell_line", "drug", "ctrl",
                       options=PseudobulkOptions(min_cells=1, chunk_size=7))
    pd.testing.assert_frame_equal(Y, Y0)
