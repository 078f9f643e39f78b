"""Search space for our DQN (trainables/rl/dqn.py): schedules, replay and target-network settings."""

import math

from search_spaces import Budget, Choice, Float, Int, ModelSpec, Space
from trainables import metrics as m
from trainables.rl import dqn


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


def layout(draw) -> dict:
    """Epsilon schedule (shape, floor, horizon, or the research's per-episode decay), learning rate and
    its schedule, replay, target network and architecture."""
    style = draw("epsilon.style")
    floor = draw("epsilon.end")
    if style == "decay_per_episode":
        exploration = epsilon_decay_per_episode(draw("epsilon.decay"), floor)
    else:
        exploration = {
            "epsilon": {"kind": style, "start": 1.0, "end": floor},
            "epsilon_unit": "steps",
            "epsilon_horizon": draw("epsilon_horizon"),
        }
    lr_kind = draw("lr_schedule.kind")
    lr_schedule = {"kind": lr_kind, "start": 1.0}
    if lr_kind != "constant":
        lr_schedule["end"] = draw("lr_schedule.end")
    target = draw("target")
    return {
        **exploration,
        "lr": draw("lr"),
        "lr_schedule": lr_schedule,
        "gamma": draw("gamma"),
        "n_step": draw("n_step"),
        "batch_size": 2 ** draw("log2_batch_size"),
        "replay_ratio": draw("replay_ratio"),
        "learning_starts": draw("learning_starts"),
        "prioritized": draw("prioritized"),
        "double_dqn": draw("double_dqn"),
        "target_tau": 1.0 if target == "hard" else draw("target_tau"),
        "target_every": draw("target_every") if target == "hard" else 1,
        "hidden": draw("hidden"),
    }


SPACE = Space(
    dimensions={
        # PBT mutates these four, around the defaults, and only what costs the same per iteration: a
        # synchronous population waits for its slowest member at every perturbation point, and with
        # replay ratios 0.25-0.75 mutated the members' iterations differed up to 2.4x (the population
        # took 1.15x its ideal wall time, bench/cartpole.py). The replay ratio ranked below all of these
        # in the solve-time study's importances (README); Optuna still searches it. A Polyak target
        # updated every step: its weight is what matters, not the period.
        "lr": Float(5e-4, 5e-3, log=True),
        "gamma": Choice((0.97, 0.98, 0.99, 0.995)),
        "target_tau": Float(0.02, 0.2, log=True),
        "epsilon_horizon": Choice((2_500, 5_000, 7_500, 10_000, 20_000)),
        # Optuna and random search only: shapes, sizes and what PBT cannot change mid-run.
        "epsilon.style": Choice(("linear", "exp", "cosine", "decay_per_episode")),
        "epsilon.end": Float(0.01, 0.1, log=True),
        "epsilon.decay": Choice((0.98, 0.99, 0.995)),
        "lr_schedule.kind": Choice(("constant", "linear", "cosine")),
        "lr_schedule.end": Float(0.05, 1.0, log=True),
        "n_step": Int(1, 5),
        "log2_batch_size": Int(6, 9),
        "replay_ratio": Choice((0.0625, 0.125, 0.25, 0.5)),
        "learning_starts": Choice((250, 500, 1000, 2000)),
        "prioritized": Choice((False, True)),
        "double_dqn": Choice((False, True)),
        "target": Choice(("hard", "polyak")),
        "target_every": Choice((50, 100, 250, 500)),
        "hidden": Choice((64, 128, 256)),
    },
    pbt=("lr", "gamma", "target_tau", "epsilon_horizon"),
    layout=layout,
)
assert SPACE.pbt_fields() <= set(dqn.MUTABLE_FIELDS)


SPEC = ModelSpec(
    trainable="trainables.rl.dqn:DQNTrainable",
    config=dqn.DQNConfig,
    check=dqn.parse,
    description="DQN on vectorized envs (CartPole-v1 by default): replay/PER, double, n-step, schedules",
    space=SPACE,
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
