"""Search space of the Decision Transformer recommender (trainables/recsys/dt.py)."""

from search_spaces import Budget, Choice, Float, Int, ModelSpec, Space
from trainables.recsys import dt

SIZES = {"small": (1, 32), "medium": (2, 64), "large": (3, 96)}
"""Named architectures (layers, width): Optuna picks a size, not two unrelated numbers."""


def layout(draw) -> dict:
    """Schedule (kind and its parameters), architecture, context length, batch size, regularisation and
    the inference-time corrections."""
    kind = draw("lr_schedule.kind")
    schedule = {"kind": kind, "start": 1.0, "warmup": draw("lr_schedule.warmup")}
    if kind in ("linear", "cosine", "exp"):
        schedule["end"] = draw(f"lr_schedule.{kind}.end")
    elif kind == "step":
        schedule["every"] = draw("lr_schedule.step.every")
        schedule["factor"] = draw("lr_schedule.step.factor")
    layers, width = SIZES[draw("size")]
    config = {
        "lr": draw("lr"),
        "lr_schedule": schedule,
        "layers": layers,
        "width": width,
        "heads": draw("heads"),
        "dropout": draw("dropout"),
        "context_length": draw("context_length"),
        "batch_size": 2 ** draw("log2_batch_size"),
        "weight_decay": draw("weight_decay"),
        "popularity_correction": draw("popularity_correction"),
    }
    return config | {
        "return_horizon": draw("return_horizon"),
        "target_return_scale": draw("target_return_scale"),
        "rating_score": draw("rating_score"),
    }


SPACE = Space(
    dimensions={
        # PBT perturbs these while training; each is applied in place (trainables.recsys.dt.MUTABLE_FIELDS).
        "lr": Float(1e-3, 1e-2, log=True),
        "weight_decay": Float(1e-4, 0.1, log=True),
        "dropout": Float(0.0, 0.3),
        "target_return_scale": Float(0.7, 1.0),
        "popularity_correction": Float(0.0, 1.5),
        "rating_score": Float(0.0, 5.0),
        # Optuna and random search only: what a trial cannot change mid-run.
        "lr_schedule.kind": Choice(("constant", "linear", "cosine", "exp", "step")),
        "lr_schedule.warmup": Float(0.0, 0.2),
        **{f"lr_schedule.{kind}.end": Float(0.01, 1.0, log=True) for kind in ("linear", "cosine", "exp")},
        "lr_schedule.step.every": Float(0.1, 0.5),
        "lr_schedule.step.factor": Float(0.1, 0.7),
        "size": Choice(tuple(SIZES)),
        "heads": Choice((1, 2, 4)),
        "context_length": Int(10, 30, step=5),
        "return_horizon": Choice((1, 3, 10)),
        "log2_batch_size": Int(5, 7),
    },
    pbt=("lr", "weight_decay", "dropout", "target_return_scale", "popularity_correction", "rating_score"),
    layout=layout,
)
assert SPACE.pbt_fields() <= set(dt.MUTABLE_FIELDS)


BUDGETS = {
    # Seconds per trial: tests and CI.
    "smoke": Budget(
        samples=2,
        overrides={
            "synthetic_users": 300,
            "synthetic_items": 80,
            "iterations": 3,
            "steps_per_iteration": 5,
            "batch_size": 16,
            "width": 32,
            "context_length": 10,
        },
        perturbation_interval=1,
    ),
    # The default command: a population of 4 on 2 cores within 15 minutes.
    "full": Budget(
        samples=4,
        overrides={"iterations": 12, "steps_per_iteration": 200},
        perturbation_interval=3,
        grace_period=3,
    ),
}


SPEC = ModelSpec(
    trainable="trainables.recsys.dt:DecisionTransformerTrainable",
    config=dt.DTConfig,
    check=dt.check,
    description="Decision Transformer recommending from rating histories (synthetic data by default)",
    space=SPACE,
    budgets=BUDGETS,
    measures_test=True,
)
