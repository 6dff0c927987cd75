"""Shared data and small models for the tuning tests."""

import pytest

from c3tl_sklearn import C3TLRegressor
from c3tl_sklearn.datasets import make_synthetic_perturbations
from c3tl_sklearn.model_selection import LeaveOneContextOut


@pytest.fixture(scope="module")
def data():
    """5 contexts x 30 perturbations x 20 genes."""
    return make_synthetic_perturbations(5, 30, 20, random_state=0)


def loco(n=2, fraction=0.2):
    return LeaveOneContextOut(adaptation_fraction=fraction, n_test_contexts=n, random_state=0)


def fast_c3tl(**kw):
    return C3TLRegressor(max_epochs=8, hidden_dims=(32,), latent_dim=8, random_state=0, **kw)


