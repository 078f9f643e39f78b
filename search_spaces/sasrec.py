"""Search space of SASRec (trainables/recsys/sasrec.py): the published MovieLens setup is the default;
Optuna searches the context length (up to 200), size, dropouts and learning rate, and each trial
stops early on validation NDCG@10."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables.recsys import sasrec

# PBT perturbs these while training; each must be applicable in place (sasrec.MUTABLE_FIELDS).
PBT_MUTATIONS = {
    "lr": tune.loguniform(3e-4, 3e-3),
    "dropout": tune.uniform(0.1, 0.6),
    "attention_dropout": tune.uniform(0.1, 0.6),
}
assert set(PBT_MUTATIONS) <= set(sasrec.MUTABLE_FIELDS)


def optuna_space(trial) -> dict:
    """Context length, size, dropouts and learning rate; PBT's ranges where they overlap."""
    return {
        "context_length": trial.suggest_categorical("context_length", [50, 100, 200]),
        "layers": trial.suggest_int("layers", 1, 3),
        "width": trial.suggest_categorical("width", [32, 64, 128]),
        "dropout": trial.suggest_float("dropout", 0.1, 0.6),
        "attention_dropout": trial.suggest_float("attention_dropout", 0.1, 0.6),
        "lr": trial.suggest_float("lr", 3e-4, 3e-3, log=True),
    }


SPEC = ModelSpec(
    trainable="trainables.recsys.sasrec:SASRecTrainable",
    config=sasrec.SASRecConfig,
    check=sasrec.check,
    description="SASRec next-item transformer (full-softmax cross-entropy, early stopping), a tuned baseline",
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
                "batch_size": 32,
                "width": 32,
                "context_length": 10,
            },
        ),
        # The default: the published setup, each trial early-stopped on validation NDCG@10.
        "full": Budget(samples=4, overrides={}, grace_period=5),
    },
    default_search="optuna",
    measures_test=True,
)
