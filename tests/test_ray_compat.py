"""Every private Ray name platform/ray_compat.py relies on, checked against the installed Ray.

No Ray cluster: each test reads a signature, a class's source or a stub trial. A failure says which
name the installed Ray removed or renamed, and which wrapper of ray_compat.py to update.
"""

import importlib
import inspect
import json

import ray
from ray.train._internal.storage import StorageContext
from ray.tune import Checkpoint
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining, PopulationBasedTrainingReplay

from platform import ray_compat


def gone(name: str, user: str) -> str:
    return f"Ray {ray.__version__} removed/renamed {name} used by {user}; update platform/ray_compat.py"


def lookup(path: str, user: str):
    """The object at a dotted path `module:attr.attr`, or a failure naming it."""
    module, _, attrs = path.partition(":")
    try:
        obj = importlib.import_module(module)
        for attr in attrs.split(".") if attrs else []:
            obj = getattr(obj, attr)
    except (ImportError, AttributeError):
        raise AssertionError(gone(path, user)) from None
    return obj


def has_params(path: str, params: list[str], user: str) -> None:
    found = list(inspect.signature(lookup(path, user)).parameters)
    assert found[: len(params)] == params, gone(f"{path}({', '.join(params)}) (now {found})", user)


def in_source(path: str, text: str, user: str) -> None:
    assert text in inspect.getsource(lookup(path, user)), gone(f"{text!r} in {path}", user)


def stub_trial(tmp_path, trial_id: str = "t0") -> Trial:
    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=trial_id)
    return Trial("__fake", config={"seed": 1}, stub=True, storage=storage, trial_id=trial_id)


def test_records_the_installed_version_as_checked():
    """An upgrade of the pin is a deliberate step: run these tests, then add the version here."""
    assert ray.__version__ in ray_compat.CHECKED_RAY_VERSIONS, (
        f"Ray {ray.__version__} is installed but platform/ray_compat.py was checked against "
        f"{ray_compat.CHECKED_RAY_VERSIONS}; run tests/test_ray_compat.py and record it in CHECKED_RAY_VERSIONS"
    )


def test_cluster_validator():
    user = "ray_compat.validate_cluster_config (platform/clusters.py)"
    has_params("ray.autoscaler._private.util:prepare_config", ["config"], user)
    has_params("ray.autoscaler._private.util:validate_config", ["config"], user)


def test_latest_checkpoint_result_round_trip(tmp_path):
    user = "ray_compat.set_latest_checkpoint_result (schedulers.repair_checkpoint, InPlaceExploit)"
    has_params("ray.train._internal.session:_TrainingResult", ["checkpoint", "metrics"], user)
    trial = stub_trial(tmp_path)
    result = ray_compat.training_result(Checkpoint(str(tmp_path)), {"training_iteration": 3})
    ray_compat.set_latest_checkpoint_result(trial, result)
    # Tune's own view of the trial must see what was set: that is what it restores from.
    assert trial.latest_checkpoint_result is result, gone("_CheckpointManager._latest_checkpoint_result", user)
    assert ray_compat.latest_checkpoint_result(trial).metrics == {"training_iteration": 3}


def test_trial_info(tmp_path):
    user = "ray_compat.trial_info (InPlaceExploit's reset)"
    trial = stub_trial(tmp_path)
    info = ray_compat.trial_info(trial)
    assert info.trial_id == trial.trial_id, gone("ray.tune.experiment.trial:_TrialInfo", user)


def test_controller_private_methods():
    user = "ray_compat.schedule_task/schedule_train/schedule_restore (InPlaceExploit)"
    controller = "ray.tune.execution.tune_controller:TuneController"
    has_params(
        f"{controller}._schedule_trial_task",
        ["self", "trial", "method_name", "args", "kwargs", "on_result", "on_error"],
        user,
    )
    has_params(f"{controller}._trial_task_failure", ["self", "trial", "exception"], user)
    has_params(f"{controller}._schedule_trial_train", ["self", "trial"], user)
    has_params(f"{controller}._schedule_trial_restore", ["self", "trial"], user)


def test_controller_behind_the_schedulers_wrapper():
    user = "ray_compat.tune_controller"
    wrapper = lookup("ray.tune.execution.tune_controller:TrialRunnerWrapper", user)
    controller = object()
    assert ray_compat.tune_controller(wrapper(controller, trial_executor=None)) is controller, gone(
        "_TrialRunnerWrapper._tune_controller", user
    )


