"""`python -m platform.al_compare`: batch active-learning strategies, paired over seeds.

    python -m platform.al_compare --suite --seeds 8        # the benchmark: every bundled dataset x K x start
    python -m platform.al_compare --datasets digits --k 10 --budget 200 --seeds 20
    python -m platform.al_compare --datasets my.csv:species,segment --k 1,5,10,20 --start 20,50
    python -m platform.al_compare --datasets digits,wine --policy ~/ray_results/al-pbt-...   # a learned policy too

Every (dataset, start, K, strategy, seed) is one Ray task (a local Ray, or --address); seed s gives
every strategy the same split, start set and classifier settings, so differences are paired. Each
finished run is appended to STORAGE/NAME/cells.jsonl at once: the same command with the same --name
after a crash runs only what is missing. At the end: al.json (every curve) and the report of
`python -m platform.al_report` (al_report.md and PNGs) beside it.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import envs
from envs import active, al_datasets
from platform import results as recorded
from trainables.active import benchmark
from trainables.active import strategies as al_strategies
from trainables.config import ConfigError

SUITE_K, SUITE_START = "1,5,10,20", "20,50"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.al_compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--suite",
        action="store_true",
        help=f"the whole benchmark: --datasets {','.join(al_datasets.SUITE)} --k {SUITE_K} --start {SUITE_START} "
        "(flags given too win)",
    )
    p.add_argument(
        "--datasets",
        help=f"comma-separated, of {', '.join(active.DATASETS)}, or CSV files (path.csv: label last; "
        "path.csv:COLUMN) (default: digits)",
    )
    p.add_argument("--strategies", default=",".join(al_strategies.STRATEGIES), help="comma-separated")
    p.add_argument("--k", help="batch sizes, comma-separated (e.g. 1,5,10,20) (default: 10)")
    p.add_argument("--budget", type=int, default=100, help="labels bought after the start set")
    p.add_argument("--start", help="start-set sizes, comma-separated (default: 20)")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--classifier", choices=active.CLASSIFIERS, default="logreg")
    p.add_argument(
        "--policy",
        help="an `al` or ppo (env tunelab/ActiveLearning-v0) experiment folder: its best trial's "
        "policy joins as `policy`; it must not have trained on --datasets",
    )
    p.add_argument("--name", help="default: al-TIMESTAMP; an unfinished run's name resumes it")
    p.add_argument("--storage", default=os.environ.get("TUNELAB_STORAGE", "~/ray_results"))
    p.add_argument("--address", help="Ray cluster to join; default: a local Ray")
    return p


def resolve(args) -> argparse.Namespace:
    """Fills --datasets, --k and --start from --suite or their plain defaults."""
    suite = args.suite
    filled = {
        "datasets": args.datasets or (",".join(al_datasets.SUITE) if suite else "digits"),
        "k": args.k or (SUITE_K if suite else "10"),
        "start": args.start or (SUITE_START if suite else "20"),
    }
    return argparse.Namespace(**{**vars(args), **filled})


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


def numbers(flag: str, text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v]
    except ValueError:
        raise ConfigError(f"--{flag} {text!r}: give whole numbers separated by commas, e.g. 1,5,10,20") from None


def cells(args) -> list[tuple[dict, str, int]]:
    datasets = [d for d in args.datasets.split(",") if d]
    strategies = [s for s in args.strategies.split(",") if s]
    for d in datasets:
        try:
            al_datasets.check_name(d)
        except ValueError as err:
            raise ConfigError(f"--datasets: {err}") from None
    bad = [s for s in strategies if s not in al_strategies.STRATEGIES]
    if bad:
        raise ConfigError(f"--strategies: unknown {bad[0]!r}; choose from {', '.join(al_strategies.STRATEGIES)}")
    ks, starts = numbers("k", args.k), numbers("start", args.start)
    if args.seeds < 2:
        raise ConfigError("--seeds must be >= 2 (intervals need them)")
    out = []
    for dataset in datasets:
        try:  # a user's CSV is read here, before Ray starts: a bad file is one line
            active.load_task(dataset)
        except ValueError as err:
            raise ConfigError(f"--datasets: {err}") from None
        for start in starts:
            for k in ks:
                try:
                    env = dataclasses.asdict(active.ActiveConfig(dataset=dataset, batch=k, budget=args.budget,
                                                                 start=start, classifier=args.classifier))  # fmt: skip
                except ValueError as err:
                    raise ConfigError(str(err)) from None
                for strategy in strategies + (["policy"] if args.policy else []):
                    out += [(env, strategy, seed) for seed in range(args.seeds)]
    return out


def key(env: dict, strategy: str, seed: int) -> str:
    """One run's identity in cells.jsonl."""
    return json.dumps([env, strategy, seed], sort_keys=True)


