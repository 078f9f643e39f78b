"""Search spaces of the Decision Transformer recommender (trainables/recsys/dt.py) and of SASRec, the same
trainable with action tokens only and no return conditioning."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables.recsys import dt

# PBT perturbs these while training; each must be applicable in place (trainables.recsys.dt.MUTABLE_FIELDS).
PBT_MUTATIONS = {
    "lr": tune.loguniform(1e-3, 1e-2),
    "weight_decay": tune.loguniform(1e-4, 0.1),
    "dropout": tune.uniform(0.0, 0.3),
    "target_return_scale": tune.uniform(0.7, 1.0),
    "popularity_correction": tune.uniform(0.0, 1.5),
    "rating_score": tune.uniform(0.0, 5.0),
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
        "lr": trial.suggest_float("lr", 3e-4, 1e-2, log=True),
        "lr_schedule": schedule,
        "layers": layers,
        "width": width,
        "heads": trial.suggest_categorical("heads", [1, 2, 4]),
        "dropout": trial.suggest_float("dropout", 0.0, 0.3),
        "context_length": trial.suggest_int("context_length", 10, 30, step=5),
        "return_horizon": trial.suggest_categorical("return_horizon", [1, 3, 10]),
        "batch_size": 2 ** trial.suggest_int("log2_batch_size", 5, 7),
    }


def _budgets(extra: dict) -> dict:
    return {
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
                **extra,
            },
            perturbation_interval=1,
        ),
        # The default command: a population of 4 on 2 cores within 15 minutes.
        "full": Budget(
            samples=4,
            overrides={"iterations": 12, "steps_per_iteration": 200, **extra},
            perturbation_interval=3,
            grace_period=3,
        ),
    }


SPEC = ModelSpec(
    trainable="trainables.recsys.dt:DecisionTransformerTrainable",
    config=dt.DTConfig,
    check=dt.check,
    description="Decision Transformer recommending from rating histories (synthetic data by default)",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
    budgets=_budgets({}),
    measures_test=True,
)

# SASRec (Kang & McAuley 2018) as trained in its replications (full softmax cross-entropy): the DT
# with the action token alone, so the comparison differs only in what the DT adds. One difference
# from the paper: positions are the step's index in the user's history, not in the window.
SASREC_MUTATIONS = {k: v for k, v in PBT_MUTATIONS.items() if k not in ("target_return_scale", "rating_score")}


def sasrec_space(trial) -> dict:
    """The DT's space without the return horizon (SASRec has no returns)."""
    space = optuna_space(trial)
    space.pop("return_horizon")
    return space


SASREC = ModelSpec(
    trainable="trainables.recsys.dt:DecisionTransformerTrainable",
    config=dt.DTConfig,
    check=dt.check,
    description="SASRec next-item transformer (the DT with action tokens only), a tuned baseline",
    pbt_mutations=SASREC_MUTATIONS,
    optuna_space=sasrec_space,
    budgets=_budgets({"tokens": "a", "rating_loss": 0.0, "rating_score": 0.0}),
    measures_test=True,
)
