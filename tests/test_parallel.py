"""Work through joblib with the threads of every worker limited (c3tl_sklearn._parallel)."""

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from skorch.callbacks import Callback
from threadpoolctl import threadpool_info

from c3tl_sklearn import C3TLRegressor, _parallel
from c3tl_sklearn._parallel import (
    fit_threads,
    free_cores,
    limit_threads,
    parallel_map,
    threads_per_worker,
)


def _threads_seen(tag):
    blas = [pool["num_threads"] for pool in threadpool_info()]
    return tag, torch.get_num_threads(), max(blas, default=None)


def test_workers_get_their_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(_parallel, "free_cores", lambda: 4)
    expected = 2
    assert threads_per_worker(2) == expected
    assert threads_per_worker(8) == 1  # never none
    out = parallel_map(_threads_seen, [("a",), ("b",), ("c",)], n_jobs=2)
    assert [o[0] for o in out] == ["a", "b", "c"]  # in the order of the tasks
    for _, torch_threads, blas_threads in out:
        assert torch_threads == expected
        assert blas_threads in (None, expected)


def test_one_job_runs_here_and_limit_threads_restores():
    before = torch.get_num_threads()
    assert parallel_map(_threads_seen, [("x",)], n_jobs=1)[0][1] == before
    with limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ------------------------------------------------------------------ free cores
class _FakeMachine:
    """/proc/stat and /proc/self/stat of a machine whose CPUs are idle or busy."""

    def __init__(self, monkeypatch, idle_share, own_share=0.0, cpus=(0, 1)):
        self.calls = 0
        self.idle_share, self.own_share, self.cpus = idle_share, own_share, set(cpus)
        monkeypatch.setattr(_parallel, "_last", None)
        monkeypatch.setattr(_parallel, "cpu_count", lambda: len(self.cpus))
        monkeypatch.setattr(_parallel.os, "sched_getaffinity", lambda pid: self.cpus)
        monkeypatch.setattr(_parallel, "_cpu_ticks", self.cpu_ticks)
        monkeypatch.setattr(_parallel, "_own_ticks", self.own_ticks)

    def cpu_ticks(self, cpus):
        self.calls += 1
        t = 10 * self.calls  # ten ticks per CPU between two readings
        return {c: (round(t * share), t) for c, share in zip(sorted(cpus), self.idle_share,
                                                              strict=True)}

    def own_ticks(self):
        return round(10 * (self.calls + 1) * self.own_share)


@pytest.mark.parametrize(("idle_share", "own_share", "expected"), [
    ((1.0, 1.0), 0.0, 2),   # an idle machine
    ((1.0, 0.0), 0.0, 1),   # another process keeps one core busy
    ((0.0, 0.0), 0.0, 1),   # both busy: still one thread
    ((1.0, 0.0), 1.0, 2),   # the busy core is this process's own (its threads spinning)
    ((0.6, 0.5), 0.0, 1),   # half-busy cores add up to about one free core
])
def test_free_cores_counts_what_others_leave_idle(monkeypatch, idle_share, own_share, expected):
    _FakeMachine(monkeypatch, idle_share, own_share)
    assert free_cores() == expected


def test_free_cores_reuses_a_recent_measurement_and_never_exceeds_the_usable(monkeypatch):
    machine = _FakeMachine(monkeypatch, (1.0, 1.0))
    assert free_cores() == 2
    assert free_cores() == 2 and machine.calls == 2  # one measurement: two readings
    monkeypatch.setattr(_parallel, "cpu_count", lambda: 1)  # a cgroup quota of one core
    assert free_cores() == 1


def test_free_cores_without_proc_falls_back_to_the_usable_cores(monkeypatch):
    monkeypatch.setattr(_parallel, "_last", None)
    monkeypatch.setattr(_parallel, "cpu_count", lambda: 3)

    def missing(cpus):
        raise OSError("no /proc/stat here")

    monkeypatch.setattr(_parallel, "_cpu_ticks", missing)
    assert free_cores() == 3


def test_free_cores_reads_this_machine():
    assert 1 <= free_cores() <= joblib.cpu_count()


@pytest.fixture
def two_torch_threads():
    """torch set to two threads the way a user does (not through limit_threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_fit_threads_caps_at_the_free_cores_unless_the_count_was_chosen(
        monkeypatch, two_torch_threads):
    monkeypatch.setattr(_parallel, "free_cores", lambda: 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert fit_threads() == 1
    with limit_threads(2):  # --threads 2, or a worker's share
        assert fit_threads() == 2
    assert fit_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert fit_threads() == 2  # the user's setting stands
    monkeypatch.setattr(_parallel, "free_cores", lambda: 8)
    with limit_threads(1):
        assert fit_threads() == 1  # never more than torch's setting


class _RecordThreads(Callback):
    def on_train_begin(self, net, **kwargs):
        self.seen = torch.get_num_threads()


def test_fit_trains_on_the_free_cores_and_restores_the_setting(monkeypatch, two_torch_threads):
    monkeypatch.setattr(_parallel, "free_cores", lambda: 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    rng = np.random.default_rng(0)
    X = pd.DataFrame([(c, p) for c in "abc" for p in "uvwx"], columns=["context", "perturbation"])
    Y = rng.normal(size=(len(X), 3))
    record = _RecordThreads()
    model = C3TLRegressor(max_epochs=2, hidden_dims=(4,), latent_dim=2, fallback=None,
                          callbacks=[record], random_state=0)
    model.fit(X, Y)
    assert record.seen == 1 and torch.get_num_threads() == 2
    with limit_threads(2):  # a chosen count is kept
        model.fit(X, Y)
    assert record.seen == 2
