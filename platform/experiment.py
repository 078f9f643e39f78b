"""Assembles a Tune experiment from a model's search space and the CLI's options."""

import dataclasses
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna
from ray import tune
from ray.tune.search import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch

from platform import ray_compat
from platform import results as recorded
from platform.callbacks import (
    CSVLogger,
    JsonLogger,
    KeepCompleteState,
    RecordCheckpointResults,
    StallGuard,
    TensorBoardCallback,
    restore_complete_state,
)
from platform.results import OPTUNA_DB, STUDY, Storage
from platform.schedulers import ResumableASHA, ResumableFIFO, ResumablePBT
from search_spaces import Budget, ModelSpec, resolve
from trainables.config import ConfigError

SEARCHES = ("pbt", "optuna", "random", "none", "optuna+pbt")
# optuna+pbt: the Optuna study takes this fraction of the compute `--search pbt` would use
# (population x iterations); the PBT population it seeds takes the rest. The study runs twice as
# many trials as the population, each cut short at STUDY_FRACTION / 2 of the iterations, so that the
# population is its top (1 - STUDY_FRACTION) x population configs out of 2 x population.
STUDY_FRACTION = 0.25
SEED_STRIDE = 1_000  # optuna+pbt: member i of the seeded population trains with seed + i * SEED_STRIDE
log = logging.getLogger("tunelab")


@dataclasses.dataclass(frozen=True)
class Replay:
    """A recorded PBT trial whose schedule is retrained (`--replay EXPERIMENT[:TRIAL]`)."""

    experiment: str
    trial: str
    score: float  # the replayed trial's final score
    scheduler: Any  # schedulers.SeededReplay

    @staticmethod
    def load(text: str, storage: "Storage", spec: ModelSpec) -> "Replay":
        from platform.schedulers import SeededReplay

        location, _, name = text.partition(":")
        folder = Path(location).expanduser()
        if not folder.is_dir():
            folder = Path(storage.root) / location
        lineage = json.loads((folder / "lineage.json").read_text()) if (folder / "lineage.json").exists() else {}
        search = lineage.get("search", "pbt" if list(folder.glob(ray_compat.PBT_POLICY_GLOB)) else None)
        if search not in ("pbt", "optuna+pbt"):
            raise ConfigError(f"--replay {text}: {folder} is not a PBT experiment; name the folder of a PBT run")
        try:
            trials = {t.name: t for t in recorded.load(str(folder)).trials if spec.metric in t.metrics}
        except FileNotFoundError:
            trials = {}
        if not trials:
            raise ConfigError(f"--replay {text}: no trial in {folder} reported {spec.metric}")
        if name and name not in trials:
            raise ConfigError(f"--replay {text}: no trial {name!r}; the trials are {', '.join(trials)}")
        chosen = trials[name] if name else recorded.best(trials.values(), spec.metric, spec.mode)
        if chosen is None:
            raise ConfigError(f"--replay {text}: no trial in {folder} ended with a finite {spec.metric}")
        policy = folder / ray_compat.pbt_policy_file(chosen.trial_id)
        if not policy.exists():  # the trial never cloned another: its schedule is its own config
            policy = Path(tempfile.mkstemp(suffix=".txt", prefix="empty_policy_")[1])
        # its own config as it started (params.json): the schedule's first stretch
        own = json.loads(recorded.Folder(chosen.path).read("params.json"))
        scheduler = SeededReplay(str(policy), own)
        return Replay(str(folder), chosen.name, recorded.last(chosen, spec.metric), scheduler)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Everything the CLI decided, in one place."""

    model: str
    spec: ModelSpec
    search: str
    budget: Budget
    samples: int
    seeds: int
    config: Any  # the validated config dataclass: budget overrides + --set values on the defaults
    base_config: dict  # the explicit values of `config` (budget overrides, --set, placement): what trials get
    pinned: tuple  # keys the user fixed with --set: searches leave them alone
    name: str
    storage: Storage
    cpus_per_trial: float
    gpus_per_trial: float
    resources: Any  # what each trial asks Ray for: {"cpu", "gpu"} or the spec's placement group
    verbose: bool = False  # Tune's full console output
    vary_data: bool = False  # with seeds > 1: data_seed follows seed
    replay: "Replay | None" = None  # --replay: the schedule retrained over the seeds
    mlflow: str | None = None  # --mlflow: a tracking URI every trial is logged to as well
    stop_at: int | None = None  # stop every trial after this many iterations (the optuna+pbt study)
    asha: bool = True  # optuna: stop bad trials early with ASHA (not in the optuna+pbt study)
    start: tuple = ()  # optuna+pbt: the configs the PBT population starts from, chosen by the study

    @property
    def local_dir(self) -> Path | None:
        return self.storage.local_experiment(self.name)


def resources(spec: ModelSpec, config: Any, cpus: float, gpus: float) -> tuple[dict, Any]:
    """(config values the placement pins, the trial's resource request)."""
    if spec.place is None:
        return {}, {"cpu": cpus, "gpu": gpus}
    return spec.place(config, cpus, gpus)  # e.g. a learner bundle plus one bundle per env runner


def trainable(plan: Plan):
    return tune.with_resources(resolve(plan.spec.trainable), plan.resources)


def run_config(plan: Plan, callbacks: list | None = None) -> tune.RunConfig:
    every = plan.config.checkpoint_every
    # PBT clones the latest checkpoint of a top trial some iterations after recording it; with a
    # small num_to_keep Tune has deleted it by then. Keep every checkpoint of the last few rounds.
    keep = max(4, 3 * plan.budget.perturbation_interval) if plan.search in ("pbt", "optuna+pbt") else 2
    return tune.RunConfig(
        name=plan.name,
        stop={"training_iteration": plan.stop_at} if plan.stop_at else None,
        storage_path=plan.storage.root,
        # Each trial's stdout and stderr go to files in its folder: the console stays quiet, nothing is lost.
        log_to_file=True,
        verbose=2 if plan.verbose else 1,  # Tune's console reporter is callbacks.ConsoleReporter
        callbacks=[
            JsonLogger(),
            CSVLogger(),
            RecordCheckpointResults(),
            KeepCompleteState(),
            TensorBoardCallback(),
            StallGuard(plan.budget.perturbation_interval),
            *mlflow_callbacks(plan),
            *(callbacks or []),
        ],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=keep, checkpoint_frequency=every, checkpoint_at_end=True),
        # A trial that raises is retried from its last checkpoint up to 3 times, then reported;
        # the others go on. A preempted node (a spot reclaim, drained with the preemption reason)
        # does not count: Tune only counts it when RAY_TRAIN_COUNT_PREEMPTION_AS_FAILURE=1, which
        # tunelab never sets (tests/test_multinode.py checks).
        failure_config=tune.FailureConfig(max_failures=3),
    )


