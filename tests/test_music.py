"""The music-session simulator (envs/music.py), its arms and the A/B tool (platform/ab.py)."""

import dataclasses
import json
import pickle
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import envs
from envs import music
from platform import ab
from tests.conftest import run_cli, trial_dirs
from trainables.music import arms as music_arms

SMALL = {"tracks": 600, "artists": 60}


def test_env_passes_gymnasiums_checker_and_is_deterministic_and_picklable():
    env = music.MusicSessionEnv(**SMALL)
    check_env(env, skip_render_check=True)

    def episode(env, seed):
        obs, _ = env.reset(seed=seed)
        trace, done, rng = [obs], False, np.random.default_rng(0)
        while not done:
            obs, reward, done, _, info = env.step(int(rng.integers(env.action_space.n)))
            trace += [obs, reward, info["repeat"], info["same_artist"]]
        return trace

    first, again = episode(env, 3), episode(music.MusicSessionEnv(**SMALL), 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    clone = pickle.loads(pickle.dumps(env))
    assert all(np.array_equal(a, b) for a, b in zip(episode(clone, 4), episode(env, 4)))
    assert len(episode(env, 5)) != len(first) or not all(np.array_equal(a, b) for a, b in zip(episode(env, 5), first))


def test_vector_env_steps_many_sessions_and_resets_the_finished_ones():
    """Gymnasium's next-step autoreset, env by env: the step after a session ends pays 0, ends
    nothing and shows a fresh session (at its first step), which is then played for several steps. Seeded
    actions, so a failure replays exactly."""
    envs.register()
    n = 64
    vec = gym.make_vec(envs.MUSIC, num_envs=n, vectorization_mode="vector_entry_point", **SMALL)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (n, music.GLOBAL_FEATURES + 20 * music.CANDIDATE_FEATURES) and obs.dtype == np.float32
    first_step = obs[0, 2]  # global feature 2: a session's step (its first track is played at the start)
    # feature 1: mean listened of the last 3 tracks, at the first step the first track's (feature 0)
    assert (obs[:, 2] == first_step).all() and (obs[:, 1] == obs[:, 0]).all()
    rng = np.random.default_rng(0)
    waiting = np.zeros(n, bool)  # ended on the previous step: this step is the reset step
    length = np.zeros(n, int)
    lengths = []  # of every session that ended
    for _ in range(120):
        obs, reward, terminated, truncated, _ = vec.step(rng.integers(vec.single_action_space.n, size=n))
        assert vec.single_observation_space.contains(obs[0]) and ((reward >= 0) & (reward <= 1)).all()
        assert not truncated.any()
        # the reset step: no reward, no ending, and a fresh session's observation
        assert (reward[waiting] == 0).all() and not terminated[waiting].any()
        assert (obs[waiting, 2] == first_step).all() and (obs[waiting, 1] == obs[waiting, 0]).all()
        length[~waiting] += 1
        lengths += list(length[terminated])
        length[terminated] = 0
        waiting = terminated.copy()
    assert len(lengths) > 2 * n  # sessions end, and the fresh ones end in their turn
    assert min(lengths) >= 2  # a fresh session is played, not ended again at once
    vec.close()


def test_dynamics_follow_the_stated_rules():
    cfg = music.MusicConfig(**SMALL)
    s = music.Sessions(cfg, seed=0, user=np.array([3, 4]), session=np.array([0, 0]))
    first = s.first.copy()
    # a repeat is worth nothing; each earlier play of the artist multiplies the fraction by 0.8
    assert (s.expected(first[:, None])[:, 0] == 0).all()
    cat = s.cat
    a = cat.artist[first[0]]
    mates = cat.artist_tracks[cat.artist_offsets[a] : cat.artist_offsets[a + 1]]
    mates = mates[mates != first[0]][:2]
    fresh = music.Sessions(cfg, seed=0, user=np.array([3]), session=np.array([0]))
    fresh.played[:] = -1  # as if nothing had played: the same track's raw fraction
    raw = fresh.expected(mates[None, :])[0]
    assert np.allclose(s.take(np.array([0])).expected(mates[None, :])[0], raw * 0.8, rtol=1e-5)
    # common random numbers: a user's session does not depend on who else is in the batch
    alone = music.Sessions(cfg, seed=0, user=np.array([4]), session=np.array([0]))
    assert alone.first[0] == first[1] and np.allclose(alone.vector[0], s.vector[1])
    # patience: a session of tracks listened to 0 ends after `patience` steps at most
    while not s.done.all():
        s.play(s.first)  # repeats, worth 0: every step costs one unit of patience
    assert ((s.steps >= cfg.patience) & (s.steps <= cfg.patience + 1)).all()  # the first track may cost one too


def _reachable(*roots) -> list:
    """Every object reachable from `roots` through references (modules and classes not followed)."""
    import gc
    import types

    seen, stack, out = set(), list(roots), []
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type)):
            continue
        seen.add(id(obj))
        out.append(obj)
        stack.extend(gc.get_referents(obj))
    return out


