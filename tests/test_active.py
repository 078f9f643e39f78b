"""Batch active learning: the env (envs/active.py), the strategies, the comparison and its report,
and the learned policy's trainable."""

import dataclasses
import gzip
import json
import socket

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import active, al_datasets
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
    for strategy in (S.Badge(), S.KMeansDiversity(), S.Random(), S.Bandit(), S.Oracle()):
        picked = strategy.select(learner, 5, rng)
        assert len(set(picked)) == 5 and not learner.labelled[picked].any(), type(strategy).__name__
    bandit = S.Bandit()
    batch = bandit.select(learner, 5, rng)
    arm = bandit.last[0]
    learner.label(batch)
    bandit.update(learner, batch)  # a positive reward: its arm becomes the most likely
    assert bandit.reward(learner) > 0 and bandit.probabilities()[arm] == bandit.probabilities().max()


def test_albl_is_rewarded_by_importance_weighted_accuracy_on_its_own_queries():
    """Hsu & Lin's reward: the retrained classifier's accuracy on the queried labels, each weighted by
    1 / (probability the arms' mixture had of querying it); validation labels play no part."""
    cfg = active.ActiveConfig(dataset="yeast3", batch=5, budget=15, start=10)
    learner = active.Learner(cfg, 0)
    bandit = S.Bandit()
    rng = np.random.default_rng(0)
    for _ in range(3):
        batch = bandit.select(learner, 5, rng)
        learner.label(batch)
        bandit.update(learner, batch)
    rows = learner.split.pool[np.asarray(bandit.queried)]
    right = learner.model.predict(learner.x[rows]) == learner.y[rows]
    w = np.asarray(bandit.importance)
    assert len(w) == 15 and (w >= 1).all() and len(set(w.round(6))) > 1  # random queries weigh more
    assert bandit.reward(learner) == pytest.approx((w * right).sum() / w.sum())


def test_no_fixed_strategy_reads_test_or_validation_labels():
    """Test and validation labels corrupted in place leave C, every pick of every strategy (the
    self-training baseline and the oracle included) and ALBL's weights bit-identical."""
    cfg = active.ActiveConfig(dataset="wine", batch=4, budget=8, start=6, valid=20)

    def picks(corrupt: bool):
        x, y = active.load_task("wine")
        saved = y.copy()
        split = active.Split.make(cfg, 3)
        if corrupt:
            hidden = np.concatenate([split.test, split.valid])
            y[hidden] = (y[hidden] + 1) % 3
        try:
            out = {}
            for name in S.STRATEGIES:
                learner = active.Learner(dataclasses.replace(cfg, **S.LEARNER.get(name, {})), 3)
                strategy, rng = S.STRATEGIES[name](), np.random.default_rng(3)
                chosen = []
                for _ in range(2):
                    batch = np.asarray(strategy.select(learner, 4, rng))
                    learner.label(batch)
                    strategy.update(learner, batch)
                    chosen.append(batch.tolist())
                out[name] = (learner.c, chosen)
            return out
        finally:
            y[:] = saved

    assert picks(False) == picks(True)


def test_c_is_chosen_by_cross_validation_on_the_start_set():
    x, y = active.load_task("digits")
    learner = active.Learner(active.ActiveConfig(dataset="digits", start=40), 0)
    rows = learner.split.pool[learner.split.start]
    assert learner.c == active.choose_c(x[rows], y[rows], 0) and learner.c in active.C_GRID
    assert learner.c == learner.model.C
    # a 70/30 split on features of a small scale: stronger regularisation predicts the majority
    small = np.random.default_rng(0).normal(size=(60, 2)) * 0.1
    assert active.choose_c(small, (small[:, 0] > np.quantile(small[:, 0], 0.7)).astype(int), 0) == 100.0


def test_coreset_and_badge_work_in_the_models_embedding():
    """Sener & Savarese / Ash et al.: the MLP's hidden layer, not the inputs. Same split and start
    set, two classifiers: the picks differ, and the MLP's first coreset pick is the point farthest
    from the labelled set in its hidden layer."""
    base = {"dataset": "yeast3", "batch": 5, "budget": 5, "start": 10}
    logreg = active.Learner(active.ActiveConfig(**base), 0)
    mlp = active.Learner(active.ActiveConfig(**base, classifier="mlp"), 0)
    rng = np.random.default_rng(0)
    assert np.array_equal(logreg.labelled, mlp.labelled)
    hidden = np.maximum(mlp.xp @ mlp.model.coefs_[0] + mlp.model.intercepts_[0], 0)
    assert np.allclose(mlp.embedding(), hidden) and hidden.shape[1] == 32
    assert np.array_equal(logreg.embedding(), logreg.xp)  # logistic regression: its inputs (the stated choice)
    assert set(S.Coreset().select(logreg, 5, rng)) != set(S.Coreset().select(mlp, 5, rng))
    far = mlp.distance_to(mlp.labelled, hidden)
    far[mlp.labelled] = -1
    assert S.Coreset().select(mlp, 1, rng)[0] == np.argmax(far)


