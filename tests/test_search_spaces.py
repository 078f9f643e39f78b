"""Every model's search space produces configs its trainable accepts: defaults, PBT's initial
population and many rounds of PBT perturbation, and Optuna's define-by-run samples; and PBT and
Optuna draw from the one Space of the model."""

import random

import optuna
import pytest
from ray.tune.schedulers.pbt import _explore
from ray.tune.search.sample import Domain

import search_spaces
from platform.experiment import ClipToDomains
from trainables.config import from_dict


def leaves(mutations: dict, prefix: tuple = ()):
    """(path, domain) of every mutated value; a dict mutates some keys of a schedule."""
    for key, value in mutations.items():
        if isinstance(value, dict):
            yield from leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def at(config: dict, path: tuple):
    for key in path:
        config = config[key]
    return config


def initial(mutations: dict, rng: random.Random, defaults) -> dict:
    out = {}
    for key, value in mutations.items():
        if isinstance(value, dict):  # the default schedule with the mutated keys drawn
            out[key] = {**getattr(defaults, key), **initial(value, rng, None)}
        else:
            out[key] = rng.choice(value) if isinstance(value, list) else value.sample()
    return out


@pytest.mark.parametrize("model", sorted(search_spaces.MODELS))
def test_pbt_perturbations_stay_valid(model):
    spec = search_spaces.get(model)
    mutations = spec.pbt_mutations
    assert all(isinstance(v, list) or (isinstance(v, Domain) and hasattr(v, "lower")) for _, v in leaves(mutations)), (
        "discrete PBT values must be lists: PBT multiplies a tune.choice value by 0.8 or 1.2"
    )
    defaults = spec.check(dict(spec.budgets["smoke"].overrides))
    rng = random.Random(0)
    random.seed(0)
    clip = ClipToDomains(mutations)
    for _ in range(5):
        config = {**spec.budgets["smoke"].overrides, **initial(mutations, rng, defaults)}
        for _ in range(40):  # 40 exploit/explore rounds in a row
            config, _ = _explore(config, mutations, 0.25, (1.2, 0.8), clip)
            from_dict(spec.config, config, model)  # raises ConfigError if PBT left the valid range
            for path, domain in leaves(mutations):
                if isinstance(domain, list):
                    assert at(config, path) in domain
                else:
                    assert domain.lower <= at(config, path) <= domain.upper


@pytest.mark.parametrize("budget", ["smoke", "full"])
@pytest.mark.parametrize("model", sorted(search_spaces.MODELS))
def test_optuna_samples_are_valid_configs(model, budget):
    spec = search_spaces.get(model)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        config = {**spec.budgets[budget].overrides, **spec.space.suggest(trial)}
        from_dict(spec.config, config, model)
        study.tell(trial, 0.0)


def in_pbt_range(value, domain) -> bool:
    return value in domain if isinstance(domain, list) else domain.lower <= value <= domain.upper


@pytest.mark.parametrize("model", sorted(search_spaces.MODELS))
def test_pbt_and_optuna_draw_from_the_same_space(model):
    """PBT's mutations are dimensions of the model's Space, with their ranges; a real Optuna study over
    the Space's suggest asks only for its dimensions, searches every one, and each value it draws for a
    key PBT mutates lies in PBT's range and becomes that key of the config."""
    spec = search_spaces.get(model)
    space, mutations = spec.space, spec.pbt_mutations
    assert {".".join(path) for path, _ in leaves(mutations)} == set(space.pbt)
    for path, domain in leaves(mutations):
        dimension = space.dimensions[".".join(path)]
        if isinstance(dimension, search_spaces.Float):
            log = "log" in type(domain.get_sampler()).__name__.lower()
            assert (domain.lower, domain.upper, log) == (dimension.low, dimension.high, dimension.log)
        else:
            assert domain == dimension.pbt()

    drawn: set = set()

    def objective(trial) -> float:
        config = space.suggest(trial)
        for name, value in trial.params.items():
            assert name in space.dimensions, f"{model}: Optuna parameter {name!r} is not in the space"
            assert value in space.dimensions[name], (name, value)
            if name in space.pbt:
                path = tuple(name.split("."))
                assert in_pbt_range(value, at(mutations, path)), (name, value)
                assert at(config, path) == value, f"{model}: Optuna's {name!r} does not set the key PBT mutates"
        drawn.update(trial.params)
        return 0.0

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=60)
    assert drawn == set(space.dimensions), f"{model}: never searched: {set(space.dimensions) - drawn}"


def test_a_space_turns_each_dimension_into_pbts_and_optunas_form():
    space = search_spaces.Space(
        dimensions={
            "lr": search_spaces.Float(1e-4, 1e-2, log=True),
            "entropy.start": search_spaces.Choice((0.01, 0.1)),
            "layers": search_spaces.Int(1, 3),
        },
        pbt=("lr", "entropy.start", "layers"),
    )
    mutations = space.pbt_mutations()
    assert (mutations["lr"].lower, mutations["lr"].upper) == (1e-4, 1e-2)
    assert "log" in type(mutations["lr"].get_sampler()).__name__.lower()
    assert mutations["entropy"] == {"start": [0.01, 0.1]}
    assert mutations["layers"] == [1, 2, 3]  # a list: PBT shifts to a neighbour instead of scaling
    trial = optuna.create_study().ask()
    config = space.suggest(trial)
    assert set(config) == {"lr", "entropy", "layers"} and set(config["entropy"]) == {"start"}
    assert trial.distributions["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert trial.distributions["layers"] == optuna.distributions.IntDistribution(1, 3)
    with pytest.raises(AssertionError, match="missing"):
        search_spaces.Space(dimensions={}, pbt=("lr",))
