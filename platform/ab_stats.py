"""The statistics of `platform.ab`: one treatment against the control on one user-level metric.

Two designs. Split: each user is in one arm, the arms are independent samples (Welch). Paired: every
user runs through every arm on common random numbers, the unit is the user's difference (paired t).
Relative lifts take the control's mean as the noisy estimate it is (delta method: the variance of
mean(t) / mean(c) - 1 is var(mean(t) - R mean(c)) / mean(c)^2 at R = mean(t) / mean(c)). CUPED
subtracts theta (x - mean x) from each arm's outcome, x the user's pre-experiment value of the same
metric and theta that arm's regression slope on it (Lin's interacted adjustment; in the paired design
it is the difference's slope). Power and minimum detectable effects use the measured variance of one
user's contribution. mSPRT (Johari et al. 2017, normal mixture) gives always-valid p-values for
analyses at interim looks.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

SPLIT, PAIRED = "split", "paired"
DESIGNS = (SPLIT, PAIRED)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One metric of one comparison: per-user values (paired: the same users in the same order) and,
    with CUPED, the users' pre-experiment values of the metric."""

    treatment: np.ndarray  # (n_t,)
    control: np.ndarray  # (n_c,); n_c == n_t and aligned by user when paired
    pre_treatment: np.ndarray | None = None
    pre_control: np.ndarray | None = None


