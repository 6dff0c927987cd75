"""State (Arc Institute's state transition model) as a peer: its h5ad layout, split TOML, CLI.

``fit`` writes the training cells (the training pairs' cells and every
control cell) as one ``.h5ad`` in the layout State's data loader
(``cell_load``) reads: expression in ``X`` (CSR, the benchmark's values),
``obs`` columns ``perturbation``, ``cell_type`` (the context), ``batch`` and
``control`` for the control cells; a State split TOML
(:class:`~c3tl_sklearn.model_selection.StateSplit` writes it) sends every
context to training. Then ``state tx train`` runs with ``model=state_sm``
shrunk by the size parameters. ``predict`` writes, for every pair to
predict, copies of its context's control cells labelled with the
perturbation, and ``state tx infer`` replaces their expression by State's
prediction; those cells, averaged per pair minus the observed controls, are
the predicted effects.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils._param_validation import Interval, validate_parameter_constraints

from ._cells import CellData
from ._peer import PeerRegressor, _pair_means
from ._process import RunStats

__all__ = ["StatePeer", "StateTraining", "state_train_overrides"]

_DATASET = "c3tl"
_OBS = {"perturbation": "perturbation", "context": "cell_type", "batch": "batch"}


@dataclass(frozen=True)
class StateTraining:
    """The size and the schedule of a State run: :class:`StatePeer`'s training parameters.

    Parameters
    ----------
    hidden_dim, n_layers, cell_set_len, max_steps, batch_size, lr
        See :class:`StatePeer` (defaults as there).
    seed : int, default=0
        State's ``training.train_seed`` (the peer's ``random_state``).
    """

    hidden_dim: int = 64
    n_layers: int = 2
    cell_set_len: int = 32
    max_steps: int = 400
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        validate_parameter_constraints(
            _TRAINING_CONSTRAINTS,
            {f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
            caller_name="StateTraining",
        )
        for f in dataclasses.fields(self):  # plain values for State's command line
            object.__setattr__(self, f.name, float(getattr(self, f.name)) if f.name == "lr"
                               else int(getattr(self, f.name)))


_POSITIVE_INT = [Interval(Integral, 1, None, closed="left")]
_TRAINING_CONSTRAINTS = {
    **{name: _POSITIVE_INT for name in ("hidden_dim", "n_layers", "cell_set_len", "max_steps",
                                        "batch_size")},
    "lr": [Interval(Real, 0, None, closed="neither")],
    "seed": [Interval(Integral, 0, None, closed="left")],
}
_TRAINING = StateTraining()  # StatePeer's defaults are these


def state_train_overrides(*, toml: str | os.PathLike, output_dir: str | os.PathLike,
                          control: str, training: StateTraining) -> list[str]:
    """The Hydra overrides of ``state tx train`` for a small CPU-sized ``state_sm``.

    Parameters
    ----------
    toml, output_dir : path
        The split file and the run's parent folder (the run is ``output_dir/run``).
    control : str
        Control label of ``obs["perturbation"]``.
    training : StateTraining
        The model's size and the training schedule.

    Returns
    -------
    overrides : list of str

    Examples
    --------
    >>> from c3tl_sklearn.peers import StateTraining, state_train_overrides
    >>> o = state_train_overrides(toml="s.toml", output_dir="out", control="ctrl",
    ...                           training=StateTraining(cell_set_len=16, max_steps=40))
    >>> [x for x in o if x.startswith("training.max_steps")]
    ['training.max_steps=40']
    """
    t = training
    hidden_dim, n_layers, max_steps = t.hidden_dim, t.n_layers, t.max_steps
    heads = 4 if hidden_dim % 4 == 0 else 1
    backbone = "model.kwargs.transformer_backbone_kwargs"
    return [
        "model=state_sm",
        f"data.kwargs.toml_config_path={Path(toml).resolve()}",
        "data.kwargs.embed_key=null",  # the expression in X, not an embedding
        "data.kwargs.output_space=all",  # predict every gene given
        f"data.kwargs.pert_col={_OBS['perturbation']}",
        f"data.kwargs.cell_type_key={_OBS['context']}",
        f"data.kwargs.batch_col={_OBS['batch']}",
        f"data.kwargs.control_pert={control}",
        "data.kwargs.num_workers=0",  # one process: its peak memory is the whole cost
        "data.kwargs.pin_memory=false",
        f"training.max_steps={max_steps}",
        f"training.val_freq={max_steps}",
        f"training.ckpt_every_n_steps={max_steps}",
        f"training.batch_size={t.batch_size}",
        f"training.lr={t.lr}",
        f"training.train_seed={t.seed}",
        "training.devices=1",
        f"model.kwargs.hidden_dim={hidden_dim}",
        f"model.kwargs.cell_set_len={t.cell_set_len}",
        f"model.kwargs.n_encoder_layers={n_layers}",
        f"model.kwargs.n_decoder_layers={n_layers}",
        f"{backbone}.num_hidden_layers={n_layers}",
        f"{backbone}.intermediate_size={4 * hidden_dim}",
        f"{backbone}.num_attention_heads={heads}",
        f"{backbone}.num_key_value_heads={heads}",
        f"{backbone}.head_dim={hidden_dim // heads}",
        "model.device=cpu",
        "use_wandb=false",
        "wandb.tags=[]",
        f"output_dir={Path(output_dir).resolve()}",
        "name=run",
        "overwrite=true",
    ]


def _write_cells(path: Path, X: np.ndarray, contexts, perturbations, genes,
                 obs_names=None) -> None:
    import anndata

    obs = pd.DataFrame({
        _OBS["perturbation"]: pd.Categorical(np.asarray(perturbations, dtype=str)),
        _OBS["context"]: pd.Categorical(np.asarray(contexts, dtype=str)),
        _OBS["batch"]: pd.Categorical(np.asarray(contexts, dtype=str)),
    }, index=obs_names if obs_names is not None else [f"c{i}" for i in range(len(X))])
    adata = anndata.AnnData(sparse.csr_matrix(X, dtype=np.float32), obs=obs,
                            var=pd.DataFrame(index=pd.Index(list(map(str, genes)))))
    path.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(path)


class StatePeer(PeerRegressor):
    """State's state transition model (``arc-state``), trained and run in its own environment.

    Parameters
    ----------
    cells : PeerCells
        The single cells behind the benchmark's effects.
    context_col, perturbation_col : hashable, default="context", "perturbation"
        Label columns of the index tables.
    python : path, optional
        Interpreter or virtual environment with ``arc-state``; ``None`` uses
        ``C3TL_STATE_PYTHON`` or ``~/.cache/c3tl/peers/state`` (``c3tl peers
        install state`` creates it).
    hidden_dim : int, default=64
        Width of State's transformer (``state_sm`` has 672; CPU-sized here).
    n_layers : int, default=2
        Transformer, encoder and decoder layers (``state_sm``: 4).
    cell_set_len : int, default=32
        Cells per set (State's "sentence"; ``state_sm``: 128).
    max_steps : int, default=400
        Optimiser steps.
    batch_size : int, default=8
        Sets per step.
    lr : float, default=1e-3
        Learning rate.
    workdir : path, optional
        Parent folder of the work folder (default: the system's temporary folder).
    keep_files : bool, default=False
        Keep the work folder (input, model, logs, predictions).
    timeout : float, optional
        Seconds before a State command is stopped.
    random_state : int, default=0
        State's training and control-sampling seed.

    Notes
    -----
    State is licensed CC BY-NC-SA 4.0 (non-commercial); it is never a
    dependency of this package. Its run needs ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
    for ``state tx infer`` (set here), as its checkpoints hold more than
    tensors.
    """

    peer = "state"

    _parameter_constraints: dict = {
        **PeerRegressor._parameter_constraints,
        **{name: rule for name, rule in _TRAINING_CONSTRAINTS.items() if name != "seed"},
    }

    def __init__(self, cells=None, *, context_col="context", perturbation_col="perturbation",
                 python=None, hidden_dim: int = _TRAINING.hidden_dim,
                 n_layers: int = _TRAINING.n_layers, cell_set_len: int = _TRAINING.cell_set_len,
                 max_steps: int = _TRAINING.max_steps, batch_size: int = _TRAINING.batch_size,
                 lr: float = _TRAINING.lr, workdir=None, keep_files: bool = False,
                 timeout: float | None = None, random_state: int = 0):
        self._common_init(cells, context_col, perturbation_col, python, workdir, keep_files,
                          timeout, random_state)
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.cell_set_len = cell_set_len
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr

    def _state(self) -> list[str]:
        return [os.fspath(self.python_), "-m", "state"]

    def write_input(self, cells: CellData, rows: np.ndarray, workdir: Path) -> dict:
        """Write State's training input: the cells' h5ad and the split TOML.

        Returns
        -------
        paths : dict
            ``"h5ad"``, ``"toml"`` and ``"output_dir"``.
        """
        from ..model_selection import StateSplit

        data_dir = workdir / "data"
        h5ad = data_dir / f"{_DATASET}.h5ad"
        _write_cells(h5ad, cells.X[rows], cells.contexts[rows], cells.perturbations[rows],
                     cells.genes)
        # every context trains: the pairs to predict are not in this file, and State's few-shot
        # and zero-shot sections only move rows of the file out of training
        spec = {"datasets": {_DATASET: f"{data_dir.resolve()}/"},
                "training": {_DATASET: "train"}, "zeroshot": {}, "fewshot": {}}
        toml = workdir / "split.toml"
        StateSplit(spec, dataset=_DATASET).to_toml(toml)
        return {"h5ad": h5ad, "toml": toml, "output_dir": workdir / "model"}

    def _fit_peer(self, cells, rows, X, workdir) -> RunStats:
        paths = self.write_input(cells, rows, workdir)
        training = StateTraining(
            hidden_dim=self.hidden_dim, n_layers=self.n_layers, cell_set_len=self.cell_set_len,
            max_steps=self.max_steps, batch_size=self.batch_size, lr=self.lr,
            seed=self.random_state,
        )
        overrides = state_train_overrides(toml=paths["toml"], output_dir=paths["output_dir"],
                                          control=cells.control, training=training)
        self.run_dir_ = paths["output_dir"] / "run"
        return self._run([*self._state(), "tx", "train", *overrides],
                         log=workdir / "train.log", what="training")

    def write_query(self, cells: CellData, X: pd.DataFrame, path: Path) -> None:
        """The cells ``state tx infer`` transforms.

        Per context of ``X``: its control cells (``state tx infer`` draws the
        basal cells of a set from the controls of the same cell type, and
        leaves a group without controls unchanged), then, per pair, one copy
        of those controls labelled with the perturbation.
        """
        blocks, ctx, pert = [], [], []
        frame = pd.DataFrame({"c": X[self.context_col].astype(str).to_numpy(),
                              "p": X[self.perturbation_col].astype(str).to_numpy()})
        for c, group in frame.groupby("c", sort=False):
            rows = cells.controls_of(c)
            for label in [cells.control, *pd.unique(group["p"])]:
                blocks.append(cells.X[rows])
                ctx += [c] * rows.size
                pert += [label] * rows.size
        _write_cells(path, np.vstack(blocks), ctx, pert, cells.genes)

    def _predict_peer(self, cells, X, workdir):
        query = workdir / "query.h5ad"
        output = workdir / "predicted.h5ad"
        self.write_query(cells, X, query)
        checkpoint = self.run_dir_ / "checkpoints" / "final.ckpt"
        stats = self._run(
            [*self._state(), "tx", "infer", "--model-dir", os.fspath(self.run_dir_),
             "--checkpoint", os.fspath(checkpoint), "--adata", os.fspath(query),
             "--output", os.fspath(output), "--pert-col", _OBS["perturbation"],
             "--celltype-col", _OBS["context"], "--batch-col", _OBS["batch"],
             "--control-pert", cells.control, "--seed", str(int(self.random_state))],
            log=workdir / "infer.log", env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"},
            what="inference",
        )
        return read_state_predictions(output, self.genes_), stats


def read_state_predictions(path: str | os.PathLike, genes) -> dict:
    """Mean predicted cell per (context, perturbation) from ``state tx infer``'s output.

    Parameters
    ----------
    path : path
        The ``.h5ad`` that ``state tx infer --output`` wrote.
    genes : sequence of str
        The genes expected, in order.

    Returns
    -------
    means : dict
        ``(context, perturbation)`` to the mean predicted expression (float64).

    Raises
    ------
    ValueError
        When the file's genes differ from ``genes``.
    """
    import anndata

    adata = anndata.read_h5ad(path)
    names = pd.Index(adata.var_names).astype(str)
    if list(names) != list(map(str, genes)):
        raise ValueError(f"{path}: State's predictions have {len(names)} genes that are not "
                         f"the {len(genes)} genes it was trained on.")
    X = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    return _pair_means(X, adata.obs[_OBS["context"]], adata.obs[_OBS["perturbation"]])
