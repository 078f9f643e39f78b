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
    "sasrec": "search_spaces.sasrec:SPEC",
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
class Float:
    """A real number in [low, high], on a log scale if `log`."""

    low: float
    high: float
    log: bool = False

    def suggest(self, trial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def pbt(self):
        from ray import tune  # here, so that `--list` and the registry never import Ray

        # ClipToDomains (platform/experiment.py) keeps PBT's x0.8/x1.2 perturbations inside these bounds.
        return tune.loguniform(self.low, self.high) if self.log else tune.uniform(self.low, self.high)

    def __contains__(self, value) -> bool:
        return self.low <= value <= self.high


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer in [low, high] (both included), every `step`, on a log scale if `log`."""

    low: int
    high: int
    log: bool = False
    step: int = 1

    def suggest(self, trial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def pbt(self) -> list:
        # A list, not tune.randint: PBT shifts a list value to a neighbour, but multiplies the
        # value of any Domain by 0.8 or 1.2 (an int would become a float).
        return list(range(self.low, self.high + 1, self.step))

    def __contains__(self, value) -> bool:
        return isinstance(value, int) and self.low <= value <= self.high and (value - self.low) % self.step == 0


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `values`, in order (PBT shifts to a neighbour, so order them by size where they have one)."""

    values: tuple

    def suggest(self, trial, name: str):
        return trial.suggest_categorical(name, list(self.values))

    def pbt(self) -> list:
        return list(self.values)

    def __contains__(self, value) -> bool:
        return value in self.values


Dimension = Float | Int | Choice


def nest(flat: dict) -> dict:
    """{"entropy.start": v} -> {"entropy": {"start": v}}: a dotted name is a key of a nested config dict."""
    out: dict = {}
    for name, value in flat.items():
        *path, leaf = name.split(".")
        node = out
        for key in path:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


@dataclasses.dataclass(frozen=True)
class Space:
    """A model's one search space: PBT, Optuna and random search all draw from these dimensions.

    Optuna (with ASHA or not) and random search (Optuna's RandomSampler) call `suggest(trial)`; PBT
    samples its initial population from and perturbs within `pbt_mutations()`. A range is therefore
    written once, and the two searches cannot drift apart (tests/test_search_spaces.py checks it).
    """

    dimensions: dict[str, Dimension]
    """name -> range. For a name PBT mutates, the name is the config key ("entropy.start": the key
    `start` of the `entropy` dict); other names are Optuna's parameter names (e.g. "log2_batch_size")."""
    pbt: tuple[str, ...] = ()
    """The dimensions PBT perturbs while training, in the order PBT samples them: each must be mutable in
    place by the trainable's reset_config. Optuna searches these and the rest (architecture, schedule
    shapes, sizes: what a trial cannot change mid-run)."""
    layout: Callable[[Callable[[str], Any]], dict] | None = None
    """Define-by-run structure: (draw) -> config values, where draw(name) suggests dimension `name`.
    It draws conditional dimensions only where they apply (a schedule's end only if it has one) and
    derives values (2 ** log2_batch_size). None: every dimension, nested by its dotted name."""

    def __post_init__(self):
        unknown = [name for name in self.pbt if name not in self.dimensions]
        assert not unknown, f"PBT dimensions missing from the space: {unknown}"

    def pbt_mutations(self) -> dict:
        """Ray PBT's hyperparam_mutations: {key: tune domain or list}, nested for dotted names."""
        return nest({name: self.dimensions[name].pbt() for name in self.pbt})

    def pbt_fields(self) -> set[str]:
        """The top-level config fields PBT mutates (for the trainable's MUTABLE_FIELDS check)."""
        return {name.split(".")[0] for name in self.pbt}

    def suggest(self, trial) -> dict:
        """Optuna's define-by-run sampling (Optuna, ASHA and random search): config values."""

        def draw(name: str):
            return self.dimensions[name].suggest(trial, name)

        if self.layout is None:
            return nest({name: draw(name) for name in self.dimensions})
        return self.layout(draw)

    def without(self, *names: str) -> "Space":
        """This space with `names` neither searched nor mutated (a layout must skip them itself)."""
        return dataclasses.replace(
            self,
            dimensions={k: v for k, v in self.dimensions.items() if k not in names},
            pbt=tuple(k for k in self.pbt if k not in names),
        )


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
    space: Space
    """The one search space: PBT's mutations and Optuna's (and random search's) define-by-run sampling."""
    budgets: dict[str, Budget]
    """{"smoke": seconds per trial, for tests and CI; "full": the default command}."""
    metric: str = m.SCORE
    """What PBT, ASHA, Optuna and "best trial" optimize: a validation figure."""
    score_meaning: Callable[[dict], str] | None = None
    """(the selected trial's metrics) -> one line the summary prints under the score, saying what it is."""
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

    @property
    def pbt_mutations(self) -> dict:
        """{key: tune domain or list}: what PBT samples the population from and perturbs (Space.pbt)."""
        return self.space.pbt_mutations()


def resolve(entry_point: str) -> Any:
    """The object named by a "module:attribute" entry point, importing its module."""
    module, _, attribute = entry_point.partition(":")
    return getattr(importlib.import_module(module), attribute)


def get(name: str) -> ModelSpec:
    """The spec of model `name` (a key of MODELS)."""
    return resolve(MODELS[name])