def mlflow_callbacks(plan: Plan) -> list:
    """Ray's own MLflow logger (one MLflow run per trial, in an MLflow experiment named like ours)."""
    if plan.mlflow is None:
        return []
    from platform.mlflow_logger import MLflowLogger

    tags = {"tunelab.model": plan.model, "tunelab.search": plan.search}
    return [MLflowLogger(tracking_uri=plan.mlflow, experiment_name=plan.name, tags=tags)]


def build_tuner(plan: Plan, callbacks: list | None = None) -> tune.Tuner:
    spec, base = plan.spec, plan.base_config
    seeds = {"seed": tune.grid_search(list(range(plan.config.seed, plan.config.seed + plan.seeds)))}
    if plan.vary_data:
        seeds["data_seed"] = tune.sample_from(SameAsSeed())
    if plan.search == "none":
        param_space = {**base, **(seeds if plan.seeds > 1 else {})}
        tune_config = tune.TuneConfig(num_samples=1, scheduler=ResumableFIFO(), reuse_actors=True)
    elif plan.search == "replay":
        param_space = {**base, **seeds}
        tune_config = tune.TuneConfig(num_samples=1, scheduler=plan.replay.scheduler, reuse_actors=True)
    elif plan.search in ("pbt", "optuna+pbt"):
        mutations = {k: v for k, v in spec.pbt_mutations.items() if k not in plan.pinned}
        scheduler = ResumablePBT(
            time_attr="training_iteration",
            perturbation_interval=plan.budget.perturbation_interval,
            hyperparam_mutations=mutations,
            quantile_fraction=0.25,
            custom_explore_fn=ClipToDomains(mutations),
            # Synchronous: every trial reaches the perturbation point before any is cloned. With
            # asynchronous PBT a donor trial runs on while the trial that clones it waits (for a
            # node that died, say), and Tune deletes the cloned checkpoint under num_to_keep: the
            # restore then fails for good. With synch a donor is at most one interval ahead, and
            # run_config keeps three intervals of checkpoints.
            synch=True,
            # --seeds N: N independent populations, so the spread over seeds means something.
            per_seed=plan.seeds > 1,
            # The same command clones and perturbs the same way (the run's first seed, like the population).
            seed=plan.config.seed,
        )
        # The initial population is drawn from the same domains PBT perturbs within.
        initial = {k: initial_domain(v, getattr(plan.config, k)) for k, v in mutations.items()}
        param_space = {**base, **initial, **(seeds if plan.seeds > 1 else {})}
        samples = plan.samples
        if plan.start:  # optuna+pbt: the study's configs, one trial each
            param_space, samples = starting_space(plan, mutations), 1
        tune_config = tune.TuneConfig(
            metric=spec.metric,
            mode=spec.mode,
            scheduler=scheduler,
            # Tune's default searcher, sampling the initial population from the run's seed rather than
            # the global numpy RNG: the same command starts the same population.
            search_alg=BasicVariantGenerator(random_state=plan.config.seed),
            num_samples=samples,
            reuse_actors=True,
        )
    else:
        sampler = (
            optuna.samplers.TPESampler(seed=plan.config.seed)
            if plan.search == "optuna"
            else optuna.samplers.RandomSampler(seed=plan.config.seed)
        )
        storage = None
        if plan.local_dir is not None:
            plan.local_dir.mkdir(parents=True, exist_ok=True)
            storage = optuna.storages.RDBStorage(f"sqlite:///{plan.local_dir / OPTUNA_DB}")
        searcher = ConfigOnlyOptunaSearch(
            keys=[f.name for f in dataclasses.fields(spec.config)],
            space=DefineByRunSpace(spec.space.suggest, base, plan.pinned),
            # With a define-by-run space TuneConfig's metric and mode never reach the searcher.
            metric=spec.metric,
            mode=spec.mode,
            sampler=sampler,
            study_name=plan.name,
            storage=storage,
        )
        scheduler = ResumableFIFO()
        if plan.search == "optuna" and plan.asha:
            scheduler = ResumableASHA(
                metric=spec.metric,
                mode=spec.mode,
                time_attr="training_iteration",
                max_t=plan.config.iterations,
                grace_period=plan.budget.grace_period,
                reduction_factor=2,
            )
        param_space = {}
        tune_config = tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, num_samples=plan.samples, reuse_actors=False
        )
    # Short names for the console, the trial folders and TensorBoard's run list; the full config
    # stays in params.json and HParams.
    tune_config.trial_name_creator = tune_config.trial_dirname_creator = ShortTrialName(plan.model)
    return tune.Tuner(
        trainable(plan), param_space=param_space, tune_config=tune_config, run_config=run_config(plan, callbacks)
    )


