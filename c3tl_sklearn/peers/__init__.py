"""The paper's peers, State and CellFlow, run beside C3TL on the same cells and splits.

Each peer is a scikit-learn regressor over the package's contract
(:class:`StatePeer`, :class:`CellFlowPeer`), so ``c3tl benchmark --models
c3tl,state,cellflow,additive`` fits, predicts and scores it in the same table
as C3TL and the baselines. Underneath, the adapter writes the peer's own
input from the single cells (:class:`PeerCells`), runs the peer as a
subprocess in its own virtual environment, and maps its predicted cells back
to pseudo-bulk effects against the same control cells the benchmark's
:func:`~c3tl_sklearn.preprocessing.pseudobulk` used. Wall time and peak
resident memory of every subprocess are recorded (:func:`run_measured`);
:class:`IsolatedRegressor` measures C3TL and the baselines the same way.

The peers are licensed for non-commercial use only (State: CC BY-NC-SA 4.0,
CellFlow: PolyForm Noncommercial 1.0.0). They are never dependencies of
c3tl-sklearn: ``c3tl peers install state`` (or :func:`install_peer`) creates
an environment for one on request, or point to your own with
``--state-python`` / ``C3TL_STATE_PYTHON`` (``cellflow`` likewise).
"""

from .._lazy import lazy_exports

# name -> submodule, imported on first use: `c3tl peers list` needs only the environments,
# not the adapters' pandas, scikit-learn and anndata
_EXPORTS = {
    "CellFlowPeer": "_cellflow",
    "read_cellflow_predictions": "_cellflow",
    "CellData": "_cells",
    "PeerCells": "_cells",
    "PEERS": "_env",
    "PeerEnvironmentError": "_env",
    "find_peer_python": "_env",
    "install_peer": "_env",
    "peer_home": "_env",
    "IsolatedRegressor": "_isolated",
    "PeerRegressor": "_peer",
    "PeerRunError": "_process",
    "RunStats": "_process",
    "run_measured": "_process",
    "StatePeer": "_state",
    "StateTraining": "_state",
    "read_state_predictions": "_state",
    "state_train_overrides": "_state",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
