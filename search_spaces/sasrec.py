"""Search space of SASRec (trainables/recsys/sasrec.py): the published MovieLens setup is the default;
Optuna searches the context length (up to 200), size, dropouts and learning rate, and each trial
stops early on validation NDCG@10."""

from search_spaces import Budget, Choice, Float, Int, ModelSpec, Space
from trainables.recsys import protocol, sasrec

SPACE = Space(
    dimensions={
        # PBT perturbs these while training; each is applied in place (sasrec.MUTABLE_FIELDS).
        "lr": Float(3e-4, 3e-3, log=True),
        "dropout": Float(0.1, 0.6),
        "attention_dropout": Float(0.1, 0.6),
        # Optuna and random search only: what a trial cannot change mid-run.
        "context_length": Choice((50, 100, 200)),
        "layers": Int(1, 3),
        "width": Choice((32, 64, 128)),
    },
    pbt=("lr", "dropout", "attention_dropout"),
)
assert SPACE.pbt_fields() <= set(sasrec.MUTABLE_FIELDS)


SPEC = ModelSpec(
    trainable="trainables.recsys.sasrec:SASRecTrainable",
    config=sasrec.SASRecConfig,
    check=sasrec.check,
    description="SASRec next-item transformer (full-softmax cross-entropy, early stopping), a tuned baseline",
    space=SPACE,
    budgets={
        # Seconds per trial: tests and CI.
        "smoke": Budget(
            samples=2,
            overrides={
                "synthetic_users": 300,
                "synthetic_items": 80,
                "iterations": 3,
                "epochs_per_iteration": 1,
                "batch_size": 32,
                "width": 32,
                "context_length": 10,
            },
        ),
        # The default: the published setup, each trial early-stopped on validation NDCG@10.
        "full": Budget(samples=4, overrides={}, grace_period=4),
    },
    default_search="optuna",
    measures_test=True,
    score_meaning=protocol.score_meaning,
)
