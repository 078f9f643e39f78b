"""`python -m platform.compare [MODEL ...]`: models on one split, each tuned, seeds with intervals.

    python -m platform.compare                       # dt sasrec ease itemknn toprated popularity random
    python -m platform.compare dt sasrec --seeds 5 --set data=~/ml-1m/ratings.dat.tsv
    python -m platform.compare --budget smoke         # seconds, for tests
    python -m platform.compare dt dt:tokens=a dt:state=constant --search none --seeds 5   # an ablation
    python -m platform.compare dqn@pbt dqn@optuna dqn@optuna+pbt --seeds 5            # searches

A model may carry its own search and settings, MODEL[@SEARCH][:KEY=VALUE[,KEY=VALUE...]] (the key
`samples` sets that variant's trials or population, e.g. dqn@optuna:samples=6); the
table's row is named by that text, so variants of one model compare like different models. Any
model that measures test figures compares: recommenders (primary figure: the true rating on
generated data, else NDCG@10) and dqn/qtable (test return on fresh episodes). The `compute` column
is the trial iterations each search ran, its Optuna study included, summed over its trials.

For every seed and every model, one experiment runs that model's own search (`python -m platform.tune
MODEL --set seed=S`; PBT for dt, Optuna for sasrec and the tunable baselines) on the same data and
split. The trial each experiment selects on its validation `score` is measured once on the test
split. The first table gives, per model, the mean and 95% interval over seeds of the validation
score and of the test figures, and `wall s`: from each experiment's first trial iteration to its
last report as Tune recorded them, summed over seeds (each seed's in comparison.json, with the
iterations' seconds summed over trials). The second gives paired differences against the first
model: of the primary test figure over seeds (same seed, same split; a t-interval; with one seed
it has no interval and says so), and of HR@10, NDCG@10, MRR and liked NDCG@10 over seeds and test
users (each selected trial's per-user figures in its test.json; a test.json without one says that
column cannot be computed), so a difference is weighed against the test users' sampling as well
as training noise. That bootstrap resamples seeds and users in one of two ways: where every seed
measured the same users (one fixed split: a file's loo or time split, or any split without
--vary-data) each replicate draws one set of users shared by every drawn seed (crossed: a user's
effect is common to the seeds), else each drawn seed draws its own users (a split per seed);
comparison.json names the method used. `--vary-data` also sets data_seed = seed, so the split
(and the synthetic data) changes with the seed where data_seed decides it (generated data,
split=users, a user subsample); on a file's loo or time split it changes nothing, and a line says
so before anything runs.

Written to STORAGE/NAME/: one Tune experiment per model and seed, comparison.json and comparison.md.
An interrupted comparison finishes by rerunning the same command with its --name: every (model,
seed) whose selected trial was measured on test (its test.json) is read back, not run again, and
one that Tune had started resumes from its trials' checkpoints.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

import search_spaces
from platform import results as recorded
from platform import summary, tables
from platform.callbacks import StalledRun
from platform.experiment import SEARCHES
from platform.results import Storage
from platform.selection import TEST_FILE
from platform.tune import VARY_DATA_NOTICE, execute, make_plan, start_ray, varies_data
from platform.tune import parser as tune_parser
from trainables import metrics as m
from trainables import stats
from trainables.config import ConfigError, field_types
from trainables.recsys import protocol

DEFAULT_MODELS = ("dt", "sasrec", "ease", "itemknn", "toprated", "popularity", "random")
COLUMNS = (m.HR, m.NDCG, m.MRR, m.COVERAGE, m.TRUE_RATING_NORM, m.RETURN_MEAN, m.SOLVE)
PRIMARY = (m.TRUE_RATING_NORM, m.NDCG, m.RETURN_MEAN)  # the first one the runs measured
COMPUTE = "compute"  # trial iterations the search ran
# Per-user figures each selected trial's test.json holds, differenced over seeds x test users.
USER_METRICS = (m.HR, m.NDCG, m.MRR, m.LIKED + m.NDCG)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m platform.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("models", nargs="*", default=list(DEFAULT_MODELS), help="models; the first is the reference")
    p.add_argument("--seeds", type=int, default=3, help="seeds per model (default 3)")
    p.add_argument("--vary-data", action="store_true", help="data_seed = seed: the split varies with the seed")
    p.add_argument("--budget", choices=("smoke", "full"), default="full")
    p.add_argument("--search", choices=SEARCHES, help="for every model (default: each model's own)")
    p.add_argument("--samples", type=int, help="trials per search (default: each model's budget)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for every model that has KEY")
    p.add_argument("--name", help="default: compare-TIMESTAMP")
    p.add_argument("--storage", default=os.environ.get("TUNELAB_STORAGE", "~/ray_results"))
    p.add_argument("--address", help="Ray cluster to join; default: a local Ray")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    return p


def plans(args: argparse.Namespace) -> list:
    """One validated plan per (seed, model), before anything runs; raises ConfigError."""
    variants = {label: variant(label) for label in args.models}
    if len(variants) < len(args.models):
        raise ConfigError("a model is named twice; give each variant its own settings")
    unknown = [model for model, _, _ in variants.values() if model not in search_spaces.MODELS]
    if unknown:
        raise ConfigError(f"unknown model {unknown[0]!r}; choose from {', '.join(search_spaces.MODELS)}")
    searches = [search for _, search, _ in variants.values() if search and search not in SEARCHES]
    if searches:
        raise ConfigError(f"unknown search {searches[0]!r} in a MODEL@SEARCH; choose from {', '.join(SEARCHES)}")
    specs = {label: search_spaces.get(model) for label, (model, _, _) in variants.items()}
    untested = [name for name, spec in specs.items() if not spec.measures_test]
    if untested:
        raise ConfigError(f"{untested[0]} measures no test figures; compare takes recommenders, dqn and qtable")
    families = {label: "recommender" if "data" in field_types(spec.config) else "RL" for label, spec in specs.items()}
    if len(set(families.values())) > 1:
        first, other = next(iter(families)), next(k for k, v in families.items() if v != next(iter(families.values())))
        raise ConfigError(
            f"{first} and {other} are measured on different things; compare recommenders with "
            "recommenders and RL models with RL models"
        )
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    for text in args.set:
        key = text.partition("=")[0].partition(".")[0]
        if not any(key in field_types(spec.config) for spec in specs.values()):
            raise ConfigError(f"--set {text}: no model among {', '.join(args.models)} has the key {key!r}")
    name = args.name or f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = Storage.parse(args.storage)
    root = storage.experiment(name)
    if not storage.is_uri and os.path.exists(os.path.join(root, "comparison.json")):
        raise ConfigError(f"comparison {name!r} already exists at {root}; pass a new --name (nothing was changed)")
    # An interrupted comparison is rerun with the same --name: finished (model, seed) pairs are read back.
    out = []
    for seed in range(args.seeds):
        for label, (model, search, own) in variants.items():
            keys = field_types(specs[label].config)
            sets = [t for t in args.set if t.partition("=")[0].partition(".")[0] in keys]
            sets += [s for s in own if not s.startswith("samples=")]
            sets += [f"seed={seed}"] + ([f"data_seed={seed}"] if args.vary_data and "data_seed" in keys else [])
            folder = label.replace(":", "-").replace("=", "").replace(",", "-").replace("/", "_")
            folder = folder.replace("@", "-").replace("+", "")
            argv = [model, "--budget", args.budget, "--name", f"{folder}-seed{seed}", "--storage", root]
            argv += ["--resume"] if not storage.is_uri and _started(os.path.join(root, f"{folder}-seed{seed}")) else []
            argv += ["--cpus-per-trial", str(args.cpus_per_trial)] + [x for s in sets for x in ("--set", s)]
            samples = next((s.partition("=")[2] for s in own if s.startswith("samples=")), args.samples)
            argv += ["--samples", str(samples)] if samples else []
            argv += ["--search", search or args.search] if search or args.search else []
            out.append((seed, label, argv, make_plan(tune_parser().parse_args(argv))))
    if args.vary_data and not any(varies_data(plan.config) for *_, plan in out):
        # Said before Ray starts: the user may want another split rather than runs that vary less than asked.
        print(VARY_DATA_NOTICE + "; the (seeds x users) intervals cover the test users")
    return out


def variant(label: str) -> tuple[str, str | None, list[str]]:
    """ "dt@optuna:tokens=a,state=constant" -> ("dt", "optuna", ["tokens=a", "state=constant"])."""
    head, _, settings = label.partition(":")
    model, _, search = head.partition("@")
    own = [s for s in settings.split(",") if s]
    bad = [s for s in own if "=" not in s]
    if bad:
        raise ConfigError(f"{label}: {bad[0]!r} is not KEY=VALUE; write MODEL[@SEARCH]:KEY=VALUE[,KEY=VALUE...]")
    samples = [s.partition("=")[2] for s in own if s.startswith("samples=")]
    if samples and not (samples[0].isdigit() and int(samples[0]) >= 1):
        raise ConfigError(f"{label}: samples={samples[0]} must be a whole number >= 1")
    return model, search or None, own


def _started(experiment: str) -> bool:
    """Whether an interrupted comparison got this far: the experiment measured its test figures, or
    Tune can continue it (then it resumes)."""
    from ray import tune

    return os.path.exists(os.path.join(experiment, TEST_FILE)) or tune.Tuner.can_restore(experiment)


def compute(experiment: str | os.PathLike) -> float:
    """Trial iterations the experiment (a folder or a URI) ran: every trial's rows, its optuna+pbt
    study's included (a PBT trial that cloned another continues the count but reports only its own rows)."""
    return float(recorded.iterations(os.fspath(experiment)))


