"""Intervals used on both sides (the driver's summaries and reports, trainables' test figures)."""

import math

import numpy as np
from scipy import stats


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, low, high) with a Student-t interval. One value has no interval: std, low
    and high are NaN, and every renderer prints that as "n/a" rather than a zero-width interval."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half


BOOTSTRAP_METHOD = "paired bootstrap over seeds and test users (percentile, {resamples} resamples)"


def paired_bootstrap(
    differences: list[np.ndarray], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of a paired per-user difference that covers test users and training seeds.

    `differences[s]` holds, for seed s, model minus reference on each test user of that seed's split
    (the same users in both). A resample draws the seeds with replacement and, inside each drawn seed,
    its users with replacement; the statistic is the mean over drawn seeds of the mean over drawn
    users. With one seed only the users are resampled. The interval is the percentile interval.
    """
    diffs = [np.asarray(d, dtype=float) for d in differences]
    if not diffs or any(len(d) == 0 for d in diffs):
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    n_seeds = len(diffs)
    # (n_seeds, resamples, n_seeds slots) user-resampled means: slot j of replicate b uses its own draw.
    user_means = np.empty((n_seeds, resamples * n_seeds))
    for s, d in enumerate(diffs):
        for lo in range(0, resamples * n_seeds, 256):  # bounded memory: 256 x users draws at a time
            hi = min(lo + 256, resamples * n_seeds)
            user_means[s, lo:hi] = d[rng.integers(0, len(d), (hi - lo, len(d)))].mean(1)
    picks = rng.integers(0, n_seeds, (resamples, n_seeds)) if n_seeds > 1 else np.zeros((resamples, 1), int)
    slots = np.arange(resamples)[:, None] * n_seeds + np.arange(n_seeds)[None, :]
    replicates = user_means[picks, slots].mean(1)  # (resamples,)
    mean = float(np.mean([d.mean() for d in diffs]))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return mean, float(low), float(high)
