"""The models tunelab knows: one search-space module per model, imported only when asked for.

A search-space module declares:
  TRAINABLE         "module:Class" of its ray.tune.Trainable (imported lazily)
  CONFIG            the trainable's frozen config dataclass (defaults live there, once)
  METRIC, MODE      what PBT, ASHA and Optuna optimize
  DESCRIPTION       one line for `--list`
  pbt_mutations     {key: tune domain or list}: PBT samples the population from these and perturbs
                    them. Discrete values must be lists (PBT shifts to a neighbour): PBT multiplies
                    the value of any Domain, tune.choice included, by 0.8 or 1.2.
  optuna_space      define-by-run (trial) -> {key: value}; random search samples it too
  BUDGETS           {"smoke": Budget, "full": Budget}
  check(config)     driver-side preflight (config parses, data loads); raises ConfigError
and optionally:
  SEED_METRICS      metrics the --seeds summary reports beside the score (e.g. steps to solve)
  place(config, cpus, gpus) -> (config, PlacementGroupFactory)
                    how a trial's CPUs are split (RLlib baselines: a learner and env runners)
"""

import dataclasses
import importlib
from types import ModuleType

# name -> module. An explicit list (no registration by import side effect), imported on demand.
MODELS = {
    "dt": "search_spaces.dt",
    "dqn": "search_spaces.dqn",
    "qtable": "search_spaces.qtable",
    "ppo": "search_spaces.ppo",
    "rllib-dqn": "search_spaces.rllib_dqn",
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


def load(name: str) -> ModuleType:
    return importlib.import_module(MODELS[name])


def resolve(entry_point: str) -> type:
    module, _, attr = entry_point.partition(":")
    return getattr(importlib.import_module(module), attr)
