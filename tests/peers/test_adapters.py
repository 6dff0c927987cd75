"""The peer adapters' input preparation and output mapping, without the peers installed.

The outputs read here were written by real runs of State and CellFlow
(tests/data/peers/README.md says how); the inputs are checked against what
the peers' loaders read (State: cell_load's obs columns and split TOML;
CellFlow: obsm["X_pca"], a boolean control column, one-hot encodings).
"""

from pathlib import Path

import anndata
import numpy as np
import pandas as pd
import pytest
import tomllib

from c3tl_sklearn.datasets import make_synthetic_cells
from c3tl_sklearn.model_selection import StateSplit
from c3tl_sklearn.peers import (
    CellFlowPeer,
    PeerCells,
    StatePeer,
    StateTraining,
    read_cellflow_predictions,
    read_state_predictions,
    state_train_overrides,
)
from c3tl_sklearn.peers._cells import effects_from_cells, select_cells
from c3tl_sklearn.preprocessing import PseudobulkOptions, pseudobulk

DATA = Path(__file__).resolve().parents[1] / "data" / "peers"


@pytest.fixture(scope="module")
def adata():
    return make_synthetic_cells(3, 4, 30, n_cells=6, n_control_cells=8, random_state=0)


@pytest.fixture(scope="module")
def effects(adata):
    return pseudobulk(adata, "context", "perturbation", "control",
                      options=PseudobulkOptions(min_cells=5, transform="normalize_log1p"))


def _cells(adata, **kwargs):
    return PeerCells(adata, "context", "perturbation", "control",
                     transform="normalize_log1p", **kwargs)


def test_peer_cells_are_the_values_the_pseudobulk_averaged(adata, effects):
    X, Y = effects
    cells = _cells(adata).load(list(Y.columns))
    # mean of a pair's cells minus its context's controls is the benchmark's effect
    controls = cells.control_means()
    for i in [0, 5, 11]:
        c, p = X.at[i, "context"], X.at[i, "perturbation"]
        rows = (cells.contexts == c) & (cells.perturbations == p)
        np.testing.assert_allclose(cells.X[rows].mean(axis=0) - controls[c], Y.iloc[i],
                                   atol=1e-5)


def test_peer_cells_pool_several_control_labels_into_one(adata):
    two = adata.copy()
    labels = two.obs["perturbation"].astype(str).to_numpy().copy()
    first = np.flatnonzero(labels == "control")[::2]
    labels[first] = "NTC"
    two.obs["perturbation"] = pd.Categorical(labels)
    cells = PeerCells(two, "context", "perturbation", ["control", "NTC"]).load()
    assert cells.control == "control"
    assert (cells.perturbations == "control").sum() == 3 * 8


def test_peer_cells_errors_name_the_problem(adata):
    with pytest.raises(ValueError, match="no obs column 'line'"):
        PeerCells(adata, "line", "perturbation", "control").load()
    with pytest.raises(ValueError, match="not genes of the cells"):
        _cells(adata).load(["gene0", "nope"])
    with pytest.raises(ValueError, match="No cell has the control"):
        PeerCells(adata, "context", "perturbation", "DMSO").load()


@pytest.mark.parametrize(("field", "value", "error"), [
    ("transform", "log2", ValueError),
    ("transform", "normalise_log1p", ValueError),
    ("target_sum", 0, ValueError),
    ("target_sum", float("nan"), ValueError),
    ("layer", 3, TypeError),
])
def test_peer_cells_refuse_a_reading_the_pseudobulk_would_refuse(adata, field, value, error):
    # a misspelt transform once read the cells as log1p without a word
    with pytest.raises(error, match=f"{field}"):
        PeerCells(adata, "context", "perturbation", "control", **{field: value})


def test_transform_block_refuses_an_unknown_transform():
    from c3tl_sklearn.preprocessing._h5ad import transform_block

    block = np.ones((2, 3))
    with pytest.raises(ValueError, match="Unknown transform 'log2'"):
        transform_block(block, "log2", 1e4)
    np.testing.assert_allclose(transform_block(block, "log1p", 1e4), np.log1p(block))


