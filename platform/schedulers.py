"""Tune's PBT and ASHA schedulers, made resumable. Driver-side only (pickled into tuner.pkl and
unpickled by the driver, never by workers), so they may live in `platform/`.

Tune saves the searcher with the experiment but not the scheduler: `Tuner.restore` brings the
scheduler back as it was constructed, and then adds every restored trial to it as if it were new.
"""

import contextlib
import copy
import json
import logging
import random

import numpy as np
import pyarrow.fs
from ray.tune import Checkpoint
from ray.tune.experiment import Trial
from ray.tune.result import STDERR_FILE, STDOUT_FILE, TRIAL_INFO
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    PopulationBasedTrainingReplay,
    TrialScheduler,
)
from ray.tune.search.sample import Domain

from platform import ray_compat
from platform import results as recorded
from platform.tables import short_value

log = logging.getLogger("tunelab")
# Written beside every checkpoint by callbacks.RecordCheckpointResults: the result it was saved at.
CHECKPOINT_RESULT = "tunelab_result.json"


def restored_iteration(trial: Trial) -> int | None:
    """The iteration a trial continues from when it starts: its latest checkpoint's (0 without one),
    or None for a trial that has reported nothing yet. Tune restores a trial's iteration counter
    from the metrics recorded with the checkpoint, so this reads the same."""
    if not trial.last_result or "training_iteration" not in trial.last_result:
        return None
    latest = ray_compat.latest_checkpoint_result(trial)
    if latest is None or latest.checkpoint is None:
        return 0
    return int((latest.metrics or {}).get("training_iteration", 0))


def repair_checkpoint(trial: Trial) -> None:
    """A crash can leave the experiment state naming a checkpoint that `num_to_keep` has deleted:
    the state reaches storage asynchronously, deletions happen at once. Tune would then restart the
    trial from scratch; it continues from its newest checkpoint that still exists instead."""
    latest = ray_compat.latest_checkpoint_result(trial)
    if latest is None or latest.checkpoint is None:
        return
    fs = latest.checkpoint.filesystem
    if fs.get_file_info(latest.checkpoint.path).type != pyarrow.fs.FileType.NotFound:
        return
    found = fs.get_file_info(pyarrow.fs.FileSelector(trial.storage.trial_fs_path))
    candidates = sorted((f.path for f in found if f.base_name.startswith("checkpoint_")), reverse=True)
    for path in candidates:
        try:
            with fs.open_input_stream(f"{path}/{CHECKPOINT_RESULT}") as f:
                metrics = json.loads(f.read().decode())
        except (OSError, ValueError):
            continue
        ray_compat.set_latest_checkpoint_result(
            trial, ray_compat.training_result(Checkpoint(path, filesystem=fs), metrics)
        )
        log.warning("%s: its recorded checkpoint was deleted; continuing from %s", trial, path)
        return


class ResumableFIFO(FIFOScheduler):
    """Tune's default scheduler, with `repair_checkpoint` for every restored trial."""

    def on_trial_add(self, tune_controller, trial: Trial):
        super().on_trial_add(tune_controller, trial)
        repair_checkpoint(trial)


def one_node() -> bool:
    """Whether the cluster is a single node. Exploits run in place only there: on a cluster that
    loses a node while an exploit is queued on one of its actors, Tune's recovery of that trial
    went wrong (a failure counted twice, a stale result; tests/test_multinode.py failed 5 runs of 9), so
    multi-node runs restart exploited trials as Tune does."""
    import ray

    return sum(1 for node in ray.nodes() if node["Alive"]) == 1


def population_fits(trials: list[Trial]) -> bool:
    """Whether every trial's resources fit in the cluster at once (CPUs and GPUs)."""
    import ray

    total = ray.cluster_resources()
    for kind in ("CPU", "GPU"):
        need = sum(t.placement_group_factory.required_resources.get(kind, 0) for t in trials)
        if need > total.get(kind, 0) + 1e-9:
            return False
    return True