def table(rows: dict[str, list[dict]], reference: str) -> tuple[str, dict]:
    """Two markdown tables, and the same figures as a dict: per model, mean [95% CI] over seeds and
    the wall seconds its experiments took; then its differences against the reference.

    The differences are paired: over seeds (a t-interval of the per-seed differences of the primary
    figure), and over seeds and test users (stats.paired_bootstrap of the per-user HR@10, NDCG@10,
    MRR and liked NDCG@10 differences, where both models measured the same users)."""
    present = {k for runs in rows.values() for t in runs for k in t}
    primary = next(m.split_metric(m.TEST, c) for c in PRIMARY if m.split_metric(m.TEST, c) in present)
    columns = [m.SCORE] + [m.split_metric(m.TEST, c) for c in COLUMNS if m.split_metric(m.TEST, c) in present]
    columns += [COMPUTE] if COMPUTE in present else []
    per_user = m.split_metric(m.TEST, m.PER_USER)
    header = ["model", "seeds", "valid score"] + columns[1:] + ["wall s (sum over seeds)"]
    differences = ["model", f"{primary} - {reference} (seeds)"]
    if per_user in present:
        differences += [f"{m.split_metric(m.TEST, name)} - {reference} (seeds x users)" for name in USER_METRICS]
    body, difference_body = [], []
    figures: dict = {}
    by_seed_ref = {t["seed"]: t for t in rows[reference]}
    for model, runs in rows.items():
        cells, figures[model] = [model, str(len(runs))], {}
        for column in columns:
            mean, _, low, high = summary.confidence_interval([t[column] for t in runs])
            figures[model][column] = {"mean": mean, "low": low, "high": high}
            cells.append(f"{mean:.4f} {tables.interval(low, high, '.4f')}")
        body.append(cells + [wall_cell(runs, figures[model])])
        pairs = [(t, by_seed_ref[t["seed"]]) for t in runs if t["seed"] in by_seed_ref]
        if model == reference or not pairs:
            continue
        mean, _, low, high = summary.confidence_interval([t[primary] - ref[primary] for t, ref in pairs])
        method = "t-interval over seeds of the per-seed difference"
        figures[model]["paired_difference"] = {
            "mean": mean,
            "low": low,
            "high": high,
            "seeds": len(pairs),
            "method": method,
        }
        cells = [model, f"{mean:+.4f} {tables.interval(low, high, '+.4f')}"]
        if per_user in present:
            found = figures[model].setdefault("user_differences", {})
            cells += [user_difference(pairs, per_user, name, found) for name in USER_METRICS]
        difference_body.append(cells)
    text = "\n".join(tables.table(header, body))
    if difference_body:
        text += f"\n\nDifferences against {reference}:\n\n" + "\n".join(tables.table(differences, difference_body))
    return text, {"primary": primary, "models": figures}


