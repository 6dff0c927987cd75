"""Exactly ``max_trials`` finished trials in a study that several workers fill at once.

Optuna's :class:`~optuna.study.MaxTrialsCallback` stops a worker *after* a trial,
so workers that start their last trials together overshoot the budget by up to
one trial each. Here every trial holds a slot from the moment it exists: a
worker starts a trial only while ``finished + running + waiting < max_trials``
(or to run a queued retry), and a trial that lost a race to another worker is
given up before any fit. Slots are ordered by trial number, so the outcome
does not depend on which worker looks first. The trial of a worker that died
holds its slot until the storage's heartbeat marks it failed; its retry (a
``WAITING`` trial queued by the storage's retry callback) then takes the slot.

A storage without heartbeats (a journal file) cannot tell a running trial from
the leftover of a killed process, which would hold its slot for ever; there
running trials hold no slot, as with Optuna's own callback: concurrent workers
may then overshoot, but a resumed study is never left short.
"""

from __future__ import annotations

import time
import warnings
from collections import Counter

import optuna
from optuna.trial import TrialState

__all__ = ["SurplusTrialError", "run_until_finished"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_HELD = (TrialState.RUNNING, TrialState.WAITING)


class SurplusTrialError(RuntimeError):
    """Raised inside a trial that would exceed ``max_trials``; the trial is recorded failed."""


def _heartbeat_interval(study) -> float | None:
    storage = study._storage
    interval = getattr(storage, "heartbeat_interval", None)
    if interval is None:  # the cached storage wraps the RDB one
        interval = getattr(getattr(storage, "_backend", None), "heartbeat_interval", None)
    return float(interval) if interval else None


def _fail_stale(study) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _held_states(study) -> tuple:
    """Unfinished states that hold a slot: running ones only where heartbeats expose the dead."""
    return _HELD if _heartbeat_interval(study) is not None else (TrialState.WAITING,)


def check_slot(trial, max_trials: int) -> None:
    """Raise :class:`SurplusTrialError` when trials numbered below ``trial`` fill the budget."""
    held = _held_states(trial.study)
    ahead = 0
    for other in trial.study.get_trials(deepcopy=False):
        if other.state in _FINISHED or (other.state in held and other.number < trial.number):
            ahead += 1
    if ahead >= max_trials:
        trial.set_user_attr("surplus", True)
        raise SurplusTrialError(
            f"Trial {trial.number} is not needed: {ahead} trial(s) finished or started "
            f"before it fill max_trials={max_trials}."
        )


def run_until_finished(study, objective, *, max_trials: int, n_trials: int,
                       timeout: float | None, callbacks: list) -> int:
    """Run trials until the study holds ``max_trials`` finished ones (any worker's).

    Starts at most ``n_trials`` trials, none after ``timeout`` seconds. While
    the remaining slots are held by other workers' running trials it waits for
    them (polling once per heartbeat interval, failing stale trials), since a
    dead worker's slot comes free once its heartbeat is stale. Without
    heartbeats running trials hold no slot (see the module documentation).

    A callback that calls ``study.stop()`` ends the loop after its trial.
    Returns the number of trials it started.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = _heartbeat_interval(study)
    started = 0
    while started < n_trials and (deadline is None or time.monotonic() < deadline):
        _fail_stale(study)
        counts = Counter(t.state for t in study.get_trials(deepcopy=False))
        finished = sum(counts[s] for s in _FINISHED)
        if finished >= max_trials:
            break
        running = counts[TrialState.RUNNING] if interval is not None else 0
        if not counts[TrialState.WAITING] and finished + running >= max_trials:
            # the last slots are held by other workers' running trials: wait for them
            # to finish, or to be failed by the heartbeat and queued again
            time.sleep(min(interval, 5.0))
            continue
        study.optimize(objective, n_trials=1, callbacks=callbacks, gc_after_trial=False,
                       catch=(SurplusTrialError,))
        started += 1
        # optimize() clears a callback's study.stop() when it starts, so look after each
        if getattr(study, "_stop_flag", False):
            break
    return started
