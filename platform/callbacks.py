"""Driver-side Tune callbacks (never pickled to workers, so they may live in `platform/`)."""

import csv
import json
import time
from pathlib import Path

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.result import TIME_THIS_ITER_S
from ray.tune.utils import flatten_dict

from platform import ray_compat
from platform.ray_compat import AirVerbosity
from platform.schedulers import CHECKPOINT_RESULT, restored_iteration
from trainables import metrics as m
from trainables.config import ConfigError


class KeepReportedRows(ray_compat.StorageCopyHook):
    """For Tune's JSON and CSV loggers: every row a trial reported is kept, once.

    At each trial start Tune copies the file from storage over the driver's own copy, and storage
    syncs behind the driver. Synchronous PBT pauses and restarts every trial at each perturbation,
    so rows written since the last sync were lost (iterations missing from result.json in runs
    that never crashed). Here the driver's own file is kept, storage's is copied only by a new
    driver (a resumed run), and rows past the checkpoint the trial continues from are dropped: the
    trial reports those iterations again (restores continue bit for bit), so none is duplicated.
    """

    def restore_from_storage(self, file_name: str, trial: Trial) -> None:
        local = Path(trial.local_path, file_name)
        if not local.exists():
            self.copy_from_storage(file_name, trial)
        # None: the experiment state has no result of this trial, so it starts from scratch and any
        # row in its file (written after that state was saved) is reported again.
        iteration = restored_iteration(trial)
        if local.exists():
            _keep_rows_up_to(local, iteration or 0)


def _keep_rows_up_to(path: Path, iteration: int) -> None:
    """Drops the rows of a result.json or progress.csv whose training_iteration is above `iteration`."""
    lines = path.read_text().splitlines(keepends=True)
    if path.suffix == ".csv":
        column = next(csv.reader(lines[:1]), []).index("training_iteration") if lines else -1
        kept = lines[:1] + [line for line in lines[1:] if int(float(next(csv.reader([line]))[column])) <= iteration]
    else:
        kept = [line for line in lines if line.strip() and json.loads(line)["training_iteration"] <= iteration]
    if len(kept) != len(lines):
        path.write_text("".join(kept))


class RecordCheckpointResults(tune.Callback):
    """Writes the result each checkpoint was saved at beside it (CHECKPOINT_RESULT), so that a
    resumed run can continue from a checkpoint the experiment state does not name
    (schedulers.repair_checkpoint)."""

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        result = {k: v for k, v in trial.last_result.items() if isinstance(v, (int, float, str, bool))}
        try:
            with checkpoint.filesystem.open_output_stream(f"{checkpoint.path}/{CHECKPOINT_RESULT}") as f:
                f.write(json.dumps(result).encode())
        except OSError:  # deleted already (num_to_keep); nothing to record
            pass


class JsonLogger(KeepReportedRows, JsonLoggerCallback):
    """Tune's result.json writer, every row kept once (KeepReportedRows)."""


class CSVLogger(KeepReportedRows, CSVLoggerCallback):
    """Tune's progress.csv writer, every row kept once (KeepReportedRows)."""


class TensorBoardCallback(TBXLoggerCallback):
    """Tune's TensorBoard logger with HParams for every trial.

    Tune writes HParams only from `trial.evaluated_params` (the values a search sampled), so a
    fixed-config run gets none and a PBT run shows its initial values only. This writes the
    trial's whole config as it stands at the end, PBT mutations included. The per-iteration
    value of each mutated hyperparameter comes from the trainable as `hparams/<name>` scalars.
    """

    def log_trial_end(self, trial, failed: bool = False):
        # Tune's own would write trial.evaluated_params; the current full config instead.
        ray_compat.tensorboard_end_trial(self, trial, flatten_dict(trial.config, delimiter="/"))


# Beside Tune's experiment state: its last copy that was written in full (KeepCompleteState).
STATE_COPY = "experiment_state.complete.json"


class KeepCompleteState(tune.Callback):
    """Keeps a copy of Tune's experiment state as last written in full, beside it (STATE_COPY).

    Tune rewrites its experiment_state-<session>.json in place, so a driver killed while writing it
    (SIGKILL, out of memory, a lost head node) leaves it empty or cut off, and Tune's resume then
    starts the whole experiment again from nothing. After each controller step, at most once every
    `every_s`, this copies the newest state when it changed and reads as JSON, atomically (a
    temporary file renamed over the copy); `restore_complete_state` puts it back. Local storage only.
    """

    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self.checked_at = float("-inf")
        self.copied: tuple | None = None  # (name, mtime_ns, size) of the state last copied

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if not trials or now - self.checked_at < self.every_s:
            return
        self.checked_at = now
        try:
            folder = Path(trials[0].path).parent
        except (TypeError, ValueError):  # no storage yet
            return
        state = ray_compat.newest_experiment_state(folder) if folder.is_dir() else None
        if state is None:
            return
        stat = state.stat()
        seen = (state.name, stat.st_mtime_ns, stat.st_size)
        if seen == self.copied:
            return
        text = state.read_text()
        if not reads_as_json(text):  # being written now: the next step copies it
            return
        write_atomically(folder / STATE_COPY, text)
        self.copied = seen


