"""The same command gives the same PBT run: the initial population, every exploit and explore, and
so every trial's scores (the trainables are seeded; the driver's sampling follows the run's seed)."""

import pytest

from platform import ray_compat
from platform import results as recorded
from platform import tune as cli
from trainables import metrics as m

# The smoke population (2 trials, a perturbation every iteration) for 2 iterations: one exploit and
# explore at iteration 1, and a second iteration trained from what it decided.
ARGV = ["dt", "--budget", "smoke", "--set", "iterations=2"]


def pbt_run(storage, name: str, *extra: str) -> tuple[list, list]:
    """(each trial's rows as (config, score), the PBT log's exploits) of a run of ARGV."""
    assert cli.run([*ARGV, *extra, "--storage", str(storage), "--name", name]) == 0
    experiment = recorded.load(str(storage / name))
    trials = [[(row["config"], row.get(m.SCORE)) for row in t.rows] for t in experiment.trials]
    log = experiment.folder.read(ray_compat.PBT_LOG) if experiment.folder.exists(ray_compat.PBT_LOG) else ""
    # (target, cloned, cloned config, new config): Tune logs the two trials' iterations too, read from
    # last_result, which the reporting trial has not updated yet, so they follow arrival order.
    exploits = [(target, cloned, before, after) for target, cloned, _, _, before, after in ray_compat.pbt_exploits(log)]
    return trials, exploits


@pytest.mark.slow
def test_same_command_same_run(ray_session, tmp_path):
    first, first_exploits = pbt_run(tmp_path / "a", "first")
    again, again_exploits = pbt_run(tmp_path / "b", "again")
    assert first_exploits, "the run must exploit at least once for this test to mean anything"
    # every exploit clones the same trial at the same iteration into the same perturbed config
    assert again_exploits == first_exploits
    # row for row: the initial configs, the configs after the exploit, and every score
    assert again == first
    assert all(rows[-1][1] is not None for rows in first)
    # another seed, other draws: tests/test_pbt_behaviours.py (without Ray, to keep the suite short)
