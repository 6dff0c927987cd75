"""Pruning: a skorch callback that reports each epoch's validation loss to an Optuna trial."""

from __future__ import annotations

import numpy as np
import optuna
from skorch.callbacks import Callback

__all__ = ["PruningCallback"]


class PruningCallback(Callback):
    """skorch callback reporting the validation loss to an Optuna trial, for pruning.

    After every epoch the best ``valid_loss`` so far is reported, negated (so
    that higher is better, like the search's scores), at step ``step_offset +
    epoch``; once ``warmup_epochs`` epochs have passed, the trial is stopped
    with :class:`optuna.TrialPruned` if its pruner says so. Epochs without a
    ``valid_loss`` (no validation split) are not reported.

    Unlike optuna-integration's ``SkorchPruningCallback`` it reports the best
    loss so far (so one noisy epoch does not prune a good trial) and offsets
    the steps, so that every cross-validation fold of a trial reports. Copies
    (``clone``, ``deepcopy``, as meta-estimators such as
    ``TransformedTargetRegressor`` make) report to the same trial.

    Parameters
    ----------
    trial : optuna.trial.Trial
        The trial to report to.
    step_offset : int, default=0
        Added to the epoch number (``C3TLSearchCV`` uses ``fold * 100000``).
    warmup_epochs : int or None, default=5
        Epochs before the first pruning decision; ``None`` waits a tenth of
        the net's ``max_epochs`` (at least 5), the bound the fit uses, read
        when training starts.
    monitor : str, default="valid_loss"
        History key to report (lower is better).

    Examples
    --------
    >>> import optuna
    >>> from c3tl_sklearn import C3TLRegressor
    >>> from c3tl_sklearn.datasets import make_synthetic_perturbations
    >>> from c3tl_sklearn.tuning import PruningCallback
    >>> X, Y = make_synthetic_perturbations(4, 30, 20, random_state=0)
    >>> study = optuna.create_study(direction="maximize")
    >>> trial = study.ask()
    >>> model = C3TLRegressor(max_epochs=3, hidden_dims=(32,), random_state=0,
    ...                       callbacks=[PruningCallback(trial, warmup_epochs=100)])
    >>> _ = model.fit(X, Y)
    >>> _ = study.tell(trial, 0.0)
    >>> sorted(study.trials[0].intermediate_values)
    [1, 2, 3]
    """

    def __init__(self, trial, step_offset: int = 0, warmup_epochs: int | None = 5,
                 monitor: str = "valid_loss"):
        self.trial = trial
        self.step_offset = step_offset
        self.warmup_epochs = warmup_epochs
        self.monitor = monitor

    def initialize(self):
        self.best_ = np.inf
        return self

    # a copy reports to the same trial: a trial cannot be cloned or deep-copied
    def __sklearn_clone__(self):
        return type(self)(self.trial, self.step_offset, self.warmup_epochs, self.monitor)

    def __deepcopy__(self, memo):
        return self.__sklearn_clone__()

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.best_ = np.inf

    def on_epoch_end(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        row = net.history[-1]
        loss = row.get(self.monitor)
        if loss is None or not np.isfinite(loss):
            return
        self.best_ = min(getattr(self, "best_", np.inf), float(loss))
        epoch = int(row.get("epoch", len(net.history)))
        self.trial.report(-self.best_, self.step_offset + epoch)
        warmup = self.warmup_epochs
        if warmup is None:  # the fit's own bound: "auto" chose it for the data
            warmup = max(5, int(net.max_epochs) // 10)
        if epoch >= warmup and self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at epoch {epoch} ({self.monitor} {self.best_:.4g})"
            )
