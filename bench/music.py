"""Music simulator speed (run from the repository root: `python bench/music.py`).

Every figure is measured in this one run, against a plain-Python loop of the same dynamics (one
session at a time, lists and `math`, the same random-track recommender):
- env steps per second: the gymnasium env (one session, with its candidates and observation),
  the numpy vector env (1,024 sessions), and the bare batched dynamics (`Sessions.play`, 10,000),
  the last against the reference;
- users per second through a whole A/B of the random arm (10,000 users, `platform.ab.run_ab`)
  against the reference loop's;
- the seconds of an A/B of 5 arms (random, toppop, sticky, i2i, oracle) over 100,000 users (or
  `python bench/music.py USERS`) in the split design (target: under a minute on 2 cores) and in the
  paired design (every user in every arm: five times the simulation), with each arm's seconds and
  the primary metric's lifts, and in the paired design the measured variance reduction of pairing.
"""

import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.modules.pop("platform", None)

from envs import music  # noqa: E402
from platform import ab  # noqa: E402
from trainables.music import arms as music_arms  # noqa: E402


def reference_session(cfg, cat, emb, artist, user_bias, user_sharp, vector, first, rng) -> tuple[int, float]:
    """One session in plain Python with a random-track recommender: (tracks, time listened)."""
    played, artists, patience, time_listened, track = [], {}, cfg.patience, 0.0, first
    while True:
        sim = sum(a * b for a, b in zip(emb[track], vector))
        fraction = 1.0 / (1.0 + math.exp(-user_sharp * (sim - user_bias)))
        fraction *= cfg.artist_decay ** artists.get(artist[track], 0)
        if track in played:
            fraction = 0.0
        played.append(track)
        artists[artist[track]] = artists.get(artist[track], 0) + 1
        time_listened += fraction
        if rng.random() < 1.0 - fraction:
            patience -= 1
        if patience <= 0 or len(played) >= cfg.max_steps:
            return len(played), time_listened
        track = rng.randrange(len(artist))


def reference(cfg, users: int) -> tuple[float, float]:
    """(env steps per second, users per second) of the plain-Python loop."""
    cat = music.catalogue_of(cfg)
    emb, artist = cat.embeddings.tolist(), cat.artist.tolist()
    rng = random.Random(0)
    steps, tick = 0, time.perf_counter()
    for _ in range(users):
        bias = rng.uniform(cfg.bias_low, cfg.bias_high)
        sharp = rng.uniform(cfg.sharpness_low, cfg.sharpness_high)
        for _ in range(cfg.max_sessions):
            start = rng.randrange(len(artist))
            vector = emb[start]
            tracks, listened = reference_session(cfg, cat, emb, artist, bias, sharp, vector, start, rng)
            steps += tracks
            if rng.random() >= cfg.return_base + cfg.return_gain * listened / tracks:
                break
    seconds = time.perf_counter() - tick
    return steps / seconds, users / seconds


def main(users: int) -> None:
    print("load average at the start:", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    cfg = music.MusicConfig()
    tick = time.perf_counter()
    music.catalogue_of(cfg)
    print(f"catalogue ({cfg.tracks} tracks, {cfg.artists} artists, neighbours): {time.perf_counter() - tick:.2f} s")

    ref_steps, ref_users = reference(cfg, 2_000)
    print(f"plain-Python reference: {ref_steps:,.0f} env steps/s, {ref_users:,.0f} users/s")

    env = music.MusicSessionEnv()
    env.reset(seed=0)
    steps, tick = 0, time.perf_counter()
    while steps < 5_000:
        _, _, done, _, _ = env.step(env.action_space.sample())
        steps += 1
        if done:
            env.reset()
    single = steps / (time.perf_counter() - tick)

    vec = music.MusicVectorEnv(num_envs=1_024)
    vec.reset(seed=0)
    tick = time.perf_counter()
    for _ in range(50):
        vec.step(vec.action_space.sample())
    vectorized = 50 * 1_024 / (time.perf_counter() - tick)

    batch = music.Sessions(cfg, 0, np.arange(10_000), np.zeros(10_000, np.int64))
    rand, steps, tick = music_arms.Random(), 0, time.perf_counter()
    while not batch.done.all():
        steps += int((~batch.done).sum())
        batch.play(rand(batch.view()))
    bare = steps / (time.perf_counter() - tick)

    tick = time.perf_counter()
    ab.run_ab(cfg, {"random": music_arms.Random()}, 10_000, seed=0, salt="bench", alpha=0.05)
    random_users = 10_000 / (time.perf_counter() - tick)

    arms = ["random", "toppop", "sticky", "i2i", "oracle"]
    tick = time.perf_counter()
    built = {name: ab.build_arm(name, cfg, 5_000, 101) for name in arms}
    build_seconds = time.perf_counter() - tick
    results, seconds = {}, {}
    for design in ("split", "paired"):
        tick, cpu = time.perf_counter(), time.process_time()
        results[design] = ab.run_ab(cfg, built, users, seed=0, salt="bench", alpha=0.05, design=design)
        seconds[design] = time.perf_counter() - tick
        print(f"{design}: {seconds[design]:.1f} s wall, {time.process_time() - cpu:.1f} s CPU", flush=True)

    rows = [
        ("env steps/s, batched dynamics (10,000 sessions, random tracks)", bare, f"{bare / ref_steps:.1f}x"),
        ("users/s through an A/B, random arm, 10,000 users", random_users, f"{random_users / ref_users:.1f}x"),
        ("env steps/s, gymnasium env (1 session, with candidates and observation)", single, "(no reference)"),
        ("env steps/s, numpy vector env (1,024 sessions, the same)", vectorized, f"{vectorized / single:.1f}x the env"),
        (f"seconds, A/B of 5 arms (incl. the oracle), {users:,} users, split; arms built in {build_seconds:.1f} s",
         seconds["split"], "target < 60 s"),
        (f"seconds, the same A/B in the paired design ({users:,} users in every arm)", seconds["paired"],
         f"{seconds['paired'] / seconds['split']:.1f}x the split"),
    ]  # fmt: skip
    print()
    print("| figure | value | against |")
    print("| --- | --- | --- |")
    for name, value, against in rows:
        print(f"| {name} | {value:,.1f} | {against} |")
    print("load average at the end:", " ".join(f"{x:.1f}" for x in os.getloadavg()))
    for design, result in results.items():
        print(f"\n{design}: seconds per arm", {k: round(v["seconds"], 1) for k, v in result["arms"].items()})
        print("| arm | users | time / session | vs random (primary, Bonferroni 98.75%, delta method) | pairing |")
        print("| --- | --- | --- | --- | --- |")
        for name, figures in result["arms"].items():
            e = result["effects"].get(name, {}).get(ab.PRIMARY)
            lift = f"{e['relative']:+.1%} [{e['rel_low']:+.1%}, {e['rel_high']:+.1%}]" if e else "(control)"
            pairing = f"{e['pairing']:.2f}x" if e and "pairing" in e else ""
            print(f"| {name} | {figures['users']:,} | {figures[ab.PRIMARY]:.3f} | {lift} | {pairing} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
