"""dqn, qtable, ppo and rllib-dqn end to end through `python -m platform.tune` on their smoke budgets."""

import json
import re

import pytest

from tests.conftest import run_cli, trial_dirs, trial_results
from trainables import metrics as m


@pytest.mark.slow
def test_qtable_seeds_summary_reports_solve_statistics(ray_session, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys,
        "qtable",
        "--budget",
        "smoke",
        "--search",
        "none",
        "--seeds",
        "2",
        "--storage",
        str(tmp_path),
        "--name",
        "qt",
    )
    assert code == 0, out
    assert "over 2 seeds: score mean" in out
    assert f"{m.SOLVE_ENV_STEPS}: reached by 0/2 seeds" in out  # 2000 steps cannot solve CartPole
    assert len(trial_results(tmp_path / "qt")) == 2


@pytest.mark.slow
def test_qtable_solve_statistics_when_the_threshold_is_reached(ray_session, tmp_path, capsys):
    # A threshold of 5 is reached at the first evaluation, so steps and seconds have values.
    code, out, _ = run_cli(
        capsys,
        "qtable",
        "--budget",
        "smoke",
        "--search",
        "none",
        "--seeds",
        "2",
        "--set",
        "solve_return=5",
        "--storage",
        str(tmp_path),
        "--name",
        "qt5",
    )
    assert code == 0, out
    steps = re.search(rf"{m.SOLVE_ENV_STEPS}: reached by 2/2 seeds, mean (\d+)", out)
    assert steps and 1000 <= int(steps.group(1)) < 1008, out  # the first evaluation, 8 envs at a time
    assert f"{m.SOLVE_SECONDS}: reached by 2/2 seeds, mean" in out


@pytest.mark.parametrize("model", ["ppo", "rllib-dqn"])
@pytest.mark.slow
def test_rllib_baseline_runs_through_the_cli(model, ray_session, tmp_path, capsys):
    code, out, _ = run_cli(
        capsys,
        model,
        "--budget",
        "smoke",
        "--search",
        "none",
        "--seeds",
        "2",
        "--storage",
        str(tmp_path),
        "--name",
        model,
    )
    assert code == 0, out
    runs = trial_results(tmp_path / model)
    assert len(runs) == 2
    for rows in runs:
        assert len(rows) == 2  # the smoke budget's iterations
        assert rows[-1][m.TRAIN_ENV_STEPS] > 0 and m.baseline_metric(m.BASELINE_RANDOM, m.SCORE) in rows[-1]
        assert rows[-1][m.EVAL_EPISODES] == 3 and 8 <= rows[-1][m.SCORE] <= 500
    assert "over 2 seeds: score mean" in out and "num_env_runners=0" in out


@pytest.mark.slow
def test_ppo_env_runners_are_sized_to_the_trial_cpus(ray_session, tmp_path, capsys):
    # Two CPUs per trial on a 2-CPU Ray: one for the learner, one env runner; RLlib's default
    # (2 runners + learner) would wait forever for a third CPU.
    code, out, _ = run_cli(
        capsys,
        "ppo",
        "--budget",
        "smoke",
        "--search",
        "none",
        "--cpus-per-trial",
        "2",
        "--storage",
        str(tmp_path),
        "--name",
        "ppo2",
    )
    assert code == 0, out
    params = json.loads(next((tmp_path / "ppo2").glob("*/params.json")).read_text())
    assert params["num_env_runners"] == 1


@pytest.mark.parametrize(
    "argv,message",
    [
        (["dqn", "--set", "env=NoSuchEnv-v0"], "'NoSuchEnv-v0' is not a registered gymnasium environment"),
        (["dqn", "--set", "env=Pendulum-v1"], "dqn needs discrete actions"),
        (["dqn", "--set", "buffer_size=-5"], "buffer_size must be >= 1, got -5"),
        (["rllib-dqn", "--set", "env=MountainCarContinuous-v0"], "rllib-dqn needs discrete actions"),
        (["ppo", "--set", "env=NoSuchEnv-v0"], "'NoSuchEnv-v0' is not a registered gymnasium environment"),
        (["qtable", "--set", "buckets=[3,3]"], "buckets has 2 entries"),
    ],
)
def test_bad_rl_input_is_one_line(argv, message, tmp_path, capsys):
    code, out, err = run_cli(capsys, *argv, "--storage", str(tmp_path))
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing was started or written


