import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from c3tl_sklearn.datasets import make_synthetic_perturbations

# Two shared cores: more than one thread per process oversubscribes them and
# spin-waiting threads make tiny fits many times slower.
torch.set_num_threads(1)
threadpool_limits(1)


@pytest.fixture(scope="session")
def small_data():
    """6 contexts x 40 perturbations x 30 genes, about 80% of pairs observed."""
    return make_synthetic_perturbations(
        6, 40, 30, observed_fraction=0.8, noise=0.05, random_state=0
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
