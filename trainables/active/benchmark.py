"""One cell of the active-learning benchmark (`platform.al_compare`): a (task, strategy, seed) run as
a Ray task. It sits above both the fixed strategies and the learned policy, so that neither imports
the other's module back."""

import numpy as np

from envs import active
from trainables.active import policy as learned
from trainables.active import strategies


def run_cell(env: dict, strategy: str, seed: int, policy: str | None = None) -> dict:
    """The curve, the full-pool accuracies, the summary figures of test accuracy (`test`) and test
    balanced accuracy (`balanced`), the pool's size, and, for a learned policy (`policy`: the path
    of its saved network), its decisions."""
    cfg = active.ActiveConfig(**env)
    full, full_balanced = strategies.full_accuracies(cfg, seed)
    decisions = None
    if strategy == "policy":
        decisions = learned.Decisions()
        curve = learned.PolicyStrategy(learned.load_policy(policy)).curve(cfg, seed, decisions)
    else:
        curve = strategies.run(cfg, strategy, seed)
    split = active.Split.make(cfg, seed)
    start = len(split.start)
    return {
        "curve": [list(c) for c in curve],
        "full": full,
        "full_balanced": full_balanced,
        "pool": len(split.pool),
        "exhausted": curve[-1][0] < start + cfg.budget,  # the pool ran out before the budget
        "test": strategies.summarise(curve, full, start),
        "balanced": strategies.summarise(curve, full_balanced, start, split=3),
        "decisions": None if decisions is None else np.asarray(decisions.rows).tolist(),
    }
