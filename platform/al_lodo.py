"""`python -m platform.al_lodo`: the learned policy judged on its own, leaving each dataset out in turn.

    python -m platform.al_lodo --seeds 3                     # every suite dataset held out, K 1,5,10,20
    python -m platform.al_lodo --datasets digits,segment --k 10 --iterations 10 --splits 10 --name lodo-1
    python -m platform.al_lodo --name lodo-1 --report        # the report of the units finished so far

For each held-out dataset D of --datasets and each variant (--priors x --sampling: the margin prior
or none, candidates half margin's top or all at random), `al` (trainables/active/policy.py) is trained
--seeds times (RL seeds) on the datasets of --train other than D, at K = --train-k, and never selected
on D; each trained network is then tested once on D's --splits test splits at every K of --k, beside
margin and BADGE on the same splits (paired by split seed). Policy minus reference gets a crossed
bootstrap interval that covers training seeds and test splits together (METHOD). Every training and
every test is a Ray task (a local Ray of --cpus, or --address); each finished unit is appended to
STORAGE/NAME/units.jsonl at once, so the same command with the same --name after a stop runs only
what is missing. At the end: lodo.json and lodo_report.md (with the decisions PNGs) beside it.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from envs import active, al_datasets
from platform import tables
from platform.al_compare import finished, numbers, progress
from trainables.active import benchmark
from trainables.active import policy as learned
from trainables.config import ConfigError, apply_assignments, parse_assignment
from trainables.stats import confidence_interval, paired_bootstrap

REFERENCES = ("margin", "badge")  # the policy must beat the better of them
RESAMPLES = 2000
METHOD = (f"crossed percentile bootstrap ({RESAMPLES} resamples): RL training seeds with replacement and one "
          "draw of test splits shared by every seed (each seed is tested on the same splits); paired by split "
          "seed")  # fmt: skip
# al's fields the driver sets itself: --set may not change them
DRIVEN = ("train_datasets", "held_out", "prior", "candidate_sampling", "seed", "batch", "budget", "start",
          "iterations", "torch_threads")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.al_lodo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    suite = ",".join(al_datasets.SUITE)
    p.add_argument("--datasets", default=suite, help="held out in turn, comma-separated (default: the suite)")
    p.add_argument("--train", default=suite, help="the policy trains on these minus the held-out one")
    p.add_argument("--priors", default="0,5", help="al's prior: 0 from scratch, 5 soft margin sampling at the start")
    p.add_argument("--sampling", default=",".join(active.CANDIDATE_SAMPLING), help="candidate sampling of the env")
    p.add_argument("--seeds", type=int, default=3, help="RL training seeds per held-out dataset and variant")
    p.add_argument("--splits", type=int, default=20, help="test splits of the held-out dataset")
    p.add_argument("--k", default="1,5,10,20", help="batch sizes tested, comma-separated")
    p.add_argument("--train-k", type=int, default=10, help="the batch size the policy trains at")
    p.add_argument("--budget", type=int, default=100, help="labels bought after the start set")
    p.add_argument("--start", type=int, default=20, help="start-set size")
    p.add_argument("--iterations", type=int, default=25, help="al's training iterations (episodes_per_iteration each)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another al setting, e.g. lr=0.01")
    p.add_argument("--report", action="store_true", help="only render the report of --name's units so far")
    p.add_argument("--name", help="default: lodo-TIMESTAMP; an unfinished run's name resumes it")
    p.add_argument("--storage", default=os.environ.get("TUNELAB_STORAGE", "~/ray_results"))
    p.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--address", help="Ray cluster to join; default: a local Ray")
    return p


def names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def plan(args) -> tuple[list[dict], list[dict]]:
    """(training units, reference units), each a dict that is its own identity. Training units come
    in the order they should run: margin_half before uniform, seed by seed, so a stopped run already
    has every held-out dataset and prior at the first seeds."""
    held, train = names(args.datasets), names(args.train)
    samplings, priors = names(args.sampling), [float(p) for p in numbers("priors", args.priors)]
    for d in held + train:
        if d not in al_datasets.NAMES:
            raise ConfigError(f"dataset {d!r} is unknown; choose from {', '.join(al_datasets.NAMES)}")
    bad = [s for s in samplings if s not in active.CANDIDATE_SAMPLING]
    if bad:
        raise ConfigError(f"--sampling: unknown {bad[0]!r}; choose from {', '.join(active.CANDIDATE_SAMPLING)}")
    if args.seeds < 2 or args.splits < 2:
        raise ConfigError("--seeds and --splits must be >= 2 (the interval resamples both)")
    extra = [parse_assignment(learned.ALConfig, s, "al") for s in args.set]
    driven = [key for key, _ in extra if key.partition(".")[0] in DRIVEN]
    if driven:
        raise ConfigError(f"--set {driven[0]}: the driver sets it (use its flag)")
    units = []
    for sampling in samplings:
        for seed in range(args.seeds):
            for prior in priors:
                for dataset in held:
                    others = [d for d in train if d != dataset]
                    if not others:
                        raise ConfigError(f"--train has no dataset besides the held-out {dataset!r}")
                    config = apply_assignments({"train_datasets": ",".join(others), "held_out": dataset,
                                                "prior": prior, "candidate_sampling": sampling, "seed": seed,
                                                "batch": args.train_k, "budget": args.budget, "start": args.start,
                                                "iterations": args.iterations, "valid_seeds": 1,
                                                "valid_every": args.iterations, "torch_threads": 1}, extra)  # fmt: skip
                    learned.parse(config)  # a bad value is one line before Ray starts
                    units.append({"kind": "train", "config": config})
    refs = [{"kind": "ref", "dataset": d, "strategy": s, "k": k} for k in numbers("k", args.k) for d in held
            for s in REFERENCES]  # fmt: skip
    return units, refs


def env(args, dataset: str, k: int, sampling: str = "margin_half") -> dict:
    try:
        cfg = active.ActiveConfig(dataset=dataset, batch=k, budget=args.budget, start=args.start,
                                  candidate_sampling=sampling)  # fmt: skip
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return dataclasses.asdict(cfg)


def key(unit: dict) -> str:
    return json.dumps(unit, sort_keys=True)


def policy_name(config: dict) -> str:
    """A trained policy's folder name: held-out dataset, prior, sampling, seed."""
    return f"{config['held_out']}-p{config['prior']:g}-{config['candidate_sampling']}-s{config['seed']}"


