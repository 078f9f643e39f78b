"""`--search optuna+pbt`: an Optuna study on a quarter of the compute picks PBT's starting population.

One driver is SIGKILLed while the study runs and resumed: the study finishes with exactly the
trials it planned, the population starts from its best configs, and the whole run costs what a
plain PBT run of the same population would (up to rounding).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import optuna
import pytest

from platform import compare
from platform.experiment import SEED_STRIDE
from platform.results import OPTUNA_DB, STUDY
from tests.conftest import ROOT, read_results, trial_dirs
from trainables import metrics as m
from trainables.config import ConfigError

POPULATION, ITERATIONS = 2, 8  # study: 4 trials x 1 iteration; PBT: 2 trials (at least 2) x 8 iterations


@pytest.mark.slow
def test_study_seeds_the_population_and_survives_a_crash(own_ray, tmp_path):
    argv = [sys.executable, "-m", "platform.tune", "dqn", "--budget", "smoke", "--search", "optuna+pbt",
            "--samples", str(POPULATION), "--set", f"iterations={ITERATIONS}",
            "--storage", str(tmp_path), "--name", "seeded"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    study_dir = tmp_path / "seeded" / STUDY
    kill_at = random.Random(7).randint(1, 3)  # study rows written, of 4
    driver = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    deadline = time.time() + 180
    while not study_dir.exists() or sum(len(read_results(p)) for p in trial_dirs(study_dir)) < kill_at:
        assert driver.poll() is None, "the driver finished before the crash"
        assert time.time() < deadline, "no study results within 180 s"
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()

    resumed = subprocess.run(argv + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # The study: 2 x population trials, each stopped after 1 iteration, told to Optuna once each.
    study_trials = {p.name: read_results(p) for p in trial_dirs(study_dir)}
    assert len(study_trials) == 2 * POPULATION
    assert all([r["training_iteration"] for r in rows] == [1] for rows in study_trials.values()), kill_at
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{study_dir / OPTUNA_DB}")
    assert len(study.trials) == 2 * POPULATION and all(t.state.is_finished() for t in study.trials)

    # The population: the study's 2 best configs (by last validation score), seeds 0 and 1000.
    ranked = sorted(study_trials, key=lambda name: -study_trials[name][-1][m.SCORE])
    best = [json.loads((study_dir / name / "params.json").read_text()) for name in ranked[:2]]
    population = trial_dirs(tmp_path / "seeded")
    assert len(population) == 2
    started = [read_results(p)[0]["config"] for p in population]  # params.json follows PBT's clones
    assert [c["seed"] for c in started] == [i * SEED_STRIDE for i in range(2)]
    without_seed = [{k: v for k, v in c.items() if k != "seed"} for c in started]
    assert without_seed == [{k: v for k, v in c.items() if k != "seed"} for c in best]
    for path in population:
        assert [r["training_iteration"] for r in read_results(path)] == list(range(1, ITERATIONS + 1))

    # Compute: 4 x 1 + 2 x 8 = 20 trial iterations (a population of 4 would match plain PBT's exactly;
    # a population is at least 2, so 2 costs a quarter more)
    assert compare.compute(tmp_path / "seeded") == 2 * POPULATION * 1 + 2 * ITERATIONS
    assert "optuna+pbt: the population started from the best 2 configs" in resumed.stdout
    assert "TEST (measured once, after selection; 100 test episodes)" in resumed.stdout
    assert "test/return_mean" in json.loads((tmp_path / "seeded" / "test.json").read_text())[0]


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["dqn", "--search", "optuna+pbt", "--seeds", "2"], "--seeds repeats one config"),
        (["random", "--search", "optuna+pbt"], "no hyperparameter PBT could mutate"),
    ],
)
def test_optuna_pbt_refuses_what_it_cannot_run(argv, problem, capsys, tmp_path):
    from platform import tune

    assert tune.run([*argv, "--storage", str(tmp_path)]) == 2
    assert problem in capsys.readouterr().err


@pytest.mark.parametrize(
    "label, problem",
    [
        ("dqn@annealing", "unknown search 'annealing'"),
        ("ppo", "measures no test figures"),
        ("dqn@optuna:samples=many", "samples=many must be a whole number"),
    ],
)
def test_compare_names_a_bad_variant(label, problem, tmp_path):
    args = compare.parser().parse_args([label, "--storage", str(tmp_path)])
    with pytest.raises(ConfigError, match=problem):
        compare.plans(args)
