"""The skorch side of C3TLRegressor: its net (observation store, weighted loss) and batches.

:class:`~c3tl_sklearn.estimator.C3TLRegressor` holds the labels, validation and
the read-out; :class:`~c3tl_sklearn.network.C3TLNetwork` the torch module;
this module what skorch's ``fit`` loop needs between the two.
"""

from __future__ import annotations

import torch
from skorch import NeuralNetRegressor
from skorch.dataset import Dataset

from .network import CONTEXT, C3TLNetwork

__all__ = ["C3TLNet", "TensorBatchIterator"]


class TensorBatchIterator:
    """Batches of a skorch ``Dataset`` of arrays by tensor indexing.

    skorch's default ``DataLoader`` fetches rows one by one and collates them,
    a Python loop over pairs every epoch. The pair table and effects here are
    plain arrays, so one ``randperm`` and one gather per batch do the same
    work; a full batch is handed over without any copy.

    With ``group_col``, rows sharing a value in that column of ``X`` (a
    non-negative integer code, here the perturbation code) always land in the
    same batch: groups are shuffled and packed into ``ceil(n / batch_size)``
    batches of about equal size, a batch closing with the group that reaches
    its share.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = False,
                 group_col: int | None = None):
        self.X = torch.as_tensor(dataset.X)
        self.y = None if dataset.y is None else torch.as_tensor(dataset.y)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.group_col = group_col

    def __len__(self) -> int:
        return -(-len(self.X) // self.batch_size)

    def __iter__(self):
        n = len(self.X)
        if self.batch_size >= n:
            yield self.X, self.y
            return
        if self.group_col is None:
            order = torch.randperm(n) if self.shuffle else torch.arange(n)
            batches = order.split(self.batch_size)
        else:
            batches = self._group_batches()
        for idx in batches:
            yield self.X[idx], None if self.y is None else self.y[idx]

    def _group_batches(self) -> tuple[torch.Tensor, ...]:
        group = self.X[:, self.group_col].long()  # integer codes; unused codes are empty
        n_groups = int(group.max()) + 1
        rank = torch.randperm(n_groups) if self.shuffle else torch.arange(n_groups)
        sizes = torch.bincount(rank[group], minlength=n_groups)  # by position in the order
        starts = torch.cumsum(sizes, 0) - sizes
        # equal shares rather than full batches and a runt: every step then
        # sees context codes averaged over about as many pairs
        n = len(self.X)
        share = -(-n // -(-n // self.batch_size))
        batch_of_group = starts // share
        batch = batch_of_group[rank[group]]
        order = torch.argsort(batch * n_groups + rank[group], stable=True)
        counts = torch.bincount(batch)
        return order.split(counts[counts > 0].tolist())


class C3TLNet(NeuralNetRegressor):
    """skorch's regressor for :class:`C3TLNetwork`: an observation store and a weighted loss.

    The observations the network encodes from (``(x, context, perturbation)``)
    are fitted state, not a parameter: :meth:`set_observations` keeps them in
    ``observations_`` (out of ``get_params()``) and puts them in the module;
    every module skorch initialises afterwards gets the same ones, so a later
    ``initialize()`` never brings back an earlier set. A net without a store
    (one loaded from a file, whose module state holds the observations) keeps
    those of the module it replaces.

    ``context_weight`` (a tensor with one weight per context code, or
    ``None``) rescales each pair's mean squared error over genes by its
    context's weight, so that sparsely measured contexts are not drowned out
    by densely measured ones.
    """

    def __init__(self, *args, context_weight=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.context_weight = context_weight

    def initialize_for_prediction(self) -> C3TLNet:
        """``initialize()`` without the optimizer, which is made when first used.

        Loading a model file rebuilds its net this way: predicting needs no
        optimizer, and torch's first one imports ``torch._dynamo``, which
        costs a ``c3tl predict`` about as much as torch itself. Training,
        ``set_params`` of the optimizer and pickling work as on any net.
        """
        self._optimizer_deferred = True
        return self.initialize()

    def initialize_optimizer(self, triggered_directly=None):
        if self.__dict__.get("_optimizer_deferred"):
            # registered as skorch registers a made one, so that the optimizer__
            # parameters stay valid; __getattr__ makes it on first use
            if "optimizer" not in self.prefixes_:
                self._register_attribute("optimizer_", self.optimizer)
            return self
        return super().initialize_optimizer(triggered_directly)

    def __getattr__(self, name):
        # reached only when an attribute is missing: the deferred optimizer, made now
        if name == "optimizer_" and self.__dict__.pop("_optimizer_deferred", False):
            self._initialize_optimizer()
            return self.optimizer_
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def set_observations(self, x, context, perturbation) -> C3TLNet:
        """Store the observations and put them in the module (if it exists yet)."""
        self.observations_ = (x, context, perturbation)
        if getattr(self, "module_", None) is not None:
            self.module_.set_observations(*self.observations_)
        return self

    def initialize_module(self):
        store = getattr(self, "observations_", None)
        previous = getattr(self, "module_", None)
        if store is None and isinstance(previous, C3TLNetwork):
            store = (previous.obs_x, previous.obs_context, previous.obs_perturbation)
        super().initialize_module()
        if store is not None:
            self.module_.set_observations(*store)
        return self

    def get_loss(self, y_pred, y_true, X=None, training=False):
        if self.context_weight is None or X is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        y_true = torch.as_tensor(y_true, device=y_pred.device)
        weight = self.context_weight.to(y_pred.device)[X[:, CONTEXT].long()]
        per_pair = ((y_pred - y_true) ** 2).mean(dim=1)
        return (weight * per_pair).sum() / weight.sum()
