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
CROSSED_METHOD = (
    "paired bootstrap over seeds and test users, one user draw shared by every seed (the same users in "
    "every seed; percentile, {resamples} resamples)"
)


def crossed_weights(n_seeds: int, n_users: int, resamples: int, rng: np.random.Generator, chunk: int = 256):
    """Bootstrap weights of a seeds x users design where every seed measured the same users: per
    replicate, how often each seed and each user was drawn (with replacement). Yields (seed counts
    (b, n_seeds), user counts (b, n_users)) in chunks of b <= `chunk` replicates (bounded memory); a
    statistic that sums f[s, u] over the design is then (seed counts @ F * user counts).sum(1)."""
    for lo in range(0, resamples, chunk):
        b = min(chunk, resamples - lo)
        seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=b) if n_seeds > 1 else np.ones((b, 1))
        yield seeds.astype(float), rng.multinomial(n_users, np.full(n_users, 1 / n_users), size=b).astype(float)


def crossed_sums(matrices: list[np.ndarray], resamples: int = 2000, seed: int = 0) -> list[np.ndarray]:
    """For each (n_seeds, n_users) matrix, its weighted sum in each of `resamples` crossed bootstrap
    replicates (crossed_weights), every matrix under the same draws: (resamples,) each."""
    n_seeds, n_users = matrices[0].shape
    out = [[] for _ in matrices]
    for seeds, users in crossed_weights(n_seeds, n_users, resamples, np.random.default_rng(seed)):
        for acc, f in zip(out, matrices):
            acc.append(((seeds @ f) * users).sum(1))
    return [np.concatenate(acc) for acc in out]


def paired_bootstrap(
    differences: list[np.ndarray], level: float = 0.95, resamples: int = 2000, seed: int = 0, same_users: bool = False
) -> tuple[float, float, float]:
    """(mean, low, high) of a paired per-user difference that covers test users and training seeds.

    `differences[s]` holds, for seed s, model minus reference on each test user of that seed's split
    (the same users in both models). Seeds are drawn with replacement. `same_users`: every seed
    measured the same users in the same order (one fixed split, seeds of training only), so a
    replicate draws one set of users and applies it to every seed: a user's effect is shared across
    seeds, and drawing users independently per seed would divide its variance by the seeds (an
    interval too narrow). Otherwise (a split per seed) each drawn seed draws its own users. With one
    seed only the users are resampled. The interval is the percentile interval.
    """
    diffs = [np.asarray(d, dtype=float) for d in differences]
    if not diffs or any(len(d) == 0 for d in diffs):
        return math.nan, math.nan, math.nan
    mean = float(np.mean([d.mean() for d in diffs]))
    tail = (1 - level) / 2 * 100
    if same_users:
        if len({len(d) for d in diffs}) != 1:
            raise ValueError("same_users: every seed must hold one value per user, the same users in the same order")
        matrix = np.stack(diffs)  # (seeds, users)
        replicates = crossed_sums([matrix], resamples, seed)[0] / matrix.size
        low, high = np.percentile(replicates, [tail, 100 - tail])
        return mean, float(low), float(high)
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
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return mean, float(low), float(high)
