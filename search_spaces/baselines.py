"""Search spaces of the classic recommenders (trainables/recsys/baselines.py): each is its own model, tuned
by Optuna on the validation split like any other, so that a comparison is against tuned baselines."""

from search_spaces import Budget, ModelSpec
from trainables.recsys import baselines


def _no_space(trial) -> dict:
    return {}


def _toprated_space(trial) -> dict:
    return {"shrinkage": trial.suggest_float("shrinkage", 0.1, 1000.0, log=True)}


def _itemknn_space(trial) -> dict:
    return {
        "cooccurrence": trial.suggest_categorical("cooccurrence", ["history", "next"]),
        "neighbours": trial.suggest_int("neighbours", 5, 400, log=True),
        "recent": trial.suggest_int("recent", 1, 50, log=True),
        "decay": trial.suggest_float("decay", 0.3, 1.0),
        "shrinkage": trial.suggest_float("shrinkage", 0.0, 50.0),
        "min_rating": trial.suggest_categorical("min_rating", [0.0, 4.0]),
    }


def _ease_space(trial) -> dict:
    return {
        "l2": trial.suggest_float("l2", 1.0, 5000.0, log=True),
        "min_rating": trial.suggest_categorical("min_rating", [0.0, 4.0]),
    }


def _spec(method: str, description: str, space, samples: int) -> ModelSpec:
    small = {"synthetic_users": 300, "synthetic_items": 80}
    return ModelSpec(
        trainable="trainables.recsys.baselines:BaselineTrainable",
        config=baselines.BaselineConfig,
        check=baselines.check,
        description=description,
        pbt_mutations={},
        optuna_space=space,
        budgets={
            "smoke": Budget(samples=min(samples, 3), overrides={"method": method, **small}),
            "full": Budget(samples=samples, overrides={"method": method}),
        },
        default_search="optuna" if samples > 1 else "none",
        measures_test=True,
    )


RANDOM = _spec("random", "baseline recommender: uniform random items", _no_space, 1)
POPULARITY = _spec("popularity", "baseline recommender: most interacted items", _no_space, 1)
TOPRATED = _spec("toprated", "baseline recommender: highest shrunk mean rating", _toprated_space, 12)
ITEMKNN = _spec("itemknn", "baseline recommender: item-kNN over the user's recent items", _itemknn_space, 24)
EASE = _spec("ease", "baseline recommender: EASE, a strong static collaborative filter", _ease_space, 16)