def initial_domain(mutation, current):
    """What the starting population samples a mutated key from: a list becomes a choice; a dict
    (PBT perturbs some keys of a schedule) keeps the config's other keys."""
    if isinstance(mutation, list):
        return tune.choice(mutation)
    if isinstance(mutation, dict):
        return {**current, **{k: initial_domain(v, current.get(k)) for k, v in mutation.items()}}
    return mutation


def study_plan(plan: Plan) -> Plan:
    """optuna+pbt, first part: an Optuna study of 2 x population trials inside the experiment's folder,
    each stopped after STUDY_FRACTION / 2 of the iterations (schedules keep the full run's horizon, so
    a study trial is the start of the run it would become). No ASHA: the compute is what it says."""
    where = Storage(plan.storage.experiment(plan.name))
    stop_at = max(1, round(plan.config.iterations * STUDY_FRACTION / 2))
    return dataclasses.replace(
        plan, search="optuna", name=STUDY, storage=where, samples=2 * plan.samples, stop_at=stop_at, asha=False
    )


def population_size(samples: int) -> int:
    """optuna+pbt: the seeded population, sized so study + population use the compute of `--search pbt`."""
    return max(2, round(samples * (1 - STUDY_FRACTION)))


def seeded_plan(plan: Plan, study_results) -> Plan:
    """optuna+pbt, second part: PBT whose population starts from the study's best configs (best last
    validation score; every study trial ran the same iterations)."""
    metric = plan.spec.metric
    order = recorded.ranked(study_results, metric, plan.spec.mode)
    start = tuple(dict(r.config) for r in order[: population_size(plan.samples)])
    if len(start) < 2:
        raise ConfigError(f"optuna+pbt: only {len(start)} study trial(s) reported {metric}; see {STUDY}/ in the run")
    return dataclasses.replace(plan, start=start, samples=len(start))


