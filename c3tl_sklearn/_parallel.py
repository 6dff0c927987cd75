"""Work spread through joblib, with the threads of every worker set so workers share cores.

The tasks go through :class:`joblib.Parallel`, so whatever joblib backend is
active runs them: local processes (loky) by default, a Dask or Ray cluster
inside ``joblib.parallel_config(backend="dask")`` (or ``"ray"``). Each task
limits torch's and the BLAS/OpenMP pools' threads to the cores left per worker:
two workers that each start one thread per core on a two-core machine slow
each other down several times (a fold took 86 s instead of 16 s).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from joblib import Parallel, cpu_count, delayed, effective_n_jobs

__all__ = ["limit_threads", "parallel_map", "threads_per_worker"]


def threads_per_worker(n_jobs: int | None) -> int:
    """Cores this process may use, divided among ``n_jobs`` workers (at least one each).

    joblib's ``cpu_count`` counts the cores CPU affinity and cgroup quotas leave.
    """
    workers = max(1, effective_n_jobs(n_jobs))
    return max(1, cpu_count() // workers)


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
    try:
        with threadpool_limits(limits=n_threads):
            yield
    finally:
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
