"""tunelab's gymnasium environments. `register()` adds them to gymnasium's registry; it is called
explicitly (by trainables/rl/common.py before it looks an env id up, by the A/B tool and the tests), never
as a side effect of importing this package."""

import importlib

import gymnasium as gym

MUSIC = "tunelab/MusicSession-v0"
ACTIVE = "tunelab/ActiveLearning-v0"

# id -> gymnasium.register keyword arguments (string entry points: workers import them on demand)
ENVS = {
    MUSIC: {
        "entry_point": "envs.music:MusicSessionEnv",
        "vector_entry_point": "envs.music:MusicVectorEnv",
        # Sessions end by themselves (patience, then the config's step cap): no TimeLimit wrapper.
        "max_episode_steps": None,
    },
    ACTIVE: {"entry_point": "envs.active:ActiveLearningEnv", "max_episode_steps": None},
}


def register() -> None:
    """Registers every env of ENVS that gymnasium does not know yet (idempotent)."""
    for env_id, kwargs in ENVS.items():
        if env_id not in gym.registry:
            gym.register(env_id, **kwargs)


def env_class(env_id: str) -> type | None:
    """The env class of one of tunelab's ids (RLlib's env runners build it from the class, so they
    need no registry of their own); None for any other id."""
    if env_id not in ENVS:
        return None
    module, _, name = ENVS[env_id]["entry_point"].partition(":")
    return getattr(importlib.import_module(module), name)