# ResumablePBT is Tune's synchronous PBT plus four behaviours, each in its own class below and each
# switched off by its own constructor flag (then that part is Tune's own): SeededDecisions (seed=),
# ResumeAfterCrash (resume=), SeedPopulations (per_seed=), InPlaceExploit (in_place_exploit=). The
# flags are also class attributes, so a scheduler unpickled from an experiment started before they
# existed (Tune's tuner.pkl) behaves as it was started.


class SeededDecisions(ray_compat.PBTHooks):
    """PBT whose exploit and explore decisions follow the run's seed: the same command clones the same
    trials and perturbs them the same way.

    Tune's PBT draws those decisions from the driver's shared `random` module, which Tune's event loop
    also draws from as often as results happen to arrive, and resamples a domain from the global numpy
    RNG. Here every draw comes from one `random.Random(seed)` of the scheduler's own (pickled with it
    in the experiment, so `--resume` starts it again from the seed, as it restarts the scheduler).
    """

    rng: random.Random | None = None

    def __init__(self, *args, seed: int | None = None, hyperparam_mutations: dict | None = None, **kwargs):
        """seed: None leaves the decisions to the driver's shared RNGs (Tune's PBT)."""
        self.rng = None if seed is None else random.Random(seed)
        if self.rng is not None and hyperparam_mutations:
            hyperparam_mutations = seeded_resamples(hyperparam_mutations, self.rng)
        super().__init__(*args, hyperparam_mutations=hyperparam_mutations, **kwargs)

    def _own_random(self):
        return contextlib.nullcontext() if self.rng is None else ray_compat.pbt_random(self.rng)

    def on_trial_add(self, tune_controller, trial: Trial):
        with self._own_random():  # Tune fills a mutated key the config lacks by sampling it
            return super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        with self._own_random():  # every exploit and explore happens within a result
            return super().on_trial_result(tune_controller, trial, result)


class SeededResample:
    """A domain PBT resamples a value from (with `resample_probability`), drawn from `rng` (Tune would
    call `domain.sample(None)`: the global numpy RNG). A class, so it pickles with the scheduler,
    sharing its RNG."""

    def __init__(self, domain: Domain, rng: random.Random):
        self.domain, self.rng = domain, rng

    def __call__(self):
        return self.domain.sample(random_state=np.random.default_rng(self.rng.getrandbits(64)))


def seeded_resamples(mutations: dict, rng: random.Random) -> dict:
    """PBT's hyperparam_mutations with every domain a SeededResample (lists and nested dicts kept)."""
    out = {}
    for key, value in mutations.items():
        if isinstance(value, dict):
            out[key] = seeded_resamples(value, rng)
        elif isinstance(value, Domain):
            out[key] = SeededResample(value, rng)
        else:
            out[key] = value
    return out


