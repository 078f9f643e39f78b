"""Every private Ray name tunelab uses, in one module.

Ray keeps no promise about names that start with "_" (nor about `ray.tune.experimental`, or the
files Tune writes for itself): any release may rename them. tunelab needs a few of them, to resume
PBT and ASHA where Tune restarts them from scratch, to run PBT's exploits in place, and to shape
Tune's console and loggers. Each one is wrapped here in a small named function or class that says
what it relies on, and tests/test_ray_compat.py checks every one against the installed Ray (no
cluster needed), failing with "Ray X removed/renamed Y used by Z". tests/test_architecture.py
checks that no other module of platform/, trainables/, bench/, envs/ or search_spaces/ touches a
private Ray name. A Ray upgrade therefore starts here: run those two tests, fix what they name.

Checked against Ray 2.60.0 (`ray.__version__`); pyproject pins ray <2.61 until this module has
been checked against a newer release.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ray.tune.experimental import output as _tune_output
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.schedulers import pbt as _pbt_module

# The Ray releases whose private names this module was read against (update on an upgrade, after
# tests/test_ray_compat.py passes).
CHECKED_RAY_VERSIONS = ("2.60.0",)

# Tune's console reporter and its verbosity levels live in Tune's experimental module: named here
# only, for callbacks.ConsoleReporter.
TerminalReporter = _tune_output.TuneTerminalReporter
AirVerbosity = _tune_output.AirVerbosity

# ----------------------------------------------------------------------------- clusters


def validate_cluster_config(config: dict) -> None:
    """Ray's own check of a cluster launcher YAML, as `ray up` runs it: fills in the defaults, then
    validates against the JSON schema; raises on a bad config. Relies on
    `ray.autoscaler._private.util.prepare_config` and `validate_config` (private module)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))


# ----------------------------------------------------------------------------- trials


def latest_checkpoint_result(trial) -> Any:
    """The trial's latest checkpoint and the metrics it was saved with (`.checkpoint`, `.metrics`),
    or None. Relies on `trial.run_metadata.checkpoint_manager.latest_checkpoint_result`, a public
    property of Ray's private `_CheckpointManager`."""
    return trial.run_metadata.checkpoint_manager.latest_checkpoint_result


def set_latest_checkpoint_result(trial, result) -> None:
    """Makes `result` (from `latest_checkpoint_result` or `training_result`) the checkpoint the trial
    restores from on its next start. Relies on the manager's private `_latest_checkpoint_result`."""
    trial.run_metadata.checkpoint_manager._latest_checkpoint_result = result


def training_result(checkpoint, metrics: dict) -> Any:
    """A checkpoint with the metrics it was saved at, as the checkpoint manager holds them. Relies on
    `ray.train._internal.session._TrainingResult(checkpoint=, metrics=)`."""
    from ray.train._internal.session import _TrainingResult

    return _TrainingResult(checkpoint=checkpoint, metrics=metrics)


def trial_info(trial) -> Any:
    """What Tune passes a trainable about its trial on actor reuse (under the config key
    `ray.tune.result.TRIAL_INFO`). Relies on `ray.tune.experiment.trial._TrialInfo(trial)`."""
    from ray.tune.experiment.trial import _TrialInfo

    return _TrialInfo(trial)


# PBT's own log files in the experiment folder, written by PopulationBasedTraining._log_config_on_step
# for every exploit: all of them in PBT_LOG, and each trial's chain in its pbt_policy file (which
# PopulationBasedTrainingReplay reads).
PBT_LOG = "pbt_global.txt"
PBT_POLICY_GLOB = "pbt_policy_*.txt"


def pbt_policy_file(trial_id: str) -> str:
    """The name of a trial's PBT policy file in the experiment folder."""
    return f"pbt_policy_{trial_id}.txt"


