"""Work spread through joblib, with the threads of every worker set so workers share cores.

The tasks go through :class:`joblib.Parallel`, so whatever joblib backend is
active runs them: local processes (loky) by default, a Dask or Ray cluster
inside ``joblib.parallel_config(backend="dask")`` (or ``"ray"``). Each task
limits torch's and the BLAS/OpenMP pools' threads to the cores left per worker:
two workers that each start one thread per core on a two-core machine slow
each other down several times.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from joblib import Parallel, cpu_count, delayed, effective_n_jobs

__all__ = ["fit_threads", "free_cores", "limit_threads", "parallel_map", "threads_per_worker"]

#: How long :func:`free_cores` watches the cores (the kernel counts in 10 ms ticks).
SAMPLE_S = 0.1
#: How long a measurement of :func:`free_cores` is reused: a tuning run's many
#: fits should not each pay :data:`SAMPLE_S`.
REUSE_S = 10.0
_last: tuple[float, int] | None = None
#: Set inside :func:`limit_threads`: the thread count was chosen, fits keep it.
_chosen: ContextVar[bool] = ContextVar("c3tl_threads_chosen", default=False)


def _cpu_ticks(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """(idle, total) scheduler ticks of each CPU in ``cpus``, from ``/proc/stat``."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(v) for v in fields[:8]]  # guest time is counted in user already
                out[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return out


def _own_ticks() -> int:
    """Scheduler ticks this process has run (user and system), from ``/proc/self/stat``."""
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def free_cores() -> int:
    """Cores this process may use that other processes leave idle (at least one).

    The cores CPU affinity and cgroup quotas leave (joblib's ``cpu_count``),
    less the share of them other processes kept busy over :data:`SAMPLE_S`
    seconds (Linux ``/proc/stat``; elsewhere the usable cores). A measurement
    is reused for :data:`REUSE_S` seconds.
    """
    global _last
    usable = cpu_count()
    now = time.monotonic()
    if _last is not None and now - _last[0] < REUSE_S:
        return min(_last[1], usable)
    try:
        cpus = os.sched_getaffinity(0)
        before, own_before = _cpu_ticks(cpus), _own_ticks()
        time.sleep(SAMPLE_S)
        after, own_after = _cpu_ticks(cpus), _own_ticks()
    except (OSError, AttributeError, ValueError, IndexError):
        return usable
    idle = total = 0
    for cpu, (idle_after, total_after) in after.items():
        if cpu in before:
            idle += idle_after - before[cpu][0]
            total += total_after - before[cpu][1]
    if total <= 0:
        return usable
    # this process's own running time (threads left spinning) is not another's load
    free_share = (idle + own_after - own_before) / total
    free = max(1, min(usable, round(free_share * len(after))))
    _last = (now, free)
    return free


def fit_threads() -> int:
    """Threads a fit may use here: torch's setting, but no more than the free cores.

    Threads on cores other processes keep busy wait on each other at every
    parallel step, which made fits several times slower than one thread on
    a free core. Where the count was chosen, torch's setting stands: with
    ``OMP_NUM_THREADS`` set, or inside :func:`limit_threads` (the command
    line's ``--threads``, a joblib worker's share of the free cores).
    """
    import torch

    threads = torch.get_num_threads()
    if threads == 1 or _chosen.get() or os.environ.get("OMP_NUM_THREADS"):
        return threads
    return min(threads, free_cores())


def threads_per_worker(n_jobs: int | None) -> int:
    """Free cores (:func:`free_cores`) divided among ``n_jobs`` workers (at least one each)."""
    workers = max(1, effective_n_jobs(n_jobs))
    return max(1, free_cores() // workers)


@contextmanager
def limit_threads(n_threads: int) -> Iterator[None]:
    """Torch and BLAS/OpenMP threads limited to ``n_threads`` inside the block.

    Torch is only limited when already imported: a task that fits a torch model
    imports it while its arguments are unpickled, before this runs, and a task
    without torch (pseudo-bulk) need not pay its import and memory.
    """
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n_threads)
    token = _chosen.set(True)
    try:
        with threadpool_limits(limits=n_threads):
            yield
    finally:
        _chosen.reset(token)
        if torch is not None:
            torch.set_num_threads(before)


def _call_limited(func: Callable, n_threads: int, args: tuple) -> Any:
    with limit_threads(n_threads):
        return func(*args)


def parallel_map(func: Callable, items: Iterable[tuple], n_jobs: int | None) -> list:
    """``[func(*args) for args in items]``, through joblib when ``n_jobs`` is not 1.

    Results come back in the order of ``items``. With one job the calls run
    here, under the caller's thread settings; otherwise every call runs under
    :func:`limit_threads` with :func:`threads_per_worker` threads.
    """
    items = list(items)
    # one job (also n_jobs=None outside a parallel_config): keep the caller's threads
    if effective_n_jobs(n_jobs) == 1 or len(items) <= 1:
        return [func(*args) for args in items]
    n_threads = threads_per_worker(n_jobs)
    return Parallel(n_jobs=n_jobs)(delayed(_call_limited)(func, n_threads, args)
                                   for args in items)
