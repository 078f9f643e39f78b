"""Every model's search space produces configs its trainable accepts: defaults, PBT's initial
population and many rounds of PBT perturbation, and Optuna's define-by-run samples."""

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
        config = {**spec.budgets[budget].overrides, **spec.optuna_space(trial)}
        from_dict(spec.config, config, model)
        study.tell(trial, 0.0)
