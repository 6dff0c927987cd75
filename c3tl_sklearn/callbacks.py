"""skorch callbacks that keep a fit from passing a partial or broken result as finished.

skorch's ``NeuralNet.partial_fit`` catches ``KeyboardInterrupt`` and returns
normally: a user's Ctrl-C and ``EarlyStopping``'s deliberate stop look alike
from outside, so a ``cross_val_score`` would carry on with a half-trained
model. :class:`TrainingGuard` tells them apart by the signal itself (a
SIGINT that arrived while training) and re-raises it once skorch has closed
the fit; it also stops a fit whose loss turns non-finite, with an error that
names the likely cause instead of the NaN surfacing later in a PCA.
"""

from __future__ import annotations

import math
import signal
import threading
import warnings
from typing import Any

import numpy as np
from skorch.callbacks import Callback

from ._fitted import discard_fitted
from ._warnings import user_stacklevel

__all__ = ["TrainingDivergedError", "TrainingGuard", "TrainingInterrupted", "fit_guarded",
           "with_training_guard"]


#: C3TLRegressor's default learning rate, the first thing to try after a divergence.
_DEFAULT_LR = 3e-3


class TrainingDivergedError(ValueError):
    """The training loss (or a weight) became non-finite: the fit cannot be used."""


class TrainingInterrupted(KeyboardInterrupt):
    """A Ctrl-C (SIGINT) stopped ``fit``; no partial model is kept.

    A subclass of ``KeyboardInterrupt``, so that code that stops on Ctrl-C
    (scikit-learn's loops, the ``c3tl`` command line, a notebook) still does.
    """


def _largest_abs(y: Any) -> float:
    """max |y| without a copy of ``y`` (max and min, not abs: the targets can be large)."""
    try:
        arr = np.asarray(y)
    except (TypeError, ValueError):  # pragma: no cover - skorch hands arrays here
        return math.nan
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return math.nan if arr.size else 0.0
    return float(max(abs(float(arr.max())), abs(float(arr.min()))))


