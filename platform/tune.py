"""`python -m platform.tune MODEL`: a PBT, Optuna, random or fixed-config search over one model.

Run from the repository root. Results go to Tune's layout under --storage (~/ray_results by
default), never inside the git work tree.
"""

import argparse
import dataclasses
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import search_spaces
from platform import ray_compat
from platform import results as recorded
from platform.callbacks import StalledRun, use_console_reporter
from platform.experiment import (
    SEARCHES,
    Plan,
    Replay,
    build_tuner,
    population_size,
    resources,
    restore_tuner,
    seeded_plan,
    study_plan,
)
from platform.results import STUDY, Storage
from trainables.config import ConfigError, apply_assignments, field_types, parse_assignment

log = logging.getLogger("tunelab")
ROOT = Path(__file__).resolve().parent.parent
# What a cluster's workers get of the working tree (Ray's runtime_env working_dir): the code, not
# the history, caches or local results.
WORKING_DIR_EXCLUDES = [
    ".git",
    "**/__pycache__",
    "*.egg-info",
    ".venv",
    ".gl",
    "*.whl",
    ".ruff_cache",
    ".pytest_cache",
    "ray_results",
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("model", nargs="?", help="model to tune; see --list")
    p.add_argument(
        "--search",
        choices=SEARCHES,
        help="search algorithm (default: pbt; closed-form baselines: optuna); optuna+pbt: a short Optuna "
        "study picks the starting population of a PBT run, at the compute of --search pbt",
    )
    p.add_argument("--samples", type=int, help="trials / PBT population (default: the budget's)")
    p.add_argument("--budget", choices=("smoke", "full"), default="full", help="smoke: seconds, for tests")
    p.add_argument("--seeds", type=int, default=1, help="repeat each config over N seeds")
    p.add_argument(
        "--vary-data",
        action="store_true",
        help="with --seeds: data_seed = seed too, so the data split (and synthetic data) varies with the seed",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (typed and validated); repeatable",
    )
    p.add_argument(
        "--replay",
        metavar="EXPERIMENT[:TRIAL]",
        help="retrain a PBT trial's hyperparameter schedule from scratch (the best trial unless named; "
        "EXPERIMENT is a folder or a name under --storage), over --seeds N, beside the original score",
    )
    p.add_argument("--name", help="experiment name (default: MODEL-SEARCH-TIMESTAMP)")
    p.add_argument(
        "--storage",
        default=os.environ.get("TUNELAB_STORAGE", "~/ray_results"),
        help="results root: a directory or s3:// / gs:// URI (default: $TUNELAB_STORAGE or ~/ray_results)",
    )
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="also log every trial to MLflow (Ray's MLflowLoggerCallback): a tracking server URI, or a "
        "path for a local file store",
    )
    p.add_argument("--address", help="Ray cluster to join (auto, ray://...); default: start a local Ray")
    p.add_argument(
        "--cpus-per-trial",
        type=float,
        help="default 1; a local PBT population larger than the cores shares them (cores / trials, at least 0.25), "
        "so the whole population runs at once",
    )
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU, e.g. 0.25")
    p.add_argument("--resume", action="store_true", help="continue the experiment --name")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="Tune's full console output (per-trial configs, "
        "checkpoints, worker logs); by default the console shows the trial table and one line per event",
    )
    p.add_argument(
        "--show-config",
        action="store_true",
        help="print every config key of MODEL (type, default, doc), what PBT mutates, what Optuna "
        "searches and each budget, then exit",
    )
    p.add_argument("--list", action="store_true", help="list the models and exit")
    return p


def list_models() -> str:
    lines = ["models:"]
    for name in search_spaces.MODELS:
        lines.append(f"  {name:10s} {search_spaces.get(name).description}")
    lines.append("usage: python -m platform.tune MODEL [--search pbt|optuna|random|none] [--set key=value ...]")
    return "\n".join(lines)


VARY_DATA_NOTICE = (
    "--vary-data: data_seed changes nothing here (a file's loo or time split is fixed by the data), so the "
    "seeds vary training only"
)


def varies_data(config) -> bool:
    """Whether data_seed changes the data or split: generated data, split=users, a user subsample or
    shuffled histories do; a file's loo and time splits do not."""
    fields = dataclasses.asdict(config)
    if "data_seed" not in fields:
        return True  # not a recommender: the model decides
    return (
        fields["data"] == "synthetic"
        or fields.get("split") == "users"
        or fields.get("user_fraction", 1.0) < 1.0
        or fields.get("shuffle_order", False)
    )


