"""Search space for RLlib DQN (trainables/rl/rllib_dqn.py): the library counterpart of our dqn."""

from search_spaces import Budget, Choice, Float, Int, ModelSpec, Space
from trainables import metrics as m
from trainables.rl import rllib_dqn
from trainables.rl.rllib import place


def layout(draw) -> dict:
    kind = draw("epsilon.kind")
    return {
        "lr": draw("lr"),
        "n_step": draw("n_step"),
        "batch_size": 2 ** draw("log2_batch_size"),
        "target_every": draw("target_every"),
        "epsilon": {"kind": kind, "start": 1.0, "end": draw("epsilon.end")},
        "epsilon_horizon": draw("epsilon_horizon"),
        "dueling": draw("dueling"),
        "prioritized": draw("prioritized"),
    }


SPACE = Space(
    dimensions={
        "lr": Float(1e-4, 3e-3, log=True),
        "target_every": Choice((250, 500, 1000)),
        # Optuna and random search only.
        "epsilon.kind": Choice(("linear", "exp", "cosine")),
        "epsilon.end": Float(0.01, 0.1, log=True),
        "n_step": Int(1, 5),
        "log2_batch_size": Int(5, 8),
        "epsilon_horizon": Int(2_000, 20_000, log=True),
        "dueling": Choice((False, True)),
        "prioritized": Choice((False, True)),
    },
    pbt=("lr", "target_every"),
    layout=layout,
)


SPEC = ModelSpec(
    trainable="trainables.rl.rllib_dqn:RLlibDQNTrainable",
    config=rllib_dqn.RLlibDQNConfig,
    check=rllib_dqn.parse,
    description="RLlib DQN baseline (new API stack): prioritized episode replay, dueling, double, n-step",
    space=SPACE,
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
