"""Batch active learning: the env (envs/active.py), the strategies, the comparison and its report,
and the learned policy's trainable."""

import json

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import active
from platform import al_compare, al_report
from tests.conftest import run_cli
from trainables import al_strategies as S

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


def test_margin_beats_random_on_digits():
    cfg = active.ActiveConfig(dataset="digits", batch=10, budget=100)
    diffs = [
        S.summarise(S.episode(cfg, S.Uncertainty("margin"), s), 1, 20)["aulc"]
        - S.summarise(S.episode(cfg, S.Random(), s), 1, 20)["aulc"]
        for s in range(4)
    ]
    assert np.mean(diffs) > 0.01, diffs


def test_compare_and_report_with_a_learned_policy(ray_session, tmp_path, capsys):
    code, out, err = run_cli(capsys, "al", "--budget", "smoke", "--search", "none", "--storage", str(tmp_path),
                             "--name", "pol")  # fmt: skip
    assert code == 0, err
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
        (["--policy", "/nowhere"], "no `al` trial with a checkpoint"),
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
