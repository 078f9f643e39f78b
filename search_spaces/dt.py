"""Search space for the Decision Transformer recommender (trainables/dt.py)."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables import dt

# PBT perturbs these while training; each must be applicable in place (trainables.dt.MUTABLE_FIELDS).
PBT_MUTATIONS = {
    "lr": tune.loguniform(2e-4, 3e-3),
    "weight_decay": tune.loguniform(1e-4, 0.1),
    "dropout": tune.uniform(0.0, 0.3),
    "target_return_scale": tune.uniform(0.7, 1.0),
    "popularity_correction": tune.uniform(0.5, 1.5),
}
assert set(PBT_MUTATIONS) <= set(dt.MUTABLE_FIELDS)


def optuna_space(trial) -> dict:
    """Schedule (kind and its parameters), architecture, context length and batch size."""
    kind = trial.suggest_categorical("lr_schedule.kind", ["constant", "linear", "cosine", "exp", "step"])
    schedule = {"kind": kind, "start": 1.0, "warmup": trial.suggest_float("lr_schedule.warmup", 0.0, 0.2)}
    if kind in ("linear", "cosine", "exp"):
        schedule["end"] = trial.suggest_float(f"lr_schedule.{kind}.end", 0.01, 1.0, log=True)
    elif kind == "step":
        schedule["every"] = trial.suggest_float("lr_schedule.step.every", 0.1, 0.5)
        schedule["factor"] = trial.suggest_float("lr_schedule.step.factor", 0.1, 0.7)
    size = trial.suggest_categorical("size", ["small", "medium", "large"])
    layers, width = {"small": (1, 32), "medium": (2, 64), "large": (3, 96)}[size]
    return {
        "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
        "lr_schedule": schedule,
        "layers": layers,
        "width": width,
        "heads": trial.suggest_categorical("heads", [1, 2, 4]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "context_length": trial.suggest_int("context_length", 10, 30, step=5),
        "return_horizon": trial.suggest_categorical("return_horizon", [1, 3, 10]),
        "batch_size": 2 ** trial.suggest_int("log2_batch_size", 5, 7),
    }


SPEC = ModelSpec(
    trainable="trainables.dt:DecisionTransformerTrainable",
    config=dt.DTConfig,
    check=dt.check,
    description="Decision Transformer recommending from rating histories (synthetic data by default)",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
    budgets={
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
            samples=4, overrides={"iterations": 12, "steps_per_iteration": 200}, perturbation_interval=3, grace_period=3
        ),
    },
)
