"""An Optuna study for the dqn config that solves CartPole-v1 fastest: issue 10's samples lever.

    python bench/dqn_search.py [--trials 120] [--workers 2] [--seeds 100,101,102] [--cap 12]

A real Optuna study (TPE, multivariate) over dqn's own Optuna space (search_spaces/dqn.py, the one
`python -m platform.tune dqn --search optuna` searches). Each trial trains the direct trainable once
per search seed, each run in a fresh process (bench/cartpole.py's `run_one`: the same clock as the
bench's `dqn` row), until it solves or `cap` seconds pass; the objective is the median of the
seeds' wall seconds to solve, an unsolved run counting as the cap. The search seeds are not the
bench's (0-4): bench/cartpole.py measures the chosen config on seeds the search never saw.

The workers are processes sharing the study through a journal file (`--study`): the study survives
a crash and continues with the same file. The last line is the best trial's config as JSON; every
trial is in `<study>.trials.json`.
"""

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(seed: int, cap: float, overrides: dict) -> dict:
    """One bench run of dqn with `overrides`, in a fresh process."""
    argv = [sys.executable, str(ROOT / "bench" / "cartpole.py"), "--child", "run", "dqn", str(seed), str(cap),
            json.dumps(overrides)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def objective(trial: optuna.Trial, seeds: list[int], cap: float) -> float:
    from search_spaces import dqn

    overrides = dqn.optuna_space(trial)
    runs = [run(seed, cap, overrides) for seed in seeds]
    seconds = [r["wall_s"] if r["solved"] else cap for r in runs]
    trial.set_user_attr("seconds", seconds)
    trial.set_user_attr("env_steps", [r["env_steps"] for r in runs])
    trial.set_user_attr("solved", sum(r["solved"] for r in runs))
    trial.set_user_attr("config", overrides)
    return statistics.median(seconds)


def worker(study_file: str, name: str, trials: int, seeds: list[int], cap: float, seed: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(study_file))
    sampler = optuna.samplers.TPESampler(multivariate=True, group=True, seed=seed, n_startup_trials=16)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    done = optuna.trial.TrialState.COMPLETE

    def enough(study: optuna.Study, _) -> None:
        if len(study.get_trials(states=(done,))) >= trials:
            study.stop()

    study.optimize(lambda t: objective(t, seeds, cap), callbacks=[enough])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=120, help="completed trials in the study, all workers together")
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes (one run each at a time)")
    p.add_argument("--seeds", default="100,101,102", help="search seeds (the bench measures on 0-4)")
    p.add_argument("--cap", type=float, default=12.0, help="seconds per run; an unsolved run counts as this")
    p.add_argument("--study", default="/tmp/dqn-solve-study.log", help="journal file holding the study")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    name = "dqn-solve-seconds"
    storage = JournalStorage(JournalFileBackend(args.study))
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
    procs = [
        multiprocessing.Process(target=worker, args=(args.study, name, args.trials, seeds, args.cap, i))
        for i in range(args.workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    rows = sorted(complete, key=lambda t: t.value)
    Path(args.study + ".trials.json").write_text(
        json.dumps([{"number": t.number, "value": t.value, **t.user_attrs} for t in rows], indent=1)
    )
    print(f"{len(complete)} trials, seeds {seeds}, cap {args.cap:.0f} s; best ten (median seconds to solve):")
    for t in rows[:10]:
        secs = ", ".join(f"{s:.1f}" for s in t.user_attrs["seconds"])
        print(f"  #{t.number}: {t.value:.2f} s (runs {secs}; env steps {t.user_attrs['env_steps']})")
    importances = optuna.importance.get_param_importances(study)
    print("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in list(importances.items())[:8]))
    print(json.dumps(rows[0].user_attrs["config"]))


if __name__ == "__main__":
    main()