def test_kmeans_at_k1_is_not_the_point_nearest_the_pool_mean():
    """Plain k-means with K = 1 cluster picks the point nearest the unlabelled pool's mean, batch
    after batch; with L + K clusters (TypiClust's choice) the picks come from uncovered clusters."""
    cfg = active.ActiveConfig(dataset="digits", start=20)
    old, new = active.Learner(cfg, 0), active.Learner(cfg, 0)
    rng = np.random.default_rng(0)
    old_picks, new_picks = [], []
    for _ in range(3):
        free = np.flatnonzero(~old.labelled)
        nearest_mean = free[np.argmin(((old.xp[free] - old.xp[free].mean(0)) ** 2).sum(1))]
        old_picks.append(int(nearest_mean))
        old.label(np.array([nearest_mean]))
        pick = S.KMeansDiversity().select(new, 1, rng)
        assert len(pick) == 1 and not new.labelled[pick].any()
        new_picks.append(int(pick[0]))
        new.label(pick)
    assert new_picks != old_picks and len(set(new_picks)) == 3


def test_self_training_learns_from_the_pool():
    cfg = active.ActiveConfig(dataset="breast_cancer", start=20, self_training=True)
    learner = active.Learner(cfg, 0)
    assert (learner.model.transduction_ != -1).sum() > learner.labels  # pseudo-labels joined
    plain = active.Learner(dataclasses.replace(cfg, self_training=False), 0)
    assert learner.c == plain.c and not np.allclose(learner.proba, plain.proba)


def test_balanced_accuracy_weighs_every_class_alike():
    truth = np.array([0] * 9 + [1])
    assert active.balanced_accuracy(truth, np.zeros(10, int)) == 0.5  # accuracy 0.9
    assert active.balanced_accuracy(truth, truth) == 1.0
    learner = active.Learner(active.ActiveConfig(dataset="page_blocks", start=20), 0)
    assert (
        learner.curve[0][3]
        == learner.test_balanced
        == active.balanced_accuracy(learner.y[learner.split.test], learner.model.predict(learner.x[learner.split.test]))
    )


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
    for png in ("curves_iris_s6_k2.png", "curves_iris_s6_k5.png", "matrix.png", "k_sweep_iris_s6.png", "decisions.png"):
        assert (tmp_path / "cmp" / png).stat().st_size > 1000
    assert al_report.main([str(tmp_path / "cmp")]) == 0


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--datasets", "mnist"], "dataset 'mnist' is unknown"),
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


# Facts of the bundled datasets (rows, features, classes, smallest class share), as their sources
# give them: a change of file or loader that alters one fails here.
FACTS = {
    "digits": (1797, 64, 10, 0.097), "breast_cancer": (569, 30, 2, 0.373), "segment": (2310, 19, 7, 0.143),
    "satimage": (6435, 36, 6, 0.097), "spambase": (4597, 57, 2, 0.394), "vehicle": (846, 18, 4, 0.235),
    "page_blocks": (5472, 10, 2, 0.102), "yeast3": (1484, 8, 2, 0.110), "pendigits": (10992, 16, 10, 0.096),
}  # fmt: skip


def test_bundled_datasets_load_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a dataset tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert set(al_datasets.SUITE) == set(FACTS) and len(FACTS) >= 8
    for name, (rows, features, classes, smallest) in FACTS.items():
        x, y = al_datasets.load(name)
        assert x.shape == (rows, features) and y.max() + 1 == classes, name
        assert np.bincount(y).min() / rows == pytest.approx(smallest, abs=1e-3), name
        assert np.isfinite(x).all()
    assert sum(r >= 1000 for r, *_ in FACTS.values()) >= 5
    assert sum(s < 0.15 and c == 2 for _, _, c, s in FACTS.values()) >= 2  # imbalanced ones
    # every suite pool outlasts the largest start set plus the default budget
    for name in al_datasets.SUITE:
        assert len(active.Split.make(active.ActiveConfig(dataset=name), 0).pool) >= 50 + 100, name