def small_arms(cfg: music.MusicConfig) -> dict:
    """Every arm a service could run, on the SMALL simulator (an untrained DQN as the RL arm)."""
    from trainables.rl.dqn import DQNTrainable

    known = music.logged(cfg, 101, 400)
    rng = np.random.default_rng(0)
    tables = [rng.normal(size=(cfg.tracks, 8)).astype(np.float32) for _ in range(3)]
    dqn = DQNTrainable(config={"env": envs.MUSIC, "env_config": SMALL, "eval_episodes": 2})
    vars(dqn).pop("rollout").close()  # as Policy.load keeps it: the network only
    built = {name: music_arms.heuristic(name, known) for name in music_arms.HEURISTICS if name != "oracle"}
    return {
        **built,
        "sticky-fallback": music_arms.StickyArtist(fallback=True),
        "embed": music_arms.Embedding(*tables, rng.normal(size=cfg.tracks).astype(np.float32), -0.3),
        "policy": music_arms.Policy(dqn.greedy, known, {"train": 1, "log": 101}),
    }


def test_arms_see_only_a_session_view_and_never_the_truth():
    """Issue 24: an arm is handed a SessionView, whose fields are the session so far and the catalogue's
    artists; nothing an arm holds leads to the simulator (its vectors, popularity, the users' patience);
    corrupting the truth after the logs were learned leaves every decision but the oracle's the same."""
    cfg = music.MusicConfig(**SMALL)
    assert {f.name for f in dataclasses.fields(music.SessionView)} == {
        "user", "session", "steps", "played", "listened", "artists", "cat", "keys"}  # fmt: skip
    arms = small_arms(cfg)
    s = music.Sessions(cfg, seed=3, user=np.arange(40), session=np.zeros(40, np.int64))
    for _ in range(3):
        s.play(music_arms.Random()(s.view()))
    assert not hasattr(s.view(), "__dict__")  # slots: nothing can be attached to a view
    cat = s.cat
    truth = [s, cat, cat.embeddings, cat.popularity, cat.pop_score, cat.neighbours, s.vector, s.patience, s.bias]
    for name, arm in {"view": s.view(), **arms}.items():
        reached = _reachable(arm)
        assert not any(isinstance(x, (music.Sessions, music.Catalogue, music.Users)) for x in reached), name
        arrays = [x for x in reached if isinstance(x, np.ndarray)]
        assert not any(np.shares_memory(a, t) for a in arrays for t in truth if isinstance(t, np.ndarray)), name
    # the truth corrupted: other vectors, popularity, neighbours, listening curves and patience
    bad = s.take(np.arange(len(s.user)))
    rng = np.random.default_rng(1)
    shuffle = rng.permutation(cat.size)
    bad.cat = dataclasses.replace(cat, embeddings=cat.embeddings[shuffle], neighbours=cat.neighbours[shuffle],
                                  popularity=cat.popularity[::-1], by_popularity=cat.by_popularity[::-1],
                                  pop_score=cat.pop_score[::-1])  # fmt: skip
    bad.vector, bad.bias, bad.sharpness = -s.vector, 1 - s.bias, 2 * s.sharpness
    bad.patience = np.ones_like(s.patience)
    for name, arm in arms.items():
        assert np.array_equal(arm(s.view()), arm(bad.view())), name
    assert not np.array_equal(music.Oracle()(s), music.Oracle()(bad))  # the check can see a reader of the truth
    # simulate hands the view to every arm but the oracle
    handed = []

    def spy(view):
        handed.append(type(view))
        return music_arms.Random()(view)

    music.simulate(cfg, spy, 0, np.arange(20))
    assert set(handed) == {music.SessionView}
    assert music_arms.label("oracle") == "oracle (ceiling)" and ab.arm_label("oracle#b") == "oracle#b (ceiling)"
    # the view's random-number keys hold nothing of the population seed (every step of the hash is
    # invertible, so keys chained from it would hand an arm the seed and the users' hidden state):
    # the same users and sessions of two populations carry the same keys, and the same draws
    other = music.Sessions(cfg, seed=4, user=np.arange(40), session=np.zeros(40, np.int64))
    assert np.array_equal(other.view().keys, music.Sessions(cfg, 3, np.arange(40), np.zeros(40, np.int64)).view().keys)
    assert not np.array_equal(other.vector, s.vector)  # while their hidden states differ


