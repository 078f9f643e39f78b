"""Search space for tabular Q-learning (trainables/rl/qtable.py): the floor of the CartPole comparison."""

from search_spaces import Budget, Choice, Float, Int, ModelSpec, Space
from trainables import metrics as m
from trainables.rl import qtable


def layout(draw) -> dict:
    """Discretization of the pole (angle, angular velocity) and cart, step size, discount, exploration."""
    kind = draw("epsilon.kind")
    return {
        "buckets": [draw("buckets.x"), draw("buckets.x_dot"), draw("buckets.theta"), draw("buckets.theta_dot")],
        "lr": draw("lr"),
        "gamma": draw("gamma"),
        "epsilon": {"kind": kind, "start": 1.0, "end": draw("epsilon.end")},
        "epsilon_horizon": draw("epsilon_horizon"),
    }


SPACE = Space(
    dimensions={
        "lr": Float(0.02, 0.5),
        "gamma": Choice((0.95, 0.98, 0.99, 0.995)),
        "epsilon_horizon": Choice((250, 500, 1000, 2000)),
        # Optuna and random search only.
        "epsilon.kind": Choice(("linear", "exp", "cosine")),
        "epsilon.end": Float(0.005, 0.1, log=True),
        "buckets.x": Int(1, 4),
        "buckets.x_dot": Int(1, 4),
        "buckets.theta": Int(4, 12),
        "buckets.theta_dot": Int(4, 12),
    },
    pbt=("lr", "gamma", "epsilon_horizon"),
    layout=layout,
)
assert SPACE.pbt_fields() <= set(qtable.MUTABLE_FIELDS)


SPEC = ModelSpec(
    trainable="trainables.rl.qtable:QTableTrainable",
    config=qtable.QTableConfig,
    check=qtable.parse,
    description="Tabular Q-learning over a discretized observation: the floor every CartPole model is compared with",
    space=SPACE,
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
