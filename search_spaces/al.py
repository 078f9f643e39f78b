"""Search space of the learned batch active-learning policy (trainables/active/policy.py): its learning rate and
the schedules of its entropy bonus and softmax temperature."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables.active import policy

PBT_MUTATIONS = {
    "lr": tune.loguniform(1e-4, 1e-2),
    # PBT perturbs the starting value of each schedule (the end stays): nested keys of the dicts.
    "entropy": {"start": [0.001, 0.003, 0.01, 0.02, 0.05]},
    "temperature": {"start": [0.3, 0.5, 1.0, 2.0]},
}
assert set(PBT_MUTATIONS) <= set(policy.MUTABLE_FIELDS)


def optuna_space(trial) -> dict:
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "entropy": {
            "kind": trial.suggest_categorical("entropy.kind", ["constant", "linear", "exp"]),
            "start": trial.suggest_float("entropy.start", 1e-3, 5e-2, log=True),
            "end": trial.suggest_float("entropy.end", 1e-4, 1e-2, log=True),
        },
        "temperature": {
            "kind": trial.suggest_categorical("temperature.kind", ["constant", "linear", "exp"]),
            "start": trial.suggest_float("temperature.start", 0.3, 3.0, log=True),
            "end": trial.suggest_float("temperature.end", 0.1, 1.0, log=True),
        },
        "hidden": trial.suggest_categorical("hidden", [32, 64, 128]),
        "episodes_per_iteration": trial.suggest_categorical("episodes_per_iteration", [2, 4, 8]),
    }


SPEC = ModelSpec(
    trainable="trainables.active.policy:ActiveLearningTrainable",
    config=policy.ALConfig,
    check=policy.parse,
    description="batch active learning: a REINFORCE policy picks which points to label, K at a time",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
    budgets={
        "smoke": Budget(
            samples=2,
            overrides={
                "train_datasets": "iris,wine",
                "held_out": "breast_cancer",
                "budget": 20,
                "batch": 5,
                "iterations": 2,
                "episodes_per_iteration": 1,
                "valid_seeds": 1,
                "test_seeds": 3,
            },  # fmt: skip
            perturbation_interval=1,
        ),
        "full": Budget(samples=4, overrides={}, perturbation_interval=5, grace_period=5),
    },
    measures_test=True,
)