def write_atomically(path: Path, text: str) -> None:
    """Writes a temporary file beside `path`, then renames it over `path`: a reader (or a crash)
    sees the old file or the new one, never part of one."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def reads_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def restore_complete_state(folder: Path) -> str | None:
    """Before a resume: when the experiment state Tune would read is cut off, puts KeepCompleteState's
    copy in its place and says so (a line for the console); None when there was nothing to repair.
    Raises ConfigError when the state is cut off and no complete copy exists."""
    state = ray_compat.newest_experiment_state(folder)
    if state is None or reads_as_json(state.read_text()):
        return None
    copy = folder / STATE_COPY
    if not copy.exists() or not reads_as_json(copy.read_text()):
        raise ConfigError(
            f"{state} was cut off when the driver died and no complete copy of it exists: run the command "
            "again without --resume under a new --name"
        )
    write_atomically(state, copy.read_text())
    return f"{state.name} was cut off when the driver died: resuming from its last complete copy ({STATE_COPY})"


class StalledRun(RuntimeError):
    """No trial can run, and none will: the run ends instead of waiting for ever."""


class StallGuard(tune.Callback):
    """Ends a run in which nothing can run: every unfinished trial PAUSED (none RUNNING or PENDING)
    for longer than `intervals` x the longest iteration seen x 3 (at least `minimum_s`). A scheduler
    that never starts a paused trial again would otherwise leave the driver spinning for ever.
    PENDING trials waiting for resources (an autoscaling cluster) are not a stall."""

    def __init__(self, intervals: int, minimum_s: float = 30.0):
        self.intervals, self.minimum_s = intervals, minimum_s
        self.iteration_s = 0.0
        self.stalled_since: float | None = None

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.iteration_s = max(self.iteration_s, float(result.get(TIME_THIS_ITER_S, 0.0)))

    def on_step_end(self, iteration, trials, **info):
        unfinished = [t for t in trials if not t.is_finished()]
        if not unfinished or any(t.status != Trial.PAUSED for t in unfinished):
            self.stalled_since = None
            return
        now = time.monotonic()
        self.stalled_since = self.stalled_since or now
        if now - self.stalled_since > max(self.minimum_s, 3 * self.intervals * self.iteration_s):
            raise StalledRun(
                f"no trial could run for {now - self.stalled_since:.0f} s: all {len(unfinished)} unfinished trials "
                "are PAUSED and the scheduler starts none of them; the experiment state is saved, so `--resume` "
                "can continue it once the cause is fixed"
            )


class ConsoleReporter(ray_compat.TerminalReporter):
    """The console reporter Tune builds (see `use_console_reporter`). At Tune's default verbosity:
    the live trial table, one line per finished, failed or retried trial, nothing per trial start (a
    configuration box) or checkpoint. At any verbosity, no TensorBoard hint: Tune's points at the
    driver's staging folder, which has no trial events; the CLI prints the right one before the run.
    At verbose level (-v) everything else is Tune's own."""

    def _quiet(self) -> bool:
        return self.verbosity < AirVerbosity.VERBOSE

    def experiment_started(self, *args, tensorboard_path=None, **kwargs):
        if not self._quiet():
            super().experiment_started(*args, tensorboard_path=None, **kwargs)

    def on_trial_start(self, iteration, trials, trial, **info):
        if not self._quiet():
            super().on_trial_start(iteration, trials, trial, **info)

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        if not self._quiet():
            super().on_checkpoint(iteration, trials, trial, checkpoint, **info)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not self._quiet():
            return super().on_trial_complete(iteration, trials, trial, **info)
        result, metric = trial.last_result or {}, ray_compat.reporter_metric(self) or m.SCORE
        score = result.get(metric)
        shown = f"{metric} {score:.4g}" if isinstance(score, (int, float)) else "no score"
        print(f"finished {trial}: {shown} after {result.get('training_iteration', 0)} iterations")

    def on_trial_error(self, iteration, trials, trial, **info):
        if not self._quiet():
            return super().on_trial_error(iteration, trials, trial, **info)
        done = (trial.last_result or {}).get("training_iteration", 0)
        print(f"FAILED {trial} after {done} iterations; see {trial.error_file}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        if not self._quiet():
            return super().on_trial_recover(iteration, trials, trial, **info)
        print(f"retrying {trial} from its last checkpoint (failure {trial.run_metadata.num_failures})")


def use_console_reporter() -> None:
    """Makes Tune build ConsoleReporter as its console reporter (driver process only).

    Tune always appends the reporter it builds to the run's callbacks, and gives a start time only
    to the first reporter there, so a second reporter passed as a callback breaks Tune's own at the
    first failed trial.
    """
    ray_compat.install_console_reporter(ConsoleReporter)
