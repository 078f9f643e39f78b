"""Batch active learning: the env (envs/active.py), the strategies, the comparison and its report,
and the learned policy's trainable."""

import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import active
from platform import al_compare, al_report
from tests.conftest import run_cli
from trainables.active import strategies as S

IRIS = {"dataset": "iris", "batch": 5, "budget": 20, "start": 6}


def test_env_checker_determinism_and_cheap_resets():
    env = active.ActiveLearningEnv(**IRIS)
    check_env(env, skip_render_check=True)

    def run(seed):
        env = active.ActiveLearningEnv(**IRIS)
        obs, info = env.reset(seed=seed)
        trace, done = [obs], False
        while not done:
            obs, reward, done, _, _ = env.step(0)
            trace += [obs, reward]
        return trace, env.learner.curve

    (a, curve_a), (b, curve_b) = run(1), run(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and curve_a == curve_b
    assert len(curve_a) == 1 + IRIS["budget"] // IRIS["batch"]  # one fit at the start, one per batch
    # a reset reloads nothing: the dataset is loaded once per process
    misses = active.load_task.cache_info().misses
    env.reset(seed=2)
    env.reset(seed=3)
    assert active.load_task.cache_info().misses == misses and len(env.learner.curve) == 1


def test_episodes_draw_from_the_listed_datasets():
    env = active.ActiveLearningEnv(datasets="iris,wine", batch=5, budget=10, start=6)
    drawn = [env.reset(seed=s)[1]["dataset"] for s in range(12)]
    assert set(drawn) == {"iris", "wine"}
    assert drawn == [active.ActiveLearningEnv(datasets="iris,wine").reset(seed=s)[1]["dataset"] for s in range(12)]
    assert env.reset(seed=0, options={"dataset": "wine"})[1]["dataset"] == "wine"
    assert env.learner.y.max() == 2 and len(env.learner.x) == 178  # wine's rows


@pytest.mark.slow
def test_ppo_trains_on_the_env_config_and_joins_the_comparison(ray_session, tmp_path, capsys):
    """RLlib PPO as the second learner: its env runners and its evaluation get env_config (a list of
    training datasets), and al_compare plays its RL module greedily on a held-out dataset."""
    from tests.conftest import read_results
    from trainables.rl import common, rllib

    env_config = {"datasets": "wine,gen-easy", "budget": 20, "batch": 5, "start": 6}
    sets = [f"env_config.{k}={v}" for k, v in env_config.items()]
    code, _, err = run_cli(capsys, "ppo", "--budget", "smoke", "--search", "none", "--storage", str(tmp_path),
                           "--name", "ppo", "--cpus-per-trial", "2", "--set", "env=tunelab/ActiveLearning-v0",
                           *[arg for s in sets for arg in ("--set", s)])  # fmt: skip
    assert code == 0, err
    trial = next((tmp_path / "ppo").glob("ppo_*"))
    last = read_results(trial)[-1]
    assert last["config"]["num_env_runners"] == 1  # sampling in a remote env runner, beside the learner
    # 512 env steps of 20-label episodes: ~25 episodes (the default budget of 200 would give ~2)
    assert last["train/episodes"] >= 20
    # the reported evaluation is the greedy module of the last checkpoint on env_config's episodes
    module = rllib.module_from_checkpoint(str(sorted(trial.glob("checkpoint_*"))[-1]))
    returns = common.greedy_returns(
        lambda obs: rllib.greedy_actions(module, obs),
        "tunelab/ActiveLearning-v0",
        3,
        common.EVAL_SEED,
        env_config,
    )
    assert returns.mean() == pytest.approx(last["eval/return_mean"], abs=1e-6)
    argv = ["--datasets", "iris", "--k", "5", "--budget", "10", "--start", "6", "--seeds", "2",
            "--strategies", "margin", "--policy", str(tmp_path / "ppo"), "--storage", str(tmp_path),
            "--name", "c"]  # fmt: skip
    assert al_compare.run(argv) == 0
    cells = json.loads((tmp_path / "c" / "al.json").read_text())["cells"]
    policy = [c for c in cells if c["strategy"] == "policy"]
    assert len(policy) == 2 and all(len(c["decisions"]) == 10 for c in policy)


def test_strategies_pick_what_they_say():
    cfg = active.ActiveConfig(**IRIS)
    learner = active.Learner(cfg, 0)
    rng = np.random.default_rng(0)
    free = np.flatnonzero(~learner.labelled)
    margin = S.Uncertainty("margin").select(learner, 5, rng)
    assert set(margin) == set(free[np.argsort(learner.margin()[free], kind="stable")[:5]])
    first = S.Coreset().select(learner, 3, rng)[0]
    assert first == free[np.argmax(learner.distance_to(learner.labelled)[free])]
    for strategy in (S.Badge(), S.KMeansDiversity(), S.Random(), S.Bandit()):
        picked = strategy.select(learner, 5, rng)
        assert len(set(picked)) == 5 and not learner.labelled[picked].any(), type(strategy).__name__
    bandit = S.Bandit()
    bandit.select(learner, 5, rng)
    arm = bandit.last[0]
    bandit.update(0.05)  # a good batch: its arm becomes more likely
    assert bandit.probabilities()[arm] == bandit.probabilities().max()


def test_summary_figures():
    curve = [(20, 0.5, 0.6), (30, 0.7, 0.8), (40, 0.7, 0.9)]
    out = S.summarise(curve, full=0.95, start=20)
    assert out["aulc"] == pytest.approx((0.5 * (0.6 + 0.8) * 10 + 0.5 * (0.8 + 0.9) * 10) / 20)
    assert out["labels_to_90"] == 40 and out["final"] == 0.9  # 0.9 >= 0.9 x 0.95, 0.8 is not
    assert S.summarise(curve, full=1.0, start=20, split=1)["final"] == 0.7


@pytest.mark.slow
def test_margin_beats_random_on_digits():
    cfg = active.ActiveConfig(dataset="digits", batch=10, budget=100)
    diffs = [
        S.summarise(S.episode(cfg, S.Uncertainty("margin"), s), 1, 20)["aulc"]
        - S.summarise(S.episode(cfg, S.Random(), s), 1, 20)["aulc"]
        for s in range(4)
    ]
    assert np.mean(diffs) > 0.01, diffs


@pytest.mark.slow
def test_compare_and_report_with_a_learned_policy(ray_session, tmp_path, capsys):
    code, out, err = run_cli(capsys, "al", "--budget", "smoke", "--search", "none", "--storage", str(tmp_path),
                             "--name", "pol", "--set", "train_datasets=wine,gen-easy",
                             "--set", "held_out=iris")  # fmt: skip
    assert code == 0, err
    # a policy is compared on held-out datasets only
    assert al_compare.run(["--datasets", "wine", "--policy", str(tmp_path / "pol"), "--storage", str(tmp_path)]) == 2
    assert "was trained on wine" in capsys.readouterr().err
    assert "TEST (measured once, after selection): al_0000" in out and "test/minus_margin" in out
    argv = ["--datasets", "iris", "--k", "2,5", "--budget", "10", "--start", "6", "--seeds", "3",
            "--strategies", "random,margin,coreset", "--policy", str(tmp_path / "pol"),
            "--storage", str(tmp_path), "--name", "cmp"]  # fmt: skip
    assert al_compare.run(argv) == 0
    data = json.loads((tmp_path / "cmp" / "al.json").read_text())
    assert len(data["cells"]) == 2 * 4 * 3
    # paired: every strategy of a seed starts from the same split and start set
    firsts = {(c["k"], c["seed"]): set() for c in data["cells"]}
    for c in data["cells"]:
        firsts[(c["k"], c["seed"])].add(tuple(c["curve"][0]))
    assert all(len(v) == 1 for v in firsts.values())
    report = (tmp_path / "cmp" / "al_report.md").read_text()
    assert "Win / tie / loss" in report and "margin minus the best diversity method" in report
    assert "decisions over time" in report
    for png in ("curves_iris_k2.png", "curves_iris_k5.png", "matrix.png", "k_sweep_iris.png", "decisions.png"):
        assert (tmp_path / "cmp" / png).stat().st_size > 1000
    assert al_report.main([str(tmp_path / "cmp")]) == 0


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--datasets", "mnist"], "unknown 'mnist'"),
        (["--strategies", "random,psychic"], "unknown 'psychic'"),
        (["--k", "ten"], "give whole numbers"),
        (["--seeds", "1"], "--seeds must be >= 2"),
        (["--policy", "/nowhere"], "no trial with a checkpoint there"),
    ],
)
def test_bad_compare_input_is_one_line(argv, problem, tmp_path, capsys):
    assert al_compare.run([*argv, "--storage", str(tmp_path), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_an_episode_ends_when_the_pool_runs_out_before_the_budget():
    env = active.ActiveLearningEnv(dataset="iris", batch=10, budget=500, start=6)  # pool 90 < 6 + 500
    env.reset(seed=0)
    done, steps = False, 0
    while not done:
        _, _, done, _, _ = env.step(steps % env.action_space.n)
        steps += 1
        assert steps <= 200, "the episode did not end"
    assert env.learner.labelled.all() and env.learner.labels == 90
