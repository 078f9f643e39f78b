"""CartPole benchmark: time and env steps to solve for dqn, RLlib PPO and RLlib DQN, in one run.

    python bench/cartpole.py [--seeds 5] [--cap-dqn 60] [--cap-rllib 240] [--cap-rllib-dqn 1200]

Solved = the greedy policy's mean return over the 20 evaluation episodes (the same seeds for
every model, tunelab's evaluation) reaches 475, checked after every iteration. Wall seconds run
from constructing the trainable (RLlib's algorithm build included; imports and ray.init not) to
the solving iteration's end. RLlib samples in the trial's process (0 remote env runners), its
fastest setting on 2 cores. Each run is a fresh process, so its peak memory (ru_maxrss) is its own.

Rows: `dqn` (the trainable driven directly, with the time split: stepping the envs, updating,
evaluating, the rest), `dqn-cli` (the user's path: `python -m platform.tune dqn --search none`, the
trial's solve clock from its reported rows: every checkpoint and Tune report inside it), RLlib `ppo`
(tunelab's defaults, from the solve-time study), `ppo-previous` (its defaults before that study),
`rllib-dqn` (to its solve, however long) and `ppo-rllib-defaults`.
Then the population: `python -m platform.tune dqn` (PBT, its full budget) on this machine's cores,
against the same trials (their configs, iterations and exploits) replayed in one process; Tune's per-iteration
overhead from a near-empty trainable through the CLI; and dqn's time per update early vs late in a
long run with a wrapping buffer.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.modules.pop("platform", None)  # the standard module, if something imported it: ours instead

from platform import results as recorded  # noqa: E402

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
    "entropy_coeff": 0.0,
    "hidden": 256,
}


# tunelab's ppo defaults before the solve-time study (bench/cartpole_search.py) replaced them:
# the bench runs both, so a change of PPO's defaults cannot flatter dqn's ratio unseen.
PPO_PREVIOUS_DEFAULTS = {
    "lr": 3e-4,
    "steps_per_iteration": 2000,
    "batch_size": 128,
    "num_epochs": 6,
    "vf_loss_coeff": 0.01,
    "entropy_coeff": 0.0,
    "hidden": 64,
}


def run_one(model: str, seed: int, cap: float, overrides: dict | None = None) -> dict:
    """One training run in this process, until solved or `cap` seconds; `overrides`: config values
    on top of the model's defaults (bench/dqn_search.py's candidates)."""
    import torch
    import torch._dynamo  # noqa: F401  (torch.optim imports it lazily at the first optimizer: 1-4 s here)

    from trainables import metrics as m
    from trainables.rl import common
    from trainables.runtime import standalone

    torch.set_num_threads(1)
    # Imports and Ray's start are outside the clock: both happen once per process, for every model.
    if model == "dqn":
        from trainables.rl.dqn import DQNTrainable as cls

        # its own iteration budget, as on the user's path: schedules (lr, PER's beta) run over it
        config = {"seed": seed, **(overrides or {})}
    else:
        import ray

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        if model.startswith("ppo"):
            from trainables.rl.ppo import PPOTrainable as cls
        else:
            from trainables.rl.rllib_dqn import RLlibDQNTrainable as cls
        # Sampling in the trial's process, with each model's own envs per runner (ppo: 4 vectorized,
        # rllib-dqn: 1, see trainables/rl/rllib_dqn.py).
        config = {
            "seed": seed,
            "num_env_runners": 0,
            "iterations": 10_000,
            **{"ppo-rllib-defaults": RLLIB_PPO_DEFAULTS, "ppo-previous": PPO_PREVIOUS_DEFAULTS}.get(model, {}),
            **(overrides or {}),
        }
    start = time.perf_counter()
    trainable = standalone(cls, config)
    build = time.perf_counter() - start
    solved, result = False, {}
    split = {"stepping": 0.0, "updating": 0.0, "evaluating": 0.0}
    while time.perf_counter() - start < cap and not result.get("done"):
        result = trainable.train()
        split["stepping"] += result.get(m.TRAIN_SECONDS_STEPPING, 0.0)
        split["updating"] += result.get(m.TRAIN_SECONDS_UPDATING, 0.0)
        # an evaluation's seconds are reported again until the next one: count each once
        if result.get(m.EVAL_SECONDS) is not None and trainable.evaluation.due(trainable.iteration - 1):
            split["evaluating"] += result[m.EVAL_SECONDS]
        if result[m.SOLVED] > 0:
            solved = True
            break
    wall = time.perf_counter() - start
    trainable.stop()
    split["setup"] = build
    split["rest"] = wall - sum(split.values())
    return {
        "model": model,
        "seed": seed,
        "solved": solved,
        "wall_s": wall,
        "build_s": build,
        "env_steps": result.get(m.TRAIN_ENV_STEPS, 0),
        "score": result.get(m.SCORE),
        "peak_rss_mb": common.peak_rss_mb(),
        "split": split if model == "dqn" else None,
    }


def run_cli(seed: int, cap: float) -> dict:
    """The user's path: `python -m platform.tune dqn --search none` in a fresh process, stopped at
    the first solving evaluation; the trial's solve clock (setup to the solving iteration, checkpoints
    and Tune's reporting inside it) and its peak memory, read back from its reported rows."""
    storage = tempfile.mkdtemp(prefix="bench-cli-")
    argv = [sys.executable, "-m", "platform.tune", "dqn", "--search", "none", "--storage", storage,
            "--name", f"seed{seed}", "--set", f"seed={seed}", "--set", "stop_on_solve=true"]  # fmt: skip
    tick = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=cap + 120)
    process_wall = time.perf_counter() - tick
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    rows = recorded.load(str(Path(storage, f"seed{seed}"))).trials[0].rows
    solving = next((r for r in rows if r["eval/solved"] > 0), rows[-1])
    upto = rows[: rows.index(solving) + 1]
    clock = solving["eval/solve_seconds"] if solving["eval/solved"] > 0 else solving["time_total_s"]
    split = {
        "stepping": sum(r["train/seconds_stepping"] for r in upto),
        "updating": sum(r["train/seconds_updating"] for r in upto),
        "evaluating": sum(r["eval/seconds"] for r in upto),  # dqn evaluates every iteration by default
    }
    # Tune's own step time holds the three and the Trainable.train wrapper; the rest of the trial's
    # clock is between steps: Tune's round trip to the driver per iteration, checkpoints, setup
    split["rest"] = solving["time_total_s"] - sum(split.values())
    split["platform"] = clock - solving["time_total_s"]
    return {
        "model": "dqn-cli",
        "seed": seed,
        "solved": solving["eval/solved"] > 0,
        "wall_s": clock,
        "build_s": float("nan"),
        "tune_time_total_s": solving["time_total_s"],
        "process_s": process_wall,
        "env_steps": solving["train/env_steps"],
        "score": solving["score"],
        "peak_rss_mb": max(r["train/peak_rss_mb"] for r in rows),
        "split": split,
    }