def test_a_users_csv_runs_like_a_bundled_dataset(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    label = np.where(x[:, 0] + 0.3 * rng.normal(size=300) > 0, "yes", "no")
    named = tmp_path / "named.csv"
    named.write_text("a,species,b,c\n" + "\n".join(f"{r[0]},{s},{r[1]},{r[2]}" for r, s in zip(x, label)))
    last = tmp_path / "last.csv.gz"
    with gzip.open(last, "wt") as handle:
        handle.write("a,b,c,y\n" + "\n".join(f"{r[0]},{r[1]},{r[2]},{s}" for r, s in zip(x, label)))
    xa, ya = al_datasets.load(f"{named}:species")
    xb, yb = al_datasets.load(str(last))
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb) and np.array_equal(ya, (label == "yes").astype(int))
    curve = S.run(active.ActiveConfig(dataset=f"{named}:species", batch=5, budget=10, start=6), "margin", 0)
    assert len(curve) == 3 and curve[-1][2] > 0.7


@pytest.mark.parametrize(
    "content, spec, problem",
    [
        (None, "missing.csv", "no such file"),
        ("a,b,y\n1,x,0\n2,y,1\n", "f.csv", "column 'b' is not numeric"),
        ("a,b,y\n1,2,0\n2,3,1\n", "f.csv:label", "no column 'label'"),
        ("a,b,y\n1,2,0\n2,,1\n", "f.csv", "1 row(s) have empty cells"),
        ("a,b,y\n1,2,0\n2,3,0\n", "f.csv", "has 1 class(es)"),
        ("y\n0\n1\n", "f.csv", "no feature column"),
    ],
)
def test_a_bad_csv_is_one_line(content, spec, problem, tmp_path, capsys):
    if content is not None:
        (tmp_path / "f.csv").write_text(content)
    path = str(tmp_path / spec)
    with pytest.raises(al_datasets.DatasetError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        al_datasets.load(path)
    assert al_compare.run(["--datasets", path, "--storage", str(tmp_path), "--name", "x", "--seeds", "2"]) == 2
    err = capsys.readouterr().err
    assert problem in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_an_unfinished_comparison_resumes_and_a_changed_one_is_refused(tmp_path):
    settings = {"datasets": "iris", "k": "5", "seeds": 2}
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps(settings))
    row = {"key": al_compare.key({"dataset": "iris"}, "margin", 0), "strategy": "margin"}
    (folder / "cells.jsonl").write_text(json.dumps(row) + "\n")
    assert al_compare.finished(folder, settings) == {row["key"]: row}
    with pytest.raises(al_compare.ConfigError, match="other settings \\(k\\)"):
        al_compare.finished(folder, {**settings, "k": "10"})
    (folder / "al.json").write_text("{}")
    with pytest.raises(al_compare.ConfigError, match="already holds a comparison"):
        al_compare.finished(folder, settings)


def test_the_report_reads_an_unfinished_comparison(tmp_path):
    """The report of the runs cells.jsonl holds (no Ray): the overview names the oracle (ceiling),
    gives balanced accuracy beside accuracy and says where the pool ran out."""
    from trainables.active import benchmark

    env = dataclasses.asdict(active.ActiveConfig(dataset="iris", batch=20, budget=100, start=6))
    rows = []
    for strategy in ("random", "margin", "oracle"):
        for seed in (0, 1):
            cell = benchmark.run_cell(env, strategy, seed)
            rows.append({"key": al_compare.key(env, strategy, seed), "dataset": "iris", "k": 20, "start": 6,
                         "strategy": strategy, "seed": seed, **cell})  # fmt: skip
    assert all(r["exhausted"] and r["curve"][-1][0] == r["pool"] == 90 for r in rows)  # iris: a pool of 90
    (tmp_path / "cells.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = al_report.render(tmp_path)
    assert "**Unfinished**" in text and "oracle (ceiling)" in text and "AULC bal. acc." in text
    overview = text.split("## iris")[0]
    assert "| iris | 6 | 20 | 2 |" in overview and "6 runs |" in overview  # every run used the whole pool
    assert (tmp_path / "curves_iris_s6_k20.png").stat().st_size > 1000
