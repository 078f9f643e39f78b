"""Search space for tabular Q-learning (trainables/rl/qtable.py): the floor of the CartPole comparison."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables import metrics as m
from trainables.rl import qtable

PBT_MUTATIONS = {
    "lr": tune.uniform(0.02, 0.5),
    "gamma": [0.95, 0.98, 0.99, 0.995],
    "epsilon_horizon": [250, 500, 1000, 2000],
}
assert set(PBT_MUTATIONS) <= set(qtable.MUTABLE_FIELDS)


def optuna_space(trial) -> dict:
    """Discretization of the pole (angle, angular velocity) and cart, step size, discount, exploration."""
    kind = trial.suggest_categorical("epsilon.kind", ["linear", "exp", "cosine"])
    return {
        "buckets": [
            trial.suggest_int("buckets.x", 1, 4),
            trial.suggest_int("buckets.x_dot", 1, 4),
            trial.suggest_int("buckets.theta", 4, 12),
            trial.suggest_int("buckets.theta_dot", 4, 12),
        ],
        "lr": trial.suggest_float("lr", 0.02, 0.5, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.95, 0.98, 0.99, 0.995]),
        "epsilon": {"kind": kind, "start": 1.0, "end": trial.suggest_float("epsilon.end", 0.005, 0.1, log=True)},
        "epsilon_horizon": trial.suggest_int("epsilon_horizon", 200, 3000, log=True),
    }


SPEC = ModelSpec(
    trainable="trainables.rl.qtable:QTableTrainable",
    config=qtable.QTableConfig,
    check=qtable.parse,
    description="Tabular Q-learning over a discretized observation: the floor every CartPole model is compared with",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
    budgets={
        "smoke": Budget(
            samples=2,
            overrides={"iterations": 2, "steps_per_iteration": 1000, "eval_episodes": 3},
            perturbation_interval=1,
        ),
        "full": Budget(samples=4, overrides={}, perturbation_interval=3, grace_period=3),
    },
    seed_metrics=(m.SOLVE_ENV_STEPS, m.SOLVE_SECONDS),
    measures_test=True,
)
