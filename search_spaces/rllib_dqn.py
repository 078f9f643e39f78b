"""Search space for RLlib DQN (trainables/rl/rllib_dqn.py): the library counterpart of our dqn."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables import metrics as m
from trainables.rl import rllib_dqn
from trainables.rl.rllib import place

PBT_MUTATIONS = {
    "lr": tune.loguniform(1e-4, 3e-3),
    "target_every": [250, 500, 1000],
}


def optuna_space(trial) -> dict:
    kind = trial.suggest_categorical("epsilon.kind", ["linear", "exp", "cosine"])
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "n_step": trial.suggest_int("n_step", 1, 5),
        "batch_size": 2 ** trial.suggest_int("log2_batch_size", 5, 8),
        "target_every": trial.suggest_categorical("target_every", [250, 500, 1000]),
        "epsilon": {"kind": kind, "start": 1.0, "end": trial.suggest_float("epsilon.end", 0.01, 0.1, log=True)},
        "epsilon_horizon": trial.suggest_int("epsilon_horizon", 2_000, 20_000, log=True),
        "dueling": trial.suggest_categorical("dueling", [False, True]),
        "prioritized": trial.suggest_categorical("prioritized", [False, True]),
    }


SPEC = ModelSpec(
    trainable="trainables.rl.rllib_dqn:RLlibDQNTrainable",
    config=rllib_dqn.RLlibDQNConfig,
    check=rllib_dqn.parse,
    description="RLlib DQN baseline (new API stack): prioritized episode replay, dueling, double, n-step",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
    budgets={
        "smoke": Budget(
            samples=2,
            overrides={
                "iterations": 2,
                "steps_per_iteration": 200,
                "learning_starts": 100,
                "buffer_size": 2_000,
                "eval_episodes": 3,
            },
            perturbation_interval=1,
        ),
        "full": Budget(samples=4, overrides={}, perturbation_interval=10, grace_period=10),
    },
    seed_metrics=(m.SOLVE_ENV_STEPS, m.SOLVE_SECONDS),
    place=place,
)
