"""`python -m platform.al_compare`: batch active-learning strategies, paired over seeds.

    python -m platform.al_compare --datasets digits --k 10 --budget 200 --seeds 20
    python -m platform.al_compare --datasets digits --k 1,5,10,20 --strategies random,margin,kmeans,coreset,badge
    python -m platform.al_compare --datasets digits,wine --policy ~/ray_results/al-pbt-...   # a learned policy too
    python -m platform.al_compare --datasets digits --policy ~/ray_results/ppo-pbt-...  # RLlib PPO's

Every (dataset, K, strategy, seed) is one Ray task (a local Ray, or --address); seed s gives every
strategy the same split, start set and classifier settings, so differences are paired. Written to
STORAGE/NAME: al.json (every curve), then the report of `python -m platform.al_report` (al_report.md
and PNGs) beside it.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import envs
from envs import active
from platform import results as recorded
from trainables.active import benchmark
from trainables.active import strategies as al_strategies
from trainables.config import ConfigError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.al_compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", default="digits", help=f"comma-separated, of {', '.join(active.DATASETS)}")
    p.add_argument("--strategies", default=",".join(al_strategies.STRATEGIES), help="comma-separated")
    p.add_argument("--k", default="10", help="batch sizes, comma-separated (e.g. 1,5,10,20)")
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--start", type=int, default=20)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--classifier", choices=active.CLASSIFIERS, default="logreg")
    p.add_argument(
        "--policy",
        help="an `al` or ppo (env tunelab/ActiveLearning-v0) experiment folder: its best trial's "
        "policy joins as `policy`; it must not have trained on --datasets",
    )
    p.add_argument("--name", help="default: al-TIMESTAMP")
    p.add_argument("--storage", default=os.environ.get("TUNELAB_STORAGE", "~/ray_results"))
    p.add_argument("--address", help="Ray cluster to join; default: a local Ray")
    return p


def policy_checkpoint(folder: str, datasets: list[str]) -> str:
    """The last checkpoint of the trial with the best last validation figure (its model's metric and
    mode) in an experiment of `al` or of an RLlib model (ppo) trained on tunelab/ActiveLearning-v0.
    Refused when a dataset of the comparison was trained on (its figures would not be held-out ones)
    or the policy sees another number of candidates than the comparison offers."""
    try:
        best = recorded.best_checkpointed(str(Path(folder).expanduser()))
    except FileNotFoundError as err:
        raise ConfigError(f"--policy {folder}: no trial with a checkpoint there ({err}); name an `al` or ppo "
                          "experiment folder") from None  # fmt: skip
    config = best.config
    if "train_datasets" in config:  # an `al` policy
        trained, candidates = al_trained_on(config), config.get("candidates", 32)
    elif config.get("env") == envs.ACTIVE:  # an RLlib policy on the env
        env = active.parse(config.get("env_config"))
        trained, candidates = set(env.names), env.candidates
    else:
        raise ConfigError(f"--policy {folder}: its trials were not trained on {envs.ACTIVE}; name an `al` or ppo one")
    seen = sorted(trained & set(datasets))
    if seen:
        raise ConfigError(f"--policy {folder} was trained on {', '.join(seen)}; compare it on held-out datasets only")
    if candidates != active.ActiveConfig().candidates:
        raise ConfigError(f"--policy {folder} sees {candidates} candidates, the comparison offers "
                          f"{active.ActiveConfig().candidates}; train it with the default")  # fmt: skip
    return best.checkpoints[-1]


def al_trained_on(config: dict) -> set[str]:
    return {d.strip() for d in str(config["train_datasets"]).split(",") if d.strip()}


def cells(args) -> list[tuple[dict, str, int]]:
    datasets = [d for d in args.datasets.split(",") if d]
    strategies = [s for s in args.strategies.split(",") if s]
    bad = [d for d in datasets if d not in active.DATASETS]
    if bad:
        raise ConfigError(f"--datasets: unknown {bad[0]!r}; choose from {', '.join(active.DATASETS)}")
    bad = [s for s in strategies if s not in al_strategies.STRATEGIES]
    if bad:
        raise ConfigError(f"--strategies: unknown {bad[0]!r}; choose from {', '.join(al_strategies.STRATEGIES)}")
    try:
        ks = [int(k) for k in args.k.split(",") if k]
    except ValueError:
        raise ConfigError(f"--k {args.k!r}: give whole numbers separated by commas, e.g. 1,5,10,20") from None
    if args.seeds < 2:
        raise ConfigError("--seeds must be >= 2 (intervals need them)")
    out = []
    for dataset in datasets:
        for k in ks:
            try:
                env = dataclasses.asdict(active.ActiveConfig(dataset=dataset, batch=k, budget=args.budget,
                                                             start=args.start, classifier=args.classifier))  # fmt: skip
            except ValueError as err:
                raise ConfigError(str(err)) from None
            for strategy in strategies + (["policy"] if args.policy else []):
                out += [(env, strategy, seed) for seed in range(args.seeds)]
    return out


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    name = args.name or f"al-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = Path(args.storage).expanduser() / name
    try:
        if (folder / "al.json").exists():
            raise ConfigError(f"{folder} already holds a comparison; pass a new --name (nothing was changed)")
        todo = cells(args)
        policy = policy_checkpoint(args.policy, [d for d in args.datasets.split(",") if d]) if args.policy else None
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address or "local", include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(benchmark.run_cell).options(num_cpus=1)
        tick = time.perf_counter()
        results = ray.get([task.remote(env, strategy, seed, policy) for env, strategy, seed in todo])
        seconds = time.perf_counter() - tick
    finally:
        if started:
            ray.shutdown()
    rows = [{"dataset": env["dataset"], "k": env["batch"], "strategy": strategy, "seed": seed, **result}
            for (env, strategy, seed), result in zip(todo, results)]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "al.json").write_text(json.dumps({"args": vars(args), "policy": policy, "seconds": seconds,
                                                "cells": rows}))  # fmt: skip
    from platform import al_report

    print(al_report.render(folder))
    print(f"{len(rows)} runs in {seconds:.0f} s; written: {folder / 'al.json'}, {folder / 'al_report.md'} and PNGs")
    return 0


if __name__ == "__main__":
    sys.exit(run())