def finished(folder: Path, settings: dict, result: str = "al.json", lines: str = "cells.jsonl") -> dict[str, dict]:
    """The runs an unfinished comparison of the same settings already holds in `lines` (key -> row);
    a folder of other settings or a finished comparison (one with `result`) is refused."""
    if (folder / result).exists():
        raise ConfigError(f"{folder} already holds a comparison; pass a new --name (nothing was changed)")
    if not (folder / "settings.json").exists():
        return {}
    before = json.loads((folder / "settings.json").read_text())
    if before != settings:
        changed = sorted(k for k in settings if before.get(k) != settings[k])
        raise ConfigError(f"{folder} holds an unfinished comparison with other settings ({', '.join(changed)}); "
                          "rerun it with the same flags or pass a new --name")  # fmt: skip
    done = {}
    with (folder / lines).open() as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row
    return done


def progress(done: int, total: int, skipped: int, tick: float, final: bool = False) -> None:
    """One status line on stderr: runs finished, elapsed and an estimate of what is left."""
    elapsed = time.perf_counter() - tick
    ran = done - skipped
    left = (total - done) * elapsed / ran if ran else float("nan")
    bar = "#" * int(30 * done / max(total, 1))
    line = f"[{bar:<30}] {done}/{total} runs ({skipped} resumed), {elapsed:.0f} s, about {left:.0f} s left"
    print(f"\r{line}" if sys.stderr.isatty() else line, end="\n" if final or not sys.stderr.isatty() else "",
          file=sys.stderr, flush=True)  # fmt: skip


def run(argv: list[str] | None = None) -> int:
    args = resolve(parser().parse_args(sys.argv[1:] if argv is None else argv))
    name = args.name or f"al-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = Path(args.storage).expanduser() / name
    settings = {k: v for k, v in vars(args).items() if k not in ("name", "storage", "address", "suite")}
    try:
        todo = cells(args)
        policy = policy_checkpoint(args.policy, [d for d in args.datasets.split(",") if d]) if args.policy else None
        done = finished(folder, settings)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, sort_keys=True))
    # large K first, seed by seed: a run stopped early still has every dataset at the cheap K values
    missing = sorted((cell for cell in todo if key(*cell) not in done), key=lambda c: (-c[0]["batch"], c[2]))
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address or "local", include_dashboard=False, log_to_driver=False)
    tick = time.perf_counter()
    try:
        task = ray.remote(benchmark.run_cell).options(num_cpus=1)
        pending = {task.remote(env, strategy, seed, policy): (env, strategy, seed) for env, strategy, seed in missing}
        progress(len(done), len(todo), len(done), tick)
        with (folder / "cells.jsonl").open("a") as out:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                env, strategy, seed = pending.pop(ready[0])
                row = {"key": key(env, strategy, seed), "dataset": env["dataset"], "k": env["batch"],
                       "start": env["start"], "strategy": strategy, "seed": seed, **ray.get(ready[0])}  # fmt: skip
                out.write(json.dumps(row) + "\n")
                out.flush()
                done[row["key"]] = row
                progress(len(done), len(todo), len(todo) - len(missing), tick, final=not pending)
    finally:
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - tick
    rows = [{k: v for k, v in done[key(*cell)].items() if k != "key"} for cell in todo]
    (folder / "al.json").write_text(json.dumps({"args": vars(args), "policy": policy, "seconds": seconds,
                                                "cells": rows}))  # fmt: skip
    from platform import al_report

    print(al_report.render(folder))
    print(f"{len(rows)} runs ({len(missing)} in this call) in {seconds:.0f} s; written: {folder / 'al.json'}, "
          f"{folder / 'al_report.md'} and PNGs")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run())
