"""Search space for our DQN (trainables/rl/dqn.py): schedules, replay and target-network settings."""

import math

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables import metrics as m
from trainables.rl import dqn

# Around the defaults, and only what costs the same per iteration: a synchronous population waits
# for its slowest member at every perturbation point, and with replay ratios 0.25-0.75 mutated the
# members' iterations differed up to 2.4x (the population took 1.15x its ideal wall time,
# bench/cartpole.py). The replay ratio ranked below all of these in the solve-time study's
# importances (README); Optuna still searches it. A Polyak target updated every step: its weight
# is what matters, not the period.
PBT_MUTATIONS = {
    "lr": tune.loguniform(5e-4, 5e-3),
    "gamma": [0.97, 0.98, 0.99, 0.995],
    "target_tau": tune.loguniform(0.02, 0.2),
    "epsilon_horizon": [2_500, 5_000, 7_500, 10_000, 20_000],
}
assert set(PBT_MUTATIONS) <= set(dqn.MUTABLE_FIELDS)


def epsilon_decay_per_episode(decay: float, floor: float, start: float = 1.0) -> dict:
    """The research's `eps = max(floor, eps * decay)` after every episode, as config values.

    An exp schedule from start to start * decay^H over H = log(floor / start) / log(decay) episodes
    (rounded) gives start * decay^e after e episodes, then holds the floor (within one decay step).
    """
    horizon = max(1, round(math.log(floor / start) / math.log(decay)))
    return {
        "epsilon": {"kind": "exp", "start": start, "end": start * decay**horizon},
        "epsilon_unit": "episodes",
        "epsilon_horizon": horizon,
    }


def optuna_space(trial) -> dict:
    """Epsilon schedule (shape, floor, horizon, or the research's per-episode decay), learning rate and
    its schedule, replay, target network and architecture."""
    style = trial.suggest_categorical("epsilon.style", ["linear", "exp", "cosine", "decay_per_episode"])
    floor = trial.suggest_float("epsilon.end", 0.01, 0.1, log=True)
    if style == "decay_per_episode":
        exploration = epsilon_decay_per_episode(trial.suggest_categorical("epsilon.decay", [0.98, 0.99, 0.995]), floor)
    else:
        exploration = {
            "epsilon": {"kind": style, "start": 1.0, "end": floor},
            "epsilon_unit": "steps",
            "epsilon_horizon": trial.suggest_int("epsilon_horizon", 2_000, 20_000, log=True),
        }
    lr_kind = trial.suggest_categorical("lr_schedule.kind", ["constant", "linear", "cosine"])
    lr_schedule = {"kind": lr_kind, "start": 1.0}
    if lr_kind != "constant":
        lr_schedule["end"] = trial.suggest_float("lr_schedule.end", 0.05, 1.0, log=True)
    target = trial.suggest_categorical("target", ["hard", "polyak"])
    return {
        **exploration,
        "lr": trial.suggest_float("lr", 2e-4, 5e-3, log=True),
        "lr_schedule": lr_schedule,
        "gamma": trial.suggest_categorical("gamma", [0.97, 0.98, 0.99, 0.995]),
        "n_step": trial.suggest_int("n_step", 1, 5),
        "batch_size": 2 ** trial.suggest_int("log2_batch_size", 6, 9),
        "replay_ratio": trial.suggest_categorical("replay_ratio", [0.0625, 0.125, 0.25, 0.5]),
        "learning_starts": trial.suggest_categorical("learning_starts", [250, 500, 1000, 2000]),
        "prioritized": trial.suggest_categorical("prioritized", [False, True]),
        "double_dqn": trial.suggest_categorical("double_dqn", [False, True]),
        "target_tau": 1.0 if target == "hard" else trial.suggest_float("target_tau", 0.005, 0.1, log=True),
        "target_every": trial.suggest_categorical("target_every", [50, 100, 250, 500]) if target == "hard" else 1,
        "hidden": trial.suggest_categorical("hidden", [64, 128, 256]),
    }


SPEC = ModelSpec(
    trainable="trainables.rl.dqn:DQNTrainable",
    config=dqn.DQNConfig,
    check=dqn.parse,
    description="DQN on vectorized envs (CartPole-v1 by default): replay/PER, double, n-step, schedules",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
    budgets={
        # Seconds per trial: tests and CI.
        "smoke": Budget(
            samples=2,
            overrides={
                "iterations": 2,
                "steps_per_iteration": 400,
                "learning_starts": 200,
                "buffer_size": 2_000,
                "batch_size": 32,
                "eval_episodes": 3,
                "checkpoint_every": 1,
            },
            perturbation_interval=1,
        ),
        # The default command: a population of 4, 100k env steps each.
        # Every perturbation restarts the trials PBT exploits in new worker processes (~3 s of
        # imports each): 4 rounds in 100 iterations, not 9 (bench/cartpole.py, population figures).
        "full": Budget(samples=4, overrides={}, perturbation_interval=20, grace_period=10),
    },
    seed_metrics=(m.SOLVE_ENV_STEPS, m.SOLVE_SECONDS),
    measures_test=True,
)