class TrainingGuard(Callback):
    """Re-raise a Ctrl-C that skorch swallowed, and stop a diverging fit.

    Interruption: while training runs in the main thread, a SIGINT handler
    records that a Ctrl-C arrived and hands it to the handler it replaced
    (Python's default raises ``KeyboardInterrupt``, which skorch catches).
    At the end of training the guard raises :class:`TrainingInterrupted`,
    unless ``keep_on_interrupt=True``: then the model trained so far is kept,
    as plain skorch does, with a ``UserWarning`` saying so. A
    ``KeyboardInterrupt`` raised by a callback to stop training (skorch's
    idiom, used by ``EarlyStopping``) is no signal and ends the fit normally.

    Divergence: after every epoch the ``train_loss`` and ``valid_loss`` must
    be finite, and at the end of training every weight; otherwise
    :class:`TrainingDivergedError` (a ``ValueError``) names the epoch, the
    learning rate and the largest absolute target value, and what to try.

    Parameters
    ----------
    keep_on_interrupt : bool, default=False
        Keep the partially trained model on Ctrl-C instead of re-raising.
    """

    def __init__(self, keep_on_interrupt: bool = False):
        self.keep_on_interrupt = keep_on_interrupt

    def initialize(self):
        self.interrupted_ = False
        self._previous = None
        self._scale = math.nan
        return self

    # ------------------------------------------------------------ interruption
    def _on_sigint(self, signum, frame):
        self.interrupted_ = True
        previous = self._previous
        if callable(previous):
            previous(signum, frame)
        else:  # pragma: no cover - SIG_DFL replaced by us: behave like Python's default
            raise KeyboardInterrupt

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        self.interrupted_ = False
        self._previous = None
        self._scale = _largest_abs(y) if y is not None else math.nan
        # Signals reach only the main thread; elsewhere (joblib threads) there is
        # no Ctrl-C to catch. A handler that is not Python's (SIG_IGN, one set
        # from C) is left alone: whoever set it decided what Ctrl-C does.
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGINT)
        if callable(previous):
            self._previous = previous
            signal.signal(signal.SIGINT, self._on_sigint)

    def restore_signal_handler(self) -> None:
        """Put back the SIGINT handler that was in place when training began."""
        previous = getattr(self, "_previous", None)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
            self._previous = None

    def on_train_end(self, net, X=None, y=None, **kwargs):
        self.restore_signal_handler()
        epochs = len(net.history)
        if self.interrupted_:
            message = (
                f"fit was interrupted (Ctrl-C) after {epochs} of {net.max_epochs} epochs"
            )
            if not self.keep_on_interrupt:
                raise TrainingInterrupted(
                    message + "; no model was kept. To keep the partially trained model "
                    "instead, pass callbacks=[TrainingGuard(keep_on_interrupt=True)] "
                    "(from c3tl_sklearn.callbacks)."
                )
            warnings.warn(message + "; the partially trained model is kept, as "
                          "keep_on_interrupt=True asks.", UserWarning,
                          stacklevel=user_stacklevel())
        module = getattr(net, "module_", None)
        if module is not None:
            for name, value in module.named_parameters():
                if not bool(value.detach().isfinite().all()):
                    self._diverged(net, f"the weight {name!r} became non-finite", epochs)

    # -------------------------------------------------------------- divergence
    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        for key in ("train_loss", "valid_loss"):
            loss = row.get(key)
            if loss is not None and not math.isfinite(float(loss)):
                self._diverged(net, f"the {key} became {float(loss)}", len(net.history))

    def _diverged(self, net, what: str, epoch: int):
        self.restore_signal_handler()
        scale = self._scale
        raise TrainingDivergedError(
            f"Training diverged: {what} at epoch {epoch} of {net.max_epochs} "
            f"(lr={net.lr:g}; the largest absolute target value the network fits is "
            f"{scale:.3g}). The learning rate is likely too large, or the effects' scale "
            "too far from 1. Try a smaller learning rate (set_params(lr=...); the default is "
            f"{_DEFAULT_LR:g}), or rescale the effects (for example divide Y by its standard "
            "deviation, or wrap the model in TransformedTargetRegressor with a StandardScaler)."
        )



def with_training_guard(callbacks) -> list:
    """``callbacks`` as a new list with a default :class:`TrainingGuard` first.

    A guard the user passed (for example ``TrainingGuard(keep_on_interrupt=True)``)
    is kept as the only one. The default goes first so that a non-finite loss is
    reported before ``EarlyStopping`` reads it.
    """
    callbacks = list(callbacks or [])
    for item in callbacks:
        cb = item[1] if isinstance(item, tuple) else item
        if isinstance(cb, TrainingGuard):
            return callbacks
    return [("training_guard", TrainingGuard()), *callbacks]


def fit_guarded(estimator, net, X, y) -> None:
    """``net.fit(X, y)``; on Ctrl-C or divergence ``estimator`` is left unfitted, then re-raise.

    The guards' SIGINT handlers are restored on every exit, also when another
    callback's exception (an Optuna prune, say) skipped ``on_train_end``.
    """
    try:
        net.fit(X, y)
    except (KeyboardInterrupt, TrainingDivergedError):
        discard_fitted(estimator)
        raise
    except (RuntimeError, MemoryError) as exc:
        # torch's allocator reports a network too large for memory as a RuntimeError
        # from deep inside nn.Linear; say which parameters make it that large
        if not isinstance(exc, MemoryError) and "allocate" not in str(exc):
            raise
        discard_fitted(estimator)
        sizes = ", ".join(f"{k.removeprefix('module__')}={v!r}"
                          for k, v in net.get_params().items()
                          if k in ("module__n_genes", "module__latent_dim", "module__hidden_dims"))
        raise MemoryError(
            f"the network does not fit in memory ({sizes}; torch: {str(exc).splitlines()[0]}). "
            "Choose smaller hidden_dims or latent_dim, or set n_components to compress the "
            "genes the network reads."
        ) from None
    finally:
        for _, cb in getattr(net, "callbacks_", []):
            if isinstance(cb, TrainingGuard):
                cb.restore_signal_handler()