def starting_space(plan: Plan, mutations: dict) -> dict:
    """A param space whose grid over `seed` gives one trial per starting config: member i trains with
    seed + i * SEED_STRIDE and takes every other value from start[i]. (Tune's points_to_evaluate cannot
    set nested dicts such as schedules that differ in shape between points, so the seed picks the point.)"""
    first = plan.config.seed
    keys = set(plan.base_config) | {k for config in plan.start for k in config} | set(mutations)
    keys.discard("seed")
    defaults = {k: getattr(plan.config, k) for k in keys}  # for a key some study configs lack
    points = [{**defaults, **plan.base_config, **config} for config in plan.start]
    seeds = [first + i * SEED_STRIDE for i in range(len(points))]
    return {
        "seed": tune.grid_search(seeds),
        **{k: tune.sample_from(StartingValue(points, k, first)) for k in sorted(keys)},
    }


class StartingValue:
    """`key` of the starting config the trial's seed picks (see starting_space). A class, so it pickles."""

    def __init__(self, points: list[dict], key: str, first_seed: int):
        self.points, self.key, self.first_seed = points, key, first_seed

    def __call__(self, spec):
        return self.points[(spec.config.seed - self.first_seed) // SEED_STRIDE][self.key]


class SameAsSeed:
    """data_seed = the trial's seed (--vary-data), resolved after the seed grid. A class, so it pickles."""

    def __call__(self, spec) -> int:
        return spec.config.seed


class ShortTrialName:
    """`dt_00002`: the model and the trial's index, which starts Tune's experiment tag ("2_lr=...")."""

    def __init__(self, model: str):
        self.model = model

    def __call__(self, trial) -> str:
        index = trial.experiment_tag.split("_", 1)[0]
        return f"{self.model}_{int(index):05d}" if index.isdigit() else f"{self.model}_{trial.trial_id}"


class ClipToDomains:
    """PBT multiplies a continuous value by 0.8 or 1.2 with no regard for its domain: after a few
    rounds a dropout of 0.3 becomes 0.52 and a step size leaves (0, 1]. This keeps every perturbed
    value inside the bounds of the domain it was sampled from. A class, so it pickles."""

    def __init__(self, mutations: dict):
        self.bounds = {
            k: (v.lower, v.upper) for k, v in mutations.items() if hasattr(v, "lower") and hasattr(v, "upper")
        }

    def __call__(self, config: dict) -> dict:
        for key, (low, high) in self.bounds.items():
            if key in config:
                config[key] = type(config[key])(min(max(config[key], low), high))
        return config


class ConfigOnlyOptunaSearch(OptunaSearch):
    """OptunaSearch that hands trials only config keys.

    Ray merges every name the define-by-run function suggested (e.g. "log2_batch_size", "size")
    into the trial's config beside the dict the function returns; our trainables reject unknown
    keys, so the searcher keeps the returned config alone. The study still records every name.
    """

    def __init__(self, keys: list[str], **kwargs):
        super().__init__(**kwargs)
        self._config_keys = frozenset(keys)

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        if not isinstance(config, dict):
            return config  # FINISHED or None
        # The report matches study trials to Tune trials (e.g. to keep those that ran the full budget).
        ray_compat.optuna_trial(self, trial_id).set_user_attr("tune_trial_id", trial_id)
        return {k: v for k, v in config.items() if k in self._config_keys}


class DefineByRunSpace:
    """Optuna's define-by-run space plus the fixed config; keys pinned with --set win.

    A class rather than a closure so the searcher stays picklable for Tune's experiment state.
    """

    def __init__(self, sample, base: dict, pinned: tuple):
        self.sample, self.base, self.pinned = sample, base, pinned

    def __call__(self, trial) -> dict:
        sampled = self.sample(trial)
        return {**self.base, **{k: v for k, v in sampled.items() if k not in self.pinned}}


def restore_tuner(plan: Plan) -> tune.Tuner:
    """Continues an experiment: finished trials stay finished, the others resume from their last
    checkpoint (errored ones too: a crash of the driver or a node is not the model's fault).
    The callbacks are the ones the experiment was started with (Tune keeps them in tuner.pkl).
    An experiment state cut off by a killed driver is first replaced by its last complete copy."""
    local = plan.storage.local_experiment(plan.name)
    repaired = restore_complete_state(local) if local is not None else None
    if repaired:
        print(repaired, file=sys.stderr)
    return tune.Tuner.restore(plan.storage.experiment(plan.name), trainable=trainable(plan), resume_errored=True)
