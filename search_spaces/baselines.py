"""Search spaces of the classic recommenders (trainables/recsys/baselines.py): each is its own model, tuned
by Optuna on the validation split like any other, so that a comparison is against tuned baselines."""

from search_spaces import Budget, Choice, Float, Int, ModelSpec, Space
from trainables.recsys import baselines, protocol

NO_SPACE = Space(dimensions={})
TOPRATED_SPACE = Space(dimensions={"shrinkage": Float(0.1, 1000.0, log=True)})
ITEMKNN_SPACE = Space(
    dimensions={
        "cooccurrence": Choice(("history", "next")),
        "neighbours": Int(5, 400, log=True),
        "recent": Int(1, 50, log=True),
        "decay": Float(0.3, 1.0),
        "shrinkage": Float(0.0, 50.0),
        "min_rating": Choice((0.0, 4.0)),
    }
)
EASE_SPACE = Space(dimensions={"l2": Float(1.0, 5000.0, log=True), "min_rating": Choice((0.0, 4.0))})


def _spec(method: str, description: str, space: Space, samples: int) -> ModelSpec:
    small = {"synthetic_users": 300, "synthetic_items": 80}
    return ModelSpec(
        trainable="trainables.recsys.baselines:BaselineTrainable",
        config=baselines.BaselineConfig,
        check=baselines.check,
        description=description,
        space=space,
        budgets={
            "smoke": Budget(samples=min(samples, 3), overrides={"method": method, **small}),
            "full": Budget(samples=samples, overrides={"method": method}),
        },
        default_search="optuna" if samples > 1 else "none",
        measures_test=True,
        score_meaning=protocol.score_meaning,
    )


RANDOM = _spec("random", "baseline recommender: uniform random items", NO_SPACE, 1)
POPULARITY = _spec("popularity", "baseline recommender: most interacted items", NO_SPACE, 1)
TOPRATED = _spec("toprated", "baseline recommender: highest shrunk mean rating", TOPRATED_SPACE, 12)
ITEMKNN = _spec("itemknn", "baseline recommender: item-kNN over the user's recent items", ITEMKNN_SPACE, 24)
EASE = _spec("ease", "baseline recommender: EASE, a strong static collaborative filter", EASE_SPACE, 16)
