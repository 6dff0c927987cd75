"""The benchmark on a Dask cluster through joblib gives the serial run's scores."""

import joblib
import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed",
                                  reason="dask.distributed (the 'distributed' extra) is missing")
pytest.importorskip("optuna")

from c3tl_sklearn.cli import BenchmarkConfig, run_benchmark  # noqa: E402
from c3tl_sklearn.datasets import make_synthetic_perturbations  # noqa: E402


def test_benchmark_on_a_local_dask_cluster_matches_serial():
    X, Y = make_synthetic_perturbations(5, 20, 12, random_state=0)
    config = BenchmarkConfig(protocol="heldout", models=["c3tl", "additive"], n_trials=2,
                             max_epochs=5, n_test_contexts=2)
    serial = run_benchmark(X, Y, config.replace(n_jobs=1), progress=False)
    # worker processes: torch's random generator is global to a process, so two fits
    # in threads of one process would draw from one stream and differ from the serial run
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, \
            distributed.get_task_stream(client) as stream, \
            joblib.parallel_config(backend="dask"):
        on_dask = run_benchmark(X, Y, config.replace(n_jobs=2), progress=False)
    # the fits ran as tasks of the cluster: 2 models x 2 splits, plus tuning folds
    assert len(stream.data) >= 4
    assert len(serial.scores) == 2 * 2 * len(set(serial.scores["metric"]))
    pd.testing.assert_frame_equal(on_dask.scores, serial.scores, rtol=1e-5, atol=1e-6)
    for model in ("c3tl", "additive"):
        assert on_dask.params[model]["params"] == serial.params[model]["params"]
    if "best_score" in serial.params["c3tl"]:
        np.testing.assert_allclose(on_dask.params["c3tl"]["best_score"],
                                   serial.params["c3tl"]["best_score"], rtol=1e-5)
