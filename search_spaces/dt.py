"""Search space of the Decision Transformer recommender (trainables/recsys/dt.py): SASRec's space
(search_spaces/sasrec.py) plus what the return and state tokens add; PBT by default, each member
stopping early on validation NDCG@10 as SASRec does."""

from search_spaces import Budget, Choice, Float, ModelSpec, Space
from search_spaces import sasrec as sasrec_space
from trainables.recsys import dt, protocol

SPACE = Space(
    dimensions={
        # PBT perturbs these while training; each is applied in place (trainables.recsys.dt.MUTABLE_FIELDS).
        **sasrec_space.SPACE.dimensions,
        "target_return_scale": Float(0.6, 1.0),
        # Optuna and random search only: what a trial cannot change mid-run.
        "return_horizon": Choice((1, 3, 10)),
    },
    pbt=sasrec_space.SPACE.pbt + ("target_return_scale",),
)
assert SPACE.pbt_fields() <= set(dt.MUTABLE_FIELDS)


SPEC = ModelSpec(
    trainable="trainables.recsys.dt:DecisionTransformerTrainable",
    config=dt.DTConfig,
    check=dt.check,
    description="Decision Transformer recommending from rating histories (SASRec plus return and state tokens)",
    space=SPACE,
    budgets={
        # Seconds per trial: tests and CI.
        "smoke": Budget(samples=2, overrides=sasrec_space.SPEC.budgets["smoke"].overrides, perturbation_interval=1),
        # The default command: a population of 4, each member early-stopped on validation NDCG@10.
        "full": Budget(samples=4, overrides={}, perturbation_interval=2, grace_period=4),
    },
    measures_test=True,
    score_meaning=protocol.score_meaning,
)