def make_plan(args: argparse.Namespace) -> Plan:
    """Validates every option and the model's config before Ray starts; raises ConfigError."""
    spec = search_spaces.get(args.model)
    budget = spec.budgets[args.budget]
    args.search = args.search or spec.default_search
    if args.search in ("pbt", "optuna+pbt") and not spec.pbt_mutations:
        raise ConfigError(f"{args.model} has no hyperparameter PBT could mutate; use --search optuna, random or none")
    for flag, value, low in [("--samples", args.samples, 1), ("--seeds", args.seeds, 1)]:
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}")
    if args.cpus_per_trial is None:
        args.cpus_per_trial = population_cpus(args, spec, args.samples or budget.samples)
    if args.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}")
    if args.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial}")
    if args.vary_data and "data_seed" not in field_types(spec.config):
        raise ConfigError(f"--vary-data: {args.model} has no data_seed (it is not a recommender)")
    if args.vary_data and args.seeds < 2:
        raise ConfigError("--vary-data varies data_seed with the seed: use it with --seeds N (N >= 2)")
    if args.seeds > 1 and args.search in ("optuna", "random", "optuna+pbt"):
        raise ConfigError(f"--seeds repeats one config; use it with --search none or pbt, not {args.search}")
    assignments = [parse_assignment(spec.config, text, args.model) for text in args.set]
    values = apply_assignments(budget.overrides, assignments)
    replay = None
    if args.replay:
        if args.set:
            raise ConfigError("--replay retrains a recorded schedule as it was: leave out --set")
        replay = Replay.load(args.replay, Storage.parse(args.storage), spec)
        args.search, values = "replay", {k: v for k, v in replay.scheduler.config.items() if k != "seed"}
        values["seed"] = replay.scheduler.config.get("seed", 0)
    config = spec.check(values)  # the config parses and the data loads, before any trial starts
    pinned_by_placement, trial_resources = resources(spec, config, args.cpus_per_trial, args.gpus_per_trial)
    values = {**values, **pinned_by_placement}
    storage = Storage.parse(args.storage)
    if not storage.is_uri:
        _refuse_work_tree(Path(storage.root))
    name = args.name or f"{args.model}-{args.search}-{time.strftime('%Y%m%d-%H%M%S')}"
    if replay is not None and replay.experiment == str(Path(storage.root) / name):
        raise ConfigError("--replay writes a new experiment: give it a --name other than the replayed one")
    if "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r} must be a plain directory name")
    plan = Plan(
        model=args.model,
        spec=spec,
        search=args.search,
        budget=budget,
        samples=args.samples or budget.samples,
        seeds=args.seeds,
        config=config,
        base_config=values,
        pinned=tuple(key.partition(".")[0] for key, _ in assignments),
        name=name,
        storage=storage,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        resources=trial_resources,
        verbose=args.verbose,
        vary_data=args.vary_data,
        replay=replay,
        mlflow=mlflow_uri(args.mlflow) if args.mlflow else None,
    )
    exists = plan.local_dir is not None and plan.local_dir.exists()
    if args.resume and plan.local_dir is not None and not exists:
        raise ConfigError(f"--resume: no experiment {name!r} under {storage.root}; check --name and --storage")
    # A folder Tune cannot restore (no tuner.pkl) holds no run (it stopped after writing its lineage,
    # before Tune started): it is started again rather than resumed.
    from ray import tune

    started = exists and any(tune.Tuner.can_restore(str(folder)) for folder in (plan.local_dir, plan.local_dir / STUDY))
    if args.resume and exists and not started:
        raise ConfigError(f"--resume: experiment {name!r} never started a trial; run the command without --resume")
    exists = started
    if exists and not args.resume:
        raise ConfigError(
            f"experiment {name!r} already exists at {plan.local_dir}; pass --resume to continue it "
            "or a new --name (nothing was changed)"
        )
    return plan


