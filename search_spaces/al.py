"""Search space of the learned batch active-learning policy (trainables/active/policy.py): its learning rate and
the schedules of its entropy bonus and softmax temperature."""

from search_spaces import Budget, Choice, Float, ModelSpec, Space
from trainables.active import policy

SPACE = Space(
    dimensions={
        "lr": Float(1e-4, 1e-2, log=True),
        # PBT perturbs the starting value of each schedule (the end stays): nested keys of the dicts.
        "entropy.start": Choice((0.001, 0.003, 0.01, 0.02, 0.05)),
        "temperature.start": Choice((0.3, 0.5, 1.0, 2.0)),
        # Optuna and random search only.
        "entropy.kind": Choice(("constant", "linear", "exp")),
        "entropy.end": Float(1e-4, 1e-2, log=True),
        "temperature.kind": Choice(("constant", "linear", "exp")),
        "temperature.end": Float(0.1, 1.0, log=True),
        "hidden": Choice((32, 64, 128)),
        "episodes_per_iteration": Choice((2, 4, 8)),
    },
    pbt=("lr", "entropy.start", "temperature.start"),
)
assert SPACE.pbt_fields() <= set(policy.MUTABLE_FIELDS)


SPEC = ModelSpec(
    trainable="trainables.active.policy:ActiveLearningTrainable",
    config=policy.ALConfig,
    check=policy.parse,
    description="batch active learning: a REINFORCE policy picks which points to label, K at a time",
    space=SPACE,
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