class ResumeAfterCrash(ray_compat.PBTHooks):
    """Synchronous PBT that finishes after `--resume`.

    Restored as constructed, synchronous PBT believes every trial is at time 0 and the next
    synchronisation point is the first one. At the first synchronisation after a resume the point
    then jumps to the trials' own iteration (max(next + interval, latest train time)), and
    `choose_trial_to_run` only starts trials strictly below it: every trial stays PAUSED for ever.
    Here each restored trial's state is rebuilt from its last result and the iteration its
    checkpoint holds; the synchronisation point is the first one at or past the furthest trial; a
    restored trial waits PAUSED until the scheduler picks it (Tune would start every PENDING trial
    at once); a trial catching up is not synchronised before it reaches the point; and if every
    trial waits at the point with nothing running (all were there at the crash), the point moves on.
    A trial Tune retries after a failure is re-added too: its state is rebuilt the same way (Tune's
    own PBT reset it to time 0), and it stays PENDING, as Tune expects.
    """

    resume = True
    _resumed = False  # set once a restored or retried trial is added

    def __init__(self, *args, resume: bool = True, **kwargs):
        """resume: False leaves restored and retried trials to Tune's PBT (from time 0)."""
        super().__init__(*args, **kwargs)
        self.resume = resume
        # A resumed run (or a retried trial) synchronises as Tune does, every trial paused at each
        # point (InPlaceExploit reads this): the catching-up rules above were written and tested for that.
        self._resumed = False

    def on_trial_add(self, tune_controller, trial: Trial):
        if not self.resume:
            return super().on_trial_add(tune_controller, trial)
        requeued = trial in self.trial_state  # Tune re-adds a trial it retries after a failure
        super().on_trial_add(tune_controller, trial)
        repair_checkpoint(trial)
        iteration = restored_iteration(trial)
        if iteration is None or trial.is_finished():
            return
        self._resumed = True
        state = self.trial_state[trial]
        if self.metric in trial.last_result:
            self.save_trial_state(trial, iteration, trial.last_result)
        state.last_train_time = iteration
        interval = self.perturbation_interval
        state.last_perturbation_time = iteration - iteration % interval
        furthest = max(self.trial_state[t].last_train_time for t in self.trial_state if not t.is_finished())
        self.next_sync = max(self.burn_in_period, interval, -(-furthest // interval) * interval)
        if not requeued:  # a retried trial is PENDING and Tune starts it itself
            trial.set_status(Trial.PAUSED)
        log.debug("PBT: %s resumes at iteration %d; synchronisation at %d", trial, iteration, self.next_sync)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if self.resume and self.synchronous and result.get(self.time_attr, self.next_sync) < self.next_sync:
            return TrialScheduler.CONTINUE  # catching up with the population after a resume
        return super().on_trial_result(tune_controller, trial, result)

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        trial = super().choose_trial_to_run(tune_controller)
        if trial is not None or not self.synchronous or not self.resume:
            return trial
        live = tune_controller.get_live_trials()
        times = [self.trial_state[t].last_train_time for t in live]
        if times and not any(t.status == Trial.RUNNING for t in live) and min(times) >= self.next_sync:
            self.next_sync = max(times) + self.perturbation_interval
            return super().choose_trial_to_run(tune_controller)
        return None


class SeedPopulations(ray_compat.PBTHooks):
    """PBT over independent populations, one per seed (--seeds N: N populations), each exploited
    within itself, so that the spread over seeds means something."""

    population_key = "seed"

    def __init__(self, *args, per_seed: bool = False, **kwargs):
        """per_seed: False makes the trials one population, whatever their seeds (Tune's PBT)."""
        super().__init__(*args, **kwargs)
        self._population_key = self.population_key if per_seed else None

    def _population(self, trial: Trial):
        return trial.config.get(self._population_key)

    def quantiles(self) -> tuple[list[Trial], list[Trial]]:
        """Tune's quantiles, taken within each population and joined."""
        if self._population_key is None:
            return super().quantiles()
        everyone, lower, upper = self.trial_state, [], []
        try:
            for value in {self._population(t) for t in everyone}:
                self.trial_state = {t: s for t, s in everyone.items() if self._population(t) == value}
                low, high = super().quantiles()
                lower, upper = lower + low, upper + high
        finally:
            self.trial_state = everyone
        return lower, upper

    def checkpoint_or_exploit(self, trial: Trial, tune_controller, upper_quantile, lower_quantile):
        """A trial clones only a trial of its own population."""
        if self._population_key is not None:
            mine = self._population(trial)
            upper_quantile = [t for t in upper_quantile if self._population(t) == mine]
            lower_quantile = [t for t in lower_quantile if self._population(t) == mine]
        super().checkpoint_or_exploit(trial, tune_controller, upper_quantile, lower_quantile)


class InPlaceExploit(ray_compat.PBTHooks):
    """Synchronous PBT whose population keeps its actors at synchronisation points.

    Tune's synchronous PBT pauses every trial at every synchronisation point, and a paused trial's
    actor is not kept for reuse (the search is over, nothing is staged): each trial then restarts in
    a new worker process (~3 s of imports here; bench/cartpole.py measured the population at 2.2x
    its ideal wall time). When the whole population runs at once, a trial that arrives early waits
    idle in its actor instead, every trial left running after the perturbation continues in place,
    and an exploited trial takes its clone's checkpoint in its own actor (`exploit`).
    """

    in_place_exploit = True

    def __init__(self, *args, in_place_exploit: bool = True, **kwargs):
        """in_place_exploit: False pauses every trial at every synchronisation point (Tune's PBT)."""
        super().__init__(*args, **kwargs)
        self.in_place_exploit = in_place_exploit
        self._waiting: set[Trial] = set()  # idle at the synchronisation point, actors kept
        self._in_place: set[Trial] = set()  # exploited without leaving their actors (reset + restore queued)
        self._reporting: Trial | None = None  # the trial whose result is being processed

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if not self.in_place_exploit:
            return super().on_trial_result(tune_controller, trial, result)
        point = self.next_sync
        self._reporting, self._in_place = trial, set()
        try:
            decision = super().on_trial_result(tune_controller, trial, result)
        finally:
            self._reporting = None
        if not self.synchronous:
            return decision
        advanced = self.next_sync != point
        if advanced:  # this result completed the synchronisation: the idle ones go on
            for waiting in self._waiting - self._in_place:
                if waiting is not trial and waiting.status == Trial.RUNNING:
                    ray_compat.schedule_train(tune_controller, waiting)
            self._waiting.clear()
        if trial in self._in_place:
            return TrialScheduler.NOOP  # its reset and restore are queued; training follows them
        if decision != TrialScheduler.PAUSE or not self._waits_in_place(tune_controller):
            return decision  # the population takes turns on the CPUs: the early arrivals must yield them
        if not advanced:
            self._waiting.add(trial)
            return TrialScheduler.NOOP
        return TrialScheduler.CONTINUE

    def _waits_in_place(self, tune_controller) -> bool:
        """Whether the population keeps its actors at synchronisation points: it all runs at once,
        and this is not a resumed run (that one synchronises as Tune does, every trial paused)."""
        return not self._resumed and population_fits(tune_controller.get_live_trials())

    def exploit(self, tune_controller, trial: Trial, trial_to_clone: Trial):
        """Tune's exploit, in the trial's own actor when it waits in place (Tune would pause it, stop
        its actor and start a new worker process: ~3 s of imports per exploit)."""
        in_place = (
            self.in_place_exploit
            and self.synchronous
            and trial.status == Trial.RUNNING
            and (trial in self._waiting or trial is self._reporting)
            and self._waits_in_place(tune_controller)
            and one_node()
        )
        if not in_place:
            return super().exploit(tune_controller, trial, trial_to_clone)
        # Tune's exploit pauses a RUNNING trial and leaves a PAUSED one to be restarted from the
        # checkpoint it sets; seen as PAUSED for the call, the trial keeps its actor.
        trial.status = Trial.PAUSED
        try:
            super().exploit(tune_controller, trial, trial_to_clone)
        finally:
            trial.status = Trial.RUNNING
        self._reset_and_restore(tune_controller, trial)

    def _reset_and_restore(self, tune_controller, trial: Trial) -> None:
        """Queue on the trial's idle actor: `reset` to its new config (the trainable's reset_config),
        `restore` from the clone's checkpoint PBT set, then training (Tune's restore callback).
        A trainable that cannot reset in place is paused instead and restarts as in Tune."""
        self._in_place.add(trial)
        clone = ray_compat.latest_checkpoint_result(trial)  # set by Tune's exploit
        config = copy.deepcopy(trial.config)
        config[TRIAL_INFO] = ray_compat.trial_info(trial)  # what Tune passes on its own actor reuse
        config[STDOUT_FILE], config[STDERR_FILE] = trial.log_to_file

        def reset(trial: Trial, _) -> None:
            ray_compat.schedule_task(
                tune_controller, trial, "reset", on_result=restore, args=(config,), kwargs={"storage": trial.storage}
            )

        def restore(trial: Trial, success: bool) -> None:
            # a save of the trial's own state (Tune's checkpoint frequency) may have landed since
            ray_compat.set_latest_checkpoint_result(trial, clone)
            if success:
                ray_compat.schedule_restore(tune_controller, trial)
            else:  # restarts from the clone's checkpoint in a new actor
                self._in_place.discard(trial)
                ray_compat.tune_controller(tune_controller).pause_trial(trial, should_checkpoint=False)

        # Tune may still queue a save of the reporting trial's own state for this result (checkpoint
        # frequency): a no-op call first, so that the reset is queued after that save, which then
        # holds the trial's state before the exploit, at its own iteration.
        ray_compat.schedule_task(tune_controller, trial, "get_current_ip_pid", on_result=reset)


class ResumablePBT(SeededDecisions, ResumeAfterCrash, SeedPopulations, InPlaceExploit):
    """Tune's PBT with the four behaviours above: seed=None, resume=True, per_seed=False and
    in_place_exploit=True by default; each flag set to None or False gives Tune's own behaviour for
    that part.
    Tune logs each exploit/explore in a dozen lines; one line here says the same."""

    def exploit(self, tune_controller, trial: Trial, trial_to_clone: Trial):
        before = {k: trial_to_clone.config.get(k) for k in self.hyperparam_mutations}
        scores = self.trial_state[trial].last_score, self.trial_state[trial_to_clone].last_score
        super().exploit(tune_controller, trial, trial_to_clone)
        changes = ", ".join(f"{k} {short_value(before[k])} -> {short_value(trial.config.get(k))}" for k in before)
        print(f"PBT: {trial} ({self.metric} {scores[0]:.4g}) cloned {trial_to_clone} ({scores[1]:.4g}); {changes}")


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive `--resume`: a restored trial's recorded results are replayed into its
    bracket, so the cutoffs compare resumed trials against every result seen before the crash."""

    def on_trial_add(self, tune_controller, trial: Trial):
        super().on_trial_add(tune_controller, trial)
        repair_checkpoint(trial)
        if restored_iteration(trial) is None:
            return
        for row in recorded.trial_rows(trial):
            ray_compat.asha_record(self, trial, row)


class SeededReplay(PopulationBasedTrainingReplay):
    """Ray's PBT replay for N trials at once, one per seed: every trial starts from the schedule's
    initial config and switches config at the same iterations as the replayed trial did, under its
    own seed. Ray's replay accepts one trial; the change points are the ones it reads from the
    trial's pbt_policy file. A restored trial resumes at its place in the schedule."""

    def __init__(self, policy_file: str, fallback_config: dict):
        """fallback_config: the replayed trial's own config, for a trial that never cloned another
        (an empty policy): its schedule is that config, constant."""
        super().__init__(policy_file)
        if not self.config:
            self.config = fallback_config
        # Two clones at one step (a chain Tune logged at one synchronisation point): the last one holds.
        self.change_points = sorted(dict(ray_compat.replay_change_points(self)).items())
        self._next = {}  # trial_id -> index of the next change point in self.change_points

    def on_trial_add(self, tune_controller, trial: Trial):
        repair_checkpoint(trial)
        iteration = restored_iteration(trial) or 0
        applied = [config for step, config in self.change_points if step <= iteration]
        self._next[trial.trial_id] = len(applied)
        config = applied[-1] if applied else self.config
        trial.set_config({**config, "seed": trial.config.get("seed", config.get("seed"))})

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        position = self._next.get(trial.trial_id, len(self.change_points))
        if position >= len(self.change_points) or result.get("training_iteration", 0) < self.change_points[position][0]:
            return TrialScheduler.CONTINUE
        change_at, config = self.change_points[position]
        # PAUSE: Tune checkpoints the trial and stops its actor; it restarts from that checkpoint
        # with the new config. (Pausing it from here, as Ray's replay does, can leave a queued STOP
        # that ends the trial after its next result when a periodic checkpoint is being saved.)
        trial.set_config({**config, "seed": trial.config.get("seed")})
        self._next[trial.trial_id] = position + 1
        log.info("replay: %s switches config at iteration %d", trial, change_at)
        return TrialScheduler.PAUSE

    def debug_string(self) -> str:
        return f"PBT replay of {self.policy_file}: {len(self.change_points)} change points"
