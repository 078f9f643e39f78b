"""`--resume` after the driver is SIGKILLed at a random moment, for every search: the resumed run
exits 0, every trial reaches its last iteration, no row reported before the crash is lost,
changed or duplicated, and the summary counts the trials and iterations an uncrashed run has.

Each case runs the CLI in a subprocess with its own local Ray (the session's is paused meanwhile),
kills the driver's process group once the trials have written a random number of result rows
(synchronous PBT pauses every trial at every perturbation, so most moments land while some are
paused), and resumes with the same command plus `--resume`.
"""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from ray import tune
from ray.train._internal.storage import StorageContext
from ray.tune.experiment import Trial

from platform import ray_compat
from platform import tune as cli
from platform.callbacks import STATE_COPY, StalledRun, StallGuard, restore_complete_state
from platform.results import OPTUNA_DB
from platform.schedulers import ResumableASHA
from tests.conftest import ROOT, read_results, run_cli, trial_dirs
from trainables import metrics as m
from trainables.config import ConfigError

# (search arguments, trials, iterations); the kill moment is drawn from the case name. PBT (the
# default search) with a population of 3, so more trials are paused at any moment; Optuna (its study
# resumes too) and plain seeds (Tune's variant generator, as --search random uses it). A second PBT
# case (population 2) cost 75 s of every CI run and covered no code path this one misses.
CASES = {
    "pbt-c": (["--search", "pbt", "--samples", "3"], 3, 8),
    "optuna": (["--search", "optuna", "--samples", "4"], 4, 6),
    "none-seeds": (["--search", "none", "--seeds", "3"], 3, 8),
}


# Cases whose kill also cuts off Tune's experiment state, as a kill in the middle of writing it does.
CUT_OFF_STATE = {"none-seeds"}


def rows_of(experiment: Path) -> dict[str, list[dict]]:
    return {path.name: read_results(path) for path in trial_dirs(experiment)} if experiment.exists() else {}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.slow
