"""Work through joblib with the threads of every worker limited (c3tl_sklearn._parallel)."""

import joblib
import torch
from threadpoolctl import threadpool_info

from c3tl_sklearn._parallel import limit_threads, parallel_map, threads_per_worker


def _threads_seen(tag):
    blas = [pool["num_threads"] for pool in threadpool_info()]
    return tag, torch.get_num_threads(), max(blas, default=None)


def test_workers_get_their_share_of_the_cores():
    expected = max(1, joblib.cpu_count() // 2)
    assert threads_per_worker(2) == expected
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
