"""The models tunelab knows: one frozen `ModelSpec` per model, in the search-space module of the
same name, imported only when asked for. The driver reads a spec's fields, nothing else."""

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from trainables import metrics as m

# name -> "module:attribute" of its ModelSpec. An explicit list (no registration by import side
# effect), imported on demand so `--list` and one model's run never import every model.
MODELS = {
    "dt": "search_spaces.dt:SPEC",
    "sasrec": "search_spaces.dt:SASREC",
    "ease": "search_spaces.baselines:EASE",
    "itemknn": "search_spaces.baselines:ITEMKNN",
    "toprated": "search_spaces.baselines:TOPRATED",
    "popularity": "search_spaces.baselines:POPULARITY",
    "random": "search_spaces.baselines:RANDOM",
    "dqn": "search_spaces.dqn:SPEC",
    "qtable": "search_spaces.qtable:SPEC",
    "ppo": "search_spaces.ppo:SPEC",
    "rllib-dqn": "search_spaces.rllib_dqn:SPEC",
    "music": "search_spaces.music:SPEC",
    "al": "search_spaces.al:SPEC",
}


@dataclasses.dataclass(frozen=True)
class Budget:
    samples: int
    """Trials (PBT population, Optuna/random trials) unless --samples says otherwise."""
    overrides: dict
    """Config values on top of the dataclass defaults (sizes, iterations)."""
    perturbation_interval: int = 2
    """PBT: iterations between exploit/explore rounds."""
    grace_period: int = 1
    """ASHA: iterations before a trial may be stopped."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the driver needs to know of one model."""

    trainable: str
    """"module:Class" of its ray.tune.Trainable, imported when the experiment is built."""
    config: type
    """The trainable's frozen config dataclass (defaults and docstrings live there, once)."""
    check: Callable[[dict], Any]
    """Driver-side preflight: config dict -> the validated config (the data loads, the env exists).
    Raises ConfigError. The trial builds its config from the same dict with the same rules."""
    description: str
    """One line for `--list`."""
    pbt_mutations: dict
    """{key: tune domain or list}: PBT samples the population from these and perturbs them. Discrete
    values must be lists (PBT shifts to a neighbour): PBT multiplies the value of any Domain, tune.choice
    included, by 0.8 or 1.2. Each key must be mutable in place by the trainable's reset_config."""
    optuna_space: Callable[[Any], dict]
    """Define-by-run (optuna trial) -> {key: value}; random search samples it too."""
    budgets: dict[str, Budget]
    """{"smoke": seconds per trial, for tests and CI; "full": the default command}."""
    metric: str = m.SCORE
    """What PBT, ASHA, Optuna and "best trial" optimize: a validation figure."""
    mode: str = m.MODE
    seed_metrics: tuple[str, ...] = ()
    """Metrics the --seeds summary reports beside the score (e.g. steps to solve)."""
    default_search: str = "pbt"
    """The search `python -m platform.tune MODEL` runs without --search (closed-form baselines: optuna)."""
    measures_test: bool = False
    """Recommenders: the trainable has `test()`, run once by the driver on the selected trial."""
    place: Callable[[Any, float, float], tuple[dict, Any]] | None = None
    """(validated config, cpus, gpus) -> (config values to pin, the trial's resources): how a trial's
    CPUs are split into bundles (RLlib baselines: a learner and env runners). None: one bundle."""


def resolve(entry_point: str) -> Any:
    """The object named by a "module:attribute" entry point, importing its module."""
    module, _, attribute = entry_point.partition(":")
    return getattr(importlib.import_module(module), attribute)


def get(name: str) -> ModelSpec:
    """The spec of model `name` (a key of MODELS)."""
    return resolve(MODELS[name])
