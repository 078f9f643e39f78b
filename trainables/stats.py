"""Intervals used on both sides (the driver's summaries and reports, trainables' test figures)."""

import math

import numpy as np
from scipy import stats


def confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float, float]:
    """(mean, sample std, low, high) with a Student-t interval; a single value has zero width."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, 0.0, mean, mean
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * std / math.sqrt(len(x))
    return mean, std, mean - half, mean + half