def population(samples: int) -> dict:
    """`python -m platform.tune dqn` (PBT, full budget, `samples` trials, one CPU each) in a fresh
    process: wall seconds from the first trial's start to the first solve and to the last trial's
    end, the trials' own iteration seconds, and the iterations run."""
    storage = tempfile.mkdtemp(prefix="bench-pbt-")
    argv = [sys.executable, "-m", "platform.tune", "dqn", "--storage", storage, "--name", "pbt",
            "--samples", str(samples)]  # fmt: skip
    tick = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    process_wall = time.perf_counter() - tick
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    trials = [t.rows for t in recorded.load(str(Path(storage, "pbt"))).trials if t.rows]
    rows = [r for t in trials for r in t]
    # Tune stamps each row with the wall clock at the report; a trial's start is its first row's
    # stamp minus that iteration's time (PBT restarts reuse the trial's rows).
    first_start = min(t[0]["timestamp"] - t[0]["time_this_iter_s"] for t in trials)
    solves = [r["timestamp"] for r in rows if r["eval/solved"] > 0]
    return {
        "process_s": process_wall,
        "to_first_solve_s": (min(solves) - first_start) if solves else float("nan"),
        "to_end_s": max(r["timestamp"] for r in rows) - first_start,
        "iteration_s": sum(r["time_this_iter_s"] for r in rows),
        "iterations": len(rows),
        "trials": len(trials),
        "solved_trials": sum(any(r["eval/solved"] > 0 for r in t) for t in trials),
        "peak_rss_mb": max(r["train/peak_rss_mb"] for r in rows),
        "experiment": str(Path(storage, "pbt")),
    }


