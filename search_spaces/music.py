"""Search space of the music embedding recommender (trainables/music/embedding.py): its optimiser schedule."""

from ray import tune

from search_spaces import Budget, ModelSpec
from trainables.music import embedding

PBT_MUTATIONS = {
    "lr": tune.loguniform(3e-4, 3e-2),
    "weight_decay": tune.loguniform(1e-6, 1e-1),
}
assert set(PBT_MUTATIONS) <= set(embedding.MUTABLE_FIELDS)


def optuna_space(trial) -> dict:
    kind = trial.suggest_categorical("lr_schedule.kind", ["constant", "cosine", "linear"])
    schedule = {"kind": kind, "start": 1.0}
    if kind != "constant":
        schedule["end"] = trial.suggest_float("lr_schedule.end", 0.01, 1.0, log=True)
    return {
        "lr": trial.suggest_float("lr", 3e-4, 3e-2, log=True),
        "lr_schedule": schedule,
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        "dim": trial.suggest_categorical("dim", [16, 32, 64]),
        "batch_size": trial.suggest_categorical("batch_size", [512, 2048, 8192]),
    }


SMALL_SIM = {"tracks": 600, "artists": 60}

SPEC = ModelSpec(
    trainable="trainables.music.embedding:MusicEmbedTrainable",
    config=embedding.MusicEmbedConfig,
    check=embedding.check,
    description="music sessions: an embedding recommender trained offline on simulator logs (AdamW)",
    pbt_mutations=PBT_MUTATIONS,
    optuna_space=optuna_space,
    budgets={
        "smoke": Budget(
            samples=2,
            overrides={
                "sim": SMALL_SIM,
                "log_users": 300,
                "valid_users": 100,
                "iterations": 2,
                "steps_per_iteration": 10,
                "batch_size": 256,
            },  # fmt: skip
            perturbation_interval=1,
        ),
        "full": Budget(samples=4, overrides={}, perturbation_interval=4, grace_period=4),
    },
)