def mlflow_uri(text: str) -> str:
    """The tracking URI: a URI as given, a path as a local file store (MLflow 3 keeps file stores
    behind MLFLOW_ALLOW_FILE_STORE, which this sets for the driver, where the callback runs)."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError("--mlflow needs MLflow: pip install mlflow-skinny (or mlflow)") from None
    if "://" in text:
        return text
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return Path(text).expanduser().resolve().as_uri()


def _refuse_work_tree(storage: Path) -> None:
    """Runs inside a git work tree die with `git reset --hard` / `git clean`: refuse them."""
    probe = storage
    while not probe.exists():
        probe = probe.parent
    try:
        top = subprocess.run(
            ["git", "-C", str(probe), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return
    if top.returncode == 0 and top.stdout.strip():
        raise ConfigError(
            f"--storage {storage} is inside the git work tree {top.stdout.strip()}, where "
            "`git reset`/`git clean` can delete runs; use a path outside it (default ~/ray_results)"
        )


def runtime_env() -> dict:
    """Ships the working tree to every node, so workers import trainables, envs and search_spaces
    as they are here, with no install on the cluster."""
    return {"working_dir": str(ROOT), "excludes": WORKING_DIR_EXCLUDES}


def population_cpus(args, spec, samples: int) -> float:
    """CPUs per trial when --cpus-per-trial is not given: 1, except for a PBT population on a local
    Ray with more trials than cores, whose trials share the cores (cores / trials, at least 0.25).
    Synchronous PBT pauses a population that does not fit at every perturbation, and every paused
    trial restarts in a new worker process; one that fits waits in place (platform/schedulers.py)."""
    if args.search != "pbt" or args.address or spec.place is not None or args.gpus_per_trial:
        return 1.0
    import ray

    cores = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else (os.cpu_count() or 1)
    return max(0.25, min(1.0, math.floor(100 * cores / (samples * args.seeds)) / 100))


def start_ray(address: str | None, cpus_per_trial: float, verbose: bool = False) -> bool:
    """Starts (or joins) Ray unless this process already did; returns whether we started it.
    Workers' output reaches the console only with `verbose` (it is in each trial's folder anyway)."""
    import ray

    started = not ray.is_initialized()
    if started and address:
        try:
            ray.init(address=address, runtime_env=runtime_env(), log_to_driver=verbose)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ConfigError(
                f"--address {address}: cannot join a Ray cluster there ({str(err).splitlines()[0]}); "
                "start one with `ray up clusters/gpu.yaml` or `ray start --head`, or leave out "
                "--address for a local Ray"
            ) from None
    elif started:
        ray.init(address="local", include_dashboard=False, log_to_driver=verbose)
    if ray.cluster_resources().get("CPU", 0) < cpus_per_trial:
        if started:
            ray.shutdown()
        raise ConfigError(
            f"--cpus-per-trial {cpus_per_trial} exceeds the cluster's {ray.cluster_resources().get('CPU', 0):g} CPUs"
        )
    return started


def run(argv: list[str] | None = None, callbacks: list | None = None) -> int:
    """The command; `callbacks` are extra Tune callbacks (tests use them to kill nodes mid-run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    model = next((a for a in argv if a in search_spaces.MODELS), None)
    if model and {"-h", "--help", "--show-config"} & set(argv):  # the model's settings, generated
        from platform.show import show_config

        print(("" if "--show-config" in argv else parser().format_help() + "\n") + show_config(model))
        return 0
    args = parser().parse_args(argv)
    if args.list or args.model is None:
        print(list_models())
        return 0
    if args.model not in search_spaces.MODELS:
        print(f"error: unknown model {args.model!r}\n{list_models()}", file=sys.stderr)
        return 2
    try:
        plan = make_plan(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if plan.vary_data and not varies_data(plan.config):
        print(VARY_DATA_NOTICE)  # before Ray starts, not after the runs it would not have changed

    import ray

    started = False
    try:
        started = start_ray(args.address, plan.cpus_per_trial, plan.verbose)
        results, _ = execute(plan, argv, args.resume, callbacks)
        return 1 if results.num_errors and results.num_errors == len(results) else 0
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except StalledRun as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    finally:
        if started:
            ray.shutdown()


def execute(plan: Plan, argv: list[str], resume: bool = False, callbacks: list | None = None):
    """Runs (or resumes) the planned experiment on the Ray this process joined, measures the test
    figures of the selected trial(s) and prints the summary: (Tune's ResultGrid, test figures)."""
    import ray
    from ray import tune

    from platform import lineage
    from platform.selection import measure_selected
    from platform.summary import render

    if not plan.verbose:  # PBT's history is in the experiment folder (pbt_global.txt, pbt_policy_*.txt)
        for name in ("ray.tune.schedulers.pbt", "ray.tune.tune"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if plan.gpus_per_trial > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        log.warning("--gpus-per-trial %s but the cluster has no GPU: trials run on CPU", plan.gpus_per_trial)
        plan = _without_gpus(plan)
    print(start_lines(plan, argv, ray.cluster_resources().get("CPU", 0)))
    source = lineage.source_line(lineage.record(plan, argv, ROOT, resume))
    use_console_reporter()
    if plan.search == "optuna+pbt":
        plan = run_study(plan, resume)
    started = resume and tune.Tuner.can_restore(plan.storage.experiment(plan.name))
    if started and plan.search == "optuna+pbt":
        # A crash just after the study, before any PBT trial reported, leaves a tuner.pkl whose
        # restore generated one trial from the mutations alone: nothing ran, so start the phase again.
        started = recorded.reported(plan.storage.experiment(plan.name))
    tuner = restore_tuner(plan) if started else build_tuner(plan, callbacks)
    results = resume_lost_trials(plan, fit(plan, tuner))
    tests = measure_selected(results, plan)
    print(render(results, plan, tests, resumed=resume, source=source))
    return results, tests


def run_study(plan: Plan, resume: bool) -> Plan:
    """optuna+pbt: runs (or resumes, or reads back when it finished) the Optuna study in the
    experiment's folder; returns the PBT plan seeded with its best configs."""
    from ray import tune

    study = study_plan(plan)
    where = study.storage.experiment(study.name)
    print(
        f"optuna+pbt: Optuna study of {study.samples} trials x {study.stop_at} iterations ({where}), "
        f"then PBT from its best {population_size(plan.samples)} configs"
    )
    tuner = restore_tuner(study) if resume and tune.Tuner.can_restore(where) else build_tuner(study)
    return seeded_plan(plan, resume_lost_trials(study, fit(study, tuner)))


def start_lines(plan: Plan, argv: list[str], cpus: float) -> str:
    """Where the results go, how to watch and resume the run, and how big the budget is."""
    trials = {"pbt": plan.samples * plan.seeds, "none": plan.seeds, "replay": plan.seeds}.get(plan.search, plan.samples)
    if plan.search == "optuna+pbt":
        trials = population_size(plan.samples)
    at_once = max(1, min(trials, int(cpus // plan.cpus_per_trial)))
    where = plan.storage.experiment(plan.name)
    again = [a for a in argv if a != "--resume"]
    if "--name" not in again:
        again += ["--name", plan.name]
    return "\n".join(
        [
            f"tunelab: {plan.model}, {plan.search} search: {trials} trials x {plan.config.iterations} iterations, "
            f"{at_once} at a time on {cpus:g} CPUs",
            f"  results: {where}",
            f"  watch:   tensorboard --logdir {where}",
            f"  resume:  python -m platform.tune {' '.join(again)} --resume",
        ]
    )


def fit(plan: Plan, tuner, rounds: int = 2):
    """`tuner.fit()`, resumed from the saved experiment state (up to `rounds` times) when Tune's own
    controller fails: after a node loss Ray 2.60's controller can trip over a result from an actor
    it already dropped (a KeyError). An error that passed through tunelab's code (a callback, a
    scheduler) is raised as it is."""
    for attempt in range(rounds + 1):
        try:
            return tuner.fit()
        except Exception as error:
            if attempt == rounds or not ray_compat.raised_by_tune(error, ROOT):
                raise
            print(
                f"Tune's controller failed ({type(error).__name__}: {str(error)[:200]}); resuming the run "
                "from its saved experiment state",
                file=sys.stderr,
            )
            tuner = restore_tuner(plan)


def resume_lost_trials(plan: Plan, results, rounds: int = 2):
    """Resumes trials whose actor died with its node (a spot reclaim, a lost worker), up to `rounds`.

    Tune retries a running trial whose node dies, but a trial that was being started or restored
    there (PBT does that at every exploit) is marked ERROR at once, whatever max_failures says.
    Such a trial did nothing wrong: it continues from its last checkpoint. A model error raised
    inside a trial is a RayTaskError, not an actor death, and stays failed after its retries.
    """
    from ray.exceptions import RayActorError

    for _ in range(rounds):
        lost = [r for r in results if isinstance(r.error, RayActorError)]
        if not lost:
            break
        print(
            f"{len(lost)} trial(s) lost with their node, not by a model error: resuming them from their "
            "last checkpoints",
            file=sys.stderr,
        )
        results = fit(plan, restore_tuner(plan))
    return results


def _without_gpus(plan: Plan) -> Plan:
    _, trial_resources = resources(plan.spec, plan.config, plan.cpus_per_trial, 0.0)
    return dataclasses.replace(plan, gpus_per_trial=0.0, resources=trial_resources)


if __name__ == "__main__":
    sys.exit(run())