def test_select_cells_takes_the_pairs_and_every_control(adata):
    cells = _cells(adata).load()
    X = pd.DataFrame({"context": ["ctx0", "ctx2"], "perturbation": ["pert1", "pert3"]})
    rows = select_cells(cells, X, "context", "perturbation")
    picked = pd.Series(list(zip(cells.contexts[rows], cells.perturbations[rows], strict=True)))
    assert picked.value_counts().to_dict() == {
        ("ctx0", "control"): 8, ("ctx1", "control"): 8, ("ctx2", "control"): 8,
        ("ctx0", "pert1"): 6, ("ctx2", "pert3"): 6}


def test_effects_from_cells_subtracts_the_controls_and_names_missing_pairs():
    X = pd.DataFrame({"context": ["a", "b"], "perturbation": ["p", "p"]})
    means = {("a", "p"): np.array([3.0, 1.0]), ("b", "p"): np.array([0.0, 0.0])}
    controls = {"a": np.array([1.0, 1.0]), "b": np.array([0.5, -0.5])}
    np.testing.assert_allclose(effects_from_cells(means, controls, X, "context", "perturbation",
                                                  "Peer"), [[2.0, 0.0], [-0.5, 0.5]])
    with pytest.raises(ValueError, match=r"no predicted cells for 1 pair.*'b', 'p'"):
        effects_from_cells({("a", "p"): means[("a", "p")]}, controls, X, "context",
                           "perturbation", "Peer")


# ---------------------------------------------------------------- State
def test_state_input_is_cell_loads_layout(adata, effects, tmp_path):
    X, Y = effects
    cells = _cells(adata).load(list(Y.columns))
    train = X[X["perturbation"] != "pert3"]
    rows = select_cells(cells, train, "context", "perturbation")
    paths = StatePeer(_cells(adata)).write_input(cells, rows, tmp_path)
    written = anndata.read_h5ad(paths["h5ad"])
    assert paths["h5ad"].name == "c3tl.h5ad"  # cell_load names the dataset after the file
    assert list(written.obs.columns) == ["perturbation", "cell_type", "batch"]
    assert sorted(written.obs["perturbation"].unique()) == ["control", "pert0", "pert1",
                                                            "pert2"]
    np.testing.assert_allclose(written.X.toarray(), cells.X[rows])
    assert list(written.var_names) == list(Y.columns)
    spec = tomllib.loads(paths["toml"].read_text())
    assert spec["datasets"]["c3tl"] == f"{paths['h5ad'].parent.resolve()}/"
    assert spec["training"] == {"c3tl": "train"}
    # the file a real State run read has the same layout (the data folder aside)
    recorded = tomllib.loads((DATA / "state_split.toml").read_text())
    assert {k: v for k, v in recorded.items() if k != "datasets"} == \
        {k: v for k, v in spec.items() if k != "datasets"}
    # and the package's StateSplit reads it: every row trains
    train_rows, test_rows = next(StateSplit(paths["toml"]).split(train))
    assert len(train_rows) == len(train) and len(test_rows) == 0


