"""Search space of the music embedding recommender (trainables/music/embedding.py): its optimiser schedule."""

from search_spaces import Budget, Choice, Float, ModelSpec, Space
from trainables.music import embedding


def layout(draw) -> dict:
    kind = draw("lr_schedule.kind")
    schedule = {"kind": kind, "start": 1.0}
    if kind != "constant":
        schedule["end"] = draw("lr_schedule.end")
    return {
        "lr": draw("lr"),
        "lr_schedule": schedule,
        "weight_decay": draw("weight_decay"),
        "dim": draw("dim"),
        "batch_size": draw("batch_size"),
    }


SPACE = Space(
    dimensions={
        "lr": Float(3e-4, 3e-2, log=True),
        "weight_decay": Float(1e-6, 1e-1, log=True),
        # Optuna and random search only.
        "lr_schedule.kind": Choice(("constant", "cosine", "linear")),
        "lr_schedule.end": Float(0.01, 1.0, log=True),
        "dim": Choice((16, 32, 64)),
        "batch_size": Choice((512, 2048, 8192)),
    },
    pbt=("lr", "weight_decay"),
    layout=layout,
)
assert SPACE.pbt_fields() <= set(embedding.MUTABLE_FIELDS)


SMALL_SIM = {"tracks": 600, "artists": 60}

SPEC = ModelSpec(
    trainable="trainables.music.embedding:MusicEmbedTrainable",
    config=embedding.MusicEmbedConfig,
    check=embedding.check,
    description="music sessions: an embedding recommender trained offline on simulator logs (AdamW)",
    space=SPACE,
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
