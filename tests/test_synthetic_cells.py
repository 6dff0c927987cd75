"""make_synthetic_cells: shapes, labels, counts, determinism, and effects that are not additive."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c3tl_sklearn.datasets import CellDesign, make_synthetic_cells
from c3tl_sklearn.preprocessing import PseudobulkOptions, pseudobulk

# the generator draws raw counts
RAW = PseudobulkOptions(transform="normalize_log1p")

shapes = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(2, 30), st.integers(1, 6),
                   st.integers(1, 8))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_shape_labels_and_counts(shape, seed):
    n_ctx, n_pert, n_genes, n_cells, n_ctrl = shape
    X, obs, genes = make_synthetic_cells(n_ctx, n_pert, n_genes, n_cells=n_cells,
                                         n_control_cells=n_ctrl,
                                         design=CellDesign(n_programs=3,
                                                           programs_per_perturbation=2),
                                         as_anndata=False, random_state=seed)
    assert X.shape == (n_ctx * (n_pert * n_cells + n_ctrl), n_genes)
    assert list(genes) == [f"gene{j}" for j in range(n_genes)]
    assert len(obs) == X.shape[0] and obs.index.is_unique
    counts = obs.groupby(["context", "perturbation"], observed=True).size()
    for c in range(n_ctx):
        assert counts[(f"ctx{c}", "control")] == n_ctrl
        for p in range(n_pert):
            assert counts[(f"ctx{c}", f"pert{p}")] == n_cells
    assert (obs["batch"].astype(str) == obs["context"].astype(str)).all()
    values = X.data
    assert values.dtype == np.float32
    assert (values > 0).all() and np.array_equal(values, np.round(values))


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_same_seed_same_cells_other_seed_other_cells(seed):
    kwargs = dict(n_cells=3, design=CellDesign(n_programs=4), as_anndata=False)
    a = make_synthetic_cells(2, 3, 20, random_state=seed, **kwargs)[0]
    b = make_synthetic_cells(2, 3, 20, random_state=seed, **kwargs)[0]
    c = make_synthetic_cells(2, 3, 20, random_state=seed + 1, **kwargs)[0]
    assert (a != b).nnz == 0
    assert (a != c).nnz > 0


def test_anndata_and_default_control_count():
    adata = make_synthetic_cells(2, 3, 40, n_cells=4, random_state=0)
    assert adata.shape == (2 * (3 * 4 + 8), 40)
    assert list(adata.obs.columns) == ["context", "perturbation", "batch"]
    assert adata.obs["perturbation"].cat.categories[0] == "control"


def test_effects_are_not_additive_in_context_and_perturbation():
    # the pseudo-bulk effects need a context x perturbation interaction: an additive
    # model (perturbation mean + context offset) leaves a large part unexplained
    adata = make_synthetic_cells(6, 20, 300, n_cells=200, n_control_cells=400,
                                 design=CellDesign(interaction=0.0), random_state=0)
    _, Y = pseudobulk(adata, "context", "perturbation", "control", RAW)
    E = Y.to_numpy(dtype=np.float64).reshape(6, 20, 300)
    additive = E.mean(axis=0, keepdims=True) + E.mean(axis=1, keepdims=True) \
        - E.mean(axis=(0, 1), keepdims=True)
    residual = ((E - additive) ** 2).sum() / ((E - E.mean()) ** 2).sum()
    assert residual > 0.2
    # the interaction comes from the contexts' program sensitivities: without them the
    # effects are (up to the counts' nonlinearity and noise) additive
    flat = make_synthetic_cells(6, 20, 300, n_cells=200, n_control_cells=400,
                                design=CellDesign(interaction=0.0, sensitivity_scale=0.0,
                                                  inactive_fraction=0.0), random_state=0)
    F = pseudobulk(flat, "context", "perturbation", "control", RAW)[1].to_numpy(
        dtype=np.float64).reshape(6, 20, 300)
    additive_f = F.mean(axis=0, keepdims=True) + F.mean(axis=1, keepdims=True) \
        - F.mean(axis=(0, 1), keepdims=True)
    assert ((F - additive_f) ** 2).sum() / ((F - F.mean()) ** 2).sum() < 0.1
    # and the effects are mostly signal: two random halves of the cells give nearly the
    # same effects (a noise-dominated draw would not)
    half = np.random.default_rng(0).random(adata.n_obs) < 0.5
    E1, E2 = (pseudobulk(adata[h].copy(), "context", "perturbation", "control", RAW)[1]
              .to_numpy(dtype=np.float64) for h in (half, ~half))
    assert np.corrcoef(E1.ravel(), E2.ravel())[0, 1] > 0.9


def test_null_perturbations_have_no_effect_beyond_noise():
    adata = make_synthetic_cells(2, 6, 200, n_cells=300, n_control_cells=300,
                                 design=CellDesign(null_fraction=1.0, interaction=0.0),
                                 random_state=1)
    _, Y = pseudobulk(adata, "context", "perturbation", "control", RAW)
    busy = make_synthetic_cells(2, 6, 200, n_cells=300, n_control_cells=300,
                                design=CellDesign(null_fraction=0.0, interaction=0.0),
                                random_state=1)
    _, Yb = pseudobulk(busy, "context", "perturbation", "control", RAW)
    assert np.abs(Y.to_numpy()).mean() < 0.3 * np.abs(Yb.to_numpy()).mean()


@pytest.mark.parametrize("kwargs, match", [
    ({"n_contexts": 0}, "n_contexts"),
    ({"n_genes": 1}, "n_genes"),
    ({"n_cells": 2.5}, "n_cells"),
])
def test_bad_parameters_are_refused_with_the_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_cells(**{"n_contexts": 2, "n_perturbations": 3, "n_genes": 10,
                                "n_cells": 2, **kwargs})


@pytest.mark.parametrize("kwargs, match", [
    ({"n_programs": 0}, "n_programs"),
    ({"programs_per_perturbation": 40}, "exceeds n_programs"),
    ({"effect_scale": True}, "effect_scale"),
    ({"inactive_fraction": 1.5}, "inactive_fraction"),
    ({"dispersion": -1}, "dispersion"),
    ({"library_size": 0}, "library_size"),
    ({"inactive_fraction": True}, "inactive_fraction"),
    ({"null_fraction": float("nan")}, "null_fraction"),
    ({"library_size": True}, "library_size"),
])
def test_bad_designs_are_refused_with_the_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CellDesign(**kwargs)


def test_a_design_stores_its_checked_values_as_plain_numbers():
    d = CellDesign(n_programs=np.int64(12), inactive_fraction=np.float32(0.25), library_size=500)
    assert (type(d.n_programs), type(d.inactive_fraction), type(d.library_size)) == \
        (int, float, float)
    assert d == CellDesign(n_programs=12, inactive_fraction=0.25, library_size=500.0)


def test_a_control_label_that_is_a_perturbation_is_refused():
    with pytest.raises(ValueError, match="also a perturbation"):
        make_synthetic_cells(2, 3, 10, n_cells=2, design=CellDesign(control_label="pert0"))
    with pytest.raises(TypeError, match="design must be a CellDesign"):
        make_synthetic_cells(2, 3, 10, n_cells=2, design={"interaction": 0.0})


def test_labels_are_categorical_in_order():
    _, obs, _ = make_synthetic_cells(2, 2, 5, n_cells=1, n_control_cells=1, as_anndata=False,
                                     random_state=0)
    assert obs["context"].tolist() == ["ctx0"] * 3 + ["ctx1"] * 3
    assert obs["perturbation"].tolist() == ["control", "pert0", "pert1"] * 2
    assert isinstance(obs["perturbation"].dtype, pd.CategoricalDtype)
