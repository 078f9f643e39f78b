"""The paired bootstrap over seeds and test users (trainables/stats.py)."""

import math

import numpy as np
import pytest

from trainables.stats import confidence_interval, paired_bootstrap


def test_one_seed_matches_the_normal_interval_of_a_paired_mean():
    d = np.random.default_rng(1).normal(0.02, 0.3, 900)
    mean, low, high = paired_bootstrap([d])
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert mean == pytest.approx(d.mean())
    assert low == pytest.approx(d.mean() - half, abs=0.003) and high == pytest.approx(d.mean() + half, abs=0.003)


def test_seed_to_seed_variation_widens_the_interval():
    rng = np.random.default_rng(2)
    users = rng.normal(0.0, 0.3, 600)
    same = [users + rng.normal(0, 0.01, 600) for _ in range(3)]
    shifted = [s + shift for s, shift in zip(same, (-0.05, 0.0, 0.05))]
    _, low_same, high_same = paired_bootstrap(same)
    _, low_shift, high_shift = paired_bootstrap(shifted)
    assert high_shift - low_shift > 1.5 * (high_same - low_same)


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    covered = 0
    for trial in range(100):
        seeds = [rng.normal(0.01 + rng.normal(0, 0.01), 0.25, 300) for _ in range(3)]
        _, low, high = paired_bootstrap(seeds, resamples=500, seed=trial)
        covered += low <= 0.01 <= high
    assert 85 <= covered <= 100


def test_an_interval_that_cannot_be_computed_says_so():
    assert all(math.isnan(v) for v in paired_bootstrap([np.array([])]))
    mean, std, low, high = confidence_interval([0.3])
    assert mean == 0.3 and math.isnan(low) and math.isnan(high)


def test_same_users_in_every_seed_are_drawn_once_for_all_seeds():
    """One fixed split, seeds of training only: d[s, u] = mu + user effect + small seed noise. Drawing
    users per seed divides the user effect's variance by the seeds (about 74% coverage at 3 seeds);
    one draw shared by the seeds covers about 95%."""
    rng = np.random.default_rng(4)
    covered = {False: 0, True: 0}
    for trial in range(100):
        users = rng.normal(0.0, 0.3, 300)
        seeds = [0.01 + users + rng.normal(0, 0.002) + rng.normal(0, 0.02, 300) for _ in range(3)]
        for same in covered:
            _, low, high = paired_bootstrap(seeds, resamples=400, seed=trial, same_users=same)
            covered[same] += low <= 0.01 <= high
    assert covered[True] >= 88 and covered[False] <= 85, covered
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap([np.zeros(3), np.zeros(4)], same_users=True)
