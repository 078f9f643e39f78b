"""ResumablePBT's behaviours, each switched off on its own (no Ray cluster: stub trials).

In-place exploits need a running population; tests/test_cli_rl.py covers them end to end.
"""

import random
import types

import pytest
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune import Checkpoint
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from platform import ray_compat
from platform.schedulers import ResumablePBT

INTERVAL = 4
# What Tune's PBT reads of the controller when a trial is added: no searcher to check.
CONTROLLER = types.SimpleNamespace(search_alg=None)


def pbt(**flags) -> ResumablePBT:
    return ResumablePBT(
        time_attr="training_iteration",
        metric="score",
        mode="max",
        perturbation_interval=INTERVAL,
        hyperparam_mutations={"lr": [0.1, 0.2]},
        quantile_fraction=0.25,
        synch=True,
        **flags,
    )


def stub_trial(tmp_path, index: int, seed: int) -> Trial:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=f"t{index}")
    return Trial("__fake", config={"seed": seed, "lr": 0.1}, stub=True, storage=storage, trial_id=f"t{index}")


@pytest.mark.parametrize("per_seed", [True, False])
def test_per_seed_takes_quantiles_within_each_seed(per_seed, tmp_path):
    scheduler = pbt(per_seed=per_seed)
    scores = {0: [1, 2, 3, 4], 1: [101, 102, 103, 104]}  # seed -> its trials' scores
    trials = {}
    for seed, values in scores.items():
        for value in values:
            trial = stub_trial(tmp_path, len(trials), seed)
            scheduler.on_trial_add(CONTROLLER, trial)
            scheduler.save_trial_state(trial, INTERVAL, {"score": value, "training_iteration": INTERVAL})
            trials[trial] = value
    lower, upper = scheduler.quantiles()
    # a quarter of each seed's 4 trials, or a quarter of all 8 when the seeds are one population
    expected = ([1, 101], [4, 104]) if per_seed else ([1, 2], [103, 104])
    assert (sorted(trials[t] for t in lower), sorted(trials[t] for t in upper)) == expected
    if per_seed:  # and a trial clones only within its own seed
        weakest = next(t for t, v in trials.items() if v == 101)
        mine = [t for t in upper if t.config["seed"] == 1]
        assert [trials[t] for t in mine] == [104]
        assert weakest in lower


@pytest.mark.parametrize("resume", [True, False])
def test_resume_rebuilds_a_restored_trials_state(resume, tmp_path):
    scheduler = pbt(resume=resume)
    trial = stub_trial(tmp_path, 0, seed=0)
    # restored: it reported up to iteration 9 and its checkpoint holds iteration 8
    trial.update_last_result({"training_iteration": 9, "score": 0.5})
    checkpoint = tmp_path / "checkpoint_000008"
    checkpoint.mkdir()
    ray_compat.set_latest_checkpoint_result(
        trial, ray_compat.training_result(Checkpoint(str(checkpoint)), {"training_iteration": 8})
    )
    scheduler.on_trial_add(CONTROLLER, trial)
    state = scheduler.trial_state[trial]
    if resume:  # continues from its checkpoint, waits for the scheduler, synchronises at 8
        assert (state.last_train_time, trial.status, scheduler.next_sync) == (8, Trial.PAUSED, 8)
        catching_up = {"training_iteration": 5, "score": 0.1}
        assert scheduler.on_trial_result(None, trial, catching_up) == TrialScheduler.CONTINUE
    else:  # Tune's own: from time 0, PENDING, the first synchronisation point
        assert (state.last_train_time, trial.status, scheduler.next_sync) == (0, Trial.PENDING, INTERVAL)


def test_flags_default_to_the_behaviour_tunelab_runs():
    scheduler = pbt()
    assert (scheduler.resume, scheduler.in_place_exploit, scheduler._population_key) == (True, True, None)
    assert pbt(per_seed=True)._population_key == "seed"


def test_seed_makes_the_sampling_repeatable_and_leaves_the_shared_rngs_alone(tmp_path):
    mutations = {"lr": tune.loguniform(1e-4, 1e-1), "width": [16, 32, 64, 128]}

    def filled(seed):
        """The values Tune's PBT samples for trials whose config lacks the mutated keys."""
        scheduler = ResumablePBT(
            time_attr="training_iteration",
            metric="score",
            mode="max",
            perturbation_interval=INTERVAL,
            hyperparam_mutations=mutations,
            synch=True,
            seed=seed,
        )
        out = []
        for index in range(8):
            trial = stub_trial(tmp_path, index, 0)
            del trial.config["lr"]
            scheduler.on_trial_add(CONTROLLER, trial)
            out.append((trial.config["lr"], trial.config["width"]))
        return out

    state = random.getstate()
    assert filled(3) == filled(3)
    assert filled(3) != filled(4)
    assert random.getstate() == state
    assert filled(None) != filled(None)  # Tune's own: the shared RNGs