@pytest.mark.slow
def test_pbt_with_seeds_runs_independent_populations(ray_session, tmp_path, capsys):
    """Issue 9, problem 8: --search pbt --seeds 2 is two populations of 2 that never clone each other,
    and the summary's interval is over the 2 populations' selected trials (not one-member groups)."""
    code, out, _ = run_cli(capsys, "dqn", "--budget", "smoke", "--seeds", "2", "--samples", "2",
                           "--storage", str(tmp_path), "--name", "pops")  # fmt: skip
    assert code == 0, out
    params = sorted((tmp_path / "pops").glob("*/params.json"))
    seed_of = {path.parent.name: json.loads(path.read_text())["seed"] for path in params}
    assert sorted(seed_of.values()) == [0, 0, 1, 1]
    clones = re.findall(r"^PBT: (dqn_\d+) .* cloned (dqn_\d+) ", out, re.M)
    assert clones and all(seed_of[a] == seed_of[b] for a, b in clones), clones
    assert {seed_of[a] for a, _ in clones} == {0, 1}  # each population exploited within itself
    assert "over 2 independent PBT populations, each's selected trial: score mean" in out


@pytest.mark.slow
def test_a_population_that_fits_waits_in_place_at_synchronisation_points(ray_session, tmp_path, capsys):
    """dqn's default search (PBT) end to end: every metric reported, the summary against random. And
    Tune's synchronous PBT pauses every trial at every perturbation point, and each paused trial
    restarted in a new worker process; a population that fits the cluster (3 trials sharing 2 CPUs)
    keeps its processes, and an exploited trial takes its clone's checkpoint in its own process."""
    code, out, err = run_cli(capsys, "dqn", "--budget", "smoke", "--samples", "3", "--set", "iterations=4",
                             "--storage", str(tmp_path), "--name", "p")  # fmt: skip
    assert code == 0, err
    trials = trial_results(tmp_path / "p")
    assert len(trials) == 3 and all([r["training_iteration"] for r in rows] == [1, 2, 3, 4] for rows in trials)
    for rows in trials:  # every metric the dqn reports, in every trial
        last = rows[-1]
        for key in (
            m.SCORE,
            m.TRAIN_ENV_STEPS,
            m.TRAIN_EPISODES,
            m.TRAIN_UPDATES,
            m.TRAIN_EPSILON,
            m.TRAIN_LOSS,
            m.TRAIN_LR,
            m.baseline_metric(m.BASELINE_RANDOM, m.SCORE),
            "hparams/lr",
            "hparams/gamma",
        ):
            assert key in last, key
        assert last[m.TRAIN_ENV_STEPS] >= 1600 and last[m.TRAIN_UPDATES] > 0
    assert "vs random:" in out and "Best trial: dqn_0000" in out
    # 3 synchronisation points (every iteration): pausing every trial at each would give 12 processes
    assert [len({row["pid"] for row in rows}) for rows in trials] == [1, 1, 1]
    by_name = {path.name: rows for path, rows in zip(trial_dirs(tmp_path / "p"), trials)}
    clones = re.findall(r"^PBT: (dqn_\d+) .* cloned (dqn_\d+) ", out, re.M)
    assert clones, out
    for exploited, source in clones:
        # Restored from the clone's checkpoint: the next row continues the clone's clock, not its own
        # (Tune restores time_total_s from the checkpoint); it carries the clone's mutated config.
        rows, theirs = by_name[exploited], by_name[source]
        after = next(
            i for i in range(1, 4)
            if abs(rows[i]["time_total_s"] - rows[i]["time_this_iter_s"] - theirs[i - 1]["time_total_s"]) < 1e-6
        )  # fmt: skip
        # and it trains with its own new config (reset in place): lr is constant by default
        assert rows[after]["train/lr"] == pytest.approx(rows[after]["config"]["lr"])
        assert rows[after]["config"]["lr"] != theirs[after - 1]["config"]["lr"]  # PBT perturbs lr
