"""CartPole benchmark: time and env steps to solve for dqn, RLlib PPO and RLlib DQN, in one run.

    python bench/cartpole.py [--seeds 5] [--cap-dqn 60] [--cap-rllib 240]

Solved = the greedy policy's mean return over the 20 evaluation episodes (the same seeds for
every model, tunelab's evaluation) reaches 475, checked after every iteration. Wall seconds run
from constructing the trainable (RLlib's algorithm build included; imports and ray.init not) to
the solving iteration's end. RLlib samples in the trial's process (0 remote env runners), its
fastest setting on 2 cores. Each run is a fresh process, so its peak
memory (ru_maxrss) is its own. Also measured: gymnasium's numpy-vectorized CartPole against
SyncVectorEnv, and dqn's time per update early vs late in a long run with a wrapping buffer.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


# RLlib's own PPOConfig defaults (lr 5e-5, 4000-step batches, 30 epochs, 256x256 net, ...): what
# "RLlib PPO takes 70-140 s" refers to. tunelab's ppo model defaults are tuned for CartPole instead.
RLLIB_PPO_DEFAULTS = {
    "lr": 5e-5,
    "steps_per_iteration": 4000,
    "batch_size": 128,
    "num_epochs": 30,
    "clip_param": 0.3,
    "gae_lambda": 1.0,
    "vf_loss_coeff": 1.0,
    "hidden": 256,
}


def run_one(model: str, seed: int, cap: float) -> dict:
    """One training run in this process, until solved or `cap` seconds."""
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim imports it lazily at the first optimizer: 1-4 s here)

    from trainables import metrics as m
    from trainables import rl

    torch.set_num_threads(1)
    # Imports and Ray's start are outside the clock: both happen once per process, for every model.
    if model == "dqn":
        from trainables.dqn import DQNTrainable as cls

        config = {"seed": seed, "iterations": 10_000}
    else:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        if model.startswith("ppo"):
            from trainables.ppo import PPOTrainable as cls
        else:
            from trainables.rllib_dqn import RLlibDQNTrainable as cls
        # Sampling in the trial's process, with each model's own envs per runner (ppo: 4 vectorized,
        # rllib-dqn: 1, see trainables/rllib_dqn.py).
        config = {
            "seed": seed,
            "num_env_runners": 0,
            "iterations": 10_000,
            **(RLLIB_PPO_DEFAULTS if model == "ppo-rllib-defaults" else {}),
        }
    start = time.perf_counter()
    trainable = cls(config=config)
    build = time.perf_counter() - start
    solved, result = False, {}
    while time.perf_counter() - start < cap:
        result = trainable.train()
        if result[m.SOLVED] > 0:
            solved = True
            break
    wall = time.perf_counter() - start
    trainable.stop()
    return {
        "model": model,
        "seed": seed,
        "solved": solved,
        "wall_s": wall,
        "build_s": build,
        "env_steps": result.get(m.TRAIN_ENV_STEPS, 0),
        "score": result.get(m.SCORE),
        "peak_rss_mb": rl.peak_rss_mb(),
    }


def update_time_profile(env_steps: int) -> dict:
    """dqn's ms per update in the first and last tenth of a run long enough to wrap the buffer twice."""
    from trainables import metrics as m
    from trainables.dqn import DQNTrainable

    trainable = DQNTrainable(config={"seed": 0, "iterations": env_steps // 1000, "buffer_size": env_steps // 3})
    rows = [trainable.train() for _ in range(env_steps // 1000)]
    trainable.stop()
    per_update = [r[m.TRAIN_MS_PER_UPDATE] for r in rows if r[m.TRAIN_MS_PER_UPDATE] == r[m.TRAIN_MS_PER_UPDATE]]
    tenth = max(1, len(per_update) // 10)
    return {
        "early_ms": statistics.median(per_update[:tenth]),
        "late_ms": statistics.median(per_update[-tenth:]),
        "updates": rows[-1][m.TRAIN_UPDATES],
        "env_steps": rows[-1][m.TRAIN_ENV_STEPS],
        "peak_rss_mb": rows[-1][m.TRAIN_PEAK_RSS_MB],
    }


def vectorization(num_envs: int = 8, steps: int = 3000) -> dict:
    import gymnasium as gym
    import numpy as np

    out = {}
    for mode in ("vector_entry_point", "sync"):
        env = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode=mode)
        env.reset(seed=0)
        actions = np.random.default_rng(0).integers(0, 2, (steps, num_envs))
        start = time.perf_counter()
        for a in actions:
            env.step(a)
        out[mode] = steps * num_envs / (time.perf_counter() - start)
        env.close()
    return out


def child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--cap-dqn", type=float, default=60.0)
    p.add_argument("--cap-rllib", type=float, default=240.0)
    p.add_argument("--models", default="dqn,ppo,rllib-dqn,ppo-rllib-defaults")
    p.add_argument("--profile-steps", type=int, default=150_000)
    p.add_argument("--child", nargs="+")
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "run":
            print(json.dumps(run_one(rest[0], int(rest[1]), float(rest[2]))))
        elif kind == "profile":
            print(json.dumps(update_time_profile(int(rest[0]))))
        else:
            print(json.dumps(vectorization()))
        return

    vec = child("vectorization")
    print(
        f"CartPole-v1, 8 envs, random actions: numpy-vectorized {vec['vector_entry_point']:,.0f} env steps/s, "
        f"SyncVectorEnv {vec['sync']:,.0f} ({vec['vector_entry_point'] / vec['sync']:.2f}x)"
    )
    medians = {}
    for model in args.models.split(","):
        cap = args.cap_dqn if model == "dqn" else args.cap_rllib
        runs = [child("run", model, str(seed), str(cap)) for seed in range(args.seeds)]
        for r in runs:
            print(
                f"  {model:9s} seed {r['seed']}: {'solved' if r['solved'] else 'CAP HIT'} at {r['wall_s']:.1f} s "
                f"(build {r['build_s']:.1f} s), {r['env_steps']:,} env steps, last score {r['score']:.1f}, "
                f"peak {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
        # A capped run counts with its cap: the median is then a lower bound, and says so.
        wall = statistics.median(r["wall_s"] for r in runs)
        steps = statistics.median(r["env_steps"] for r in runs)
        solved = sum(r["solved"] for r in runs)
        medians[model] = wall
        print(
            f"{model:9s} median over {len(runs)} seeds: {wall:.1f} s, {steps:,.0f} env steps; "
            f"solved {solved}/{len(runs)}"
            f"{'' if solved == len(runs) else ' (capped runs count at the cap: a lower bound)'}; "
            f"peak memory max {max(r['peak_rss_mb'] for r in runs):.0f} MB",
            flush=True,
        )
    baselines = [medians[k] for k in ("ppo", "rllib-dqn") if k in medians]
    if "dqn" in medians and baselines:
        print(f"faster RLlib baseline / dqn: {min(baselines) / medians['dqn']:.2f}x (target >= 5x)")
    if "dqn" in medians and "ppo-rllib-defaults" in medians:
        print(f"RLlib PPO with RLlib's defaults / dqn: {medians['ppo-rllib-defaults'] / medians['dqn']:.2f}x")
    prof = child("profile", str(args.profile_steps))
    print(
        f"dqn time per update: {prof['early_ms']:.3f} ms in the first tenth, {prof['late_ms']:.3f} ms in the last "
        f"tenth of {prof['env_steps']:,} env steps / {prof['updates']:,} updates (buffer wraps twice); "
        f"peak memory {prof['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
