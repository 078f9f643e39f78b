"""Active-learning env speed (run from the repository root: `python bench/active.py`).

One run, one process: a full episode of the env (pool of 1,000 points from `gen-large`, K = 10,
budget 200, logistic regression; random actions) against a plain loop of the same retraining (the
same 20 batches of labels: fit, then score the validation and test sets, plus the reward's fit on a
random control batch), both on the same splits; then seconds per episode of each strategy.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.modules.pop("platform", None)

from envs import active  # noqa: E402
from trainables.active import strategies  # noqa: E402

SEEDS = range(3)


def plain_loop(cfg: active.ActiveConfig, seed: int, batches: list[np.ndarray]) -> float:
    """The retraining alone: fit on the growing labelled set, score validation and test, and (as the
    env's reward does) fit once more with a random batch of the same size instead, scored on validation."""
    x, y = active.load_task(cfg.dataset)
    split = active.Split.make(cfg, seed)
    labelled = np.zeros(len(split.pool), bool)
    labelled[split.start] = True
    rng = np.random.default_rng(seed)
    tick = time.perf_counter()
    for batch in [np.array([], int)] + batches:
        if len(batch) and cfg.center:
            control = labelled.copy()
            control[rng.choice(np.flatnonzero(~labelled), len(batch), replace=False)] = True
            rows = split.pool[control]
            active.make_classifier(cfg.classifier, seed).fit(x[rows], y[rows]).score(x[split.valid], y[split.valid])
        labelled[batch] = True
        rows = split.pool[labelled]
        model = active.make_classifier(cfg.classifier, seed).fit(x[rows], y[rows])
        model.score(x[split.valid], y[split.valid])
        model.score(x[split.test], y[split.test])
    return time.perf_counter() - tick


def main() -> None:
    cfg = active.ActiveConfig(dataset="gen-large", batch=10, budget=200)
    active.load_task(cfg.dataset)
    env_seconds, plain_seconds, steps = [], [], 0
    for seed in SEEDS:
        env = active.ActiveLearningEnv(**vars(cfg))
        tick = time.perf_counter()
        env.reset(seed=seed, options={"split": seed})
        done, picks = False, []
        while not done:
            _, _, done, _, info = env.step(int(env.np_random.integers(cfg.candidates)))
            picks.append(info["pick"])
            steps += 1
        env_seconds.append(time.perf_counter() - tick)
        batches = [np.array(picks[i : i + cfg.batch]) for i in range(0, len(picks), cfg.batch)]
        plain_seconds.append(plain_loop(cfg, seed, batches))
    pool = len(active.Split.make(cfg, 0).pool)
    print(f"task gen-large: pool {pool}, K {cfg.batch}, budget {cfg.budget}, {cfg.classifier}; {len(SEEDS)} episodes")
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| env steps/s (one pick per step, candidates and features included) | {steps / sum(env_seconds):,.0f} |")
    print(f"| seconds per full episode, env | {np.mean(env_seconds):.2f} |")
    print(f"| seconds per full episode, plain retraining loop | {np.mean(plain_seconds):.2f} |")
    print(f"| env / plain loop | {np.mean(env_seconds) / np.mean(plain_seconds):.2f}x |")
    for name in ("random", "margin", "kmeans", "coreset", "badge", "albl", "oracle"):
        tick = time.perf_counter()
        for seed in SEEDS:
            strategies.episode(cfg, strategies.STRATEGIES[name](), seed)
        print(f"| seconds per episode, {name} | {(time.perf_counter() - tick) / len(SEEDS):.2f} |")


if __name__ == "__main__":
    main()