def cuped(sample: Sample, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """(treatment, control) adjusted by each arm's slope on the pre-period value, centred at the mean
    pre-period value of every user in the comparison (so each arm's mean stays unbiased)."""
    xt, xc = sample.pre_treatment, sample.pre_control
    centre = xt.mean() if paired else np.concatenate([xt, xc]).mean()

    def adjust(y, x):
        var = x.var(ddof=1)
        theta = np.cov(y, x)[0, 1] / var if var > 0 else 0.0
        return y - theta * (x - centre)

    return adjust(sample.treatment, xt), adjust(sample.control, xc)


def compare(sample: Sample, alpha: float, design: str) -> dict:
    """Difference of means with its interval at `alpha` (Welch t, or paired t), its p-value, the
    relative lift with a delta-method interval (same critical value), the variance of one user's
    contribution (`unit_var`: var(t) + var(c) split, var(t - c) paired; what power needs), and
    `pairing`: how much smaller the paired design's variance is than the split design's at the same
    users per arm, (var(t) + var(c)) / var(t - c), measured on these users. With pre-period values:
    `cuped`, the variance of the difference without CUPED over with it."""
    paired = design == PAIRED
    t, c = sample.treatment.astype(float), sample.control.astype(float)
    out = {}
    if sample.pre_treatment is not None:
        raw = _variance(t, c, paired)
        t, c = cuped(sample, paired)
        out["cuped"] = raw / _variance(t, c, paired) if _variance(t, c, paired) > 0 else math.nan
    mt, mc = t.mean(), c.mean()
    diff = mt - mc
    if paired:
        d = t - c
        unit_var, n = d.var(ddof=1), len(d)
        var, df = unit_var / n, n - 1
        out["pairing"] = (t.var(ddof=1) + c.var(ddof=1)) / unit_var if unit_var > 0 else math.nan
    else:
        vt, vc = t.var(ddof=1) / len(t), c.var(ddof=1) / len(c)
        unit_var, var = t.var(ddof=1) + c.var(ddof=1), vt + vc
        df = var**2 / (vt**2 / (len(t) - 1) + vc**2 / (len(c) - 1)) if var > 0 else 1.0
    se = math.sqrt(var)
    crit = stats.t.ppf(1 - alpha / 2, df)
    if se == 0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(2 * stats.t.sf(abs(diff) / se, df))
    ratio = mt / mc if mc else math.nan
    rel_se = relative_se(t, c, paired)
    return {
        **out,
        "diff": diff,
        "low": diff - crit * se,
        "high": diff + crit * se,
        "p": p,
        "relative": ratio - 1,
        "rel_low": ratio - 1 - crit * rel_se,
        "rel_high": ratio - 1 + crit * rel_se,
        "control_mean": mc,
        "unit_var": unit_var,
        "se": se,
    }


def _variance(t: np.ndarray, c: np.ndarray, paired: bool) -> float:
    """The variance of the estimated difference of means."""
    if paired:
        return (t - c).var(ddof=1) / len(t)
    return t.var(ddof=1) / len(t) + c.var(ddof=1) / len(c)


def relative_se(t: np.ndarray, c: np.ndarray, paired: bool) -> float:
    """Delta-method standard error of mean(t) / mean(c): sqrt(var(mean(t) - R mean(c))) / mean(c)."""
    mc = c.mean()
    if not mc:
        return math.nan
    ratio = t.mean() / mc
    if paired:
        var = (t - ratio * c).var(ddof=1) / len(t)
    else:
        var = t.var(ddof=1) / len(t) + ratio**2 * c.var(ddof=1) / len(c)
    return math.sqrt(var) / abs(mc)


def naive_relative(t: np.ndarray, c: np.ndarray, alpha: float) -> tuple[float, float]:
    """The interval this module replaced: Welch's difference interval divided by the control's mean as
    if it were known (too narrow for large lifts; kept to show that in a test)."""
    vt, vc = t.var(ddof=1) / len(t), c.var(ddof=1) / len(c)
    df = (vt + vc) ** 2 / (vt**2 / (len(t) - 1) + vc**2 / (len(c) - 1))
    half = stats.t.ppf(1 - alpha / 2, df) * math.sqrt(vt + vc)
    diff, mc = t.mean() - c.mean(), c.mean()
    return (diff - half) / mc, (diff + half) / mc


def bootstrap_relative(
    t: np.ndarray, c: np.ndarray, paired: bool, alpha: float, resamples: int = 4000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(t) / mean(c) - 1 (users resampled; paired: together)."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for lo in range(0, resamples, 200):
        hi = min(lo + 200, resamples)
        pick_t = rng.integers(0, len(t), (hi - lo, len(t)))
        pick_c = pick_t if paired else rng.integers(0, len(c), (hi - lo, len(c)))
        out[lo:hi] = t[pick_t].mean(1) / c[pick_c].mean(1) - 1
    low, high = np.percentile(out, [50 * alpha, 100 - 50 * alpha])
    return float(low), float(high)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values."""
    order = np.argsort(pvalues)
    adjusted, running = np.empty(len(pvalues)), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def users_needed(unit_var: float, control_mean: float, lift: float, alpha: float, power: float) -> float:
    """Users per arm for a two-sided test at `alpha` to detect a relative `lift` with `power`:
    (z_{1-alpha/2} + z_power)^2 unit_var / (lift x control mean)^2."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return z**2 * unit_var / (lift * control_mean) ** 2


def mde(unit_var: float, control_mean: float, users: int, alpha: float, power: float) -> float:
    """The relative lift detectable with `power` at `users` per arm (the inverse of users_needed)."""
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return z * math.sqrt(unit_var / users) / abs(control_mean)


def msprt(estimate: float, variance: float, tau: float) -> float:
    """The mixture likelihood ratio of H0: difference = 0 for an estimate with `variance`, mixing the
    alternative over N(0, tau^2). Rejecting when it reaches 1 / alpha at any look keeps the error at
    alpha however often one looks."""
    if variance <= 0:
        return math.inf if estimate else 1.0
    total = variance + tau**2
    return math.sqrt(variance / total) * math.exp(min(700.0, tau**2 * estimate**2 / (2 * variance * total)))


def confidence_sequence(estimate: float, variance: float, tau: float, alpha: float) -> tuple[float, float]:
    """The always-valid interval matching msprt(): every difference it does not reject at 1 / alpha."""
    total = variance + tau**2
    half = math.sqrt(variance * total / tau**2 * (math.log(total / variance) + 2 * math.log(1 / alpha)))
    return estimate - half, estimate + half


def clopper_pearson(hits: int, runs: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of a rate (the A/A false-positive rate)."""
    tail = (1 - level) / 2
    low = stats.beta.ppf(tail, hits, runs - hits + 1) if hits else 0.0
    high = stats.beta.ppf(1 - tail, hits + 1, runs - hits) if hits < runs else 1.0
    return float(low), float(high)