def test_state_overrides_name_the_columns_sizes_and_steps(tmp_path):
    training = StateTraining(hidden_dim=48, n_layers=3, cell_set_len=16, max_steps=7,
                             batch_size=4, lr=0.01, seed=5)
    o = state_train_overrides(toml=tmp_path / "s.toml", output_dir=tmp_path, control="NTC",
                              training=training)
    kv = dict(x.split("=", 1) for x in o if "=" in x)
    assert kv["model"] == "state_sm"
    assert kv["data.kwargs.pert_col"] == "perturbation"
    assert kv["data.kwargs.cell_type_key"] == "cell_type"
    assert kv["data.kwargs.batch_col"] == "batch"
    assert kv["data.kwargs.control_pert"] == "NTC"
    assert kv["data.kwargs.embed_key"] == "null"
    assert kv["training.max_steps"] == "7" and kv["training.train_seed"] == "5"
    assert kv["model.kwargs.hidden_dim"] == "48"
    backbone = "model.kwargs.transformer_backbone_kwargs"
    assert kv[f"{backbone}.num_hidden_layers"] == "3"
    heads = int(kv[f"{backbone}.num_attention_heads"])
    assert heads * int(kv[f"{backbone}.head_dim"]) == 48
    assert kv["use_wandb"] == "false"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_steps": 0}, "'max_steps' parameter of StateTraining"),
    ({"hidden_dim": 8.0}, "'hidden_dim' parameter"),
    ({"lr": -1e-3}, "'lr' parameter"),
    ({"seed": -1}, "'seed' parameter"),
])
def test_state_training_refuses_sizes_state_cannot_run(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StateTraining(**kwargs)


def test_state_training_stores_plain_values_and_gives_the_peers_defaults():
    t = StateTraining(hidden_dim=np.int64(32), lr=1)
    assert (type(t.hidden_dim), type(t.lr)) == (int, float)
    defaults = StatePeer().get_params()
    assert {k: defaults[k] for k in ("hidden_dim", "n_layers", "cell_set_len", "max_steps",
                                     "batch_size", "lr")} == \
        {k: getattr(StateTraining(), k) for k in ("hidden_dim", "n_layers", "cell_set_len",
                                                  "max_steps", "batch_size", "lr")}


@pytest.mark.parametrize(("peer", "kwargs", "match"), [
    (StatePeer, {"max_steps": 0}, "'max_steps' parameter of StatePeer"),
    (StatePeer, {"timeout": 0}, "'timeout' parameter"),
    (StatePeer, {"random_state": None}, "'random_state' parameter"),
    (CellFlowPeer, {"n_components": 0}, "'n_components' parameter of CellFlowPeer"),
    (CellFlowPeer, {"keep_files": "yes"}, "'keep_files' parameter"),
])
def test_peers_refuse_bad_parameters_before_looking_for_their_environment(
        adata, effects, peer, kwargs, match, tmp_path):
    X, Y = effects
    # python points nowhere: the parameter error must come first
    model = peer(_cells(adata), python=tmp_path / "no-such-env", **kwargs)
    with pytest.raises(ValueError, match=match):
        model.fit(X, Y)


def test_state_query_holds_each_contexts_controls_then_one_copy_per_pair(adata, effects,
                                                                        tmp_path):
    X, Y = effects
    cells = _cells(adata).load(list(Y.columns))
    test = X[(X["context"] == "ctx1") & X["perturbation"].isin(["pert0", "pert2"])]
    StatePeer(_cells(adata)).write_query(cells, test, tmp_path / "q.h5ad")
    query = anndata.read_h5ad(tmp_path / "q.h5ad")
    assert query.obs["perturbation"].value_counts().to_dict() == {"control": 8, "pert0": 8,
                                                                 "pert2": 8}
    assert set(query.obs["cell_type"]) == {"ctx1"}
    controls = cells.X[cells.controls_of("ctx1")]
    for label in ("control", "pert0", "pert2"):
        np.testing.assert_allclose(query.X[(query.obs["perturbation"] == label).to_numpy()]
                                   .toarray(), controls)


def test_state_predictions_recorded_from_a_real_run_map_to_pair_means():
    path = DATA / "state_predicted.h5ad"
    raw = anndata.read_h5ad(path)
    genes = list(raw.var_names)
    means = read_state_predictions(path, genes)
    assert set(means) == {("U87MG", p) for p in raw.obs["perturbation"].astype(str).unique()}
    for (_, p), mean in means.items():
        rows = (raw.obs["perturbation"].astype(str) == p).to_numpy()
        np.testing.assert_allclose(mean, np.asarray(raw.X)[rows].mean(axis=0), rtol=1e-6)
    # State predicts each perturbation differently from its controls
    treated = [p for (_, p) in means if p != "control"]
    assert not np.allclose(means[("U87MG", treated[0])], means[("U87MG", "control")])
    with pytest.raises(ValueError, match="not the 3 genes"):
        read_state_predictions(path, genes[:3])


# ---------------------------------------------------------------- CellFlow
def test_cellflow_input_is_pca_of_the_training_cells_with_one_hot_conditions(adata, effects,
                                                                             tmp_path):
    from sklearn.decomposition import PCA

    X, Y = effects
    cells = _cells(adata).load(list(Y.columns))
    rows = select_cells(cells, X[X["perturbation"] != "pert3"], "context", "perturbation")
    peer = CellFlowPeer(_cells(adata), n_components=5)
    path = peer.write_input(cells, rows, tmp_path)
    written = anndata.read_h5ad(path)
    scores = written.obsm["X_pca"]
    assert scores.shape == (rows.size, 5)
    # the kept loadings and mean are those of the scores: orthonormal components, the
    # training cells' gene means, and scores that are the centred cells projected on them
    np.testing.assert_allclose(peer.pca_components_ @ peer.pca_components_.T, np.eye(5),
                               atol=1e-4)
    np.testing.assert_allclose(peer.pca_mean_, cells.X[rows].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(scores, (cells.X[rows] - peer.pca_mean_) @ peer.pca_components_.T,
                               atol=1e-3)
    # and they span (nearly) the leading principal subspace
    reference = PCA(5, svd_solver="full").fit(cells.X[rows])
    overlap = np.linalg.svd(peer.pca_components_ @ reference.components_.T,
                            compute_uv=False)
    assert overlap.min() > 0.9
    is_control = written.obs["control"].to_numpy()
    assert is_control.dtype == bool and is_control.sum() == 3 * 8
    assert list(written.obs["perturbation"].cat.categories) == ["pert0", "pert1", "pert2"]
    for key, labels in (("pert_emb", ["pert0", "pert1", "pert2"]),
                        ("ctx_emb", ["ctx0", "ctx1", "ctx2"])):
        emb = written.uns[key]
        assert sorted(emb) == labels
        np.testing.assert_array_equal(np.vstack([emb[k] for k in labels]), np.eye(len(labels)))


def test_cellflow_query_holds_controls_in_the_same_pca_space(adata, effects, tmp_path):
    X, Y = effects
    cells = _cells(adata).load(list(Y.columns))
    peer = CellFlowPeer(_cells(adata), n_components=4)
    peer.write_input(cells, select_cells(cells, X, "context", "perturbation"), tmp_path)
    test = X[X["context"] == "ctx2"].head(2)
    pairs = peer.write_query(cells, test, tmp_path)
    query = anndata.read_h5ad(tmp_path / "query.h5ad")
    assert query.obs["control"].all() and set(query.obs["context"]) == {"ctx2"}
    controls = cells.X[cells.controls_of("ctx2")]
    np.testing.assert_allclose(query.obsm["X_pca"],
                               (controls - peer.pca_mean_) @ peer.pca_components_.T, atol=1e-4)
    assert pairs.values.tolist() == test[["context", "perturbation"]].values.tolist()
    with pytest.raises(ValueError, match="no encoding for perturbation"):
        peer.write_query(cells, pd.DataFrame({"context": ["ctx2"], "perturbation": ["pertX"]}),
                         tmp_path)


def test_cellflow_predictions_recorded_from_a_real_run_map_back_to_genes():
    pairs = pd.read_csv(DATA / "cellflow_conditions.csv", dtype=str)
    with np.load(DATA / "cellflow_predicted.npz") as data:
        scores = {k: data[k] for k in data.files}
    k = scores["pair0"].shape[1]
    rng = np.random.default_rng(0)
    components, mean = rng.standard_normal((k, 7)), rng.standard_normal(7)
    means = read_cellflow_predictions(DATA / "cellflow_predicted.npz", pairs, components, mean)
    assert list(means) == list(zip(pairs["context"], pairs["perturbation"], strict=True))
    for i, key in enumerate(means):
        genes = scores[f"pair{i}"].astype(np.float64) @ components + mean  # cell by cell
        np.testing.assert_allclose(means[key], genes.mean(axis=0), rtol=1e-10)
    with pytest.raises(ValueError, match="has shape"):
        read_cellflow_predictions(DATA / "cellflow_predicted.npz", pairs, components[:3], mean)
    more = pd.concat([pairs, pairs.head(1)], ignore_index=True)
    with pytest.raises(ValueError, match="no prediction for"):
        read_cellflow_predictions(DATA / "cellflow_predicted.npz", more, components, mean)