def replay(experiment: str) -> dict:
    """The population's own trials again, without Ray, in one process on one thread: each trial
    from its first config, one iteration of every trial at a time, and every exploit PBT made (a
    trial whose next row continues another trial's clock, time_total_s, was restored from that
    trial's checkpoint: here it takes that trial's state and its own new config). Only `train()` is
    timed: the same work as the population's, on one core; the ideal population wall time is this
    over the cores."""
    import torch

    from trainables import metrics as m
    from trainables.rl.dqn import DQNTrainable
    from trainables.runtime import standalone

    torch.set_num_threads(1)
    runs = [{r["training_iteration"]: r for r in t.rows} for t in recorded.load(experiment).trials]
    trainables = [standalone(DQNTrainable, rows[1]["config"]) for rows in runs]
    spent, first_solve, exploits = 0.0, float("nan"), 0
    for it in range(1, max(max(rows) for rows in runs) + 1):
        moves = []  # (trial, source, config): restored from source's state at it - 1
        for i, rows in enumerate(runs):
            if it > 1 and it in rows:
                start = rows[it]["time_total_s"] - rows[it]["time_this_iter_s"]
                if abs(start - rows[it - 1]["time_total_s"]) > 1e-6:
                    clocks = [other[it - 1]["time_total_s"] for other in runs]
                    source = next(j for j, clock in enumerate(clocks) if abs(clock - start) < 1e-6)
                    moves.append((i, source, rows[it]["config"]))
        saved = {}
        for _, source, _ in moves:
            saved.setdefault(source, tempfile.mkdtemp(prefix="bench-replay-"))
            trainables[source].save_checkpoint(saved[source])
        for i, source, config in moves:
            trainables[i].reset_config(config)
            trainables[i].load_checkpoint(saved[source])
            exploits += 1
        for i, rows in enumerate(runs):
            if it in rows:
                tick = time.perf_counter()
                result = trainables[i].train()
                spent += time.perf_counter() - tick
                if result[m.SOLVED] > 0 and first_solve != first_solve:
                    first_solve = spent
    for trainable in trainables:
        trainable.stop()
    iterations = sum(len(rows) for rows in runs)
    return {"wall_s": spent, "iterations": iterations, "to_first_solve_s": first_solve, "exploits": exploits}


def cli_wall(iterations: int) -> float:
    """Process seconds of `qtable --search none` with `iterations` near-empty iterations (one step of
    one env each; evaluation at the first and last only; a checkpoint every iteration, as default)."""
    storage = tempfile.mkdtemp(prefix="bench-empty-")
    argv = [sys.executable, "-m", "platform.tune", "qtable", "--search", "none", "--storage", storage,
            "--name", "empty", "--set", f"iterations={iterations}", "--set", "steps_per_iteration=1",
            "--set", "num_envs=1", "--set", f"eval_every={iterations}"]  # fmt: skip
    tick = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return time.perf_counter() - tick


def tune_overhead(low: int = 100, high: int = 1100) -> dict:
    """Tune's and the platform's cost per iteration through the CLI: the slope of the process wall
    between a run of `low` and one of `high` near-empty iterations (Ray's start and the two
    evaluations cancel out)."""
    a, b = cli_wall(low), cli_wall(high)
    per = (b - a) / (high - low)
    return {"ms_per_iteration": 1000 * per, "iterations_per_s": 1 / per, "low_s": a, "high_s": b}


