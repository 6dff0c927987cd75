"""make_synthetic_perturbations and the regimes its options simulate."""

import numpy as np
import pytest
from scipy.stats import norm

from c3tl_sklearn.datasets import PerturbationDesign, make_synthetic_perturbations


def test_the_default_draw_is_pinned():
    # new options must leave the default draw as it was: these values were drawn before
    # context_offset, noise_df and rank_transform existed
    _, Y, truth = make_synthetic_perturbations(5, 20, 30, return_truth=True, random_state=3)
    Y = Y.to_numpy()
    np.testing.assert_allclose(Y[[0, 17, 99], [0, 11, 29]],
                               [-1.5240744, -0.210136, 2.5406475], rtol=1e-4)
    assert Y.sum(dtype=np.float64) == pytest.approx(-64.9056, rel=1e-4)
    assert np.abs(Y).sum(dtype=np.float64) == pytest.approx(2365.19, rel=1e-4)
    np.testing.assert_allclose(Y, truth["effects"], atol=1.0)


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


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"noise_df": 2}, "noise_df must be a finite number above 2"),
    ({"noise_df": float("inf")}, "noise_df"),
    ({"context_offset": -1}, "context_offset"),
    ({"latent_dim": 8.0}, "latent_dim must be an integer"),
    ({"hidden_dim": True}, "hidden_dim"),
    ({"noise": float("nan")}, "noise must be a non-negative number"),
    ({"context_scale": "0.7"}, "context_scale"),
    ({"rank_transform": "no"}, "rank_transform must be True or False"),
])
def test_bad_designs_are_refused_with_the_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PerturbationDesign(**kwargs)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_contexts": 0}, "n_contexts"),
    ({"n_genes": 2.0}, "n_genes must be an integer"),
    ({"observed_fraction": 0.0}, r"observed_fraction must be a number in \(0, 1\]"),
    ({"observed_fraction": True}, "observed_fraction"),
])
def test_bad_sizes_are_refused_with_the_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic_perturbations(**{"n_contexts": 2, "n_perturbations": 3, "n_genes": 4,
                                        **kwargs})


def test_a_design_stores_its_checked_values_as_plain_numbers():
    d = PerturbationDesign(latent_dim=np.int64(4), noise=np.float32(0.5), noise_df=5,
                           rank_transform=np.bool_(True))
    assert (type(d.latent_dim), type(d.noise), type(d.noise_df), d.rank_transform) == \
        (int, float, float, True)
    assert make_synthetic_perturbations(2, 3, 4, design=d, random_state=0)[1].shape == (6, 4)
