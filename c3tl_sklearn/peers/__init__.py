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

from ._cellflow import CellFlowPeer, read_cellflow_predictions
from ._cells import CellData, PeerCells
from ._env import PEERS, PeerEnvironmentError, find_peer_python, install_peer, peer_home
from ._isolated import IsolatedRegressor
from ._peer import PeerRegressor
from ._process import PeerRunError, RunStats, run_measured
from ._state import StatePeer, StateTraining, read_state_predictions, state_train_overrides

__all__ = [
    "PEERS",
    "CellData",
    "CellFlowPeer",
    "IsolatedRegressor",
    "PeerCells",
    "PeerEnvironmentError",
    "PeerRegressor",
    "PeerRunError",
    "RunStats",
    "StatePeer",
    "StateTraining",
    "find_peer_python",
    "install_peer",
    "peer_home",
    "read_cellflow_predictions",
    "read_state_predictions",
    "run_measured",
    "state_train_overrides",
]