def update_time_profile(env_steps: int) -> dict:
    """dqn's ms per update in the first tenth of a run long enough to wrap the buffer twice, in the
    tenth right after the buffer is full (sampling then gathers from its whole 50k rows: more cache
    misses, a one-off step), and in the last tenth: flat means the last matches the full one."""
    from trainables import metrics as m
    from trainables.rl.dqn import DQNTrainable
    from trainables.runtime import standalone

    iterations, buffer = env_steps // 1000, env_steps // 3
    trainable = standalone(DQNTrainable, {"seed": 0, "iterations": iterations, "buffer_size": buffer})
    rows = [trainable.train() for _ in range(iterations)]
    trainable.stop()
    timed = [r for r in rows if r[m.TRAIN_MS_PER_UPDATE] == r[m.TRAIN_MS_PER_UPDATE]]
    tenth = max(1, len(timed) // 10)
    full = [r for r in timed if r[m.TRAIN_ENV_STEPS] > buffer]
    return {
        "early_ms": statistics.median(r[m.TRAIN_MS_PER_UPDATE] for r in timed[:tenth]),
        "full_ms": statistics.median(r[m.TRAIN_MS_PER_UPDATE] for r in full[:tenth]),
        "late_ms": statistics.median(r[m.TRAIN_MS_PER_UPDATE] for r in timed[-tenth:]),
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


def split_line(runs: list[dict]) -> str:
    total = {k: statistics.median(r["split"][k] for r in runs) for k in runs[0]["split"]}
    wall = statistics.median(r["wall_s"] for r in runs)
    return "  time split (median per seed): " + ", ".join(
        f"{k} {v:.2f} s ({100 * v / wall:.0f}%)" for k, v in total.items()
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--cap-dqn", type=float, default=60.0)
    p.add_argument("--cap-rllib", type=float, default=240.0)
    p.add_argument("--cap-rllib-dqn", type=float, default=1200.0, help="RLlib DQN runs to its solve: a safety cap")
    p.add_argument("--models", default="dqn,dqn-cli,ppo,ppo-previous,rllib-dqn,ppo-rllib-defaults")
    p.add_argument("--population", type=int, default=4, help="PBT trials of the population figures; 0: skip")
    p.add_argument("--profile-steps", type=int, default=150_000)
    p.add_argument("--child", nargs="+")
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "run":
            overrides = json.loads(rest[3]) if len(rest) > 3 else None
            print(json.dumps(run_one(rest[0], int(rest[1]), float(rest[2]), overrides)))
        elif kind == "profile":
            print(json.dumps(update_time_profile(int(rest[0]))))
        elif kind == "replay":
            print(json.dumps(replay(rest[0])))
        else:
            print(json.dumps(vectorization()))
        return

    print(f"{os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    vec = child("vectorization")
    print(
        f"CartPole-v1, 8 envs, random actions: numpy-vectorized {vec['vector_entry_point']:,.0f} env steps/s, "
        f"SyncVectorEnv {vec['sync']:,.0f} ({vec['vector_entry_point'] / vec['sync']:.2f}x)",
        flush=True,
    )
    medians, every = {}, {}
    for model in filter(None, args.models.split(",")):
        cap = {"dqn": args.cap_dqn, "dqn-cli": args.cap_dqn, "rllib-dqn": args.cap_rllib_dqn}.get(model, args.cap_rllib)
        if model == "dqn-cli":
            runs = [run_cli(seed, cap) for seed in range(args.seeds)]
        else:
            runs = [child("run", model, str(seed), str(cap)) for seed in range(args.seeds)]
        for r in runs:
            extra = (
                f"(Tune time_total_s {r['tune_time_total_s']:.1f} s, process {r['process_s']:.1f} s)"
                if model == "dqn-cli"
                else f"(build {r['build_s']:.1f} s)"
            )
            print(
                f"  {model:9s} seed {r['seed']}: {'solved' if r['solved'] else 'CAP HIT'} at {r['wall_s']:.1f} s "
                f"{extra}, {r['env_steps']:,} env steps, last score {r['score']:.1f}, peak {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
        # A capped run counts with its cap: the median is then a lower bound, and says so.
        wall = statistics.median(r["wall_s"] for r in runs)
        steps = statistics.median(r["env_steps"] for r in runs)
        solved = sum(r["solved"] for r in runs)
        medians[model], every[model] = wall, runs
        print(
            f"{model:9s} median over {len(runs)} seeds: {wall:.1f} s, {steps:,.0f} env steps; "
            f"solved {solved}/{len(runs)}"
            f"{'' if solved == len(runs) else ' (capped runs count at the cap: a lower bound)'}; "
            f"peak memory max {max(r['peak_rss_mb'] for r in runs):.0f} MB",
            flush=True,
        )
        if model in ("dqn", "dqn-cli"):
            print(split_line(runs), flush=True)
    if "dqn" in medians and "dqn-cli" in medians:
        per_seed = ", ".join(f"{c['wall_s'] / d['wall_s']:.2f}" for c, d in zip(every["dqn-cli"], every["dqn"]))
        print(
            f"user's path (dqn-cli) / direct dqn: {medians['dqn-cli'] / medians['dqn']:.2f}x of the medians, "
            f"per seed {per_seed} (target within 10%)"
        )
    for base in ("ppo", "ppo-previous", "rllib-dqn", "ppo-rllib-defaults"):
        if "dqn" in medians and base in medians:
            print(
                f"{base} / dqn: {medians[base] / medians['dqn']:.2f}x" + (" (target >= 3.5x)" if base == "ppo" else "")
            )
    if args.population:
        pop = population(args.population)
        seq = child("replay", pop["experiment"])
        cores = min(os.cpu_count() or 1, args.population)
        ideal, ideal_solve = seq["wall_s"] / cores, seq["to_first_solve_s"] / cores
        print(
            f"population (python -m platform.tune dqn, PBT, {pop['trials']} trials x full budget on {cores} cores): "
            f"first solve {pop['to_first_solve_s']:.0f} s, end {pop['to_end_s']:.0f} s after the first trial's start "
            f"(Tune's timestamps: 1 s resolution; process {pop['process_s']:.1f} s with Ray's start), "
            f"{pop['iterations']} iterations, {pop['solved_trials']}/{pop['trials']} trials solved, "
            f"peak {pop['peak_rss_mb']:.0f} MB per trial",
            flush=True,
        )
        print(
            f"the same trials replayed in one process ({seq['iterations']} iterations, {seq['exploits']} exploits, "
            f"train() timed): {seq['wall_s']:.1f} s, first solve at {seq['to_first_solve_s']:.1f} s; ideal on "
            f"{cores} cores: end {ideal:.1f} s, first solve {ideal_solve:.1f} s; population / ideal: end "
            f"{pop['to_end_s'] / ideal:.2f}x (target < 1.10x), "
            f"first solve {pop['to_first_solve_s'] / ideal_solve:.2f}x",
            flush=True,
        )
        tune = tune_overhead()
        per_trial_iteration = 1000 * pop["to_end_s"] * cores / max(pop["iterations"], 1)
        print(
            f"Tune + platform per iteration (near-empty trainable through the CLI, checkpoint every iteration): "
            f"{tune['ms_per_iteration']:.1f} ms ({tune['iterations_per_s']:.0f} iterations/s); against the "
            f"population's {per_trial_iteration:.0f} ms per trial iteration: "
            f"{100 * tune['ms_per_iteration'] / per_trial_iteration:.1f}% (target < 10%)",
            flush=True,
        )
    prof = child("profile", str(args.profile_steps))
    print(
        f"dqn time per update: {prof['early_ms']:.3f} ms in the first tenth, {prof['full_ms']:.3f} ms in the tenth "
        f"after the buffer is full, {prof['late_ms']:.3f} ms in the last tenth of {prof['env_steps']:,} env steps / "
        f"{prof['updates']:,} updates (buffer wraps twice; flat: last within 10% of full); "
        f"peak memory {prof['peak_rss_mb']:.0f} MB (target <= 500 MB)"
    )


if __name__ == "__main__":
    main()