def pbt_exploits(text: str) -> list[list]:
    """The rows of a PBT_LOG (or pbt_policy) file, one per exploit, in PBT's own layout: [target trial
    tag, cloned trial tag, target iteration, cloned iteration, cloned trial's config, new config]."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- experiment state

# Tune's experiment state, one file per driver session in the experiment folder
# (`TuneController.CKPT_FILE_TMPL`), rewritten in place as the run goes; a resume reads the newest
# name (`ray.tune.execution.experiment_state._find_newest_experiment_checkpoint`).
EXPERIMENT_STATE_GLOB = "experiment_state-*.json"


def newest_experiment_state(folder: Path) -> Path | None:
    """The experiment state file a resume of `folder` would read, or None."""
    states = sorted(folder.glob(EXPERIMENT_STATE_GLOB), key=lambda p: p.name)
    return states[-1] if states else None


def raised_by_tune(error: BaseException, own_root: Path) -> bool:
    """True when `error` came out of Ray's own code alone: no frame of its traceback below the
    caller's is in `own_root` (tunelab's callbacks, schedulers and trainables are). Tune's
    controller can fail on its own bookkeeping when a node dies with results in flight (Ray 2.60:
    a KeyError in `TuneController._schedule_trial_task`'s result handler); its saved experiment
    state is then still good to resume from."""
    frames = []
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    while tb is not None:
        name = Path(tb.tb_frame.f_code.co_filename)
        if name.is_absolute():  # compiled modules name a relative source (pyarrow/_fs.pyx)
            frames.append(name.resolve())
        tb = tb.tb_next
    ray_root = Path(_pbt_module.__file__).resolve().parents[2]  # .../ray (ray/tune/schedulers/pbt.py)
    ours = any(own_root in f.parents for f in frames)
    return not ours and any(ray_root in f.parents for f in frames)


# ----------------------------------------------------------------------------- the controller


def tune_controller(wrapped) -> Any:
    """The TuneController behind the wrapper Tune hands its schedulers. Every private method below,
    called through the wrapper, would log a warning that the API is restricted. Relies on the
    wrapper's private `_tune_controller` (`ray.tune.execution.tune_controller.TrialRunnerWrapper`)."""
    return getattr(wrapped, "_tune_controller", wrapped)


def schedule_train(controller, trial) -> None:
    """Asks a trial's running actor for its next training result (what Tune does after CONTINUE).
    Relies on `TuneController._schedule_trial_train(trial)`."""
    tune_controller(controller)._schedule_trial_train(trial)


def schedule_restore(controller, trial) -> None:
    """Restores a trial's running actor from its latest checkpoint result, then trains it on. Relies
    on `TuneController._schedule_trial_restore(trial)`."""
    tune_controller(controller)._schedule_trial_restore(trial)


def schedule_task(
    controller, trial, method_name: str, on_result: Callable, args: tuple = (), kwargs: dict | None = None
) -> None:
    """Queues `method_name(*args, **kwargs)` on the trial's actor; `on_result(trial, value)` runs on
    the driver when it returns, and a failure is handled as any failed trial task. Relies on
    `TuneController._schedule_trial_task(trial=, method_name=, args=, kwargs=, on_result=, on_error=)`
    and `TuneController._trial_task_failure`."""
    controller = tune_controller(controller)
    controller._schedule_trial_task(
        trial=trial,
        method_name=method_name,
        args=args,
        kwargs=kwargs or {},
        on_result=on_result,
        on_error=controller._trial_task_failure,
    )


# ----------------------------------------------------------------------------- schedulers


class PBTHooks(PopulationBasedTraining):
    """Tune's PopulationBasedTraining with its private hooks and state under public names.

    Tune's PBT calls `self._quantiles()`, `self._checkpoint_or_exploit(...)` and `self._exploit(...)`
    (checked in tests/test_ray_compat.py); a subclass of this class overrides `quantiles`,
    `checkpoint_or_exploit` and `exploit` instead, and calls these to get Tune's own. The state
    properties read and write PBT's private attributes of the same name with a leading "_".
    """

    def _quantiles(self):
        return self.quantiles()

    def _checkpoint_or_exploit(self, trial, tune_controller, upper_quantile, lower_quantile):
        self.checkpoint_or_exploit(trial, tune_controller, upper_quantile, lower_quantile)

    def _exploit(self, tune_controller, trial, trial_to_clone):
        self.exploit(tune_controller, trial, trial_to_clone)

    def quantiles(self) -> tuple[list, list]:
        """(lower, upper) quantile of the trials by their last score."""
        return PopulationBasedTraining._quantiles(self)

    def checkpoint_or_exploit(self, trial, tune_controller, upper_quantile: list, lower_quantile: list) -> None:
        """A trial in the upper quantile is checkpointed, one in the lower clones an upper one."""
        PopulationBasedTraining._checkpoint_or_exploit(self, trial, tune_controller, upper_quantile, lower_quantile)

    def exploit(self, tune_controller, trial, trial_to_clone) -> None:
        """`trial` takes `trial_to_clone`'s checkpoint and a perturbed copy of its config."""
        PopulationBasedTraining._exploit(self, tune_controller, trial, trial_to_clone)

    def save_trial_state(self, trial, time: int, result: dict) -> None:
        """Records `result` as the trial's last score and train time (Tune's `_save_trial_state`)."""
        self._save_trial_state(self._trial_state[trial], time, result, trial)

    @property
    def trial_state(self) -> dict:
        """Trial -> Tune's per-trial PBT state (last_score, last_train_time, last_perturbation_time)."""
        return self._trial_state

    @trial_state.setter
    def trial_state(self, value: dict) -> None:
        self._trial_state = value

    @property
    def next_sync(self) -> int:
        """Synchronous PBT's next synchronisation point (in `time_attr` units)."""
        return self._next_perturbation_sync

    @next_sync.setter
    def next_sync(self, value: int) -> None:
        self._next_perturbation_sync = value

    @property
    def synchronous(self) -> bool:
        return self._synch

    @property
    def time_attr(self) -> str:
        return self._time_attr

    @property
    def perturbation_interval(self) -> float:
        return self._perturbation_interval

    @property
    def burn_in_period(self) -> float:
        return self._burn_in_period

    @property
    def hyperparam_mutations(self) -> dict:
        return self._hyperparam_mutations


@contextlib.contextmanager
def pbt_random(rng: random.Random) -> Iterator[None]:
    """Within the block, Tune's PBT draws its exploit and explore decisions (which upper-quantile
    trial to clone, resample or perturb, which factor, which shift along a list) from `rng`.

    Tune's PBT has no RNG argument: it calls the `random` module it imported, which the whole driver
    shares, and Tune's own event loop shuffles ready futures with that module as often as results
    happen to arrive (ray.air.execution._internal: event_manager, actor_manager). A seeded global
    `random` therefore does not repeat PBT's decisions; a `random.Random` of the scheduler's own,
    swapped in only for the scheduler's calls, does. Relies on `ray.tune.schedulers.pbt` reading the
    module-level name `random` at call time (`_explore`, `_checkpoint_or_exploit`, `_fill_config`)."""
    saved = _pbt_module.random
    _pbt_module.random = rng
    try:
        yield
    finally:
        _pbt_module.random = saved


def asha_record(scheduler, trial, row: dict) -> None:
    """Feeds one recorded result row of `trial` into its ASHA bracket's rungs (nothing if the row
    lacks the time or the metric). Relies on AsyncHyperBandScheduler's private `_trial_info`
    (trial_id -> bracket), `_time_attr`, `_metric`, `_metric_op` and the bracket's
    `on_result(trial, time, score)`."""
    if scheduler._time_attr in row and scheduler._metric in row:
        bracket = scheduler._trial_info[trial.trial_id]
        bracket.on_result(trial, row[scheduler._time_attr], scheduler._metric_op * row[scheduler._metric])


def replay_change_points(replay) -> list[tuple[int, dict]]:
    """A PopulationBasedTrainingReplay's schedule as Ray read it from the pbt_policy file: (step,
    config) pairs in file order. Relies on its private `_policy`."""
    return list(replay._policy)


# ----------------------------------------------------------------------------- callbacks


class StorageCopyHook:
    """Mixin for Tune's JSON and CSV logger callbacks. At each trial start Tune calls their
    `_restore_from_remote(file_name, trial)` (checked in tests/test_ray_compat.py) to copy the trial's
    file from storage over the driver's copy; here that call goes to `restore_from_storage`, which a
    subclass overrides, and `copy_from_storage` is Tune's own copy."""

    def _restore_from_remote(self, file_name: str, trial) -> None:
        self.restore_from_storage(file_name, trial)

    def restore_from_storage(self, file_name: str, trial) -> None:
        self.copy_from_storage(file_name, trial)

    def copy_from_storage(self, file_name: str, trial) -> None:
        super()._restore_from_remote(file_name, trial)


def tensorboard_end_trial(callback, trial, hparams: dict) -> None:
    """Closes the trial's TensorBoard writer, first writing its HParams: `hparams` (flat) against
    the trial's last result. Relies on TBXLoggerCallback's private `_trial_writer`, `_trial_result`
    (trial -> writer, last result) and `_try_log_hparams(trial, result)`, which reads the params
    from `trial.evaluated_params`."""
    from ray.tune.utils import flatten_dict

    if trial not in callback._trial_writer:
        return
    last = callback._trial_result.get(trial)
    if last:
        scalars = {k: v for k, v in flatten_dict(last, delimiter="/").items() if isinstance(v, (int, float))}
        sampled = trial.evaluated_params
        trial.evaluated_params = hparams
        try:
            callback._try_log_hparams(trial, scalars)
        finally:
            trial.evaluated_params = sampled
    callback._trial_writer[trial].close()
    del callback._trial_writer[trial]
    del callback._trial_result[trial]


def mlflow_has_run(callback, trial) -> bool:
    """Whether MLflowLoggerCallback has started an MLflow run for the trial. Relies on its private
    `_trial_runs` (trial -> run id)."""
    return trial in callback._trial_runs


def reporter_metric(reporter) -> str | None:
    """The metric Tune's console reporter was given. Relies on TuneReporterBase's private `_metric`."""
    return reporter._metric


def install_console_reporter(cls: type) -> None:
    """Makes Tune build `cls` (a TerminalReporter subclass) as its console reporter, in this
    process. Tune builds its reporter in `ray.tune.experimental.output._detect_reporter`, looking
    the class up by the module-level name `TuneTerminalReporter`, which this replaces."""
    _tune_output.TuneTerminalReporter = cls


def optuna_trial(searcher, trial_id: str) -> Any:
    """The optuna.Trial an OptunaSearch opened for a Tune trial. Relies on its private `_ot_trials`
    (trial_id -> optuna trial)."""
    return searcher._ot_trials[trial_id]