def test_pbt_hooks_are_called_by_tunes_pbt():
    """PBTHooks overrides these three: if Tune's PBT stopped calling them, tunelab's PBT behaviours
    (per-seed populations, in-place exploits) would silently be Tune's own."""
    user = "ray_compat.PBTHooks (schedulers.ResumablePBT)"
    pbt = "ray.tune.schedulers.pbt:PopulationBasedTraining"
    has_params(f"{pbt}._quantiles", ["self"], user)
    has_params(f"{pbt}._checkpoint_or_exploit", ["self", "trial", "tune_controller", "upper_quantile"], user)
    has_params(f"{pbt}._exploit", ["self", "tune_controller", "trial", "trial_to_clone"], user)
    has_params(f"{pbt}._save_trial_state", ["self", "state", "time", "result", "trial"], user)
    in_source(f"{pbt}.on_trial_result", "self._quantiles()", user)
    in_source(f"{pbt}.on_trial_result", "self._checkpoint_or_exploit(", user)
    in_source(f"{pbt}._checkpoint_or_exploit", "self._exploit(", user)


def test_pbt_state_attributes():
    user = "ray_compat.PBTHooks properties (schedulers.ResumablePBT)"
    pbt = PopulationBasedTraining(
        time_attr="training_iteration", perturbation_interval=4, hyperparam_mutations={"lr": [1, 2]}, synch=True
    )
    for name in (
        "_trial_state",
        "_next_perturbation_sync",
        "_synch",
        "_time_attr",
        "_perturbation_interval",
        "_burn_in_period",
        "_hyperparam_mutations",
    ):
        assert hasattr(pbt, name), gone(f"PopulationBasedTraining.{name}", user)
    hooks = ray_compat.PBTHooks(
        time_attr="training_iteration", perturbation_interval=4, hyperparam_mutations={"lr": [1, 2]}, synch=True
    )
    assert (hooks.perturbation_interval, hooks.synchronous, hooks.next_sync) == (4, True, 4)


def test_pbt_draws_from_the_random_module_it_imported():
    import random

    user = "ray_compat.pbt_random (schedulers.SeededDecisions)"
    assert lookup("ray.tune.schedulers.pbt:random", user) is random, gone("ray.tune.schedulers.pbt.random", user)
    for name in ("_explore", "PopulationBasedTraining._checkpoint_or_exploit"):
        in_source(f"ray.tune.schedulers.pbt:{name}", "random.", user)
    explore = lookup("ray.tune.schedulers.pbt:_explore", user)
    mutations = {"lr": [1, 2, 3, 4, 5, 6, 7, 8]}

    def decisions(rng):
        with ray_compat.pbt_random(rng):
            return [explore({"lr": 4}, mutations, 0.5, (1.2, 0.8), None)[0]["lr"] for _ in range(40)]

    state = random.getstate()
    assert decisions(random.Random(7)) == decisions(random.Random(7)), gone("pbt.random as PBT's RNG", user)
    assert decisions(random.Random(7)) != decisions(random.Random(8))
    assert random.getstate() == state  # the driver's shared RNG was not drawn from
    assert lookup("ray.tune.schedulers.pbt:random", user) is random  # and is back in place


def test_asha_record_feeds_the_rungs(tmp_path):
    user = "ray_compat.asha_record (schedulers.ResumableASHA)"
    asha = ASHAScheduler(metric="score", mode="max", time_attr="training_iteration", max_t=8, grace_period=1)
    for name in ("_trial_info", "_time_attr", "_metric", "_metric_op"):
        assert hasattr(asha, name), gone(f"AsyncHyperBandScheduler.{name}", user)
    strong, weak = stub_trial(tmp_path, "t0"), stub_trial(tmp_path, "t1")
    asha.on_trial_add(None, strong)
    asha.on_trial_add(None, weak)
    ray_compat.asha_record(asha, strong, {"training_iteration": 1, "score": 1.0})
    # The recorded row sets the rung's cutoff: a weaker first result is stopped against it.
    assert asha.on_trial_result(None, weak, {"training_iteration": 1, "score": 0.0}) == "STOP", gone(
        "the ASHA bracket's on_result(trial, time, score)", user
    )


def test_replay_change_points(tmp_path):
    user = "ray_compat.replay_change_points (schedulers.SeededReplay)"
    policy = tmp_path / "pbt_policy_a.txt"
    # one trial's chain, as Tune logs it: each row's old tag is the next row's new one
    rows = [["c", "b", 4, 4, {"lr": 1}, {"lr": 2}], ["b", "c", 8, 8, {"lr": 2}, {"lr": 3}]]
    policy.write_text("".join(json.dumps(r) + "\n" for r in rows))
    replay = PopulationBasedTrainingReplay(str(policy))
    assert ray_compat.replay_change_points(replay) == [(4, {"lr": 2}), (8, {"lr": 3})], gone(
        "PopulationBasedTrainingReplay._policy", user
    )