def wall_cell(runs: list[dict], out: dict) -> str:
    """The wall seconds of a model's experiments summed over seeds, as a cell; recorded in `out`
    with each seed's (and the iterations' summed seconds, parallel trials each counted)."""
    walls = {t["seed"]: t.get(recorded.WALL_SECONDS, math.nan) for t in runs}
    out[recorded.WALL_SECONDS] = {
        "total": float(sum(walls.values())),
        "per_seed": walls,
        "trial_s_per_seed": {t["seed"]: t.get(recorded.TRIAL_SECONDS, math.nan) for t in runs},
    }
    total = out[recorded.WALL_SECONDS]["total"]
    return f"{total:.0f}" if math.isfinite(total) else "n/a: not recorded by Tune"


def user_difference(pairs: list[tuple[dict, dict]], per_user: str, name: str, out: dict) -> str:
    """The per-user difference of `name` (one of USER_METRICS) over seeds and test users
    (stats.paired_bootstrap), as a cell; recorded in `out` under the test metric's name. The liked
    variant keeps the users whose target is rated >= 4 (protocol.LIKED). Seeds whose two runs
    measured different users are not paired; a per-user list an older test.json lacks (MRR, the
    ratings) makes the cell say so."""
    liked_only = name.startswith(m.LIKED)
    values = name.removeprefix(m.LIKED)
    diffs, users_of, lacking = [], [], None
    for mine, ref in pairs:
        a, b = mine.get(per_user), ref.get(per_user)
        if not (a and b and a[m.USERS] == b[m.USERS]):
            continue
        if a.get(values) is None or b.get(values) is None:
            lacking = values  # measured before this per-user list was recorded
            continue
        keep = np.ones(len(a[m.USERS]), bool)
        if liked_only:
            ratings = a.get(m.TARGET_RATING) or b.get(m.TARGET_RATING)  # same users: same targets
            if ratings is None:
                lacking = "target ratings"
                continue
            keep = np.asarray(ratings) >= protocol.LIKED
        diffs.append(np.asarray(a[values], float)[keep] - np.asarray(b[values], float)[keep])
        users_of.append(a[m.USERS])
    key = m.split_metric(m.TEST, name)
    if not diffs:
        if lacking:
            reason = f"n/a: per-user {lacking} not in test.json (measured earlier)"
        else:
            reason = "n/a: no seed with the same test users"
        out[key] = {"unavailable": reason}
        return reason
    # One fixed split: every seed measured the same users, whose effect the seeds share.
    same_users = all(users == users_of[0] for users in users_of)
    mean, low, high = stats.paired_bootstrap(diffs, same_users=same_users)
    method = (stats.CROSSED_METHOD if same_users else stats.BOOTSTRAP_METHOD).format(resamples=2000)
    out[key] = {
        "mean": mean,
        "low": low,
        "high": high,
        "seeds": len(diffs),
        "users": sum(len(d) for d in diffs),
        "method": method,
    }
    return f"{mean:+.4f} {tables.interval(low, high, '+.4f')}"


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        planned = plans(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    import ray

    started = False
    rows: dict[str, list[dict]] = {model: [] for model in args.models}
    try:
        started = start_ray(args.address, args.cpus_per_trial)
        for seed, model, argv_model, plan in planned:
            measured = plan.local_dir / TEST_FILE if plan.local_dir is not None else None
            if measured is not None and measured.exists():
                # An interrupted comparison rerun with its --name: what was measured is read back.
                tests = json.loads(measured.read_text())
                print(f"{model} (seed {seed}): measured before, read back from {measured}")
            else:
                _, tests = execute(plan, argv_model, resume="--resume" in argv_model)
            if not tests:
                where = plan.storage.experiment(plan.name)
                print(f"error: {model} (seed {seed}): no trial finished; see {where}", file=sys.stderr)
                return 1
            experiment = plan.storage.experiment(plan.name)
            # Both read from what Tune recorded, so a folder measured before reads back the same.
            seconds = recorded.seconds(experiment)
            rows[model].append({**tests[0], "seed": seed, COMPUTE: compute(experiment), **seconds})
    except (ConfigError, StalledRun) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if started:
            ray.shutdown()
    text, figures = table(rows, args.models[0])
    root = planned[0][3].storage
    split = dataclasses.asdict(planned[0][3].config)
    on = f"data {split['data']!r}, split {split['split']!r}" if "split" in split else f"env {split.get('env')!r}"
    head = (
        f"Comparison over {args.seeds} seed(s) ({'data and training' if args.vary_data else 'training'} seeds), "
        f"{on}; valid score selects, test figures measured once on each selected trial; mean [95% t-interval "
        "over seeds]; (seeds x users): " + stats.BOOTSTRAP_METHOD.format(resamples=2000) + ", 95%, one user draw "
        "shared by the seeds where every seed measured the same users (comparison.json names each method); "
        "wall s: each experiment's first trial iteration to its last report, as Tune recorded them, summed over seeds."
    )
    if args.vary_data and not any(varies_data(plan.config) for *_, plan in planned):
        head += "\n" + VARY_DATA_NOTICE + "; the (seeds x users) intervals cover the test users."
    print("\n" + head + "\n" + text)
    if not root.is_uri:
        os.makedirs(root.root, exist_ok=True)
        with open(os.path.join(root.root, "comparison.json"), "w") as f:
            runs = {
                k: [{n: v for n, v in t.items() if n != m.split_metric(m.TEST, m.PER_USER)} for t in r]
                for k, r in rows.items()
            }
            json.dump({"args": vars(args), "runs": runs, **figures}, f, indent=1, default=str)
        with open(os.path.join(root.root, "comparison.md"), "w") as f:
            f.write(head + "\n\n" + text + "\n")
        print(f"Written: {os.path.join(root.root, 'comparison.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