def tests_of(train: dict, ks: list[int]) -> list[dict]:
    """The test units of a trained policy: one per K, on the held-out dataset it never trained on."""
    c = train["config"]
    return [{"kind": "policy", "policy": policy_name(c), "dataset": c["held_out"], "prior": c["prior"],
             "sampling": c["candidate_sampling"], "seed": c["seed"], "k": k} for k in ks]  # fmt: skip


def missing(trains: list[dict], refs: list[dict], done: dict, ks: list[int]) -> tuple[list, list, list]:
    """What a run still has to do, given the `done` units (key -> row): (reference units, (test unit,
    checkpoint) of the policies already trained, training units). A trained policy is never trained
    again; its missing tests run on its saved network."""
    tests = [(test, done[key(unit)]["checkpoint"]) for unit in trains if key(unit) in done
             for test in tests_of(unit, ks) if key(test) not in done]  # fmt: skip
    return ([u for u in refs if key(u) not in done], tests, [u for u in trains if key(u) not in done])


def splits(args) -> list[int]:
    return [learned.TEST_SEED + i for i in range(args.splits)]


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.report:
        if not args.name:
            print("error: --report needs the --name of a run", file=sys.stderr)
            return 2
        try:
            print(render(Path(args.storage).expanduser() / args.name))
        except FileNotFoundError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    name = args.name or f"lodo-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = Path(args.storage).expanduser() / name
    settings = {k: v for k, v in vars(args).items() if k not in ("name", "storage", "address", "cpus", "report")}
    try:
        trains, refs = plan(args)
        ks = numbers("k", args.k)
        done = finished(folder, settings, result="lodo.json", lines="units.jsonl")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, sort_keys=True))
    (folder / "units.jsonl").touch()
    total = len(trains) * (1 + len(ks)) + len(refs)
    started = not ray.is_initialized()
    if started:
        ray.init(address=args.address or "local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    train_task = ray.remote(benchmark.train_policy).options(num_cpus=1)
    policy_task = ray.remote(benchmark.evaluate_policy).options(num_cpus=1)
    ref_task = ray.remote(benchmark.evaluate_strategy).options(num_cpus=1)
    pending: dict = {}

    def submit_tests(tests: list[tuple[dict, str]]) -> None:
        for unit, checkpoint in tests:
            cfg = env(args, unit["dataset"], unit["k"], unit["sampling"])
            pending[policy_task.remote(checkpoint, cfg, splits(args))] = unit

    def submit_training() -> None:
        """One training task more, while fewer than `window` are queued: Ray runs tasks roughly in
        the order they came, so the tests of a finished policy run before the next trainings, and a
        run stopped early holds tested policies rather than untested ones."""
        while untrained and sum(u["kind"] == "train" for u in pending.values()) < window:
            unit = untrained.pop(0)
            pending[train_task.remote(unit["config"], str(folder / "policies" / policy_name(unit["config"])))] = unit

    tick, resumed = time.perf_counter(), len(done)
    window = max(1, int(ray.cluster_resources().get("CPU", 1)))
    refs, tests, untrained = missing(trains, refs, done, ks)
    try:
        for unit in refs:  # cheap, and every test needs them
            pending[ref_task.remote(env(args, unit["dataset"], unit["k"]), unit["strategy"], splits(args))] = unit
        submit_tests(tests)
        submit_training()
        progress(len(done), total, resumed, tick)
        with (folder / "units.jsonl").open("a") as out:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                unit = pending.pop(ready[0])
                row = {"key": key(unit), **unit, **ray.get(ready[0])}
                out.write(json.dumps(row) + "\n")
                out.flush()
                done[row["key"]] = row
                if unit["kind"] == "train":
                    submit_tests([(test, row["checkpoint"]) for test in tests_of(unit, ks)])
                    submit_training()
                progress(len(done), total, resumed, tick, final=not pending)
    finally:
        if started:
            ray.shutdown()
    seconds = time.perf_counter() - tick
    (folder / "lodo.json").write_text(json.dumps({"args": vars(args), "seconds": seconds, "method": METHOD,
                                                  "units": [{k: v for k, v in r.items() if k != "key"}
                                                            for r in done.values()]}))  # fmt: skip
    print(render(folder))
    print(f"{len(done)} units ({len(done) - resumed} in this call) in {seconds:.0f} s; written: "
          f"{folder / 'lodo.json'}, {folder / 'lodo_report.md'} and PNGs")  # fmt: skip
    return 0


def load(folder: Path) -> tuple[list[dict], bool]:
    """(units, partial): lodo.json's, or the units.jsonl of an unfinished run."""
    if (folder / "lodo.json").exists():
        return json.loads((folder / "lodo.json").read_text())["units"], False
    if (folder / "units.jsonl").exists():
        return [json.loads(line) for line in (folder / "units.jsonl").read_text().splitlines() if line.strip()], True
    raise FileNotFoundError(f"{folder}: no lodo.json or units.jsonl; run python -m platform.al_lodo first")


def compare(policy: dict[int, list[float]], reference: list[float]) -> tuple[float, float, float]:
    """Mean and interval (METHOD) of policy - reference; `policy` maps an RL seed to its AULC on each
    test split, `reference` holds the reference's AULC on the same splits. Every seed meets the same
    splits, so one split draw serves every seed: drawing them per seed would divide the splits'
    variance by the seeds."""
    ref = np.asarray(reference)
    diffs = [np.asarray(a) - ref for _, a in sorted(policy.items())]
    return paired_bootstrap(diffs, resamples=RESAMPLES, same_users=True)


def seed_interval(policy: dict[int, list[float]], reference: list[float]) -> tuple[float, float, float]:
    """Mean and Student-t 95% interval over RL seeds of each seed's mean difference to `reference`
    (split noise averaged within a seed): wider than the bootstrap when seeds are few."""
    ref = float(np.mean(reference))
    mean, _, low, high = confidence_interval([float(np.mean(a)) - ref for _, a in sorted(policy.items())])
    return mean, low, high


def learning_table(trained: list[dict]) -> list[str]:
    """Did training move the policy? Per prior and candidate sampling: its validation AULC minus
    margin's on its training datasets after the last iteration (near 0 for a policy that still picks
    what margin picks), over every trained policy: mean [min, max], and how many are above 0."""
    groups: dict = {}
    for u in trained:
        c = u["config"]
        groups.setdefault((c["prior"], c["candidate_sampling"]), []).append(u["valid_minus_margin"])
    rows = [[f"{prior:g}", sampling, len(v), f"{np.mean(v):+.4f} [{min(v):+.4f}, {max(v):+.4f}]",
             sum(x > 0 for x in v)] for (prior, sampling), v in sorted(groups.items())]  # fmt: skip
    head = ["prior", "candidates", "policies", "validation AULC minus margin's (training datasets)", "above 0"]
    return ["Training (validation on the datasets it trained on, never the held-out one):", "",
            *tables.table(head, rows)]  # fmt: skip


def signed(mean: float, low: float, high: float) -> str:
    star = "*" if low > 0 or high < 0 else ""
    return f"{mean:+.4f}{star} {tables.interval(low, high, '+.4f')}"


def render(folder: Path) -> str:
    """The report: per variant and K, per held-out dataset, policy - margin and policy - BADGE with
    intervals over seeds and splits, a count of the datasets where the policy beats both, and its
    decisions over time. Writes lodo_report.md and decisions_*.png in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from platform.al_report import decisions_table

    folder = Path(folder)
    units, partial = load(folder)
    refs = {(u["dataset"], u["k"], u["strategy"]): u["aulc"] for u in units if u["kind"] == "ref"}
    runs: dict = {}  # (prior, sampling, k) -> dataset -> seed -> unit
    for u in units:
        if u["kind"] == "policy":
            runs.setdefault((u["prior"], u["sampling"], u["k"]), {}).setdefault(u["dataset"], {})[u["seed"]] = u
    trained = [u for u in units if u["kind"] == "train"]
    lines = [f"# The learned policy, leave-one-dataset-out: {folder.name}", ""]
    if partial:
        lines += ["**Unfinished**: the units finished so far (`units.jsonl`); rerun the same command to complete it.",
                  ""]  # fmt: skip
    lines += [f"Test AULC (accuracy) on the held-out dataset's splits; policy minus reference, mean [95% "
              f"interval: {METHOD}]; * where it excludes 0. A win: both intervals (against margin and against "
              "BADGE) above 0; a loss: either below 0; else a tie. With few RL seeds the bootstrap's bounds sit "
              "near the worst and best seed and cover less than 95%: the `t over seeds` column (Student-t over "
              "the seeds' mean differences to the better reference, split noise averaged) and its loss count "
              "are the cautious reading.", ""]  # fmt: skip
    if trained:
        secs = [u["seconds"] for u in trained]
        lines += [f"{len(trained)} policies trained ({trained[0]['episodes']} episodes each, "
                  f"{np.mean(secs):.0f} s on average).", "", *learning_table(trained), ""]  # fmt: skip
    summary, body, overview = [], [], {}
    for (prior, sampling, k), by_dataset in sorted(runs.items()):
        rows, wins, losses, t_losses = [], 0, 0, 0
        for dataset, seeds in sorted(by_dataset.items()):
            references = [refs.get((dataset, k, r)) for r in REFERENCES]
            if any(r is None for r in references) or len(seeds) < 2:
                continue
            aulc = {s: u["aulc"] for s, u in seeds.items()}
            diffs = [compare(aulc, r) for r in references]
            better = int(np.argmax([np.mean(r) for r in references]))  # the reference to beat, by mean AULC
            overview.setdefault((prior, sampling), {}).setdefault(dataset, {})[k] = (better, diffs[better])
            win = all(low > 0 for _, low, _ in diffs)
            loss = any(high < 0 for _, _, high in diffs)
            wins, losses = wins + win, losses + loss
            by_seed = seed_interval(aulc, references[better])
            t_losses += by_seed[2] < 0
            seed_means = " / ".join(f"{np.mean(a):.3f}" for _, a in sorted(aulc.items()))
            rows.append([dataset, len(seeds), len(references[0]), f"{np.mean(list(aulc.values())):.3f}",
                         seed_means, *(f"{np.mean(r):.3f}" for r in references), *(signed(*d) for d in diffs),
                         "win" if win else "loss" if loss else "tie",
                         f"{signed(*by_seed)} ({REFERENCES[better]})"])  # fmt: skip
        if not rows:
            continue
        variant = f"prior {prior:g}, candidates {sampling}, K = {k}"
        summary.append([f"{prior:g}", sampling, k, len(rows), wins, len(rows) - wins - losses, losses, t_losses,
                        "yes" if wins * 2 >= len(rows) else "no"])  # fmt: skip
        body += [f"## {variant}", ""]
        head = ["held out", "seeds", "splits", "policy AULC", "per seed", "margin", "BADGE", "policy - margin",
                "policy - BADGE", "vs both", "policy - better, t over seeds"]  # fmt: skip
        body += [*tables.table(head, rows), ""]
        sums = sum(np.asarray(u["decision_sums"]) for seeds in by_dataset.values() for u in seeds.values())
        counts = sum(np.asarray(u["decision_counts"]) for seeds in by_dataset.values() for u in seeds.values())
        png = folder / f"decisions_p{prior:g}_{sampling}_k{k}.png"
        policies = sum(len(seeds) for seeds in by_dataset.values())
        body += [f"Decisions over time ({policies} policies, every held-out dataset):", "",
                 *decisions_table(sums, counts, policies, png, plt, variant)]  # fmt: skip
    head = ["prior", "candidates", "K", "held-out datasets", "wins", "ties", "losses", "losses (t over seeds)",
            "wins on at least half"]  # fmt: skip
    lines += ["## Does the learned policy beat the best of margin and BADGE?", "", *tables.table(head, summary), ""]
    for (prior, sampling), by_dataset in sorted(overview.items()):
        ks = sorted({k for by_k in by_dataset.values() for k in by_k})
        rows = [[dataset, *(f"{signed(*by_k[k][1])} ({REFERENCES[by_k[k][0]]})" if k in by_k else "" for k in ks)]
                for dataset, by_k in sorted(by_dataset.items())]  # fmt: skip
        lines += [f"### Prior {prior:g}, candidates {sampling}: policy minus the better of margin and BADGE "
                  "(by mean AULC on these splits)", "", *tables.table(["held out", *(f"K = {k}" for k in ks)], rows),
                  ""]  # fmt: skip
    text = "\n".join(lines + body)
    (folder / "lodo_report.md").write_text(text + "\n")
    return text


if __name__ == "__main__":
    sys.exit(run())