def test_logger_restore_hook():
    user = "ray_compat.StorageCopyHook (callbacks.JsonLogger, callbacks.CSVLogger)"
    has_params("ray.tune.logger.logger:LoggerCallback._restore_from_remote", ["self", "file_name", "trial"], user)
    in_source("ray.tune.logger.json:JsonLoggerCallback", "self._restore_from_remote(", user)
    in_source("ray.tune.logger.csv:CSVLoggerCallback", "self._restore_from_remote(", user)


def test_tensorboard_private_state():
    user = "ray_compat.tensorboard_end_trial (callbacks.TensorBoardCallback)"
    tbx = "ray.tune.logger.tensorboardx:TBXLoggerCallback"
    has_params(f"{tbx}._try_log_hparams", ["self", "trial", "result"], user)
    in_source(f"{tbx}._try_log_hparams", "trial.evaluated_params", user)
    in_source(tbx, "self._trial_writer", user)
    in_source(tbx, "self._trial_result", user)


def test_mlflow_trial_runs():
    in_source("ray.air.integrations.mlflow:MLflowLoggerCallback", "self._trial_runs", "ray_compat.mlflow_has_run")


def test_console_reporter_swap():
    user = "ray_compat.install_console_reporter and reporter_metric (callbacks.ConsoleReporter)"
    lookup("ray.tune.experimental.output:TuneTerminalReporter", user)
    # Tune must build its reporter by looking the module-level name up at call time.
    in_source("ray.tune.experimental.output:_detect_reporter", "TuneTerminalReporter(", user)
    in_source("ray.tune.experimental.output:TuneReporterBase.__init__", "self._metric = metric", user)


def test_optuna_trials():
    in_source("ray.tune.search.optuna:OptunaSearch", "self._ot_trials[", "ray_compat.optuna_trial (experiment)")


def test_pbt_log_files():
    """PBT writes its exploits where and as ray_compat reads them (report, --replay)."""
    user = "ray_compat.PBT_LOG, pbt_policy_file and pbt_exploits (report, experiment's --replay)"
    source = " ".join(inspect.getsource(lookup("ray.tune.schedulers.pbt:PopulationBasedTraining", user)).split())
    assert f'"{ray_compat.PBT_LOG}"' in source, gone(f"PBT's {ray_compat.PBT_LOG}", user)
    assert '"pbt_policy_" + trial_id + ".txt"' in source, gone("PBT's pbt_policy_<trial_id>.txt", user)
    assert ray_compat.pbt_policy_file("abc") == "pbt_policy_abc.txt"
    layout = (
        "policy = [ trial_name, trial_to_clone_name, trial.last_result.get(TRAINING_ITERATION, 0), "
        "trial_to_clone.last_result.get(TRAINING_ITERATION, 0), trial_to_clone.config, new_config, ]"
    )
    assert layout in source, gone("the row layout of PBT's log files", user)
    row = ["a", "b", 4, 4, {"lr": 1}, {"lr": 2}]
    assert ray_compat.pbt_exploits(json.dumps(row) + "\n\n") == [row]


def test_experiment_state_files(tmp_path):
    """Tune names its experiment state as ray_compat globs for it, and a resume reads the newest name."""
    user = "ray_compat.EXPERIMENT_STATE_GLOB and newest_experiment_state (callbacks.KeepCompleteState)"
    template = lookup("ray.tune.execution.tune_controller:TuneController.CKPT_FILE_TMPL", user)
    assert template.format("*") == ray_compat.EXPERIMENT_STATE_GLOB, gone(f"CKPT_FILE_TMPL (now {template!r})", user)
    find = lookup("ray.tune.execution.experiment_state:_find_newest_experiment_checkpoint", user)
    for session in ("2026-12-01_10-00-00", "2026-12-02_09-00-00", "2026-12-01_23-00-00"):
        (tmp_path / template.format(session)).write_text("{}")
    assert find(str(tmp_path)) == str(ray_compat.newest_experiment_state(tmp_path))
    assert ray_compat.newest_experiment_state(tmp_path).name == template.format("2026-12-02_09-00-00")


def test_raised_by_tune_tells_rays_errors_from_ours(tmp_path):
    """As tune.fit catches them: the catching frame is skipped, every frame below it is looked at."""
    from pathlib import Path

    from ray import tune
    from ray.tune.search.sample import Function

    own_root = Path(__file__).resolve().parent.parent

    def ours(spec=None):
        raise KeyError("a bug in tunelab")

    try:  # raised in Ray's code alone
        tune.Tuner.restore(str(tmp_path / "none"), trainable=ours)
    except Exception as error:
        assert ray_compat.raised_by_tune(error, own_root)
    try:  # raised in tunelab's code
        ours()
    except Exception as error:
        assert not ray_compat.raised_by_tune(error, own_root)
    try:  # Ray calling back into tunelab's code (a callback, a scheduler hook), which raises: ours
        Function(ours).sample()
    except Exception as error:
        assert not ray_compat.raised_by_tune(error, own_root)
