"""The Ray tasks of the active-learning benchmarks: one cell of `platform.al_compare` (a (task,
strategy, seed) run), and the learned policy's training and testing for `platform.al_lodo`. It sits
above both the fixed strategies and the learned policy, so that neither imports the other's module
back."""

import time
from pathlib import Path

import numpy as np
import torch

from envs import active
from trainables import runtime
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


def train_policy(config: dict, folder: str) -> dict:
    """Trains `al` (trainables/active/policy.py) for its `iterations` and saves the network in
    `folder` (state.pt, the config beside the weights); returns its last validation figures."""
    tick = time.perf_counter()
    trainable = runtime.standalone(learned.ActiveLearningTrainable, config)
    try:
        for _ in range(trainable.cfg.iterations):
            result = trainable.train()
        Path(folder).mkdir(parents=True, exist_ok=True)
        trainable.save_checkpoint(folder)
    finally:
        trainable.stop()
    return {"checkpoint": folder, "valid_minus_margin": result["valid/aulc_minus_margin"],
            "valid_aulc": result["valid/aulc"], "episodes": result["train/episodes"],
            "seconds": time.perf_counter() - tick}  # fmt: skip


def trained_on(checkpoint: str) -> tuple[str, ...]:
    """The datasets the `al` network saved in `checkpoint` was trained on (its config says)."""
    config = torch.load(Path(checkpoint) / "state.pt", weights_only=False)["config"]
    return learned.ALConfig(**config).datasets


def evaluate_policy(checkpoint: str, env: dict, splits: list[int]) -> dict:
    """The greedy policy in `checkpoint` on `splits` of env's dataset, which it must not have trained
    on (ValueError otherwise): per split the test AULC of accuracy and balanced accuracy, and its
    picks' mean candidate features by fifth of the budget (sums (bins, features) and counts (bins,))."""
    seen = trained_on(checkpoint)
    if env["dataset"] in seen:
        raise ValueError(f"the policy in {checkpoint} was trained on {env['dataset']}; test it on a held-out one")
    aulc, balanced, exhausted, picks = [], [], 0, []
    for split in splits:
        cell = run_cell(env, "policy", split, checkpoint)
        aulc.append(cell["test"]["aulc"])
        balanced.append(cell["balanced"]["aulc"])
        exhausted += cell["exhausted"]
        picks.append(np.asarray(cell["decisions"]))
    sums, counts = learned.decision_bins(np.concatenate(picks))
    return {"aulc": aulc, "balanced": balanced, "exhausted": exhausted, "decision_sums": sums.tolist(),
            "decision_counts": counts.tolist()}  # fmt: skip


def evaluate_strategy(env: dict, strategy: str, splits: list[int]) -> dict:
    """A fixed strategy on `splits` of env's dataset: per split the test AULC of accuracy and of
    balanced accuracy."""
    cells = [run_cell(env, strategy, split) for split in splits]
    return {"aulc": [c["test"]["aulc"] for c in cells], "balanced": [c["balanced"]["aulc"] for c in cells],
            "exhausted": sum(c["exhausted"] for c in cells)}  # fmt: skip
