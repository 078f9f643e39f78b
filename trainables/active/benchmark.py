"""One cell of the active-learning benchmark (`platform.al_compare`): a (task, strategy, seed) run as
a Ray task. It sits above both the fixed strategies and the learned policy, so that neither imports
the other's module back."""

import numpy as np

from envs import active
from trainables.active import policy as learned
from trainables.active.strategies import STRATEGIES, episode, full_accuracy, summarise


def run_cell(env: dict, strategy: str, seed: int, policy: str | None = None) -> dict:
    """The curve, the full-pool accuracy, the summary figures and, for a learned policy (`policy`: the
    path of its saved network), its decisions."""
    cfg = active.ActiveConfig(**env)
    full = full_accuracy(cfg, seed)
    decisions = None
    if strategy == "policy":
        decisions = learned.Decisions()
        curve = learned.PolicyStrategy(learned.load_policy(policy)).curve(cfg, seed, decisions)
    else:
        curve = episode(cfg, STRATEGIES[strategy](), seed)
    start = len(active.Split.make(cfg, seed).start)
    return {
        "curve": [list(c) for c in curve],
        "full": full,
        "test": summarise(curve, full, start),
        "decisions": None if decisions is None else np.asarray(decisions.rows).tolist(),
    }
