"""A shared study on a real PostgreSQL server: three worker processes, one of them killed.

The server comes from ``C3TL_TEST_POSTGRES_URL`` (``.ci/run`` starts a throwaway one on
127.0.0.1; by hand: ``source .ci/postgres.sh && c3tl_pg_start``). Without it these tests
skip, saying so.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ..conftest import HANG_TIMEOUT_S

optuna = pytest.importorskip("optuna")
pytest.importorskip("psycopg", reason="psycopg (the 'distributed' extra) is not installed")

URL = os.environ.get("C3TL_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.skipif(
        not URL, reason="C3TL_TEST_POSTGRES_URL is not set: no PostgreSQL server to test "
        "against (.ci/run starts one; by hand: source .ci/postgres.sh && c3tl_pg_start)"),
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("pg_worker.py")
TrialState = optuna.trial.TrialState


def _env() -> dict:
    # one thread per worker: three workers share the machine's cores
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _spawn(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], env=_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = HANG_TIMEOUT_S) -> str:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"worker {proc.pid} did not finish: {err[-2000:]}")
    assert proc.returncode == 0, err[-3000:]
    return out


def _running_trial_of(study, pid: int, deadline: float):
    """The trial that worker ``pid`` is fitting, once it has fitted for a moment."""
    worker = f"{socket.gethostname()}:{pid}"
    while time.monotonic() < deadline:
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # params set: the trial is past its budget check, into its fits
            if t.user_attrs.get("worker") == worker and t.datetime_start is not None \
                    and t.params:
                age = time.time() - t.datetime_start.timestamp()
                if age > 0.3:
                    return t
        time.sleep(0.1)
    pytest.fail(f"worker {pid} never ran a trial")


def test_three_workers_one_killed_exact_budget():
    max_trials = 7
    name = f"killed-{uuid.uuid4().hex[:8]}"
    procs = [_spawn([str(WORKER), URL, name, str(max_trials)]) for _ in range(3)]
    victim, survivors = procs[0], procs[1:]
    try:
        deadline = time.monotonic() + HANG_TIMEOUT_S
        while True:  # the study exists once a worker has started
            try:
                study = optuna.load_study(study_name=name, storage=URL)
                break
            except KeyError:
                assert time.monotonic() < deadline, "no worker created the study"
                time.sleep(0.2)
        killed = _running_trial_of(study, victim.pid, deadline)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        started = [json.loads(_finish(p).strip().splitlines()[-1])["started"]
                   for p in survivors]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    trials = optuna.load_study(study_name=name, storage=URL).get_trials()
    states = {t.number: t.state for t in trials}
    # shown with -s: what the run looked like
    print(f"killed trial {killed.number}; " + ", ".join(
        f"{t.number}:{t.state.name}" + (f"(retry of {t.system_attrs['failed_trial']})"
                                         if "failed_trial" in t.system_attrs else "")
        + ("(surplus)" if t.user_attrs.get("surplus") else "") for t in trials))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # the budget is met exactly, and nothing is left running or queued
    assert len(complete) == max_trials, states
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # the killed trial was failed by the heartbeat and retried once, with its parameters
    assert states[killed.number] == TrialState.FAIL
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback
    retries = [t for t in trials if retry.retried_trial_number(t) == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    killed = next(t for t in trials if t.number == killed.number)  # as stored at the end
    assert retries[0].params == killed.params and killed.params
    assert retries[0].user_attrs["worker"] != killed.user_attrs["worker"]
    # any other failure is a trial given up before fitting because the budget was full
    for t in trials:
        if t.state == TrialState.FAIL and t.number != killed.number:
            assert t.user_attrs.get("surplus") and "split_scores" not in t.user_attrs
    # every complete trial scored every fold once; the survivors account for their trials
    assert all(len(t.user_attrs["split_scores"]["centered_pearson_delta"]) == 2
               for t in complete)
    by_worker = [sum(t.user_attrs.get("worker") == f"{socket.gethostname()}:{p.pid}"
                     for t in trials) for p in survivors]
    assert by_worker == started
    assert len({t.number for t in complete}) == max_trials


def test_three_benchmark_workers_share_the_tuning(tmp_path):
    n_trials = 4
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    common = ["--data", "synthetic", "--synthetic-shape", "5,20,10", "--models", "c3tl",
              "--max-epochs", "10", "--n-trials", str(n_trials), "--storage", URL,
              "--study-prefix", prefix, "--quiet"]
    procs = [_spawn(["-m", "c3tl_sklearn.cli", "benchmark", *common, "--threads", "1",
                     "--tune-only",
                     "--out", str(tmp_path / f"w{i}")]) for i in range(3)]
    try:
        for p in procs:
            _finish(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    trials = optuna.load_study(study_name=f"{prefix}-heldout-c3tl", storage=URL).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == n_trials
    # a worker that found the budget taken gave its trial up before fitting
    assert all(t.user_attrs.get("surplus") for t in trials if t not in finished)
    # the evaluating run (here, through the entry point) finds the study full and
    # only evaluates
    from c3tl_sklearn.cli import main

    assert main([*common, "--out", str(tmp_path / "final")]) == 0
    params = json.loads((tmp_path / "final" / "params.json").read_text())["models"]
    assert params["c3tl"]["n_complete"] + params["c3tl"]["n_pruned"] == n_trials
