import contextlib
import os
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

from c3tl_sklearn.datasets import PerturbationDesign, make_synthetic_perturbations

# Two shared cores: more than one thread per process oversubscribes them and
# spin-waiting threads make tiny fits many times slower, so one thread unless
# OMP_NUM_THREADS asks for more (the suite must pass with 1 and with 2: float32
# sums then run in another order, and the tolerances must allow for it).
_TEST_THREADS = max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1))
torch.set_num_threads(_TEST_THREADS)
threadpool_limits(_TEST_THREADS)

# A guard against a hung child process, not a timing assertion: a subprocess of a
# test may take many times its idle time on a loaded machine (a 20 s benchmark
# smoke run took over 120 s on two cores with four other jobs), and must not fail
# for it.
HANG_TIMEOUT_S = 1800

# Hypothesis profiles. Tests that set ``max_examples`` themselves keep it; the
# rest (the contract fuzzing in test_fuzz_contract.py) take it from the profile.
# "ci" (default): a fixed seed and few enough examples for the fuzz file to run
# in under a minute on two busy cores; no example database, so every run tries
# the same examples. "long": many more examples (``C3TL_HYPOTHESIS_PROFILE=long``),
# still from a fixed seed so a failure found there can be replayed.
_FUZZ_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True,
                          database=None, suppress_health_check=_FUZZ_HEALTH)
settings.register_profile("long", max_examples=1000, deadline=None, derandomize=True,
                          database=None, suppress_health_check=_FUZZ_HEALTH)
settings.load_profile(os.environ.get("C3TL_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def small_data():
    """6 contexts x 40 perturbations x 30 genes, about 80% of pairs observed."""
    return make_synthetic_perturbations(
        6, 40, 30, observed_fraction=0.8, design=PerturbationDesign(noise=0.05), random_state=0
    )


@pytest.fixture(scope="session")
def tiny_data():
    """4 contexts x 12 perturbations x 8 genes, complete."""
    return make_synthetic_perturbations(4, 12, 8, random_state=1)


def holdout_context(X, context, keep=0.2, seed=0):
    """Train rows (all other contexts plus ``keep`` of ``context``) and test rows."""
    rng = np.random.RandomState(seed)
    idx = np.flatnonzero(X["context"].to_numpy() == context)
    rng.shuffle(idx)
    n_keep = max(1, round(keep * len(idx)))
    test = np.sort(idx[n_keep:])
    train = np.setdiff1d(np.arange(len(X)), test)
    return train, test


@contextlib.contextmanager
def warns_at(filename: str, category=UserWarning, match: str | None = None):
    """``pytest.warns`` that also asserts every matching warning names a line of ``filename``.

    A package warning must point at the user's code (``__file__`` of the
    calling test), not at a frame inside the package or a library it uses.
    """
    with pytest.warns(category, match=match) as record:
        yield record
    hits = [w for w in record if issubclass(w.category, category)
            and (match is None or re.search(match, str(w.message)))]
    assert {w.filename for w in hits} == {filename}, [(w.filename, w.lineno) for w in hits]
