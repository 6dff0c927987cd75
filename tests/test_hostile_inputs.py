"""Hostile inputs and conditions at the package's boundaries, each with its exact outcome.

Every case here was once silent, crashed with a foreign library's message,
misled, or let a small file take unbounded memory. Each test pins the
outcome now: the exact message, and where the message gives advice, the
advice is followed and the result checked.
"""

from __future__ import annotations

import re
import signal
import warnings

import numpy as np
import pytest
from skorch.callbacks import Callback

from c3tl_sklearn import C3TLEnsemble, C3TLRegressor
from c3tl_sklearn.callbacks import TrainingDivergedError, TrainingGuard, TrainingInterrupted
from c3tl_sklearn.datasets import make_synthetic_perturbations


def tiny(**params) -> C3TLRegressor:
    base = dict(max_epochs=3, hidden_dims=(4,), latent_dim=2, random_state=0)
    return C3TLRegressor(**{**base, **params})


@pytest.fixture(scope="module")
def data():
    return make_synthetic_perturbations(4, 12, 8, random_state=1)


class CtrlCAt(Callback):
    """Sends this process a real SIGINT (what Ctrl-C does) at the end of epoch ``epoch``."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            signal.raise_signal(signal.SIGINT)


class StopAt(Callback):
    """skorch's own idiom to stop training: raise KeyboardInterrupt from a callback."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epoch:
            raise KeyboardInterrupt


# ------------------------------------------------------------------------ interruption

INTERRUPTED = (
    "fit was interrupted (Ctrl-C) after 2 of 5 epochs; no model was kept. To keep the "
    "partially trained model instead, pass callbacks=[TrainingGuard(keep_on_interrupt=True)] "
    "(from c3tl_sklearn.callbacks)."
)


def test_ctrl_c_during_fit_is_raised_and_leaves_no_model(data):
    X, Y = data
    model = tiny(max_epochs=5, callbacks=[CtrlCAt(2)])
    with pytest.raises(TrainingInterrupted, match=f"^{re.escape(INTERRUPTED)}$"):
        model.fit(X, Y)
    assert not [name for name in vars(model) if name.endswith("_")]
    # Python's own handler is back: a later Ctrl-C outside fit is a plain KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_refit_discards_the_earlier_fit(data):
    X, Y = data
    model = tiny(max_epochs=5).fit(X, Y)
    model.set_params(callbacks=[CtrlCAt(2)])
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, Y)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        model.predict(X)


def test_following_the_interrupt_advice_keeps_the_partial_model(data):
    X, Y = data
    model = tiny(max_epochs=5, callbacks=[TrainingGuard(keep_on_interrupt=True), CtrlCAt(2)])
    with pytest.warns(UserWarning, match=re.escape(
        "fit was interrupted (Ctrl-C) after 2 of 5 epochs; the partially trained model is "
        "kept, as keep_on_interrupt=True asks."
    )):
        model.fit(X, Y)
    assert model.n_epochs_ == 2
    assert np.isfinite(model.predict(X)).all()


def test_a_callback_stopping_training_is_not_an_interruption(data):
    X, Y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = tiny(max_epochs=5, callbacks=[StopAt(2)]).fit(X, Y)
    assert model.n_epochs_ == 2


def test_early_stopping_is_not_an_interruption(data):
    X, Y = data
    model = tiny(max_epochs=200, patience=1, validation_fraction=0.3, lr=0.3).fit(X, Y)
    assert model.n_epochs_ < 200


def test_ctrl_c_in_cross_val_score_stops_it(data):
    from sklearn.model_selection import cross_val_score

    from c3tl_sklearn import LeaveOneContextOut

    X, Y = data
    with pytest.raises(KeyboardInterrupt):
        cross_val_score(tiny(max_epochs=5, callbacks=[CtrlCAt(2)]), X, Y,
                        cv=LeaveOneContextOut(), scoring="pearson_delta")


def test_ctrl_c_in_an_ensemble_member_leaves_the_ensemble_unfitted(data):
    X, Y = data
    ens = C3TLEnsemble(tiny(max_epochs=5, callbacks=[CtrlCAt(2)]), n_estimators=2,
                       random_state=0)
    with pytest.raises(KeyboardInterrupt):
        ens.fit(X, Y)
    assert not [name for name in vars(ens) if name.endswith("_")]


# -------------------------------------------------------------------------- divergence

def diverged(what: str, epoch: int, lr: str, scale: str) -> str:
    return (
        f"Training diverged: {what} at epoch {epoch} of 3 (lr={lr}; the largest absolute "
        f"target value the network fits is {scale}). The learning rate is likely too large, "
        "or the effects' scale too far from 1. Try a smaller learning rate (set_params(lr=...); "
        "the default is 0.003), or rescale the effects (for example divide Y by its standard "
        "deviation, or wrap the model in TransformedTargetRegressor with a StandardScaler)."
    )


@pytest.mark.parametrize("adaptation", ["ridge", None])
def test_a_huge_learning_rate_stops_with_the_cause_and_the_fix(data, adaptation):
    X, Y = data
    model = tiny(lr=1e10, adaptation=adaptation, validation_fraction=0.0)
    scale = f"{np.abs(Y.to_numpy()).max():.3g}"
    with pytest.raises(TrainingDivergedError) as info:
        model.fit(X, Y)
    message = str(info.value)
    # which epoch and whether inf or nan comes first depends on rounding; the rest is exact
    pattern = re.escape(diverged("@WHAT@", 0, "1e+10", scale)).replace(
        "@WHAT@", r"the (train_loss|weight '[a-z_.0-9]+') became (nan|inf)"
    ).replace(r"epoch\ 0", r"epoch\ [123]")
    assert re.fullmatch(pattern, message), message
    assert isinstance(info.value, ValueError)
    assert not [name for name in vars(model) if name.endswith("_")]
    # the advice: the default learning rate fits, with finite predictions
    model.set_params(lr=3e-3).fit(X, Y)
    assert np.isfinite(model.predict(X)).all()


def test_effects_far_too_large_for_float32_are_refused_or_diverge_with_the_fix(data):
    X, Y = data
    big = Y * 1e19  # squares overflow float32 (3.4e38)
    model = tiny(n_components=None, validation_fraction=0.0)
    with pytest.raises(ValueError, match="rescale the effects"):
        model.fit(X, big)
    # the advice: divide Y by its standard deviation; the fit is then finite
    sd = float(np.std(big.to_numpy(dtype=np.float64)))
    model.fit(X, big / sd)
    assert np.isfinite(model.predict(X) * sd).all()
