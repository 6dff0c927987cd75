"""What the benchmark compares: the model registry, the metrics and the tuning objectives."""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["METRICS", "MODELS", "PEER_MODELS", "make_model"]

#: Model names accepted by ``--models`` and :func:`run_benchmark`, with labels.
MODELS: dict[str, str] = {
    "c3tl": "C3TL",
    "mean": "Mean baseline",
    "closest": "Closest context",
    "additive": "Additive",
    "linear": "Linear transfer",
}

#: The paper's peers (:mod:`c3tl_sklearn.peers`): they train on single cells (``--h5ad``)
#: in their own environments, so ``--models all`` does not include them; name them.
PEER_MODELS: dict[str, str] = {
    "state": "State",
    "cellflow": "CellFlow",
}

#: Every model name the benchmark accepts, with its label.
MODEL_LABELS: dict[str, str] = {**MODELS, **PEER_MODELS}

#: Metrics computed on every split (columns of :func:`~c3tl_sklearn.metrics.score_table`).
METRICS: tuple[str, ...] = (
    "pearson_delta",
    "centered_pearson_delta",
    "discrimination_score",
    "top_k_overlap",
    "mse",
)

_METRIC_LABELS = {
    "pearson_delta": "Pearson Δ",
    "centered_pearson_delta": "Centred Pearson Δ",
    "discrimination_score": "Discrimination",
    "top_k_overlap": "Top-{k} overlap",
    "mse": "MSE",
}
_LOWER_IS_BETTER = {"mse"}
_TUNE_METRICS = {
    "pearson_delta": "pearson_delta",
    "centered_pearson_delta": "centered_pearson_delta",
    "discrimination_score": "discrimination_score",
    "top_k_overlap": "top_k_overlap",
    "mse": "neg_mean_squared_error",
    "neg_mean_squared_error": "neg_mean_squared_error",
}


def make_model(
    name: str,
    params: dict | None = None,
    *,
    labels: dict[str, Hashable] | None = None,
    max_epochs: int | None = None,
    device: str = "cpu",
    random_state: int | None = 0,
    cells=None,
    peer_options: dict | None = None,
):
    """Build one of the benchmark's models.

    Parameters
    ----------
    name : {"c3tl", "mean", "closest", "additive", "linear"}
        Model name (see :data:`MODELS`).
    params : dict, optional
        Parameters set on the model (for example tuned ones).
    labels : dict, optional
        ``{"context_col": ..., "perturbation_col": ...}``, the label columns of
        the index table (:attr:`BenchmarkConfig.labels`); default ``"context"``
        and ``"perturbation"``.
    max_epochs : int, optional
        Overrides C3TL's ``max_epochs`` (quick runs).
    device : str, default="cpu"
        C3TL's torch device.
    random_state : int or None, default=0
        C3TL's seed (and the peers').
    cells : c3tl_sklearn.peers.PeerCells, optional
        The single cells behind the effects; the peers (``"state"``,
        ``"cellflow"``, see :data:`PEER_MODELS`) need them.
    peer_options : dict, optional
        ``{peer: {param: value}}`` set on a peer (its environment,
        ``max_steps``, ...).

    Returns
    -------
    estimator : estimator
        An unfitted estimator.

    Examples
    --------
    >>> from c3tl_sklearn.cli import make_model
    >>> make_model("additive", {"shrinkage": 0.5})
    AdditiveBaseline(shrinkage=0.5)
    """
    labels = {"context_col": "context", "perturbation_col": "perturbation", **(labels or {})}
    if name in PEER_MODELS:
        from .. import peers

        if cells is None:
            raise ValueError(
                f"{PEER_MODELS[name]} trains on single cells: give the cells with --h5ad (and "
                "--context-key, --perturbation-key, --control), or cells=PeerCells(...) in "
                "Python."
            )
        cls = {"state": peers.StatePeer, "cellflow": peers.CellFlowPeer}[name]
        model = cls(cells, **labels, random_state=0 if random_state is None else random_state)
        model.set_params(**(peer_options or {}).get(name, {}))
    elif name == "c3tl":
        from ..estimator import C3TLRegressor

        model = C3TLRegressor(**labels, device=device, random_state=random_state)
        if max_epochs is not None:
            model.set_params(max_epochs=int(max_epochs))
    else:
        from .. import baselines

        classes = {
            "mean": baselines.MeanBaseline,
            "closest": baselines.ClosestContextBaseline,
            "additive": baselines.AdditiveBaseline,
            "linear": baselines.LinearTransferBaseline,
        }
        if name not in classes:
            raise ValueError(f"Unknown model {name!r}; choose from {sorted(MODELS)}.")
        model = classes[name](**labels)
    if params:
        model.set_params(**params)
    return model


def _metric_label(metric: str, k: int) -> str:
    return _METRIC_LABELS[metric].format(k=k)


def _tune_scoring(tune_metric: str, k: int):
    """The search's ``scoring`` for a metric name (``run_benchmark`` validated it)."""
    name = _TUNE_METRICS[tune_metric]
    if name == "top_k_overlap":
        from ..metrics import make_row_scorer, top_k_overlap

        return {name: make_row_scorer(top_k_overlap, k=k)}
    return name