def test_resume_after_a_crash_finishes_every_trial_once(case, own_ray, tmp_path):
    search, trials, iterations = CASES[case]
    argv = [sys.executable, "-m", "platform.tune", "dqn", "--budget", "smoke", *search,
            "--set", f"iterations={iterations}", "--storage", str(tmp_path), "--name", "crash"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kill_at = random.Random(case).randint(2, trials * iterations // 2)  # rows written in all, after the first
    driver = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    experiment = tmp_path / "crash"
    deadline = time.time() + 180
    while sum(map(len, rows_of(experiment).values())) < kill_at:
        assert driver.poll() is None, "the driver finished before the crash"
        assert time.time() < deadline, "no results within 180 s"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = rows_of(experiment)
    if case in CUT_OFF_STATE:
        ray_compat.newest_experiment_state(experiment).write_text('{"trial_data": [')

    resumed = subprocess.run(argv + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert ("resuming from its last complete copy" in resumed.stderr) == (case in CUT_OFF_STATE)
    after = rows_of(experiment)
    assert len(after) == trials, (sorted(after), resumed.stdout[-2000:])
    for name, rows in after.items():
        # Every iteration exactly once, in order, up to the last (ASHA may stop a trial earlier).
        last = rows[-1]["training_iteration"]
        assert [r["training_iteration"] for r in rows] == list(range(1, last + 1)), (name, kill_at)
        assert last == iterations or case == "optuna", (name, kill_at)
    if case == "optuna":  # the study went on: every trial told once, none suggested twice or left open
        study = optuna.load_study(study_name="crash", storage=f"sqlite:///{experiment / OPTUNA_DB}")
        assert len(study.trials) == trials and all(t.state.is_finished() for t in study.trials), study.trials
        assert max(r[-1]["training_iteration"] for r in after.values()) == iterations
    for name, rows in before.items():
        kept = [(r["training_iteration"], r[m.SCORE], r[m.TRAIN_ENV_STEPS]) for r in after[name][: len(rows)]]
        assert kept == [(r["training_iteration"], r[m.SCORE], r[m.TRAIN_ENV_STEPS]) for r in rows], (name, kill_at)
    # The summary an uncrashed run prints: the same number of trials, the best at the last iteration.
    assert f"search, {trials} trials ==" in resumed.stdout
    assert "Resumed:" in resumed.stdout and (f"(iteration {iterations};" in resumed.stdout or case == "optuna")
    assert "FAILED trial" not in resumed.stdout


def test_stall_guard_ends_a_run_where_nothing_can_run():
    guard = StallGuard(intervals=2, minimum_s=0.2)
    trials = [Trial("__fake", config={}, stub=True) for _ in range(3)]
    for trial in trials[:2]:
        trial.set_status(Trial.PAUSED)
    trials[2].set_status(Trial.TERMINATED)  # a finished trial neither stalls nor unstalls a run
    guard.on_step_end(iteration=1, trials=trials)  # starts the clock
    time.sleep(0.3)
    with pytest.raises(StalledRun, match="all 2 unfinished trials are PAUSED"):
        guard.on_step_end(iteration=2, trials=trials)
    # A trial waiting for resources (PENDING) or running is progress, however long it takes.
    for status in (Trial.PENDING, Trial.RUNNING):
        trials[0].set_status(status)
        guard.stalled_since = None
        guard.on_step_end(iteration=3, trials=trials)
        time.sleep(0.3)
        guard.on_step_end(iteration=4, trials=trials)
    # The patience grows with the iterations seen: 3 x 2 intervals x 1 s per iteration = 6 s.
    guard.on_trial_result(iteration=5, trials=trials, trial=trials[0], result={"time_this_iter_s": 1.0})
    trials[0].set_status(Trial.PAUSED)
    guard.stalled_since = None
    guard.on_step_end(iteration=6, trials=trials)
    time.sleep(0.3)
    guard.on_step_end(iteration=7, trials=trials)  # 0.3 s < 6 s: still waiting


class StallNow(StallGuard):
    """A guard that finds the run stalled at once, to drive the CLI's handling of a stall."""

    def on_step_end(self, iteration, trials, **info):
        if any(t.last_result for t in trials):
            raise StalledRun("all 2 unfinished trials are PAUSED and the scheduler starts none of them")


@pytest.mark.slow
def test_a_stalled_run_ends_with_one_line_and_a_nonzero_exit(ray_session, tmp_path, capsys):
    code = cli.run(["qtable", "--budget", "smoke", "--storage", str(tmp_path), "--name", "stall"],
                   callbacks=[StallNow(intervals=1)])  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 3
    assert "error: all 2 unfinished trials are PAUSED" in err and err.count("\n") == 1, err
    # The experiment is on storage and resumable.
    assert (tmp_path / "stall").exists() and list((tmp_path / "stall").glob("experiment_state-*.json"))


class TuneFailsOnce(tune.Callback):
    """Raises once, at the first result, the KeyError Tune's controller raises when a node dies
    with a result in flight (in Tune's own code; here in a callback, which `raised_by_tune` is told to
    take for Tune's)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result["training_iteration"] == 1 and not self.marker.exists():
            self.marker.write_text("raised")
            raise KeyError("<TrackedActor 1>")


@pytest.mark.slow
def test_a_failure_inside_tune_resumes_the_run(ray_session, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ray_compat, "raised_by_tune", lambda error, root: "<TrackedActor 1>" in str(error))
    code, out, err = run_cli(capsys, "qtable", "--budget", "smoke", "--storage", str(tmp_path), "--name", "kf",
                             callbacks=[TuneFailsOnce(tmp_path / "raised")])  # fmt: skip
    assert code == 0, err
    assert err.count("Tune's controller failed (") == 1, err
    rows = rows_of(tmp_path / "kf")
    assert len(rows) == 2 and all(
        [r["training_iteration"] for r in trial] == list(range(1, len(trial) + 1)) for trial in rows.values()
    ), rows
    assert {trial[-1]["training_iteration"] for trial in rows.values()} == {
        json.loads((tmp_path / "kf" / name / "params.json").read_text())["iterations"] for name in rows
    }, rows


def test_a_cut_off_state_without_a_copy_is_one_line(tmp_path):
    state = tmp_path / "experiment_state-2026-12-02_09-00-00.json"
    state.write_text("")
    with pytest.raises(ConfigError, match="was cut off when the driver died and no complete copy"):
        restore_complete_state(tmp_path)
    assert state.read_text() == ""  # nothing touched
    (tmp_path / STATE_COPY).write_text('{"trial_data": []}')
    assert "resuming from its last complete copy" in restore_complete_state(tmp_path)
    assert json.loads(state.read_text()) == {"trial_data": []}
    assert restore_complete_state(tmp_path) is None  # readable: nothing to do


def test_asha_rungs_are_rebuilt_from_a_restored_trials_results(tmp_path):
    """A restored trial's earlier results go back into ASHA's rungs, so a resumed trial below the
    cutoff is still stopped (a fresh ASHA would have empty rungs and let it run)."""
    asha = ResumableASHA(metric="score", mode="max", time_attr="training_iteration", max_t=8, grace_period=1,
                         reduction_factor=2)  # fmt: skip
    trials = []
    for index, scores in enumerate([[10, 20, 30, 40], [1, 2, 3, 4]]):
        storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp", trial_dir_name=f"t{index}")
        trial = Trial("__fake", config={}, stub=True, storage=storage, trial_id=f"t{index}")
        path = Path(tmp_path, "exp", f"t{index}")
        path.mkdir(parents=True)
        rows = [{"training_iteration": i + 1, "score": s} for i, s in enumerate(scores)]
        (path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        trial.update_last_result(rows[-1])
        asha.on_trial_add(None, trial)
        trials.append(trial)
    recorded = {milestone: dict(r) for milestone, r in asha._brackets[0]._rungs}
    assert (
        recorded[1] == {"t0": 10, "t1": 1} and recorded[2] == {"t0": 20, "t1": 2} and recorded[4] == {"t0": 40, "t1": 4}
    )
    # A third trial reaching iteration 1 with a score below the rung's cutoff is stopped.
    newcomer = Trial("__fake", config={}, stub=True, trial_id="t2")
    asha.on_trial_add(None, newcomer)
    assert asha.on_trial_result(None, newcomer, {"training_iteration": 1, "score": 0.5}) == "STOP"


@pytest.mark.slow
def test_replay_retrains_a_pbt_schedule_over_seeds(ray_session, tmp_path, capsys):
    """Issue 13, part 3: --replay retrains the best PBT trial's schedule from scratch over N seeds:
    every replayed trial follows the recorded change points (its hparams/* scalars switch to the
    recorded configs right after them), and the summary sets the original score against the
    replay's interval."""
    from platform.schedulers import SeededReplay

    base = ["--budget", "smoke", "--storage", str(tmp_path)]
    code, _, _ = run_cli(capsys, "dt", *base, "--samples", "2", "--name", "pbt")  # 3 iterations
    assert code == 0
    code, out, _ = run_cli(capsys, "dt", "--replay", "pbt", "--seeds", "2", *base, "--name", "replay")
    assert code == 0, out
    original = re.search(r"replay of (dt_\d{5})'s PBT schedule \((\d+) change points\) over 2 seeds", out)
    assert original and re.search(rf"the original {original.group(1)} ended at [-.\d]+: (inside|OUTSIDE)", out)
    trial_id = read_results(tmp_path / "pbt" / original.group(1))[-1]["trial_id"]
    policy_file = tmp_path / "pbt" / f"pbt_policy_{trial_id}.txt"
    replay = SeededReplay(str(policy_file), {}) if policy_file.exists() else None
    changes = replay.change_points if replay else []
    assert len(changes) == int(original.group(2))
    replayed = trial_dirs(tmp_path / "replay")
    assert len(replayed) == 2
    for trial in replayed:
        rows = read_results(trial)
        assert [r["training_iteration"] for r in rows] == [1, 2, 3]
        for row in rows:
            expected = replay.config if replay else None
            for step, config in changes:
                if step < row["training_iteration"]:
                    expected = config
            if expected is not None:
                assert row[m.HPARAM_PREFIX + "lr"] == pytest.approx(expected["lr"]), (trial, row["training_iteration"])
    seeds = sorted(json.loads((Path(t) / "params.json").read_text())["seed"] for t in replayed)
    assert seeds == [0, 1]
    code, _, err = run_cli(capsys, "dt", "--replay", str(tmp_path / "replay"), *base, "--name", "again")
    assert code == 2 and "is not a PBT experiment" in err