def test_greedy_stands_beside_learned_arms_and_the_ab_refuses_their_own_population(tmp_path, capsys):
    """Issue 24: a model records the populations it trained and was selected on; the A/B refuses it on
    those, in one line, and otherwise adds greedy and reports the learned arm against it."""
    cfg = music.MusicConfig(**SMALL)
    rng = np.random.default_rng(0)
    tables = [rng.normal(size=(cfg.tracks, 8)).astype(np.float32) for _ in range(3)]
    model = tmp_path / "model.npz"
    music_arms.Embedding(*tables, np.zeros(cfg.tracks, np.float32), -0.3, {"log": 0, "valid": 102}).save(model)
    sim = ["--set", "tracks=600", "--set", "artists=60", "--log-users", "400", "--storage", str(tmp_path)]
    code = ab.run(["music", "random", f"embed:{model}", "--users", "200", *sim, "--name", "own"])
    err = capsys.readouterr().err
    assert code == 2 and "trained on population 0 (log), the A/B's own (--seed 0)" in err and err.count("\n") == 1
    assert not (tmp_path / "own").exists()
    code = ab.run(["music", "i2i", "--users", "200", *sim, "--name", "logs", "--seed", "101"])
    assert code == 2 and "--log-seed 101 is the A/B's population" in capsys.readouterr().err
    assert ab.run(["music", "random", f"embed:{model}", "--users", "300", *sim, "--name", "new", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    figures = json.loads((tmp_path / "new" / "ab.json").read_text())
    assert list(figures["arms"]) == ["random", f"embed:{model}", "greedy"]
    versus = figures["versus_greedy"][f"embed:{model}"]
    assert versus["against"] == "greedy" and versus["win"] == (versus["low"] > 0)
    assert "Learned arms against greedy" in out
    assert music_arms.Embedding.load(model).populations == {"log": 0, "valid": 102}


def ab_figures(arms: list[str], users: int, **sim) -> dict:
    cfg = music.MusicConfig(**sim)
    built = {name: ab.build_arm(name, cfg, 2_000, 101) for name in arms}
    return ab.run_ab(cfg, built, users, seed=0, salt="t", alpha=0.05)


@pytest.mark.slow
def test_sanity_sticky_artist_decay_oracle_and_aa():
    loyal = ab_figures(["random", "sticky", "oracle"], 3_000, artist_decay=1.0)
    fickle = ab_figures(["random", "sticky", "oracle", "random#aa"], 3_000, artist_decay=0.8)
    sticky_loyal = loyal["effects"]["sticky"]["time_per_session"]
    sticky_fickle = fickle["effects"]["sticky"]["time_per_session"]
    assert sticky_loyal["rel_low"] > 3.0 and sticky_loyal["significant"]  # > +300% with decay 1.0
    assert sticky_fickle["relative"] < sticky_loyal["relative"] / 2  # with 0.8 it loses most of its edge
    for result in (loyal, fickle):
        oracle = result["arms"]["oracle"]["time_per_session"]
        assert all(oracle > a["time_per_session"] for name, a in result["arms"].items() if name != "oracle")
        assert result["srm_p"] > ab.SRM_P
    assert not any(e["significant"] for e in fickle["effects"]["random#aa"].values())


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["random", "nonsense"], "unknown arm 'nonsense'"),
        (["random", "random"], "an arm is named twice"),
        (["random", "sticky", "--set", "artist_decay=2"], "artist_decay"),
        (["random", "embed:/nowhere"], "embed:/nowhere: no such file or folder"),
        (["random", "http://127.0.0.1:9"], "no service answers"),
    ],
)
def test_bad_ab_input_is_one_line_and_writes_nothing(argv, problem, tmp_path, capsys):
    code = ab.run(["music", *argv, "--users", "100", "--storage", str(tmp_path), "--name", "bad"])
    err = capsys.readouterr().err
    assert code in (1, 2) and problem in err and err.count("\n") == 1, err
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_trained_models_are_arms(ray_session, tmp_path, capsys):
    """The embedding model (PBT, smoke budget) trained on a written log, and the platform's DQN
    trained on the env, each serve an A/B, with greedy beside them; neither on its own population."""
    assert ab.run(["music", "random", "toppop", "--users", "300", "--log", "--storage", str(tmp_path),
                   "--name", "logged", "--set", "tracks=600", "--set", "artists=60", "--seed", "7"]) == 0  # fmt: skip
    log = tmp_path / "logged" / "sessions.parquet"
    code, out, err = run_cli(capsys, "music", "--budget", "smoke", "--storage", str(tmp_path), "--name", "embed",
                             "--set", f"log={log}")  # fmt: skip
    assert code == 0, err
    assert len(trial_dirs(tmp_path / "embed")) == 2
    code, out, err = run_cli(capsys, "dqn", "--budget", "smoke", "--search", "none", "--storage", str(tmp_path),
                             "--name", "rl", "--set", f"env={envs.MUSIC}")  # fmt: skip
    assert code == 0, err
    embed = ["music", "random", f"embed:{tmp_path / 'embed'}", "--users", "300", "--set", "tracks=600",
             "--set", "artists=60", "--storage", str(tmp_path)]  # fmt: skip
    assert ab.run([*embed, "--name", "e"]) == 0
    capsys.readouterr()
    assert ab.run([*embed, "--name", "e7", "--seed", "7"]) == 2  # its log's population
    assert "was trained on population 7 (log)" in capsys.readouterr().err
    assert ab.run(["music", "random", f"policy:{tmp_path / 'rl'}", "--users", "300", "--storage", str(tmp_path),
                   "--name", "p1", "--seed", str(music.TRAIN_SEED)]) == 2  # fmt: skip
    assert f"was trained on population {music.TRAIN_SEED} (train)" in capsys.readouterr().err
    assert ab.run(["music", "random", f"policy:{tmp_path / 'rl'}", "--users", "300", "--storage", str(tmp_path),
                   "--name", "p"]) == 0  # fmt: skip
    figures = json.loads((tmp_path / "p" / "ab.json").read_text())
    assert figures["arms"][f"policy:{tmp_path / 'rl'}"]["users"] > 50 and "greedy" in figures["arms"]
    assert f"policy:{tmp_path / 'rl'}" in figures["versus_greedy"]
    # ab.json names the checkpoint the policy was restored from, its hash and its populations
    recorded = next(a for a in figures_settings(tmp_path / "p") if a["spec"] == f"policy:{tmp_path / 'rl'}")
    checkpoint = Path(recorded["settings"]["checkpoint"])
    assert checkpoint.name.startswith("checkpoint_") and checkpoint.is_relative_to(tmp_path / "rl")
    assert recorded["settings"]["sha256"] == ab.folder_sha256(checkpoint)
    assert recorded["settings"]["populations"] == {"train": music.TRAIN_SEED, "log": music.LOG_SEED}
    # the checkpoint itself records the populations the policy trained on
    state = torch.load(next((tmp_path / "rl").glob("*/checkpoint_*/state.pt")), weights_only=False)
    assert state["config"]["env_config"]["population_seed"] == music.TRAIN_SEED
    # The figure names a trained arm by its experiment, never by the machine's path to it (issue 22).
    assert ab.arm_label(f"policy:{tmp_path / 'rl'}") == "policy:rl"
    assert ab.arm_label(f"embed:{tmp_path / 'embed' / 'model.npz'}#b") == "embed:embed/model.npz#b"
    assert ab.arm_label("toppop#b") == "toppop#b"
    model = tmp_path / "embed3" / "music_00001" / "checkpoint_000015" / "model.npz"  # one trial's model
    assert ab.arm_label(f"embed:{model}") == "embed:music_00001/checkpoint_000015"


def figures_settings(folder: Path) -> list[dict]:
    return json.loads((folder / "ab.json").read_text())["settings"]["arms"]
