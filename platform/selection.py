"""Selection on validation, then one test measurement per selected trial.

`score` is a validation figure: the trial (or, with --seeds, the trial of each seed's population)
with the best last `score` is selected, and only then is its final checkpoint restored and measured
on the test split, once. The test figures are written to the experiment folder as `test.json`.
"""

import json
from pathlib import Path

import ray

from platform import results as recorded
from trainables import runtime

TEST_FILE = "test.json"


def selected(results, plan) -> list:
    """The selected trials: one per seed (its population's best, or its own with --search none)
    when --seeds > 1, otherwise the single best, in seed order. Trials without a finite score, or
    that errored, are never selected."""
    chosen = recorded.selected(results, plan.spec.metric, plan.spec.mode, per_seed=plan.seeds > 1)
    return sorted(chosen, key=lambda r: str(r.config.get("seed")))


def measure_selected(results, plan) -> list[dict]:
    """Restores each selected trial's last checkpoint and measures it on the test split, in a Ray
    task with the trial's resources (on a cluster it runs wherever they are free). Returns one dict
    per selected trial: its name, seed, validation score and test figures."""
    if not plan.spec.measures_test:
        return []
    chosen = [r for r in selected(results, plan) if r.checkpoint is not None]
    # A function of trainables/, not of this package: workers import `platform` as the standard module.
    task = ray.remote(runtime.checkpoint_test_figures).options(
        num_cpus=plan.cpus_per_trial, num_gpus=plan.gpus_per_trial
    )
    figures = ray.get([task.remote(plan.spec.trainable, r.config, r.checkpoint) for r in chosen])
    out = [
        {
            "trial": Path(r.path).name,
            "seed": r.config.get("seed"),
            "iteration": r.metrics.get("training_iteration"),
            plan.spec.metric: r.metrics[plan.spec.metric],
            **test,
        }
        for r, test in zip(chosen, figures)
    ]
    if plan.local_dir is not None:
        (plan.local_dir / TEST_FILE).write_text(json.dumps(out, indent=1))
    return out
