"""make_synthetic_perturbations and the regimes its options simulate."""

import numpy as np
import pytest
from scipy.stats import norm

from c3tl_sklearn.datasets import PerturbationDesign, make_synthetic_perturbations


def test_options_off_leave_the_draws_unchanged():
    _, Y, truth = make_synthetic_perturbations(5, 20, 30, return_truth=True, random_state=3)
    _, Y2 = make_synthetic_perturbations(
        5, 20, 30, design=PerturbationDesign(context_offset=0.0, noise_df=None,
                                             rank_transform=False), random_state=3)
    np.testing.assert_array_equal(Y.to_numpy(), Y2.to_numpy())
    assert np.allclose(Y.to_numpy(), truth["effects"], atol=1.0)


def test_context_offset_shifts_every_effect_of_a_context_alike():
    _, base = make_synthetic_perturbations(6, 40, 25, design=PerturbationDesign(noise=0.0),
                                           random_state=0)
    X, shifted = make_synthetic_perturbations(
        6, 40, 25, design=PerturbationDesign(noise=0.0, context_offset=2.0), random_state=0)
    shift = shifted.to_numpy() - base.to_numpy()
    for ctx in X["context"].unique():
        rows = shift[(X["context"] == ctx).to_numpy()]
        np.testing.assert_allclose(rows, np.broadcast_to(rows[0], rows.shape), atol=1e-5)
    assert 1.0 < shift.std() < 3.0


def test_rank_transform_gives_signed_normal_scores_in_the_row_order():
    _, raw = make_synthetic_perturbations(4, 10, 50, random_state=1)
    _, ranked = make_synthetic_perturbations(
        4, 10, 50, design=PerturbationDesign(rank_transform=True), random_state=1)
    raw, ranked = raw.to_numpy(), ranked.to_numpy()
    scores = norm.ppf((np.arange(50) + 0.5) / 50)
    for r, q in zip(raw, ranked, strict=True):
        np.testing.assert_allclose(np.sort(q), scores, atol=1e-5)
        np.testing.assert_array_equal(np.argsort(q), np.argsort(r))


def test_student_t_noise_has_the_requested_scale_and_heavy_tails():
    _, Y, truth = make_synthetic_perturbations(
        8, 100, 200, design=PerturbationDesign(noise=0.5, noise_df=3), return_truth=True,
        random_state=2)
    eps = Y.to_numpy() - truth["effects"]
    assert abs(eps.std() - 0.5) < 0.05
    kurtosis = np.mean(eps**4) / np.mean(eps**2) ** 2
    assert kurtosis > 4.0  # a Gaussian has 3


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="noise_df must be above 2"):
        PerturbationDesign(noise_df=2)
    with pytest.raises(ValueError, match="context_offset"):
        PerturbationDesign(context_offset=-1)
